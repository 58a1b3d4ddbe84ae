package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"canton.dev/canton/internal/proxy/cluster"
	"canton.dev/canton/internal/proxy/xdsclient"
)

// h2Served is one connection accepted by the test HTTP/2 server.
type h2Served struct {
	writes atomic.Int64  // write calls on the connection
	done   chan struct{} // closed when its serve has returned and its handlers ended
}

// countingConn counts the writes on a connection.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

// h2Harness serves HTTP/2 with h on 127.0.0.1, with the settings of hcm (nil: the defaults).
type h2Harness struct {
	addr   string
	rt     *hcmRuntime
	served chan *h2Served
	logs   *strings.Builder
	logMu  *sync.Mutex
}

func startH2(t testing.TB, h http.Handler, mod func(*hcmSpec)) *h2Harness {
	t.Helper()
	return startH2With(t, h, mod, nil)
}

// startH2With is startH2 with connMod applied to every connection before it is served.
func startH2With(t testing.TB, h http.Handler, mod func(*hcmSpec), connMod func(*h2Conn)) *h2Harness {
	t.Helper()
	spec := &hcmSpec{idleTimeout: time.Hour, headersTimeout: 10 * time.Second, maxHeaderBytes: 60 << 10, maxHeaders: 100, maxStreams: 100}
	if mod != nil {
		mod(spec)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hh := &h2Harness{addr: ln.Addr().String(), served: make(chan *h2Served, 1024), logs: &strings.Builder{}, logMu: &sync.Mutex{}}
	hh.rt = &hcmRuntime{ln: newChanListener(ln.Addr()), h: &hcmHandler{hcm: spec}}
	log := slog.New(slog.NewTextHandler(lockedWriter{hh.logMu, hh.logs}, nil))
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			sv := &h2Served{done: make(chan struct{})}
			hh.served <- sv
			wg.Go(func() {
				defer close(sv.done)
				hc := newH2Conn(hh.rt, h, log, countingConn{c, &sv.writes}, nil, context.Background())
				if connMod != nil {
					connMod(hc)
				}
				if !hh.rt.addH2(hc) {
					c.Close()
					return
				}
				hc.serve(nil)
				hh.rt.removeH2(hc)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		hh.rt.stopH2(ctx)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(wait):
			t.Errorf("HTTP/2 connections still served %v after the end of the test", wait)
		}
	})
	return hh
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (hh *h2Harness) logged() string {
	hh.logMu.Lock()
	defer hh.logMu.Unlock()
	return hh.logs.String()
}

// h2Raw is a client speaking raw frames.
type h2Raw struct {
	t   testing.TB
	c   net.Conn
	fr  *http2.Framer
	sv  *h2Served
	enc *hpack.Encoder
	hb  bytes.Buffer
}

// dialH2 connects, exchanges the prefaces and SETTINGS (client settings s) and returns once the
// server has acknowledged them.
func dialH2(t testing.TB, hh *h2Harness, s ...http2.Setting) *h2Raw {
	t.Helper()
	return dialH2Addr(t, hh.addr, hh.served, s...)
}

// dialH2Addr is dialH2 to any address; served, if not nil, gives the server side of the connection.
func dialH2Addr(t testing.TB, addr string, served chan *h2Served, s ...http2.Setting) *h2Raw {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(wait))
	cl := &h2Raw{t: t, c: c, fr: http2.NewFramer(c, c)}
	if served != nil {
		cl.sv = <-served
	}
	cl.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	cl.fr.MaxHeaderListSize = 1 << 20
	cl.enc = hpack.NewEncoder(&cl.hb)
	io.WriteString(c, http2.ClientPreface)
	cl.fr.WriteSettings(s...)
	gotSettings, gotAck := false, false
	for !gotSettings || !gotAck {
		switch f := cl.read().(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				gotAck = true
			} else {
				gotSettings = true
				cl.fr.WriteSettingsAck()
			}
		}
	}
	cl.sync()
	return cl
}

// read returns the next frame, failing the test on an error.
func (cl *h2Raw) read() http2.Frame {
	cl.t.Helper()
	f, err := cl.fr.ReadFrame()
	if err != nil {
		cl.t.Fatalf("read frame: %v", err)
	}
	return f
}

// sync sends a PING and reads up to its ACK: the server has handled everything sent before.
func (cl *h2Raw) sync() []http2.Frame {
	cl.t.Helper()
	data := [8]byte{'s', 'y', 'n', 'c'}
	cl.fr.WritePing(false, data)
	var fs []http2.Frame
	for {
		f := cl.read()
		if p, ok := f.(*http2.PingFrame); ok && p.IsAck() && p.Data == data {
			return fs
		}
		fs = append(fs, f)
	}
}

// block encodes header fields given as name, value pairs.
func (cl *h2Raw) block(kv ...string) []byte {
	cl.hb.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		cl.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return append([]byte(nil), cl.hb.Bytes()...)
}

var reqFields = []string{":method", "GET", ":scheme", "http", ":path", "/", ":authority", "a"}

// request opens stream id with the basic GET fields plus extra.
func (cl *h2Raw) request(id uint32, end bool, extra ...string) {
	cl.t.Helper()
	if err := cl.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: cl.block(append(append([]string(nil), reqFields...), extra...)...),
		EndStream: end, EndHeaders: true}); err != nil {
		cl.t.Fatal(err)
	}
}

// until reads frames until one satisfies ok and returns it.
func (cl *h2Raw) until(what string, ok func(http2.Frame) bool) http2.Frame {
	cl.t.Helper()
	for {
		f, err := cl.fr.ReadFrame()
		if err != nil {
			cl.t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok(f) {
			return f
		}
	}
}

func (cl *h2Raw) rst(id uint32) http2.ErrCode {
	cl.t.Helper()
	f := cl.until(fmt.Sprintf("RST_STREAM on stream %d", id), func(f http2.Frame) bool {
		r, ok := f.(*http2.RSTStreamFrame)
		return ok && r.StreamID == id
	})
	return f.(*http2.RSTStreamFrame).ErrCode
}

func (cl *h2Raw) goAway() *http2.GoAwayFrame {
	cl.t.Helper()
	return cl.until("GOAWAY", func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }).(*http2.GoAwayFrame)
}

