package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Upstream is net/http's own HTTP/2 server on 127.0.0.1: h2c with prior knowledge, or TLS with
// ALPN h2 (clientTLS then trusts it).
type h2Upstream struct {
	addr      string
	clientTLS *tls.Config
	srv       *http.Server
}

func startH2(t *testing.T, useTLS bool, h http.Handler, configure func(*http.Server)) *h2Upstream {
	t.Helper()
	if useTLS {
		s := httptest.NewUnstartedServer(h)
		s.EnableHTTP2 = true
		if configure != nil {
			configure(s.Config)
		}
		s.StartTLS()
		t.Cleanup(s.Close)
		return &h2Upstream{addr: s.Listener.Addr().String(), clientTLS: s.Client().Transport.(*http.Transport).TLSClientConfig, srv: s.Config}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &p}
	if configure != nil {
		configure(srv)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &h2Upstream{addr: ln.Addr().String(), srv: srv}
}

// h2Cluster is an HTTP/2 cluster over TLS with tc, else h2c.
func newH2Cluster(t *testing.T, tc *tls.Config, idle time.Duration) *Cluster {
	t.Helper()
	cl, err := New(&clusterv3.Cluster{Name: "h2", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}, Options{TLS: tc})
	if err != nil {
		t.Fatal(err)
	}
	cl.h2.idleTimeout = idle
	t.Cleanup(func() { cl.Close(0) })
	return cl
}

// h2Request is a request to addr as forward.go builds them; a body is in memory (GetBody set).
func h2Request(ctx context.Context, method, scheme, addr string, body []byte) *http.Request {
	r := &http.Request{Method: method, ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{"X-Test": {"1"}}, Host: "svc",
		URL: &url.URL{Scheme: scheme, Host: addr, Path: "/p", RawQuery: "q=1"}, Body: http.NoBody}
	if body != nil {
		r.Body, r.ContentLength = bodyReader(body), int64(len(body))
		r.GetBody = func() (io.ReadCloser, error) { return bodyReader(body), nil }
	}
	return r.WithContext(ctx)
}

func schemeOf(tc *tls.Config) string {
	if tc != nil {
		return "https"
	}
	return "http"
}

// echo answers with the method, path, Host, X-Test and the request body, and trailers: X-Declared
// (declared in the Trailer header) and X-Undeclared (through http.TrailerPrefix); request trailers
// come back as X-Got-<name> trailers.
func echo(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Trailer", "X-Declared")
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	fmt.Fprintf(w, "%s %s %s %s %s|", r.Method, r.URL.RequestURI(), r.Host, r.Header.Get("X-Test"), r.Proto)
	w.Write(b)
	w.Header().Set("X-Declared", "d")
	w.Header().Set(http.TrailerPrefix+"X-Undeclared", "u")
	for k, vs := range r.Trailer {
		w.Header().Set(http.TrailerPrefix+"X-Got-"+k, strings.Join(vs, ","))
	}
}

func TestH2RoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 3<<20/16) // 3 MiB: beyond every default window
	for _, useTLS := range []bool{false, true} {
		up := startH2(t, useTLS, http.HandlerFunc(echo), nil)
		cl := newH2Cluster(t, up.clientTLS, 0)
		for _, tc := range []struct {
			name    string
			method  string
			body    []byte
			stream  bool // body through a pipe, not in memory
			trailer http.Header
		}{
			{name: "GET", method: "GET"},
			{name: "POST", method: "POST", body: []byte("hello")},
			{name: "POST empty", method: "POST", body: []byte{}},
			{name: "POST 3 MiB", method: "POST", body: big},
			{name: "POST 3 MiB streamed", method: "POST", body: big, stream: true},
			{name: "request trailers", method: "POST", body: []byte("t"), stream: true, trailer: http.Header{"X-Req": {"r"}}},
		} {
			t.Run(fmt.Sprintf("tls=%v/%s", useTLS, tc.name), func(t *testing.T) {
				r := h2Request(context.Background(), tc.method, schemeOf(up.clientTLS), up.addr, tc.body)
				if tc.stream {
					pr, pw := io.Pipe()
					go func() {
						pw.Write(tc.body)
						for k, vs := range tc.trailer { // set before EOF, as a server's body does
							r.Trailer[k] = vs
						}
						pw.Close()
					}()
					r.Body, r.GetBody, r.ContentLength = pr, nil, -1
					if tc.trailer != nil {
						r.Trailer = http.Header{}
						for k := range tc.trailer {
							r.Trailer[k] = nil
						}
					}
				}
				resp, err := cl.RoundTrip(r)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if _, ok := resp.Trailer["X-Declared"]; !ok || resp.ProtoMajor != 2 {
					t.Errorf("trailer %v before the body, proto %q: want X-Declared announced over HTTP/2", resp.Trailer, resp.Proto)
				}
				got, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				want := fmt.Sprintf("%s /p?q=1 svc 1 HTTP/2.0|%s", tc.method, tc.body)
				if string(got) != want {
					t.Errorf("body %.80q (%d bytes), want %.80q (%d bytes)", got, len(got), want, len(want))
				}
				if resp.Trailer.Get("X-Declared") != "d" || resp.Trailer.Get("X-Undeclared") != "u" {
					t.Errorf("trailers %v, want X-Declared: d and X-Undeclared: u", resp.Trailer)
				}
				for k, vs := range tc.trailer {
					if g := resp.Trailer.Get("X-Got-" + k); g != vs[0] {
						t.Errorf("upstream saw request trailer %s %q, want %q", k, g, vs[0])
					}
				}
			})
		}
	}
}

