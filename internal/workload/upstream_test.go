package workload_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"canton.dev/canton/internal/meshtest"
	"canton.dev/canton/internal/workload"
	"canton.dev/canton/internal/xds"
)

// tcpEcho is a raw TCP application: on every connection it sends "<name>:", then echoes what
// it reads until the client half-closes.
func tcpEcho(t *testing.T, name string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.WriteString(c, name+":"); err == nil {
					io.Copy(c, c)
				}
			}()
		}
	}()
	return l.Addr().String()
}

// exchange dials addr, sends msg, half-closes and returns everything read until EOF.
func exchange(addr, msg string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	return string(b), err
}

// TestTCPThroughUpstreamFollowsVirtualService: a raw TCP service behind sidecars (echo v1 and
// v2) is reached by a client-only sidecar's --upstream port; the VirtualService's tcp route
// splits connections 70/30 between the DestinationRule's subsets; bytes go both ways over mesh
// mTLS (echo's inbound reports the client's SPIFFE ID as a mutual TLS peer, and refuses plain
// text); rerouting takes effect for new connections.
func TestTCPThroughUpstreamFollowsVirtualService(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	const data = "data.demo.mesh"
	c, _, applyIn := startScopes(ctx, t, meshtest.Options{Anchors: 2, RootVoters: 1}, map[string]string{data: "a2"})
	applyIn(data, `apiVersion: canton.dev/v1
kind: Service
metadata: {name: echo}
spec:
  ports: [{name: tcp, port: 7000, protocol: TCP}]
---
apiVersion: canton.dev/v1
kind: Service
metadata: {name: client}
spec:
  ports: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo}
spec:
  host: echo
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo}
spec:
  hosts: [echo]
  tcp:
  - match: [{port: 7000}]
    route:
    - destination: {host: echo, subset: v1}
      weight: 70
    - destination: {host: echo, subset: v2}
      weight: 30
`)
	admin := func(o *workload.Options) { o.Admin = "127.0.0.1:0" }
	v1 := startSidecarWith(t, c, data, []int{1}, "echo", "v1", tcpEcho(t, "v1"), admin)
	startSidecarIn(t, c, data, []int{1}, "echo", "v2", tcpEcho(t, "v2"))
	cli := startSidecarWith(t, c, data, []int{1}, "client", "v1", "", func(o *workload.Options) {
		o.Upstreams = []xds.Upstream{{Service: "echo", Address: "127.0.0.1:0"}}
	})
	ups := cli.w.Upstreams()
	if len(ups) != 1 || strings.HasSuffix(ups[0].Address, ":0") {
		t.Fatalf("upstreams %+v: want one, with the port bound", ups)
	}
	addr := ups[0].Address

	count := func(n int) (map[string]int, error) {
		got := map[string]int{}
		for i := range n {
			msg := "ping-" + strconv.Itoa(i)
			out, err := exchange(addr, msg)
			version, echoed, ok := strings.Cut(out, ":")
			if err != nil || !ok || echoed != msg {
				return got, fmt.Errorf("connection %d: %q %v, want <version>:%s", i, out, err, msg)
			}
			got[version]++
		}
		return got, nil
	}
	eventually(t, 20*time.Second, func() error {
		got, err := count(10)
		if err == nil && (got["v1"] == 0 || got["v2"] == 0) {
			err = fmt.Errorf("both subsets not reached yet: %v", got)
		}
		return err
	})
	const n = 200
	got, err := count(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("split over %d connections: %v", n, got)
	// 70/30 of 200: v1 expects 140 (sd 6.5); 110..170 fails by chance far less than once in 10^5.
	if got["v1"] < 110 || got["v1"] > 170 || got["v1"]+got["v2"] != n {
		t.Fatalf("split over %d connections: %v, want about 70/30 v1/v2", n, got)
	}

	// Echo's inbound saw each connection as mutual TLS from the client's identity.
	metricsOf := func(addr string) string {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/stats/prometheus")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	mtls := regexp.MustCompile(`istio_tcp_connections_opened_total\{[^}]*connection_security_policy="mutual_tls"[^}]*reporter="destination"[^}]*source_principal="spiffe://data.demo.mesh/sa/client"[^}]*\} (\d+)`)
	m := mtls.FindStringSubmatch(metricsOf(v1.w.Admin()))
	if m == nil {
		t.Fatal("echo v1's inbound reports no mutual TLS connection from the client")
	}
	t.Logf("echo v1's inbound: %s", m[0])
	if opened, _ := strconv.Atoi(m[1]); opened < got["v1"] {
		t.Fatalf("echo v1's inbound reports %d mutual TLS connections from the client, want at least the %d of the split", opened, got["v1"])
	}
	// ... and does not take plain text (STRICT by default).
	if out, _ := exchange(v1.w.Inbound(), "plain"); strings.HasPrefix(out, "v1:") {
		t.Fatalf("echo v1's inbound passed plain text to the application: %q", out)
	}
	if m2 := mtls.FindStringSubmatch(metricsOf(v1.w.Admin())); m2 == nil || m2[1] != m[1] {
		t.Fatalf("the plain-text attempt was counted as a mutual TLS connection: %s then %s", m[1], m2[1])
	}

	// A new route applies to new connections.
	applyIn(data, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo}
spec:
  hosts: [echo]
  tcp:
  - route:
    - destination: {host: echo, subset: v2}
`)
	eventually(t, 20*time.Second, func() error {
		got, err := count(10)
		if err == nil && got["v2"] != 10 {
			err = fmt.Errorf("after routing all to v2: %v", got)
		}
		return err
	})
}

// tlsApp is an HTTPS application answering body, with the test certificate of
// net/http/httptest (example.com, *.example.com); its pool trusts that certificate.
func tlsApp(t *testing.T, body string) (string, *x509.CertPool) {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }))
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return srv.Listener.Addr().String(), pool
}

// TestUpstreamPassesTLSThroughAndRoutesHTTP: an --upstream port of a TLS service passes the
// client's TLS through to the application (the client verifies the application's own
// certificate; the sidecars only carry it inside mesh mTLS), routed by SNI as the
// VirtualService's tls route says, other SNIs by its tcp route; an --upstream port of an HTTP
// service serves the routes the outbound listener has for it, whatever Host the client sends.
func TestUpstreamPassesTLSThroughAndRoutesHTTP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	const data = "data.demo.mesh"
	c, _, applyIn := startScopes(ctx, t, meshtest.Options{Anchors: 2, RootVoters: 1}, map[string]string{data: "a2"})
	applyIn(data, `apiVersion: canton.dev/v1
kind: Service
metadata: {name: vault}
spec:
  ports: [{name: tls, port: 8200, protocol: TLS}]
---
apiVersion: canton.dev/v1
kind: Service
metadata: {name: web}
spec:
  ports: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: canton.dev/v1
kind: Service
metadata: {name: client}
spec:
  ports: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: vault}
spec:
  host: vault
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vault}
spec:
  hosts: [vault]
  tls:
  - match: [{sniHosts: [v2.example.com]}]
    route:
    - destination: {host: vault, subset: v2}
  tcp:
  - route:
    - destination: {host: vault, subset: v1}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
  - match: [{uri: {prefix: /old}}]
    rewrite: {uri: /new}
    route:
    - destination: {host: web}
  - route:
    - destination: {host: web}
`)
	v1Addr, roots := tlsApp(t, "vault-v1")
	v2Addr, _ := tlsApp(t, "vault-v2") // the same test certificate
	startSidecarIn(t, c, data, []int{1}, "vault", "v1", v1Addr)
	startSidecarIn(t, c, data, []int{1}, "vault", "v2", v2Addr)
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "web "+r.URL.Path) }))
	t.Cleanup(web.Close)
	startSidecarIn(t, c, data, []int{1}, "web", "v1", web.Listener.Addr().String())
	cli := startSidecarWith(t, c, data, []int{1}, "client", "v1", "", func(o *workload.Options) {
		o.Upstreams = []xds.Upstream{{Service: "vault", Address: "127.0.0.1:0"}, {Service: "web.data", Port: 8080, Address: "127.0.0.1:0"}}
	})
	vault, webUp := cli.w.Upstreams()[0].Address, cli.w.Upstreams()[1].Address

	get := func(url, sni string) (string, error) {
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: sni}, DisableKeepAlives: true}}
		resp, err := hc.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d %s", resp.StatusCode, b), err
	}
	for _, tc := range []struct{ sni, want string }{{"v2.example.com", "200 vault-v2"}, {"example.com", "200 vault-v1"}} {
		eventually(t, 20*time.Second, func() error {
			if got, err := get("https://"+vault+"/", tc.sni); err != nil || got != tc.want {
				return fmt.Errorf("TLS with SNI %s through the upstream port: %q %v, want %q", tc.sni, got, err, tc.want)
			}
			return nil
		})
	}
	for _, tc := range []struct{ path, want string }{{"/old/x", "200 web /new/x"}, {"/y", "200 web /y"}} {
		eventually(t, 20*time.Second, func() error {
			if got, err := get("http://"+webUp+tc.path, ""); err != nil || got != tc.want {
				return fmt.Errorf("HTTP %s through the upstream port: %q %v, want %q", tc.path, got, err, tc.want)
			}
			return nil
		})
	}
}