// response reads stream id's response: status, body and trailers.
func (cl *h2Raw) response(id uint32) (status string, body []byte, trailers []hpack.HeaderField) {
	cl.t.Helper()
	for {
		switch f := cl.read().(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamID != id {
				continue
			}
			if s := f.PseudoValue("status"); s != "" {
				if s[0] == '1' {
					continue
				}
				status = s
			} else {
				trailers = f.Fields
			}
			if f.StreamEnded() {
				return
			}
		case *http2.DataFrame:
			if f.StreamID != id {
				continue
			}
			body = append(body, f.Data()...)
			if f.StreamEnded() {
				return
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				cl.t.Fatalf("stream %d reset (%v) before its response ended", id, f.ErrCode)
			}
		case *http2.GoAwayFrame:
			cl.t.Fatalf("GOAWAY (%v) while waiting for stream %d", f.ErrCode, id)
		}
	}
}

func okHandler(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }

// TestH2ServerUnaryResponseOneWrite checks that a gRPC-shaped response the handler does not flush
// (HEADERS, DATA, trailers) leaves in one write, and that a request whose HEADERS and DATA came in one
// read has a body that is complete when the handler starts.
func TestH2ServerUnaryResponseOneWrite(t *testing.T) {
	var ready atomic.Bool
	var gotBody atomic.Value
	hh := startH2(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rr, ok := r.Body.(interface{ ReadReady() bool })
		ready.Store(ok && rr.ReadReady())
		b := make([]byte, 64)
		n, err := r.Body.Read(b)
		gotBody.Store(fmt.Sprintf("%q %v", b[:n], err))
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		w.WriteHeader(200)
		w.Write([]byte("\x00\x00\x00\x00\x02hi"))
		w.Header().Set("Grpc-Status", "0")
		w.Header().Set(http.TrailerPrefix+"Grpc-Message", "")
	}), nil)
	cl := dialH2(t, hh)
	// HEADERS and DATA(END_STREAM) in one write.
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: cl.block(":method", "POST", ":scheme", "http",
		":path", "/svc/M", ":authority", "a", "content-type", "application/grpc", "te", "trailers")})
	fr.WriteData(1, true, []byte("\x00\x00\x00\x00\x01x"))
	before := cl.sv.writes.Load()
	cl.c.Write(buf.Bytes())
	status, body, trailers := cl.response(1)
	if status != "200" || string(body) != "\x00\x00\x00\x00\x02hi" {
		t.Fatalf("response %s %q", status, body)
	}
	if len(trailers) != 2 || trailers[0].Name != "grpc-status" && trailers[1].Name != "grpc-status" {
		t.Errorf("trailers %v, want grpc-status and grpc-message", trailers)
	}
	if n := cl.sv.writes.Load() - before; n != 1 {
		t.Errorf("%d writes for a unary response, want 1", n)
	}
	if !ready.Load() {
		t.Errorf("request body not ReadReady when the handler started")
	}
	if got := gotBody.Load(); got != `"\x00\x00\x00\x00\x01x" EOF` {
		t.Errorf("first body read: %v, want the whole body with io.EOF", got)
	}
}

// TestH2ServerMalformedRequests checks each class of malformed request (RFC 9113 section 8.3) gets
// RST_STREAM(PROTOCOL_ERROR) and leaves the connection serving.
func TestH2ServerMalformedRequests(t *testing.T) {
	var handled, bodyErrs atomic.Int64 // requests other than the content-length mismatches; body errors of those
	hh := startH2(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/cl" {
			bodyErrs.Add(1) // reached only if the handler started before the DATA arrived
			if err == nil {
				t.Errorf("body with a wrong content-length read without error")
			}
			return
		}
		handled.Add(1)
	}), nil)
	clFields := []string{":method", "POST", ":scheme", "http", ":path", "/cl", ":authority", "a"}
	cases := []struct {
		name   string
		fields []string
		data   string // sent with END_STREAM when set
	}{
		{"no method", []string{":scheme", "http", ":path", "/", ":authority", "a"}, ""},
		{"no scheme", []string{":method", "GET", ":path", "/", ":authority", "a"}, ""},
		{"no path", []string{":method", "GET", ":scheme", "http", ":authority", "a"}, ""},
		{"empty path", []string{":method", "GET", ":scheme", "http", ":path", "", ":authority", "a"}, ""},
		{"unknown pseudo", append([]string{":foo", "x"}, reqFields...), ""},
		{"duplicate pseudo", append([]string{":method", "GET"}, reqFields...), ""},
		{"pseudo after regular", append([]string{"x-a", "1"}, reqFields...), ""},
		{"upper-case name", append(append([]string(nil), reqFields...), "X-Upper", "1"), ""},
		{"connection", append(append([]string(nil), reqFields...), "connection", "keep-alive"), ""},
		{"keep-alive", append(append([]string(nil), reqFields...), "keep-alive", "5"), ""},
		{"transfer-encoding", append(append([]string(nil), reqFields...), "transfer-encoding", "chunked"), ""},
		{"upgrade", append(append([]string(nil), reqFields...), "upgrade", "websocket"), ""},
		{"te not trailers", append(append([]string(nil), reqFields...), "te", "gzip"), ""},
		{"protocol pseudo", append(append([]string(nil), reqFields[:6]...), ":protocol", "websocket", ":authority", "a"), ""},
		{"connect with path", []string{":method", "CONNECT", ":authority", "a:443", ":path", "/"}, ""},
		{"bad content-length", append(append([]string(nil), reqFields...), "content-length", "x"), ""},
		{"content-length longer than body", append(clFields, "content-length", "5"), "abc"},
		{"content-length shorter than body", append(clFields, "content-length", "2"), "abc"},
		{"value with NUL", append(append([]string(nil), reqFields...), "x-a", "a\x00b"), ""},
	}
	cl := dialH2(t, hh)
	id := uint32(1)
	for _, tc := range cases {
		end := tc.data == ""
		cl.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: cl.block(tc.fields...), EndStream: end, EndHeaders: true})
		if !end {
			cl.fr.WriteData(id, true, []byte(tc.data))
		}
		if code := cl.rst(id); code != http2.ErrCodeProtocol {
			t.Errorf("%s: RST_STREAM %v, want PROTOCOL_ERROR", tc.name, code)
		}
		id += 2
	}
	cl.request(id, true)
	if status, _, _ := cl.response(id); status != "200" {
		t.Errorf("after the malformed requests: status %s, want 200", status)
	}
	if n := handled.Load(); n != 1 {
		t.Errorf("%d requests reached the handler, want 1 (only the good one)", n)
	}
}