// A big response body read slowly stays within the stream window (the upstream blocks, it is not
// buffered without bound), and credit goes back in batches, not per frame.
func TestH2FlowControlBatchesCredit(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 12<<20)
	up := startH2(t, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(big) }), nil)
	var mu sync.Mutex
	var updates int
	cw := &countingDial{onWrite: func(b []byte) {
		mu.Lock()
		defer mu.Unlock()
		updates += countFrames(b, http2.FrameWindowUpdate)
	}}
	p := newH2Pool(cw.dial, nil, time.Second, 0)
	defer p.closeIdle(true)
	resp, err := p.roundTrip(h2Request(context.Background(), "GET", "http", up.addr, nil))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 32<<10)
	var n int
	for {
		m, err := resp.Body.Read(buf)
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		cs := resp.Body.(*h2Body).cs
		cs.c.mu.Lock()
		if cs.buffered > h2StreamWindow {
			t.Errorf("%d bytes buffered, more than the stream window", cs.buffered)
		}
		cs.c.mu.Unlock()
	}
	resp.Body.Close()
	if n != len(big) {
		t.Fatalf("read %d bytes, want %d", n, len(big))
	}
	mu.Lock()
	defer mu.Unlock()
	// 12 MiB: stream credit every 2 MiB, connection credit every 4 MiB, plus the preface's one.
	if updates > 12 {
		t.Errorf("%d WINDOW_UPDATE frames for 12 MiB, want batches (at most 12)", updates)
	}
}

// countingDial dials TCP and counts the writes on the connections it made.
type countingDial struct {
	writes  atomic.Int64
	dials   atomic.Int64
	onWrite func([]byte)
}

func (d *countingDial) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	d.dials.Add(1)
	return &countingConn{Conn: c, d: d}, nil
}

type countingConn struct {
	net.Conn
	d *countingDial
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.d.writes.Add(1)
	if c.d.onWrite != nil {
		c.d.onWrite(b)
	}
	return c.Conn.Write(b)
}

// countFrames counts the frames of type ft in b, a sequence of whole frames (after the preface).
func countFrames(b []byte, ft http2.FrameType) int {
	b = bytes.TrimPrefix(b, []byte(http2.ClientPreface))
	n := 0
	for len(b) >= 9 {
		l := int(b[0])<<16 | int(b[1])<<8 | int(b[2])
		if http2.FrameType(b[3]) == ft {
			n++
		}
		if 9+l > len(b) {
			break
		}
		b = b[9+l:]
	}
	return n
}

// frameTypes lists the types of the frames in b.
func frameTypes(b []byte) []http2.FrameType {
	b = bytes.TrimPrefix(b, []byte(http2.ClientPreface))
	var ts []http2.FrameType
	for len(b) >= 9 {
		l := int(b[0])<<16 | int(b[1])<<8 | int(b[2])
		ts = append(ts, http2.FrameType(b[3]))
		if 9+l > len(b) {
			break
		}
		b = b[9+l:]
	}
	return ts
}

