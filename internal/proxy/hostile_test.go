package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/types/known/durationpb"

	"canton.dev/canton/internal/proxy/xdsclient"
)

// hostileEnv runs a proxy whose listener "l" has short header and idle timeouts.
func hostileEnv(t *testing.T, up *upstream, mod func(*hcmv3.HttpConnectionManager)) string {
	e := startEnv(t)
	e.set(xdsclient.ClusterType, "1", edsCluster("c", nil))
	e.set(xdsclient.EndpointType, "1", endpoints(t, "c", up.Addr()))
	e.set(xdsclient.RouteType, "1", simpleRoutes("r", "c"))
	e.set(xdsclient.ListenerType, "1", httpListener(t, "l", "r", func(h *hcmv3.HttpConnectionManager) {
		h.RequestHeadersTimeout = durationpb.New(200 * time.Millisecond)
		h.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{IdleTimeout: durationpb.New(200 * time.Millisecond)}
		if mod != nil {
			mod(h)
		}
	}))
	e.waitACK(xdsclient.EndpointType, "1")
	return e.listenerAddr("l")
}

// raw sends raw bytes and returns the status code of the first response (0 if the connection closed
// without one) and whether the connection was closed afterwards.
func raw(t *testing.T, addr, req string) (int, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, true
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_, err = br.ReadByte()
	return resp.StatusCode, err != nil
}

func TestHostileRequests(t *testing.T) {
	up := startUpstream(t, "a", nil)
	addr := hostileEnv(t, up, nil)
	manyHeaders := strings.Repeat("X-H: v\r\n", 101)
	bigHeader := "X-Big: " + strings.Repeat("a", 61<<10) + "\r\n"
	tests := []struct {
		name, req string
		want      int
	}{
		{"valid", "GET /ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 200},
		{"content-length with transfer-encoding", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"conflicting content-length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd", 400},
		{"bare LF", "GET / HTTP/1.1\nHost: a\n\n", 400},
		{"bare CR in a header", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400},
		{"NUL in a header value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400},
		{"obsolete folding", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400},
		{"invalid method token", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"unknown method", "BREW / HTTP/1.1\r\nHost: a\r\n\r\n", 405},
		{"CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405},
		{"space in header name", "GET / HTTP/1.1\r\nHost: a\r\nX Y: z\r\n\r\n", 400},
		{"missing host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"too many headers", "GET / HTTP/1.1\r\nHost: a\r\n" + manyHeaders + "\r\n", 431},
		{"header block too large", "GET / HTTP/1.1\r\nHost: a\r\n" + bigHeader + "\r\n", 431},
		{"dot segments above root are clamped", "GET /../../ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 200},
		{"bad percent escape", "GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		// Sent in one write, the bad second head poisons the whole read: nothing is forwarded.
		{"smuggled request after a body", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhiGET /x HTTP/1.1\nHost: a\n\n", 400},
	}
	for _, tt := range tests {
		got, _ := raw(t, addr, tt.req)
		if got != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, got, tt.want)
		}
	}
	// The smuggled second request never reached the upstream.
	if r := up.last.Load(); r.URL.Path == "/x" {
		t.Errorf("a request with bare LF line endings reached the upstream")
	}
}

func TestPathNormalizationIsWhatIsForwarded(t *testing.T) {
	up := startUpstream(t, "a", nil)
	addr := hostileEnv(t, up, func(h *hcmv3.HttpConnectionManager) {
		h.MergeSlashes = true
		h.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_REJECT_REQUEST
	})
	c := client()
	if _, body := get(t, c, addr, "a", "/x//y/./z/../%7Euser?q=%2F"); body != "a /x/y/~user?q=%2F" {
		t.Errorf("upstream saw %q, want the normalized path", body)
	}
	if code, _ := raw(t, addr, "GET /a%2Fb HTTP/1.1\r\nHost: a\r\n\r\n"); code != 400 {
		t.Errorf("escaped slash with REJECT_REQUEST: %d, want 400", code)
	}
}

func TestHopByHopHeadersAreStripped(t *testing.T) {
	up := startUpstream(t, "a", nil)
	addr := hostileEnv(t, up, nil)
	code, _ := raw(t, addr, "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Private\r\nX-Private: 1\r\n"+
		"Keep-Alive: timeout=5\r\nProxy-Authorization: Basic eA==\r\nTE: trailers, deflate\r\nX-Kept: 1\r\n\r\n")
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	h := up.last.Load().Header
	for _, k := range []string{"X-Private", "Keep-Alive", "Proxy-Authorization"} {
		if _, ok := h[k]; ok {
			t.Errorf("hop-by-hop header %s forwarded", k)
		}
	}
	if h.Get("X-Kept") != "1" {
		t.Errorf("end-to-end header dropped")
	}
}

func TestSlowlorisAndIdleConnectionsAreClosed(t *testing.T) {
	up := startUpstream(t, "a", nil)
	addr := hostileEnv(t, up, nil)
	for name, req := range map[string]string{
		"partial head":                     "GET / HTTP/1.1\r\nHost: a\r\n",
		"idle keep-alive after a response": "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		c.SetDeadline(time.Now().Add(wait))
		io.WriteString(c, req)
		_, err = io.Copy(io.Discard, c) // returns when the proxy closes the connection
		c.Close()
		if err != nil {
			t.Errorf("%s: connection not closed by the proxy: %v", name, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: closed after %v, want about 200ms", name, d)
		}
	}
}

func TestHTTP2ContinuationFloodIsCut(t *testing.T) {
	up := startUpstream(t, "a", nil)
	addr := hostileEnv(t, up, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, kv := range [][2]string{{":method", "GET"}, {":path", "/"}, {":scheme", "http"}, {":authority", "a"}} {
		enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true})
	// Endless CONTINUATION frames of junk headers: the server must give up on the connection.
	chunk := bytes.Repeat([]byte{0x40, 0x01, 'x', 0x01, 'y'}, 3000)
	closed := false
	for i := 0; i < 2000; i++ {
		if err := fr.WriteContinuation(1, false, chunk); err != nil {
			closed = true
			break
		}
	}
	if !closed {
		// Writes may all fit in buffers; the connection must still end (GOAWAY then close).
		_, err := io.Copy(io.Discard, c)
		closed = err == nil
	}
	if !closed {
		t.Errorf("connection survived a CONTINUATION flood")
	}
}

func TestHTTP2RapidResetIsBounded(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var active, peak atomic.Int64
	up := startUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
		n := active.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		defer active.Add(-1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	addr := hostileEnv(t, up, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, kv := range [][2]string{{":method", "GET"}, {":path", "/"}, {":scheme", "http"}, {":authority", "a"}} {
		enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	go io.Copy(io.Discard, c) // keep reading so the server is never blocked on writes
	// Open and immediately reset many streams: handlers must stay bounded by max_concurrent_streams.
	for id := uint32(1); id < 20000; id += 2 {
		if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}) != nil ||
			fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
			break // the server gave up on the connection: fine
		}
	}
	if p := peak.Load(); p > 101 {
		t.Errorf("%d upstream requests in flight at once, want at most max_concurrent_streams (100)", p)
	}
}