// TestH2ServerRequest checks the request the handler sees.
func TestH2ServerRequest(t *testing.T) {
	got := make(chan *http.Request, 1)
	hh := startH2(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got <- r
	}), nil)
	cl := dialH2(t, hh)
	cl.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true, BlockFragment: cl.block(
		":method", "GET", ":scheme", "https", ":path", "/a%20b/c?x=1&y", ":authority", "example.com:8443",
		"cookie", "a=1", "x-multi", "1", "cookie", "b=2", "x-multi", "2", "host", "other", "content-length", "0")})
	cl.response(1)
	r := <-got
	checks := []struct{ what, got, want string }{
		{"method", r.Method, "GET"},
		{"proto", fmt.Sprint(r.Proto, r.ProtoMajor, r.ProtoMinor), "HTTP/2.02 0"},
		{"host", r.Host, "example.com:8443"},
		{"request uri", r.RequestURI, "/a%20b/c?x=1&y"},
		{"url path", r.URL.Path, "/a b/c"},
		{"url query", r.URL.RawQuery, "x=1&y"},
		{"cookie", strings.Join(r.Header["Cookie"], "|"), "a=1; b=2"},
		{"multi", strings.Join(r.Header["X-Multi"], "|"), "1|2"},
		{"host header", fmt.Sprint(r.Header["Host"]), "[]"},
		{"content length", fmt.Sprint(r.ContentLength), "0"},
		{"body", fmt.Sprint(r.Body == http.NoBody), "true"},
		{"remote", fmt.Sprint(r.RemoteAddr == cl.c.LocalAddr().String()), "true"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %q, want %q", c.what, c.got, c.want)
		}
	}
}

// TestH2ServerHeaderListTooLarge checks a header list over MAX_HEADER_LIST_SIZE is answered 431
// without the handler, and the connection serves on.
func TestH2ServerHeaderListTooLarge(t *testing.T) {
	var handled atomic.Int64
	hh := startH2(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handled.Add(1) }),
		func(s *hcmSpec) { s.maxHeaderBytes = 1 << 10 })
	cl := dialH2(t, hh)
	fields := append([]string(nil), reqFields...)
	for i := range 30 {
		fields = append(fields, fmt.Sprintf("x-big-%d", i), strings.Repeat("x", 60))
	}
	blk := cl.block(fields...)
	// In two frames: HEADERS and a CONTINUATION.
	cl.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:100], EndStream: true})
	cl.fr.WriteContinuation(1, true, blk[100:])
	if status, _, _ := cl.response(1); status != "431" {
		t.Errorf("status %s, want 431", status)
	}
	cl.request(3, true)
	if status, _, _ := cl.response(3); status != "200" {
		t.Errorf("next request: status %s, want 200", status)
	}
	if handled.Load() != 1 {
		t.Errorf("handler ran %d times, want once", handled.Load())
	}
}

// TestH2ServerContinuationFlood checks endless CONTINUATION frames end the connection.
func TestH2ServerContinuationFlood(t *testing.T) {
	hh := startH2(t, http.HandlerFunc(okHandler), nil)
	cl := dialH2(t, hh)
	cl.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: cl.block(reqFields...), EndStream: true})
	go func() {
		chunk := bytes.Repeat([]byte{0x40, 0x01, 'x', 0x01, 'y'}, 3000)
		for cl.fr.WriteContinuation(1, false, chunk) == nil {
		}
	}()
	if g := cl.goAway(); g.ErrCode != http2.ErrCodeProtocol {
		t.Errorf("GOAWAY %v, want PROTOCOL_ERROR", g.ErrCode)
	}
	<-cl.sv.done
}

// TestH2ServerFlowControlViolations checks DATA beyond the stream window resets the stream and DATA
// beyond the connection window ends the connection.
func TestH2ServerFlowControlViolations(t *testing.T) {
	block := func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	t.Run("stream", func(t *testing.T) {
		hh := startH2(t, http.HandlerFunc(block), func(s *hcmSpec) { s.streamWindow = 1 << 14 })
		cl := dialH2(t, hh)
		cl.request(1, false)
		cl.fr.WriteData(1, false, make([]byte, 1<<14))
		cl.fr.WriteData(1, false, []byte{1})
		if code := cl.rst(1); code != http2.ErrCodeFlowControl {
			t.Errorf("RST_STREAM %v, want FLOW_CONTROL_ERROR", code)
		}
	})
	t.Run("connection", func(t *testing.T) {
		hh := startH2(t, http.HandlerFunc(block), func(s *hcmSpec) { s.connWindow = 65535 })
		cl := dialH2(t, hh)
		for id := uint32(1); id <= 9; id += 2 {
			cl.request(id, false)
			cl.fr.WriteData(id, false, make([]byte, 1<<14))
		}
		if g := cl.goAway(); g.ErrCode != http2.ErrCodeFlowControl {
			t.Errorf("GOAWAY %v, want FLOW_CONTROL_ERROR", g.ErrCode)
		}
	})
}