// A request with its body in memory leaves in one write: HEADERS and DATA with END_STREAM, and on a
// new connection the preface and SETTINGS with them.
func TestH2InMemoryRequestIsOneWrite(t *testing.T) {
	up := startH2(t, false, http.HandlerFunc(echo), nil)
	var mu sync.Mutex
	var writes [][]byte
	d := &countingDial{onWrite: func(b []byte) {
		mu.Lock()
		defer mu.Unlock()
		writes = append(writes, append([]byte(nil), b...))
	}}
	p := newH2Pool(d.dial, nil, time.Second, 0)
	defer p.closeIdle(true)
	post := func() {
		t.Helper()
		resp, err := p.roundTrip(h2Request(context.Background(), "POST", "http", up.addr, []byte(`{"unary":"call"}`)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(resp.Body); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	post()
	mu.Lock()
	first := writes[0]
	mu.Unlock()
	if !bytes.HasPrefix(first, []byte(http2.ClientPreface)) || fmt.Sprint(frameTypes(first)) != fmt.Sprint([]http2.FrameType{
		http2.FrameSettings, http2.FrameWindowUpdate, http2.FrameHeaders, http2.FrameData}) {
		t.Errorf("first write: frames %v, want the preface, SETTINGS, WINDOW_UPDATE, HEADERS and DATA", frameTypes(first))
	}
	for i := range 3 {
		before := d.writes.Load()
		post()
		if n := d.writes.Load() - before; n != 1 {
			mu.Lock()
			var kinds [][]http2.FrameType
			for _, w := range writes[len(writes)-int(n):] {
				kinds = append(kinds, frameTypes(w))
			}
			mu.Unlock()
			t.Errorf("request %d on a warm connection: %d writes (%v), want 1", i, n, kinds)
		}
	}
}

// The upstream's MAX_CONCURRENT_STREAMS is honoured: 20 requests in flight at once on a server that
// allows 2 streams per connection take exactly 10 connections.
func TestH2MaxConcurrentStreams(t *testing.T) {
	const n = 20
	var inFlight atomic.Int64
	all := make(chan struct{})
	up := startH2(t, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if inFlight.Add(1) == n {
			close(all)
		}
		select {
		case <-all:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "ok")
	}), func(s *http.Server) { s.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 2} })
	cl := newH2Cluster(t, nil, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, body, err := get(t, cl, ctx, "GET", up.addr, "")
			if err == nil && body != "ok" {
				err = fmt.Errorf("body %q", body)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := cl.Connections(); got != n/2 {
		t.Errorf("%d connections, want %d (2 streams each)", got, n/2)
	}
}

// splitListener hands the first connection of ln to first and the others to rest, so that one
// server can shut down (GOAWAY) while another keeps accepting on the same address.
type chanListener struct {
	ch   chan net.Conn
	addr net.Addr
	once sync.Once
	done chan struct{}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *chanListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *chanListener) Addr() net.Addr { return l.addr }

// Graceful shutdown of the upstream (GOAWAY) in the middle of traffic: replayable requests all
// succeed, the unprocessed ones on a new connection.
func TestH2GracefulShutdownReplays(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	first := &chanListener{ch: make(chan net.Conn), addr: ln.Addr(), done: make(chan struct{})}
	rest := &chanListener{ch: make(chan net.Conn), addr: ln.Addr(), done: make(chan struct{})}
	go func() {
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l := rest
			if i == 0 {
				l = first
			}
			select {
			case l.ch <- c:
			case <-l.done:
				c.Close()
			}
		}
	}()
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	var served atomic.Int64
	started := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if served.Add(1) == 50 {
			started <- struct{}{}
		}
		io.WriteString(w, "ok")
	})
	a := &http.Server{Handler: h, Protocols: &p}
	b := &http.Server{Handler: h, Protocols: &p}
	go a.Serve(first)
	go b.Serve(rest)
	defer b.Close()
	cl := newH2Cluster(t, nil, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failures, total atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				total.Add(1)
				if _, body, err := get(t, cl, ctx, "GET", ln.Addr().String(), ""); err != nil || body != "ok" {
					failures.Add(1)
					t.Errorf("request during shutdown: %q %v", body, err)
					return
				}
			}
		}()
	}
	<-started
	if err := a.Shutdown(ctx); err != nil {
		t.Error(err)
	}
	// Traffic goes on over the other server's connections.
	n := served.Load()
	waitFor(t, func() bool { return served.Load() >= n+200 || failures.Load() > 0 })
	close(stop)
	wg.Wait()
	if total.Load() < 250 {
		t.Errorf("only %d requests", total.Load())
	}
}

