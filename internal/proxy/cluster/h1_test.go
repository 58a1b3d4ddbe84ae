package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
)

// rawUpstream accepts connections on 127.0.0.1 and runs serve for each; it counts connections.
type rawUpstream struct {
	ln    net.Listener
	conns atomic.Int64
	wg    sync.WaitGroup
}

func startRaw(t *testing.T, serve func(n int64, c net.Conn)) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{ln: ln}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := u.conns.Add(1)
			u.wg.Add(1)
			go func() {
				defer u.wg.Done()
				defer c.Close()
				serve(n, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); u.wg.Wait() })
	return u
}

// serveHTTP answers every request on c with handler's raw response until handler returns "".
func serveHTTP(c net.Conn, handler func(req *http.Request) string) {
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		resp := handler(req)
		if resp == "" {
			return
		}
		if _, err := io.WriteString(c, resp); err != nil {
			return
		}
	}
}

func ok(body string) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

func h1Cluster(t *testing.T) *Cluster {
	t.Helper()
	cl, err := New(&clusterv3.Cluster{Name: "h1", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close(0) })
	return cl
}

func get(t *testing.T, cl *Cluster, ctx context.Context, method, addr, body string) (int, string, error) {
	t.Helper()
	r := &http.Request{Method: method, ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{"X-Test": {"1"}}, Host: "svc",
		URL: &url.URL{Scheme: "http", Host: addr, Path: "/p", RawQuery: "q=1"}, Body: http.NoBody}
	if body != "" {
		b := []byte(body)
		r.Body, r.ContentLength = bodyReader(b), int64(len(b))
		r.GetBody = func() (io.ReadCloser, error) { return bodyReader(b), nil }
	}
	resp, err := cl.RoundTrip(r.WithContext(ctx))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(got), err
}

func bodyReader(b []byte) io.ReadCloser { return io.NopCloser(strings.NewReader(string(b))) }

func TestH1ReusesConnection(t *testing.T) {
	var seen sync.Map
	up := startRaw(t, func(n int64, c net.Conn) {
		serveHTTP(c, func(req *http.Request) string {
			seen.Store("line", req.Method+" "+req.RequestURI+" "+req.Host+" "+req.Header.Get("X-Test"))
			return ok("hello")
		})
	})
	cl := h1Cluster(t)
	for i := 0; i < 5; i++ {
		code, body, err := get(t, cl, context.Background(), "GET", up.ln.Addr().String(), "")
		if err != nil || code != 200 || body != "hello" {
			t.Fatalf("request %d: %d %q %v", i, code, body, err)
		}
	}
	if n := up.conns.Load(); n != 1 {
		t.Errorf("%d upstream connections for 5 sequential requests, want 1", n)
	}
	if line, _ := seen.Load("line"); line != "GET /p?q=1 svc 1" {
		t.Errorf("upstream saw %q", line)
	}
	if n := cl.Connections(); n != 1 {
		t.Errorf("cluster counts %d connections, want 1", n)
	}
}

func TestH1UpstreamClosedIdleConnection(t *testing.T) {
	// The upstream answers one request per connection without saying Connection: close, then
	// closes: the pool must notice before reuse and dial anew, for POST as for GET.
	closed := make(chan struct{}, 8)
	up := startRaw(t, func(n int64, c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		io.WriteString(c, ok("once"))
		c.Close()
		closed <- struct{}{}
	})
	cl := h1Cluster(t)
	addr := up.ln.Addr().String()
	for i, m := range []string{"GET", "POST", "GET", "POST"} {
		if i > 0 {
			// Wait until the close is visible on the kept connection, so that the peek before
			// reuse is what is tested, not the retry of a stale connection.
			<-closed
			waitFor(t, func() bool {
				cl.h1.mu.Lock()
				defer cl.h1.mu.Unlock()
				conns := cl.h1.idle[addr]
				if len(conns) != 1 || conns[0].peek.idleAlive() {
					return false
				}
				// Idle long enough that every request checks it (see TestH1RecentIdleSkipsPeek).
				conns[0].idleAt = conns[0].idleAt.Add(-h1TrustIdle)
				return true
			})
		}
		code, body, err := get(t, cl, context.Background(), m, addr, "data")
		if err != nil || code != 200 || body != "once" {
			t.Fatalf("%s #%d: %d %q %v", m, i, code, body, err)
		}
	}
	if n := up.conns.Load(); n != 4 {
		t.Errorf("%d connections, want 4", n)
	}
}