// TestH2ServerStreamStates checks the stream-state errors of RFC 9113 sections 5.1, 5.1.1 and 5.3.1
// (found missing by h2spec): frames after the client's own RST_STREAM or END_STREAM are
// STREAM_CLOSED, a stream identifier lower than one already used ends the connection, and a stream
// that depends on itself is a PROTOCOL_ERROR.
func TestH2ServerStreamStates(t *testing.T) {
	block := func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	t.Run("DATA after the client's RST_STREAM", func(t *testing.T) {
		cl := dialH2(t, startH2(t, http.HandlerFunc(block), nil))
		cl.request(1, false)
		cl.fr.WriteRSTStream(1, http2.ErrCodeCancel)
		cl.fr.WriteData(1, false, []byte("x"))
		if code := cl.rst(1); code != http2.ErrCodeStreamClosed {
			t.Errorf("RST_STREAM %v, want STREAM_CLOSED", code)
		}
	})
	t.Run("HEADERS after the client's END_STREAM", func(t *testing.T) {
		cl := dialH2(t, startH2(t, http.HandlerFunc(block), nil))
		cl.request(1, true)
		cl.request(1, true)
		if code := cl.rst(1); code != http2.ErrCodeStreamClosed {
			t.Errorf("RST_STREAM %v, want STREAM_CLOSED", code)
		}
	})
	t.Run("lower stream identifier", func(t *testing.T) {
		cl := dialH2(t, startH2(t, http.HandlerFunc(okHandler), nil))
		cl.request(5, true)
		cl.response(5)
		cl.request(3, true)
		if g := cl.goAway(); g.ErrCode != http2.ErrCodeProtocol {
			t.Errorf("GOAWAY %v, want PROTOCOL_ERROR", g.ErrCode)
		}
	})
	t.Run("HEADERS depending on itself", func(t *testing.T) {
		cl := dialH2(t, startH2(t, http.HandlerFunc(okHandler), nil))
		cl.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: cl.block(reqFields...), EndStream: true,
			EndHeaders: true, Priority: http2.PriorityParam{StreamDep: 1, Weight: 16}})
		if code := cl.rst(1); code != http2.ErrCodeProtocol {
			t.Errorf("RST_STREAM %v, want PROTOCOL_ERROR", code)
		}
	})
	t.Run("PRIORITY depending on itself", func(t *testing.T) {
		cl := dialH2(t, startH2(t, http.HandlerFunc(okHandler), nil))
		cl.fr.WritePriority(3, http2.PriorityParam{StreamDep: 3, Weight: 16})
		if code := cl.rst(3); code != http2.ErrCodeProtocol {
			t.Errorf("RST_STREAM %v, want PROTOCOL_ERROR", code)
		}
	})
}

// TestH2ServerStreamsOverLimit checks a stream over MAX_CONCURRENT_STREAMS is refused.
func TestH2ServerStreamsOverLimit(t *testing.T) {
	release := make(chan struct{})
	hh := startH2(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }), func(s *hcmSpec) { s.maxStreams = 2 })
	defer close(release)
	cl := dialH2(t, hh)
	cl.request(1, true)
	cl.request(3, true)
	cl.request(5, true)
	if code := cl.rst(5); code != http2.ErrCodeRefusedStream {
		t.Errorf("RST_STREAM %v, want REFUSED_STREAM", code)
	}
}

// TestH2ServerRapidReset checks that streams opened and reset at once cannot run more handlers than
// MAX_CONCURRENT_STREAMS, and that insisting ends the connection with ENHANCE_YOUR_CALM.
func TestH2ServerRapidReset(t *testing.T) {
	release, started := make(chan struct{}), make(chan struct{}, 100)
	var running, peak atomic.Int64
	hh := startH2(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := running.Add(1)
		defer running.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		started <- struct{}{}
		<-release // ignores the reset: the worst case
	}), func(s *hcmSpec) { s.maxStreams = 10 })
	defer close(release)
	cl := dialH2(t, hh)
	for id := uint32(1); id < 20; id += 2 {
		cl.request(id, true)
	}
	for range 10 {
		<-started
	}
	go func() {
		for id := uint32(1); id < 20; id += 2 {
			cl.fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}
		blk := cl.block(reqFields...)
		for id := uint32(21); id < 2000; id += 2 {
			if cl.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndStream: true, EndHeaders: true}) != nil ||
				cl.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
				return
			}
		}
	}()
	if g := cl.goAway(); g.ErrCode != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("GOAWAY %v, want ENHANCE_YOUR_CALM", g.ErrCode)
	}
	if p := peak.Load(); p > 10 {
		t.Errorf("%d handlers at once, want at most 10", p)
	}
}

// TestH2ServerPingAndSettings checks PINGs are answered, SETTINGS acknowledged and applied, and an
// invalid setting ends the connection.
func TestH2ServerPingAndSettings(t *testing.T) {
	hh := startH2(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(make([]byte, 100)) }), nil)
	cl := dialH2(t, hh)
	cl.fr.WritePing(false, [8]byte{1, 2, 3})
	if p := cl.until("PING ACK", func(f http2.Frame) bool { _, ok := f.(*http2.PingFrame); return ok }).(*http2.PingFrame); !p.IsAck() || p.Data != [8]byte{1, 2, 3} {
		t.Errorf("PING answer %v", p)
	}
	// A stream window of 10 bytes: the response comes in pieces of at most 10 bytes, as credit comes.
	cl.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10}, http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0})
	cl.until("SETTINGS ACK", func(f http2.Frame) bool { s, ok := f.(*http2.SettingsFrame); return ok && s.IsAck() })
	cl.request(1, true)
	got := 0
	for got < 100 {
		switch f := cl.read().(type) {
		case *http2.DataFrame:
			if len(f.Data()) > 10 {
				t.Fatalf("DATA of %d bytes with a window of 10", len(f.Data()))
			}
			got += len(f.Data())
			if len(f.Data()) > 0 {
				cl.fr.WriteWindowUpdate(1, uint32(len(f.Data())))
			}
		}
	}
	cl.fr.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 2})
	if g := cl.goAway(); g.ErrCode != http2.ErrCodeProtocol {
		t.Errorf("GOAWAY %v after an invalid setting, want PROTOCOL_ERROR", g.ErrCode)
	}
}