// A stream the upstream resets fails with an error naming the code: before the response in
// RoundTrip, after it in the body read.
func TestH2UpstreamReset(t *testing.T) {
	up := startH2(t, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("late") != "" {
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
		}
		panic(http.ErrAbortHandler) // RST_STREAM(INTERNAL_ERROR)
	}), func(s *http.Server) { s.ErrorLog = discardLog() })
	cl := newH2Cluster(t, nil, 0)
	r := h2Request(context.Background(), "GET", "http", up.addr, nil)
	if _, err := cl.RoundTrip(r); err == nil || !strings.Contains(err.Error(), "INTERNAL_ERROR") {
		t.Errorf("reset before the response: %v, want an error naming INTERNAL_ERROR", err)
	}
	r = h2Request(context.Background(), "GET", "http", up.addr, nil)
	r.URL.RawQuery = "late=1"
	resp, err := cl.RoundTrip(r)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || !strings.Contains(err.Error(), "INTERNAL_ERROR") {
		t.Errorf("reset in the body: %v, want an error naming INTERNAL_ERROR", err)
	}
	waitFor(t, func() bool { return streamsOf(cl.h2) == 0 })
}

// streamsOf counts the streams open or reserved on p's connections.
func streamsOf(p *h2Pool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, conns := range p.conns {
		for _, c := range conns {
			c.mu.Lock()
			n += c.active + len(c.streams)
			c.mu.Unlock()
		}
	}
	return n
}

// Cancelling the request's context resets the stream (the upstream's handler sees its context end)
// and RoundTrip or the body read fails with the context's error; the connection stays usable.
func TestH2CancelResetsStream(t *testing.T) {
	sawCancel := make(chan string, 2)
	arrived := make(chan struct{}, 2)
	up := startH2(t, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !r.URL.Query().Has("block") {
			return
		}
		arrived <- struct{}{}
		if r.URL.Query().Get("late") != "" {
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
		}
		<-r.Context().Done()
		sawCancel <- r.URL.RawQuery
	}), nil)
	cl := newH2Cluster(t, nil, 0)
	for _, late := range []bool{false, true} {
		cause := errors.New("client went away")
		ctx, cancel := context.WithCancelCause(context.Background())
		r := h2Request(ctx, "GET", "http", up.addr, nil)
		r.URL.RawQuery = "block=1"
		if late {
			r.URL.RawQuery += "&late=1"
		}
		var err error
		if late {
			resp, rerr := cl.RoundTrip(r)
			if rerr != nil {
				t.Fatal(rerr)
			}
			buf := make([]byte, 7)
			if _, rerr := io.ReadFull(resp.Body, buf); rerr != nil {
				t.Fatal(rerr)
			}
			<-arrived
			cancel(cause)
			_, err = resp.Body.Read(buf)
			resp.Body.Close()
		} else {
			go func() {
				<-arrived
				cancel(cause)
			}()
			_, err = cl.RoundTrip(r)
		}
		if !errors.Is(err, context.Canceled) || !errors.Is(err, cause) {
			t.Errorf("late=%v: %v, want an error wrapping context.Canceled and the cause", late, err)
		}
		select {
		case <-sawCancel:
		case <-time.After(5 * time.Second):
			t.Fatalf("late=%v: the upstream did not see the stream reset", late)
		}
	}
	waitFor(t, func() bool { return streamsOf(cl.h2) == 0 })
	if _, body, err := get(t, cl, context.Background(), "GET", up.addr, ""); err != nil || cl.Connections() != 1 {
		t.Errorf("after cancels: %q %v, %d connections, want the same connection usable", body, err, cl.Connections())
	}
}