// TestH1RecentIdleSkipsPeek checks that a connection kept for less than h1TrustIdle is handed to
// a replayable request without the liveness check (it would be sent again on a new connection if
// the kept one turned out closed) and that a request that cannot be replayed still checks it.
func TestH1RecentIdleSkipsPeek(t *testing.T) {
	// The upstream answers one request per connection without saying Connection: close, then closes.
	closed := make(chan struct{}, 8)
	up := startRaw(t, func(n int64, c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, ok("x"))
		c.Close()
		closed <- struct{}{}
	})
	cl := h1Cluster(t)
	addr := up.ln.Addr().String()
	keptClosed := func() *h1Conn {
		t.Helper()
		<-closed
		var kept *h1Conn
		waitFor(t, func() bool {
			cl.h1.mu.Lock()
			defer cl.h1.mu.Unlock()
			conns := cl.h1.idle[addr]
			if len(conns) != 1 || conns[0].peek.idleAlive() {
				return false
			}
			kept = conns[0]
			kept.idleAt = time.Now()
			return true
		})
		return kept
	}
	if code, _, err := get(t, cl, context.Background(), "GET", addr, ""); err != nil || code != 200 {
		t.Fatal(code, err)
	}
	kept := keptClosed()
	c, err := cl.h1.get(context.Background(), addr, true)
	if err != nil {
		t.Fatal(err)
	}
	if c != kept || !c.reused {
		t.Fatal("a replayable request did not get the recently kept connection unchecked")
	}
	cl.h1.put(c)
	// The closed connection is taken unchecked, fails before any response byte, and the request
	// goes again on a new connection.
	if code, body, err := get(t, cl, context.Background(), "GET", addr, ""); err != nil || code != 200 || body != "x" {
		t.Fatalf("GET on a recently kept closed connection: %d %q %v, want a retry on a new one", code, body, err)
	}
	kept = keptClosed()
	c2, err := cl.h1.get(context.Background(), addr, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.conn.Close()
	if c2 == kept {
		t.Fatal("a request that cannot be replayed got a closed connection: the liveness check was skipped")
	}
	waitFor(t, func() bool { return up.conns.Load() == 3 }) // the new connection is accepted
	if n := up.conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
}

func TestH1StaleConnectionRetry(t *testing.T) {
	// The upstream takes the second request on a connection and closes without answering: an
	// idempotent request is sent again on a new connection, a POST is not.
	up := startRaw(t, func(n int64, c net.Conn) {
		served := 0
		serveHTTP(c, func(*http.Request) string {
			served++
			if served > 1 {
				return ""
			}
			return ok("first")
		})
	})
	cl := h1Cluster(t)
	addr := up.ln.Addr().String()
	if code, _, err := get(t, cl, context.Background(), "GET", addr, ""); err != nil || code != 200 {
		t.Fatal(code, err)
	}
	if code, body, err := get(t, cl, context.Background(), "GET", addr, ""); err != nil || code != 200 || body != "first" {
		t.Fatalf("GET on a stale connection: %d %q %v, want a retry on a new connection", code, body, err)
	}
	if _, _, err := get(t, cl, context.Background(), "POST", addr, "x"); err == nil {
		t.Fatal("POST on a stale connection succeeded; it must not be replayed")
	}
	if n := up.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

func TestH1ResponseForms(t *testing.T) {
	for _, tc := range []struct {
		name, resp, want string
		status           int
		reuse            bool
	}{
		{"content-length", ok("abc"), "abc", 200, true},
		{"chunked with trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: v\r\n\r\n", "abcde", 200, true},
		{"informational first", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + ok("x"), "x", 200, true},
		{"no body", "HTTP/1.1 204 No Content\r\n\r\n", "", 204, true},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nz", "z", 200, false},
		{"until close", "HTTP/1.1 200 OK\r\n\r\nrest", "rest", 200, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := startRaw(t, func(n int64, c net.Conn) {
				serveHTTP(c, func(*http.Request) string {
					if !tc.reuse {
						io.WriteString(c, tc.resp)
						return "" // and close
					}
					return tc.resp
				})
			})
			cl := h1Cluster(t)
			for i := 0; i < 2; i++ {
				code, body, err := get(t, cl, context.Background(), "GET", up.ln.Addr().String(), "")
				if err != nil || code != tc.status || body != tc.want {
					t.Fatalf("request %d: %d %q %v, want %d %q", i, code, body, err, tc.status, tc.want)
				}
			}
			want := int64(2)
			if tc.reuse {
				want = 1
			}
			if n := up.conns.Load(); n != want {
				t.Errorf("%d connections, want %d", n, want)
			}
		})
	}
}