// TestH2ServerGoAwayOnDrain checks draining: GOAWAY with the last stream, the open stream finishes,
// later streams are not served, the connection closes.
func TestH2ServerGoAwayOnDrain(t *testing.T) {
	started, release := make(chan struct{}, 1), make(chan struct{})
	var handled atomic.Int64
	hh := startH2(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handled.Add(1)
		started <- struct{}{}
		<-release
		io.WriteString(w, "done")
	}), nil)
	cl := dialH2(t, hh)
	cl.request(1, true)
	<-started
	hh.rt.drainH2()
	if g := cl.goAway(); g.ErrCode != http2.ErrCodeNo || g.LastStreamID != 1 {
		t.Errorf("GOAWAY %v last stream %d, want NO_ERROR and 1", g.ErrCode, g.LastStreamID)
	}
	cl.request(3, true) // after the GOAWAY: not served
	close(release)
	if _, body, _ := cl.response(1); string(body) != "done" {
		t.Errorf("in-flight stream: body %q", body)
	}
	cl.c.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.Copy(io.Discard, cl.c); err != nil {
		t.Errorf("connection not closed after the drain: %v", err)
	}
	<-cl.sv.done
	if handled.Load() != 1 {
		t.Errorf("%d streams served, want 1", handled.Load())
	}
}

// TestH2ServerIdleTimeout checks an idle connection gets GOAWAY and is closed.
func TestH2ServerIdleTimeout(t *testing.T) {
	hh := startH2(t, http.HandlerFunc(okHandler), func(s *hcmSpec) { s.idleTimeout = 50 * time.Millisecond })
	cl := dialH2(t, hh)
	cl.request(1, true)
	cl.response(1)
	if g := cl.goAway(); g.ErrCode != http2.ErrCodeNo || g.LastStreamID != 1 {
		t.Errorf("GOAWAY %v last %d", g.ErrCode, g.LastStreamID)
	}
	<-cl.sv.done
}

// TestH2ServerPrefaceTimeout checks a client that does not send its preface is cut after the
// headers timeout.
func TestH2ServerPrefaceTimeout(t *testing.T) {
	hh := startH2(t, http.HandlerFunc(okHandler), func(s *hcmSpec) { s.headersTimeout = 50 * time.Millisecond })
	c, err := net.Dial("tcp", hh.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sv := <-hh.served
	io.WriteString(c, "PRI * HTTP/2.0\r\n")
	select {
	case <-sv.done:
	case <-time.After(wait):
		t.Fatal("connection without a preface still served")
	}
}

// TestH2ServerClientCancel checks RST_STREAM from the client cancels the handler's context.
func TestH2ServerClientCancel(t *testing.T) {
	started, cancelled := make(chan struct{}), make(chan error, 1)
	hh := startH2(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
		_, err := r.Body.Read(make([]byte, 1))
		cancelled <- err
	}), nil)
	cl := dialH2(t, hh)
	cl.request(1, false)
	<-started
	cl.fr.WriteRSTStream(1, http2.ErrCodeCancel)
	select {
	case err := <-cancelled:
		if err == nil {
			t.Errorf("body read after the reset: no error")
		}
	case <-time.After(wait):
		t.Fatal("handler context not cancelled by RST_STREAM")
	}
}

// TestH2ServerPanics checks a handler aborting (http.ErrAbortHandler) or panicking resets its stream,
// logs only a real panic, and leaves the connection serving.
func TestH2ServerPanics(t *testing.T) {
	hh := startH2(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/abort":
			w.Write([]byte("partial"))
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		case "/bug":
			panic("bug")
		}
	}), nil)
	cl := dialH2(t, hh)
	cl.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true,
		BlockFragment: cl.block(":method", "GET", ":scheme", "http", ":path", "/abort", ":authority", "a")})
	if code := cl.rst(1); code != http2.ErrCodeInternal {
		t.Errorf("abort: RST_STREAM %v, want INTERNAL_ERROR", code)
	}
	if strings.Contains(hh.logged(), "panic") {
		t.Errorf("http.ErrAbortHandler logged: %s", hh.logged())
	}
	cl.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, EndHeaders: true, EndStream: true,
		BlockFragment: cl.block(":method", "GET", ":scheme", "http", ":path", "/bug", ":authority", "a")})
	if code := cl.rst(3); code != http2.ErrCodeInternal {
		t.Errorf("panic: RST_STREAM %v, want INTERNAL_ERROR", code)
	}
	if !strings.Contains(hh.logged(), "bug") {
		t.Errorf("panic not logged: %q", hh.logged())
	}
	cl.request(5, true)
	if status, _, _ := cl.response(5); status != "200" {
		t.Errorf("after the panics: %s", status)
	}
}

// TestH2ServerResponseWriter checks HEAD, a declared Content-Length, hop-by-hop headers, 103 and the
// Content-Length of a buffered body.
func TestH2ServerResponseWriter(t *testing.T) {
	hh := startH2(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		switch r.URL.Path {
		case "/head":
			h.Set("Content-Length", "5")
			io.WriteString(w, "hello")
		case "/long":
			h.Set("Content-Length", "3")
			if _, err := io.WriteString(w, "four"); !errors.Is(err, http.ErrContentLength) {
				t.Errorf("write past Content-Length: %v", err)
			}
			io.WriteString(w, "abc")
		case "/short":
			h.Set("Content-Length", "10")
			io.WriteString(w, "abc")
		case "/hop":
			h.Set("Link", "</a>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			h.Set("Connection", "x-foo")
			h.Set("Keep-Alive", "5")
			h.Set("Transfer-Encoding", "chunked")
			h.Set("Upgrade", "h3")
			h.Set("Proxy-Connection", "x")
			h.Set("X-Kept", "1")
			io.WriteString(w, "<html>")
		}
	}), nil)
	cl := dialH2(t, hh)
	send := func(id uint32, method, path string) {
		cl.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true, EndStream: true,
			BlockFragment: cl.block(":method", method, ":scheme", "http", ":path", path, ":authority", "a")})
	}
	headers := func(id uint32) (fields []hpack.HeaderField, body string, interim bool) {
		for {
			switch f := cl.read().(type) {
			case *http2.MetaHeadersFrame:
				if f.PseudoValue("status")[0] == '1' {
					interim = true
					continue
				}
				fields = f.Fields
				if f.StreamEnded() {
					return
				}
			case *http2.DataFrame:
				body += string(f.Data())
				if f.StreamEnded() {
					return
				}
			case *http2.RSTStreamFrame:
				t.Fatalf("stream %d reset: %v", id, f.ErrCode)
			}
		}
	}
	has := func(fs []hpack.HeaderField, name, value string) bool {
		for _, f := range fs {
			if f.Name == name && (value == "" || f.Value == value) {
				return true
			}
		}
		return false
	}
	send(1, "HEAD", "/head")
	if fs, body, _ := headers(1); body != "" || !has(fs, "content-length", "5") {
		t.Errorf("HEAD: %v %q", fs, body)
	}
	send(3, "GET", "/long")
	if fs, body, _ := headers(3); body != "abc" || !has(fs, "content-length", "3") {
		t.Errorf("Content-Length 3: %v %q", fs, body)
	}
	send(5, "GET", "/short")
	if code := cl.rst(5); code != http2.ErrCodeInternal {
		t.Errorf("body shorter than its Content-Length: RST_STREAM %v, want INTERNAL_ERROR", code)
	}
	send(7, "GET", "/hop")
	fs, body, interim := headers(7)
	if !interim {
		t.Errorf("no 103 before the response")
	}
	for _, h := range []string{"connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection"} {
		if has(fs, h, "") {
			t.Errorf("hop-by-hop %s sent: %v", h, fs)
		}
	}
	if !has(fs, "x-kept", "1") || !has(fs, "content-length", "6") || !has(fs, "content-type", "text/html; charset=utf-8") || body != "<html>" {
		t.Errorf("response %v %q", fs, body)
	}
}