// Connections without streams close after the idle timeout; closeIdle closes them at once.
func TestH2IdleClose(t *testing.T) {
	up := startH2(t, false, http.HandlerFunc(echo), nil)
	cl := newH2Cluster(t, nil, 20*time.Millisecond)
	if _, _, err := get(t, cl, context.Background(), "GET", up.addr, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return cl.Connections() == 0 })

	cl = newH2Cluster(t, nil, 0)
	if _, _, err := get(t, cl, context.Background(), "GET", up.addr, ""); err != nil {
		t.Fatal(err)
	}
	if cl.Connections() != 1 {
		t.Fatalf("%d connections, want 1", cl.Connections())
	}
	cl.closeIdle(false)
	waitFor(t, func() bool { return cl.Connections() == 0 })
}

// A streamed request body goes full duplex with the response: write, read the reply, write again.
func TestH2BidirectionalStreaming(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		up := startH2(t, useTLS, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			buf := make([]byte, 64)
			for {
				n, err := r.Body.Read(buf)
				if n > 0 {
					w.Write(bytes.ToUpper(buf[:n]))
					w.(http.Flusher).Flush()
				}
				if err != nil {
					return
				}
			}
		}), nil)
		cl := newH2Cluster(t, up.clientTLS, 0)
		pr, pw := io.Pipe()
		r := h2Request(context.Background(), "POST", schemeOf(up.clientTLS), up.addr, nil)
		r.Body, r.ContentLength = pr, -1
		resp, err := cl.RoundTrip(r) // HEADERS must not wait behind the body
		if err != nil {
			t.Fatal(err)
		}
		for _, msg := range []string{"ping", "pong", "again"} {
			if _, err := io.WriteString(pw, msg); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(resp.Body, got); err != nil || string(got) != strings.ToUpper(msg) {
				t.Fatalf("tls=%v: reply %q %v, want %q", useTLS, got, err, strings.ToUpper(msg))
			}
		}
		pw.Close()
		if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
			t.Errorf("tls=%v: end of stream: %q %v", useTLS, rest, err)
		}
		resp.Body.Close()
	}
}

// Over TLS the pool insists on ALPN h2: an upstream that speaks only HTTP/1.1 fails clearly.
func TestH2TLSWithoutALPNh2Fails(t *testing.T) {
	s := httptest.NewUnstartedServer(http.HandlerFunc(echo))
	s.EnableHTTP2 = false
	s.Config.ErrorLog = discardLog()
	s.StartTLS()
	defer s.Close()
	cl := newH2Cluster(t, s.Client().Transport.(*http.Transport).TLSClientConfig, 0)
	_, err := cl.RoundTrip(h2Request(context.Background(), "GET", "https", s.Listener.Addr().String(), nil))
	if err == nil || !strings.Contains(err.Error(), "ALPN") || !strings.Contains(err.Error(), "h2") {
		t.Errorf("%v, want an error naming ALPN h2", err)
	}
	if cl.Connections() != 0 {
		t.Errorf("%d connections left open", cl.Connections())
	}
}

// An upgrade (WebSocket) request is refused before any connection: HTTP/2 would need extended
// CONNECT, and the upstream must not get it as an ordinary request.
func TestH2UpgradeRefused(t *testing.T) {
	var served atomic.Int32
	up := startH2(t, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served.Add(1) }), nil)
	cl := newH2Cluster(t, nil, 0)
	r := h2Request(context.Background(), "GET", "http", up.addr, nil)
	r.Header["Upgrade"], r.Header["Connection"] = []string{"websocket"}, []string{"Upgrade"}
	_, err := cl.RoundTrip(r)
	if err == nil || !strings.Contains(err.Error(), "upgrade (websocket)") {
		t.Errorf("RoundTrip of an upgrade = %v, want an error naming the upgrade", err)
	}
	if served.Load() != 0 || cl.Connections() != 0 {
		t.Errorf("the upgrade reached the upstream (%d requests, %d connections)", served.Load(), cl.Connections())
	}
}

// Response headers beyond 64 KiB fail the request, not the proxy.
func TestH2ResponseHeadersTooLarge(t *testing.T) {
	up := startH2(t, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Big", strings.Repeat("b", 80<<10))
	}), func(s *http.Server) { s.ErrorLog = discardLog() })
	cl := newH2Cluster(t, nil, 0)
	_, err := cl.RoundTrip(h2Request(context.Background(), "GET", "http", up.addr, nil))
	if err == nil {
		t.Fatal("80 KiB of response headers accepted")
	}
}