func TestH1TrailersReachTheCaller(t *testing.T) {
	up := startRaw(t, func(n int64, c net.Conn) {
		serveHTTP(c, func(*http.Request) string {
			return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Grpc-Status\r\n\r\n1\r\na\r\n0\r\nGrpc-Status: 7\r\n\r\n"
		})
	})
	cl := h1Cluster(t)
	r, _ := http.NewRequest("GET", "http://"+up.ln.Addr().String()+"/", nil)
	resp, err := cl.RoundTrip(r)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if got := resp.Trailer.Get("Grpc-Status"); got != "7" {
		t.Errorf("trailer %q, want 7", got)
	}
}

func TestH1HeadTooLarge(t *testing.T) {
	up := startRaw(t, func(n int64, c net.Conn) {
		serveHTTP(c, func(*http.Request) string {
			return "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\nContent-Length: 0\r\n\r\n"
		})
	})
	cl := h1Cluster(t)
	_, _, err := get(t, cl, context.Background(), "GET", up.ln.Addr().String(), "")
	if !errors.Is(err, errHeadTooLarge) {
		t.Fatalf("err %v, want %v", err, errHeadTooLarge)
	}
	waitFor(t, func() bool { return cl.Connections() == 0 })
}

func TestH1CancelAbortsExchangeAndBody(t *testing.T) {
	release := make(chan struct{})
	up := startRaw(t, func(n int64, c net.Conn) {
		serveHTTP(c, func(req *http.Request) string {
			if req.URL.Query().Get("q") == "1" && n == 1 {
				<-release // never answers the first request in time
				return ""
			}
			return ""
		})
	})
	defer close(release)
	cl := h1Cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := get(t, cl, ctx, "GET", up.ln.Addr().String(), "")
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("err %v after %v, want a prompt failure", err, time.Since(start))
	}
	waitFor(t, func() bool { return cl.Connections() == 0 })

	// A body that stalls mid-way: cancelling ends the read.
	stall := startRaw(t, func(n int64, c net.Conn) {
		serveHTTP(c, func(*http.Request) string {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
			<-release
			return ""
		})
	})
	ctx2, cancel2 := context.WithCancel(context.Background())
	r, _ := http.NewRequestWithContext(ctx2, "GET", "http://"+stall.ln.Addr().String()+"/", nil)
	resp, err := cl.RoundTrip(r)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(50*time.Millisecond, cancel2)
	if _, err := resp.Body.Read(buf); err == nil {
		t.Fatal("read of a stalled body returned no error after cancel")
	}
	resp.Body.Close()
	waitFor(t, func() bool { return cl.Connections() == 0 })
}

func TestH1RejectsInvalidHeaders(t *testing.T) {
	up := startRaw(t, func(n int64, c net.Conn) { serveHTTP(c, func(*http.Request) string { return ok("x") }) })
	cl := h1Cluster(t)
	for _, h := range []http.Header{{"X-Bad": {"a\r\nInjected: 1"}}, {"Bad Name": {"v"}}} {
		r, _ := http.NewRequest("GET", "http://"+up.ln.Addr().String()+"/", nil)
		r.Header = h
		if _, err := cl.RoundTrip(r); err == nil {
			t.Errorf("header %v sent", h)
		}
	}
}

func TestH1CloseDrainsPool(t *testing.T) {
	up := startRaw(t, func(n int64, c net.Conn) { serveHTTP(c, func(*http.Request) string { return ok("x") }) })
	cl, err := New(&clusterv3.Cluster{Name: "h1", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := get(t, cl, context.Background(), "GET", up.ln.Addr().String(), ""); err != nil {
		t.Fatal(err)
	}
	if cl.Connections() != 1 {
		t.Fatalf("%d connections, want 1 kept", cl.Connections())
	}
	cl.Close(0)
	if n := cl.Connections(); n != 0 {
		t.Errorf("%d connections after Close, want 0", n)
	}
}

func TestH1IdleTimeoutClosesKeptConnections(t *testing.T) {
	up := startRaw(t, func(n int64, c net.Conn) { serveHTTP(c, func(*http.Request) string { return ok("x") }) })
	cl := h1Cluster(t)
	cl.h1.idleTimeout = 50 * time.Millisecond
	if _, _, err := get(t, cl, context.Background(), "GET", up.ln.Addr().String(), ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return cl.Connections() == 0 })
}

func BenchmarkH1RoundTrip(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })}
	go srv.Serve(ln)
	defer srv.Close()
	cl, err := New(&clusterv3.Cluster{Name: "h1", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close(0)
	for _, tc := range []struct {
		name string
		rt   func(*http.Request) (*http.Response, error)
	}{{"h1pool", cl.RoundTrip}, {"net-http", cl.Transport().RoundTrip}} {
		b.Run(tc.name, func(b *testing.B) {
			r, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/", nil)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := tc.rt(r)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