// h2cTransport is an x/net HTTP/2 client over plain TCP (prior knowledge).
func h2cTransport() *http2.Transport {
	return &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
}

// TestH2ServerLargeBodiesAndTrailers sends and receives bodies over 1 MiB (flow control both ways,
// several streams at once) with request and response trailers, through x/net's client.
func TestH2ServerLargeBodiesAndTrailers(t *testing.T) {
	hh := startH2(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		n, err := io.Copy(w, r.Body)
		if err != nil {
			t.Errorf("echo: %v", err)
		}
		w.Header().Set("X-Sum", fmt.Sprint(n))
		w.Header().Set(http.TrailerPrefix+"X-Req-Trailer", r.Trailer.Get("X-Checksum"))
	}), nil)
	tr := h2cTransport()
	defer tr.CloseIdleConnections()
	const size = 3<<20 + 17
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			payload := bytes.Repeat([]byte{byte('a' + i)}, size)
			req, _ := http.NewRequest("POST", "http://"+hh.addr+"/echo", io.MultiReader(bytes.NewReader(payload)))
			req.Trailer = http.Header{"X-Checksum": nil}
			req.Body = &trailerBody{Reader: bytes.NewReader(payload), done: func() { req.Trailer.Set("X-Checksum", "c") }}
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Errorf("round trip: %v", err)
				return
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil || !bytes.Equal(got, payload) {
				t.Errorf("echo of %d bytes: %d bytes back, %v", size, len(got), err)
			}
			if s, rt := resp.Trailer.Get("X-Sum"), resp.Trailer.Get("X-Req-Trailer"); s != fmt.Sprint(size) || rt != "c" {
				t.Errorf("trailers %v, want X-Sum %d and X-Req-Trailer c", resp.Trailer, size)
			}
		})
	}
	wg.Wait()
}

// trailerBody sets the request's trailers when it ends, as a streaming client does.
type trailerBody struct {
	io.Reader
	done func()
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	if err == io.EOF {
		b.done()
	}
	return n, err
}

func (b *trailerBody) Close() error { return nil }

// TestH2ServerReadDeadline checks SetReadDeadline (forward.go's request_timeout) bounds body reads.
func TestH2ServerReadDeadline(t *testing.T) {
	res := make(chan error, 1)
	hh := startH2(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
			res <- err
			return
		}
		_, err := io.ReadAll(r.Body)
		res <- err
	}), nil)
	cl := dialH2(t, hh)
	cl.request(1, false)
	cl.fr.WriteData(1, false, []byte("part"))
	select {
	case err := <-res:
		if !errors.Is(err, errDeadline) {
			t.Errorf("body read past the deadline: %v, want a deadline error", err)
		}
	case <-time.After(wait):
		t.Fatal("body read not bounded by the read deadline")
	}
}

// TestH2ServerPeerNotReading checks a client that stops reading cannot hold a handler or the
// connection: the write times out... here, with a blocked window, the handler is released when the
// client resets the stream, and a stopped connection ends with its close.
func TestH2ServerWindowWaitEndsOnReset(t *testing.T) {
	done := make(chan error, 1)
	hh := startH2(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := w.Write(make([]byte, 200<<10)) // more than the 64 KiB window the client gives
		done <- err
	}), nil)
	cl := dialH2(t, hh)
	cl.request(1, true)
	cl.until("DATA", func(f http2.Frame) bool { _, ok := f.(*http2.DataFrame); return ok })
	cl.fr.WriteRSTStream(1, http2.ErrCodeCancel)
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("write to a reset stream succeeded")
		}
	case <-time.After(wait):
		t.Fatal("handler still blocked on flow control after the reset")
	}
}

// FuzzH2Server feeds arbitrary bytes after a valid preface and SETTINGS into a served connection:
// it must end without a panic, a hang or a goroutine left behind.
func FuzzH2Server(f *testing.F) {
	var seed bytes.Buffer
	fr := http2.NewFramer(&seed, nil)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, kv := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/"}, {":authority", "a"}, {"content-length", "3"}} {
		enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
	fr.WriteData(1, true, []byte("abc"))
	f.Add(append([]byte(nil), seed.Bytes()...))
	fr.WriteRSTStream(1, http2.ErrCodeCancel)
	fr.WritePing(false, [8]byte{})
	fr.WriteWindowUpdate(0, 1<<30)
	fr.WriteWindowUpdate(1, 1<<31-1)
	f.Add(append([]byte(nil), seed.Bytes()...))
	seed.Reset()
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: hb.Bytes()[:3]})
	fr.WriteContinuation(3, true, hb.Bytes()[3:])
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: []byte{0x82}, EndHeaders: true, EndStream: true})
	fr.WriteData(5, true, []byte("x"))
	f.Add(append([]byte(nil), seed.Bytes()...))
	f.Add([]byte("\x00\x00\x00\x04\x00\x00\x00\x00\x00garbage"))
	f.Add([]byte{0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Add([]byte{0, 0, 4, 8, 0, 0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 5, 1, 0x25, 0, 0, 0, 1, 0, 0, 0, 1, 0x10}) // HEADERS depending on itself

	hh := startH2(f, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-T")
		io.Copy(w, r.Body)
		w.Header().Set("X-T", "1")
	}), nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.Dial("tcp", hh.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		sv := <-hh.served
		c.SetDeadline(time.Now().Add(wait))
		var pre bytes.Buffer
		pre.WriteString(http2.ClientPreface)
		http2.NewFramer(&pre, nil).WriteSettings()
		pre.Write(data)
		go io.Copy(io.Discard, c)
		c.Write(pre.Bytes())
		c.(*net.TCPConn).CloseWrite()
		select {
		case <-sv.done:
		case <-time.After(wait):
			t.Fatalf("connection still served %v after the client stopped sending", wait)
		}
	})
}