// fakeH2 is a scripted HTTP/2 upstream: it reads the client preface, sends SETTINGS and then hands
// every frame it reads to script, which answers with fr (henc encodes header blocks).
type fakeH2 struct {
	*rawUpstream
	addr string
}

func startFakeH2(t *testing.T, script func(conn int64, fr *http2.Framer, henc func(...string) []byte, f http2.Frame) bool) *fakeH2 {
	t.Helper()
	u := startRaw(t, func(n int64, c net.Conn) {
		preface := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(c, preface); err != nil {
			return
		}
		fr := http2.NewFramer(c, c)
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		var buf bytes.Buffer
		enc := hpack.NewEncoder(&buf)
		henc := func(kv ...string) []byte {
			buf.Reset()
			for i := 0; i+1 < len(kv); i += 2 {
				enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
			}
			return append([]byte(nil), buf.Bytes()...)
		}
		fr.WriteSettings()
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
				fr.WriteSettingsAck()
				continue
			}
			if !script(n, fr, henc, f) {
				return
			}
		}
	})
	return &fakeH2{rawUpstream: u, addr: u.ln.Addr().String()}
}

// REFUSED_STREAM, and GOAWAY below the stream: the request was not processed and is sent again.
func TestH2UnprocessedIsRetried(t *testing.T) {
	for _, tc := range []struct {
		name   string
		refuse func(fr *http2.Framer, id uint32)
		body   []byte
	}{
		{name: "refused stream", refuse: func(fr *http2.Framer, id uint32) { fr.WriteRSTStream(id, http2.ErrCodeRefusedStream) }},
		{name: "goaway", refuse: func(fr *http2.Framer, id uint32) { fr.WriteGoAway(0, http2.ErrCodeNo, nil) }},
		{name: "refused POST with GetBody", body: []byte("again"), refuse: func(fr *http2.Framer, id uint32) { fr.WriteRSTStream(id, http2.ErrCodeRefusedStream) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var refused atomic.Bool
			up := startFakeH2(t, func(conn int64, fr *http2.Framer, henc func(...string) []byte, f http2.Frame) bool {
				hf, ok := f.(*http2.MetaHeadersFrame)
				if !ok {
					return true
				}
				if refused.CompareAndSwap(false, true) {
					tc.refuse(fr, hf.StreamID)
					return true
				}
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: hf.StreamID, BlockFragment: henc(":status", "200"), EndHeaders: true})
				fr.WriteData(hf.StreamID, true, []byte("second"))
				return true
			})
			cl := newH2Cluster(t, nil, 0)
			status, body, err := get(t, cl, context.Background(), "POST", up.addr, string(tc.body))
			if err != nil || status != 200 || body != "second" {
				t.Errorf("%d %q %v, want the request sent again", status, body, err)
			}
		})
	}
}

// A streamed body cannot be sent again: an unprocessed request fails instead.
func TestH2UnprocessedStreamedBodyFails(t *testing.T) {
	up := startFakeH2(t, func(conn int64, fr *http2.Framer, henc func(...string) []byte, f http2.Frame) bool {
		if hf, ok := f.(*http2.MetaHeadersFrame); ok {
			fr.WriteRSTStream(hf.StreamID, http2.ErrCodeRefusedStream)
		}
		return true
	})
	cl := newH2Cluster(t, nil, 0)
	r := h2Request(context.Background(), "POST", "http", up.addr, nil)
	pr, pw := io.Pipe()
	defer pw.Close()
	r.Body, r.ContentLength = pr, -1
	if _, err := cl.RoundTrip(r); err == nil || !strings.Contains(err.Error(), "REFUSED_STREAM") {
		t.Errorf("%v, want the REFUSED_STREAM error", err)
	}
}

