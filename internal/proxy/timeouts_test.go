package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"canton.dev/canton/internal/proxy/xdsclient"
)

// timeoutsEnv: listener "l" whose HCM is changed by hcm, routes "/route-idle" (route idle_timeout
// 100ms), "/no-idle" (route idle_timeout 0: none) and everything else to cluster "c" at u.
func timeoutsEnv(t *testing.T, u *upstream, hcm func(*hcmv3.HttpConnectionManager)) string {
	e := startEnv(t)
	e.set(xdsclient.ClusterType, "1", edsCluster("c", nil))
	e.set(xdsclient.EndpointType, "1", endpoints(t, "c", u.Addr()))
	withIdle := func(prefix string, d time.Duration) *routev3.Route {
		a := routeTo("c")
		a.Route.IdleTimeout = durationpb.New(d)
		return &routev3.Route{Match: prefixMatch(prefix), Action: a}
	}
	e.set(xdsclient.RouteType, "1", &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "all", Domains: []string{"*"},
		Routes: []*routev3.Route{withIdle("/route-idle", 100*time.Millisecond), withIdle("/no-idle", 0),
			{Match: prefixMatch("/"), Action: routeTo("c")}}}}})
	e.set(xdsclient.ListenerType, "1", httpListener(t, "l", "r", hcm))
	e.waitACK(xdsclient.EndpointType, "1")
	e.waitACK(xdsclient.RouteType, "1")
	return e.listenerAddr("l")
}

func TestStreamIdleTimeouts(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	u := startUpstream(t, "u", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/stall-body") {
			io.WriteString(w, "first")
			w.(http.Flusher).Flush()
		}
		if strings.Contains(r.URL.Path, "/stall") {
			select { // idle until released or cancelled
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		if strings.Contains(r.URL.Path, "/slow") {
			time.Sleep(400 * time.Millisecond) // longer than the HCM's stream_idle_timeout, with a bound
		}
		io.WriteString(w, "ok")
	})
	addr := timeoutsEnv(t, u, func(h *hcmv3.HttpConnectionManager) { h.StreamIdleTimeout = durationpb.New(250 * time.Millisecond) })
	c := client()

	// The route's idle_timeout (100ms) fires before any response header: 408.
	start := time.Now()
	resp, body := get(t, c, addr, "x", "/route-idle/stall")
	if resp.StatusCode != 408 || body != "stream timeout" {
		t.Errorf("route idle_timeout before headers: %d %q, want 408 stream timeout", resp.StatusCode, body)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("route idle_timeout took %v", d)
	}
	// After headers and some body, the stream is reset: the client sees a broken body, not a clean end.
	req, _ := http.NewRequest("GET", "http://"+addr+"/route-idle/stall-body", nil)
	r2, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r2.Body)
	r2.Body.Close()
	if err == nil || string(b) != "first" {
		t.Errorf("idle after the body started: read %q, %v; want %q then an error", b, err, "first")
	}
	// Without a route idle_timeout the HCM's stream_idle_timeout (250ms) applies.
	if resp, body := get(t, c, addr, "x", "/stall"); resp.StatusCode != 408 || body != "stream timeout" {
		t.Errorf("stream_idle_timeout: %d %q, want 408", resp.StatusCode, body)
	}
	if resp, body := get(t, c, addr, "x", "/slow"); resp.StatusCode != 408 {
		t.Errorf("400ms without activity under stream_idle_timeout 250ms: %d %q, want 408", resp.StatusCode, body)
	}
	// idle_timeout 0 on the route disables the HCM's.
	if resp, body := get(t, c, addr, "x", "/no-idle/slow"); resp.StatusCode != 200 || body != "ok" {
		t.Errorf("route idle_timeout 0: %d %q, want 200 ok", resp.StatusCode, body)
	}
}

func TestRequestTimeout(t *testing.T) {
	u := startUpstream(t, "u", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		fmt.Fprintf(w, "got %d", len(b))
	})
	addr := timeoutsEnv(t, u, func(h *hcmv3.HttpConnectionManager) { h.RequestTimeout = durationpb.New(200 * time.Millisecond) })
	// A body that stops arriving: 408 once request_timeout has passed since the request started.
	conn := dialT(t, addr)
	start := time.Now()
	io.WriteString(conn, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no response to a stalled body: %v", err)
	}
	if resp.StatusCode != 408 {
		t.Errorf("stalled body: %d, want 408", resp.StatusCode)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 3*time.Second {
		t.Errorf("408 after %v, want about 200ms", d)
	}
	// A complete body within the timeout is forwarded.
	r2, err := http.Post("http://"+addr+"/upload", "text/plain", strings.NewReader("0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r2.Body)
	r2.Body.Close()
	if r2.StatusCode != 200 || string(b) != "got 10" {
		t.Errorf("complete body: %d %q", r2.StatusCode, b)
	}
}