// TestH2ThroughProxy sends large bodies both ways through the proxy over h2c prior knowledge (the
// HTTP/1.1 fast path hands the connection to the HTTP/2 server), with the upstream's trailers coming
// back as HTTP/2 trailers.
func TestH2ThroughProxy(t *testing.T) {
	up := startUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		n, _ := io.Copy(w, r.Body)
		w.Header().Set("X-Sum", fmt.Sprint(n))
	})
	e := startEnv(t)
	addr := e.basic(up.Addr())
	tr := h2cTransport()
	defer tr.CloseIdleConnections()
	const size = 2<<20 + 5
	payload := bytes.Repeat([]byte("0123456789"), size/10+1)[:size]
	req, _ := http.NewRequest("POST", "http://"+addr+"/echo", bytes.NewReader(payload))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(got, payload) || resp.ProtoMajor != 2 {
		t.Fatalf("echo through the proxy: %d of %d bytes over HTTP/%d, %v", len(got), size, resp.ProtoMajor, err)
	}
	if s := resp.Trailer.Get("X-Sum"); s != fmt.Sprint(size) {
		t.Errorf("trailer X-Sum %q, want %d", s, size)
	}
}

// The request body tells the upstream client when it is complete (cluster.ReadReadier).
var _ cluster.ReadReadier = (*h2Body)(nil)

// TestH2ServerUnreadBodyCredit checks a handler that ends without reading its body: the stream is
// reset with NO_ERROR and the connection's window gets the unread bytes back.
func TestH2ServerUnreadBodyCredit(t *testing.T) {
	hh := startH2(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/read" {
			n, _ := io.Copy(io.Discard, r.Body)
			fmt.Fprint(w, n)
		}
	}), func(s *hcmSpec) { s.connWindow = 65535 })
	cl := dialH2(t, hh)
	cl.request(1, false)
	if code := cl.rst(1); code != http2.ErrCodeNo {
		t.Fatalf("RST_STREAM %v for a response before the request's end, want NO_ERROR", code)
	}
	for range 3 {
		cl.fr.WriteData(1, false, make([]byte, 16<<10)) // after the reset: discarded, still counted
	}
	wu := cl.until("connection WINDOW_UPDATE", func(f http2.Frame) bool {
		w, ok := f.(*http2.WindowUpdateFrame)
		return ok && w.StreamID == 0
	}).(*http2.WindowUpdateFrame)
	if wu.Increment < 32<<10 {
		t.Fatalf("connection credit %d for 48 KiB discarded, want at least 32 KiB", wu.Increment)
	}
	cl.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, EndHeaders: true,
		BlockFragment: cl.block(":method", "POST", ":scheme", "http", ":path", "/read", ":authority", "a")})
	for range 2 {
		cl.fr.WriteData(3, false, make([]byte, 16<<10)) // 80 KiB in all: more than the window without credit
	}
	cl.fr.WriteData(3, true, nil)
	if status, body, _ := cl.response(3); status != "200" || string(body) != fmt.Sprint(32<<10) {
		t.Errorf("second stream: %s %q", status, body)
	}
}

// TestH2ServerClientHeaderListLimit checks a response head over the client's MAX_HEADER_LIST_SIZE
// is not sent: the stream is reset and the connection serves on.
func TestH2ServerClientHeaderListLimit(t *testing.T) {
	hh := startH2(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Header().Set("X-Big", strings.Repeat("b", 500))
		}
	}), nil)
	cl := dialH2(t, hh, http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: 200})
	cl.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true,
		BlockFragment: cl.block(":method", "GET", ":scheme", "http", ":path", "/big", ":authority", "a")})
	if code := cl.rst(1); code != http2.ErrCodeInternal {
		t.Errorf("RST_STREAM %v, want INTERNAL_ERROR", code)
	}
	cl.request(3, true)
	if status, _, _ := cl.response(3); status != "200" {
		t.Errorf("next response: %s", status)
	}
}

// TestH2ReplacedChainSendsGoAway checks a filter chain replaced by an update drains its HTTP/2
// connections: GOAWAY with the last stream, then the connection ends; no request fails.
func TestH2ReplacedChainSendsGoAway(t *testing.T) {
	up := startUpstream(t, "a", nil)
	e := startEnv(t)
	addr := e.basic(up.Addr())
	cl := dialH2Addr(t, addr, nil)
	cl.request(1, true)
	if status, body, _ := cl.response(1); status != "200" || string(body) != "a /" {
		t.Fatalf("before the update: %s %q", status, body)
	}
	e.set(xdsclient.ListenerType, "2", httpListener(t, "l", "r", func(h *hcmv3.HttpConnectionManager) { h.StatPrefix = "l2" }))
	e.waitACK(xdsclient.ListenerType, "2")
	if g := cl.goAway(); g.ErrCode != http2.ErrCodeNo || g.LastStreamID != 1 {
		t.Errorf("GOAWAY %v last stream %d, want NO_ERROR and 1", g.ErrCode, g.LastStreamID)
	}
	if _, err := io.Copy(io.Discard, cl.c); err != nil {
		t.Errorf("connection not closed after the GOAWAY: %v", err)
	}
	// A new connection is served by the new chain.
	cl2 := dialH2Addr(t, addr, nil)
	cl2.request(1, true)
	if status, _, _ := cl2.response(1); status != "200" {
		t.Errorf("new connection: %s", status)
	}
}