// An upstream that sends more than the stream window is a FLOW_CONTROL_ERROR: the request fails,
// memory stays bounded.
func TestH2PeerExceedsWindow(t *testing.T) {
	up := startFakeH2(t, func(conn int64, fr *http2.Framer, henc func(...string) []byte, f http2.Frame) bool {
		hf, ok := f.(*http2.MetaHeadersFrame)
		if !ok {
			return true
		}
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: hf.StreamID, BlockFragment: henc(":status", "200"), EndHeaders: true})
		chunk := make([]byte, 16<<10)
		for range h2StreamWindow/len(chunk) + 2 {
			if fr.WriteData(hf.StreamID, false, chunk) != nil {
				return false
			}
		}
		return true
	})
	cl := newH2Cluster(t, nil, 0)
	resp, err := cl.RoundTrip(h2Request(context.Background(), "GET", "http", up.addr, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Do not read: the buffer fills up to the window, then the extra frame fails the stream.
	waitFor(t, func() bool { return resp.Body.(ReadReadier).ReadReady() && streamsOf(cl.h2) == 0 })
	_, err = io.ReadAll(resp.Body)
	if err == nil || !strings.Contains(err.Error(), "window") {
		t.Errorf("%v, want a flow-control error", err)
	}
}

// runFuzzConn sends one request to an upstream that answers SETTINGS and then data, then closes:
// the request must end (response, error) without a panic or a hang.
func runFuzzConn(t *testing.T, data []byte) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Add(1)
	go func() { // every connection (a retry dials another) gets the same answer
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				go io.Copy(io.Discard, c)
				fr := http2.NewFramer(c, nil)
				fr.WriteSettings()
				c.Write(data)
			}()
		}
	}()
	p := newH2Pool((&countingDial{}).dial, nil, time.Second, 0)
	defer p.closeIdle(true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := p.roundTrip(h2Request(ctx, "GET", "http", ln.Addr().String(), nil))
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if ctx.Err() != nil {
		t.Fatalf("request hung on %q", data)
	}
}

func fuzzSeeds() [][]byte {
	var seeds [][]byte
	frame := func(write func(fr *http2.Framer, enc func(...string) []byte)) []byte {
		var b, hb bytes.Buffer
		fr := http2.NewFramer(&b, nil)
		fr.AllowIllegalWrites = true
		enc := hpack.NewEncoder(&hb)
		write(fr, func(kv ...string) []byte {
			hb.Reset()
			for i := 0; i+1 < len(kv); i += 2 {
				enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
			}
			return append([]byte(nil), hb.Bytes()...)
		})
		return b.Bytes()
	}
	ok := func(fr *http2.Framer, enc func(...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(":status", "200", "content-length", "2"), EndHeaders: true})
		fr.WriteData(1, true, []byte("hi"))
	}
	seeds = append(seeds,
		frame(ok),
		[]byte("garbage that is not a frame at all"),
		frame(func(fr *http2.Framer, enc func(...string) []byte) { fr.WriteData(0, true, []byte("x")) }),
		frame(func(fr *http2.Framer, enc func(...string) []byte) { fr.WriteWindowUpdate(0, 1<<31-1) }),
		frame(func(fr *http2.Framer, enc func(...string) []byte) {
			fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 31})
		}),
		frame(func(fr *http2.Framer, enc func(...string) []byte) {
			fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: enc(":method", "GET"), EndHeaders: true})
		}),
		frame(func(fr *http2.Framer, enc func(...string) []byte) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(":status", "200", "content-length", "5"), EndHeaders: true})
			fr.WriteData(1, true, []byte("toolong"))
		}),
		frame(func(fr *http2.Framer, enc func(...string) []byte) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(":status", "abc"), EndHeaders: true, EndStream: true})
		}),
		frame(func(fr *http2.Framer, enc func(...string) []byte) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(":status", "103"), EndHeaders: true})
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(":status", "204"), EndHeaders: true, EndStream: true})
		}),
		frame(func(fr *http2.Framer, enc func(...string) []byte) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(":status", "200"), EndHeaders: false})
			fr.WriteContinuation(1, false, []byte{0x82})
		}),
		frame(func(fr *http2.Framer, enc func(...string) []byte) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(":status", "200"), EndHeaders: true})
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc("grpc-status", "0"), EndHeaders: true})
		}),
		frame(func(fr *http2.Framer, enc func(...string) []byte) {
			fr.WriteGoAway(0, http2.ErrCodeEnhanceYourCalm, []byte("calm"))
			fr.WritePing(false, [8]byte{1})
			fr.WriteRSTStream(1, http2.ErrCodeInternal)
		}),
		frame(func(fr *http2.Framer, enc func(...string) []byte) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: enc(":status", "200"), EndHeaders: true})
		}),
		frame(func(fr *http2.Framer, enc func(...string) []byte) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0xff, 0xff, 0xff, 0xff}, EndHeaders: true})
		}),
		frame(func(fr *http2.Framer, enc func(...string) []byte) {
			fr.WriteDataPadded(1, false, []byte("x"), make([]byte, 200))
		}),
	)
	return seeds
}