// TestH2ServerPeerNotReading checks a client that stops reading cannot hold the connection or its
// handlers: the write times out, the connection ends, the handler's write fails. A PING flood from
// such a client ends the same way.
func TestH2ServerPeerNotReading(t *testing.T) {
	short := func(c *h2Conn) { c.writeTimeout = 200 * time.Millisecond }
	t.Run("response", func(t *testing.T) {
		res := make(chan error, 1)
		hh := startH2With(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			chunk := make([]byte, 1<<20)
			for range 256 {
				if _, err := w.Write(chunk); err != nil {
					res <- err
					return
				}
			}
			res <- nil
		}), nil, short)
		cl := dialH2(t, hh, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
		cl.fr.WriteWindowUpdate(0, 1<<31-1-65535)
		cl.request(1, true) // and never read again
		select {
		case err := <-res:
			if err == nil {
				t.Errorf("256 MiB written to a client that does not read")
			}
		case <-time.After(wait):
			t.Fatal("handler still writing to a client that does not read")
		}
		<-cl.sv.done
	})
	t.Run("ping flood", func(t *testing.T) {
		hh := startH2With(t, http.HandlerFunc(okHandler), nil, short)
		cl := dialH2(t, hh)
		go func() {
			for cl.fr.WritePing(false, [8]byte{}) == nil {
			}
		}()
		select {
		case <-cl.sv.done:
		case <-time.After(wait):
			t.Fatal("connection flooded with PINGs it cannot answer still served")
		}
	})
}

// TestGRPCThroughHTTP2OnlyManager runs gRPC calls (unary, a server stream, concurrent calls) through
// a connection manager with codec HTTP2: plain-text connections go to the HTTP/2 server directly.
func TestGRPCThroughHTTP2OnlyManager(t *testing.T) {
	grpcAddr, hs := startGRPCHealth(t)
	e := startEnv(t)
	e.set(xdsclient.ClusterType, "1", edsCluster("grpc", h2Cluster))
	e.set(xdsclient.EndpointType, "1", endpoints(t, "grpc", grpcAddr))
	e.set(xdsclient.RouteType, "1", simpleRoutes("r", "grpc"))
	e.set(xdsclient.ListenerType, "1", httpListener(t, "l", "r", func(h *hcmv3.HttpConnectionManager) {
		h.CodecType = hcmv3.HttpConnectionManager_HTTP2
	}))
	e.waitACK(xdsclient.EndpointType, "1")
	conn, err := grpc.NewClient(e.listenerAddr("l"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "svc"}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("unary Check: %v %v", resp, err)
			}
		})
	}
	wg.Wait()
	checkErrorStatusAndWatch(t, ctx, hc, hs)
	// A cancelled call resets its stream; the connection goes on serving.
	cctx, ccancel := context.WithCancel(ctx)
	w2, err := hc.Watch(cctx, &healthpb.HealthCheckRequest{Service: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w2.Recv(); err != nil {
		t.Fatal(err)
	}
	ccancel()
	if _, err := w2.Recv(); status.Code(err) != codes.Canceled {
		t.Errorf("cancelled stream: %v", err)
	}
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "svc"}); err != nil {
		t.Errorf("after a cancelled stream: %v", err)
	}
}

// TestH2ServerExpectContinue checks a request with Expect: 100-continue gets a 100 when the handler
// first waits for its body.
func TestH2ServerExpectContinue(t *testing.T) {
	hh := startH2(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}), nil)
	cl := dialH2(t, hh)
	cl.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true,
		BlockFragment: cl.block(":method", "PUT", ":scheme", "http", ":path", "/", ":authority", "a", "expect", "100-continue")})
	f := cl.until("100 Continue", func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }).(*http2.MetaHeadersFrame)
	if s := f.PseudoValue("status"); s != "100" || f.StreamEnded() {
		t.Fatalf("first response HEADERS: status %s, end %v; want 100", s, f.StreamEnded())
	}
	cl.fr.WriteData(1, true, []byte("body"))
	if status, body, _ := cl.response(1); status != "200" || string(body) != "body" {
		t.Errorf("response %s %q", status, body)
	}
}

// BenchmarkH2ServerUnary is one gRPC-shaped unary call at a time on one connection, served by the
// HTTP/2 server alone (no filter chain): HEADERS and DATA in, HEADERS, DATA and trailers out.
func BenchmarkH2ServerUnary(b *testing.B) {
	hh := startH2(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		w.Write([]byte("\x00\x00\x00\x00\x02hi"))
		w.Header().Set("Grpc-Status", "0")
	}), nil)
	cl := dialH2(b, hh)
	cl.c.SetDeadline(time.Time{})
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	blk := cl.block(":method", "POST", ":scheme", "http", ":path", "/svc/M", ":authority", "a",
		"content-type", "application/grpc", "te", "trailers")
	b.ReportAllocs()
	id, credit := uint32(1), uint32(0)
	for b.Loop() {
		buf.Reset()
		if credit > 0 {
			fr.WriteWindowUpdate(0, credit) // the connection's window: the response bytes read
			credit = 0
		}
		// The same header block each time: the client's encoder indexed nothing (a fresh block per
		// request would refer to its dynamic table).
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true, BlockFragment: blk})
		fr.WriteData(id, true, []byte("\x00\x00\x00\x00\x01x"))
		if _, err := cl.c.Write(buf.Bytes()); err != nil {
			b.Fatal(err)
		}
		for done := false; !done; {
			f, err := cl.fr.ReadFrame()
			if err != nil {
				b.Fatal(err)
			}
			switch f := f.(type) {
			case *http2.MetaHeadersFrame:
				done = f.StreamEnded()
			case *http2.DataFrame:
				done = f.StreamEnded()
				credit += f.Length
			case *http2.RSTStreamFrame:
				b.Fatalf("stream reset: %v", f.ErrCode)
			}
		}
		id += 2
	}
}