func FuzzH2ClientConn(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) { runFuzzConn(t, data) })
}

func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }

// A response that ends while the request body is still streaming is complete: the body reads to
// io.EOF and the request body is closed (the upstream no longer reads it).
func TestH2ResponseEndsBeforeRequestBody(t *testing.T) {
	up := startH2(t, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 5)
		io.ReadFull(r.Body, buf)
		io.WriteString(w, "done")
	}), nil)
	cl := newH2Cluster(t, nil, 0)
	pr, pw := io.Pipe()
	r := h2Request(context.Background(), "POST", "http", up.addr, nil)
	r.Body, r.ContentLength = pr, -1
	go pw.Write([]byte("first"))
	resp, err := cl.RoundTrip(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(got) != "done" {
		t.Errorf("%q %v, want the complete response", got, err)
	}
	// The copier may take one more write before it sees the end; then the body is closed.
	closed := make(chan error, 1)
	go func() {
		for {
			if _, err := pw.Write([]byte("more")); err != nil {
				closed <- err
				return
			}
		}
	}()
	select {
	case err := <-closed:
		if !errors.Is(err, io.ErrClosedPipe) {
			t.Errorf("request body write after the response ended: %v, want the body closed", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("request body not closed after the response ended")
	}
	waitFor(t, func() bool { return streamsOf(cl.h2) == 0 })
}

// Closing bodies before their end resets the streams and gives their unread bytes back to the
// connection window: many abandoned 3 MiB responses do not stall the connection, and once the pool
// is closed no goroutine of it is left.
func TestH2CloseReturnsCreditAndLeavesNoGoroutine(t *testing.T) {
	big := bytes.Repeat([]byte("y"), 3<<20)
	up := startH2(t, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(big) }), nil)
	base := runtime.NumGoroutine()
	cl := newH2Cluster(t, nil, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 12 { // 36 MiB: twice the connection window
		resp, err := cl.RoundTrip(h2Request(ctx, "GET", "http", up.addr, nil))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		waitFor(t, func() bool { return resp.Body.(ReadReadier).ReadReady() })
		resp.Body.Close()
	}
	_, body, err := get(t, cl, ctx, "GET", up.addr, "")
	if err != nil || len(body) != len(big) || cl.Connections() != 1 {
		t.Fatalf("after abandoned bodies: %d bytes, %v, %d connections; want the whole body on the same connection", len(body), err, cl.Connections())
	}
	cl.closeIdle(true)
	waitFor(t, func() bool { return cl.Connections() == 0 && runtime.NumGoroutine() <= base })
}

// TestH2UpstreamNotReadingTimesOut: an upstream that grants a huge window and then stops reading
// fails the request within the write timeout instead of holding the connection's writes for ever.
func TestH2UpstreamNotReadingTimesOut(t *testing.T) {
	stop := make(chan struct{})
	u := startRaw(t, func(_ int64, c net.Conn) {
		preface := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(c, preface); err != nil {
			return
		}
		fr := http2.NewFramer(c, c)
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
		fr.WriteWindowUpdate(0, 1<<31-1-65535)
		<-stop // reads nothing more
	})
	defer close(stop)
	cl := newH2Cluster(t, nil, 0)
	cl.h2.writeTimeout = 200 * time.Millisecond
	body := make([]byte, 64<<20) // more than the socket buffers hold
	done := make(chan error, 1)
	go func() {
		_, err := cl.RoundTrip(h2Request(context.Background(), "POST", "http", u.ln.Addr().String(), body))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("RoundTrip to an upstream that stopped reading = %v, want a write deadline error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RoundTrip still blocked 10 s after the upstream stopped reading (write timeout 200ms)")
	}
}
