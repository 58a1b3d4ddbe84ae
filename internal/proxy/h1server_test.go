package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"canton.dev/canton/internal/proxy/xdsclient"
)

// h1Upstream answers according to the request path, for the fast path's response framing tests.
func h1Upstream(t *testing.T) *upstream {
	return startUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/small": // net/http sets a Content-Length for a small body it holds
			io.WriteString(w, "hello")
		case "/streamed": // flushed: chunked from the upstream
			for i := range 4 {
				fmt.Fprintf(w, "%s", strings.Repeat(strconv.Itoa(i), 1500))
				w.(http.Flusher).Flush()
			}
		case "/trailers":
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "body")
			w.(http.Flusher).Flush()
			w.Header().Set("X-Sum", "42")
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		case "/echo":
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			w.Header().Set("X-Len", strconv.Itoa(len(b)))
			w.Header().Set("X-TE", strings.Join(r.TransferEncoding, ","))
			w.Write(b)
		default:
			fmt.Fprintf(w, "a %s", r.URL.RequestURI())
		}
	})
}

func TestH1ResponseFraming(t *testing.T) {
	up := h1Upstream(t)
	addr := startEnv(t).basic(up.Addr())
	c := client()

	resp, body := get(t, c, addr, "a", "/small")
	if body != "hello" || resp.ContentLength != 5 || len(resp.TransferEncoding) != 0 {
		t.Errorf("small: %q, length %d, TE %v; want a Content-Length response", body, resp.ContentLength, resp.TransferEncoding)
	}
	if resp.Header.Get("Date") == "" || resp.Header.Get("X-Upstream") != "a" {
		t.Errorf("small: headers %v, want Date and the upstream's headers", resp.Header)
	}

	resp, body = get(t, c, addr, "a", "/streamed")
	want := strings.Repeat("0", 1500) + strings.Repeat("1", 1500) + strings.Repeat("2", 1500) + strings.Repeat("3", 1500)
	if body != want || resp.ContentLength != -1 || len(resp.TransferEncoding) != 1 {
		t.Errorf("streamed: %d bytes, length %d, TE %v; want %d bytes chunked", len(body), resp.ContentLength, resp.TransferEncoding, len(want))
	}

	resp, body = get(t, c, addr, "a", "/trailers")
	if body != "body" || resp.Trailer.Get("X-Sum") != "42" {
		t.Errorf("trailers: %q, trailer %v; want body and X-Sum: 42", body, resp.Trailer)
	}

	resp, body = get(t, c, addr, "a", "/nocontent")
	if resp.StatusCode != http.StatusNoContent || body != "" {
		t.Errorf("no content: %d %q", resp.StatusCode, body)
	}

	req, _ := http.NewRequest(http.MethodHead, "http://"+addr+"/small", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(b) != 0 {
		t.Errorf("HEAD: %d with %d body bytes", resp.StatusCode, len(b))
	}
}

// readResponses reads n responses from br and returns their bodies.
func readResponses(t *testing.T, br *bufio.Reader, n int) ([]*http.Response, []string) {
	t.Helper()
	var resps []*http.Response
	var bodies []string
	for i := range n {
		resp, err := http.ReadResponse(br, nil)
		for err == nil && resp.StatusCode < 200 {
			resp, err = http.ReadResponse(br, nil) // 100 Continue: the answer follows
		}
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("response %d: body: %v", i, err)
		}
		resp.Body.Close()
		resps, bodies = append(resps, resp), append(bodies, string(b))
	}
	return resps, bodies
}

func TestH1PipelinedRequestsAnsweredInOrderThenClose(t *testing.T) {
	up := h1Upstream(t)
	addr := startEnv(t).basic(up.Addr())
	conn := dialT(t, addr)
	reqs := "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n" +
		"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc" +
		"GET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(conn, reqs); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resps, bodies := readResponses(t, br, 3)
	if bodies[0] != "a /1" || bodies[1] != "abc" || bodies[2] != "a /3" {
		t.Errorf("bodies %q, want the three answers in order", bodies)
	}
	if !resps[2].Close {
		t.Errorf("the answer to Connection: close does not say close")
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after Connection: close: read %v, want EOF", err)
	}
}

// Requests the fast path leaves to net/http are served on the same connection, and so is everything
// after them.
func TestH1HandOverKeepsServing(t *testing.T) {
	up := h1Upstream(t)
	addr := startEnv(t).basic(up.Addr())
	big := bytes.Repeat([]byte("b"), 100<<10)
	cases := []struct {
		name, req, body string
	}{
		{"content-length body larger than the buffer", "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: " + strconv.Itoa(len(big)) + "\r\n\r\n" + string(big), string(big)},
		{"chunked body", "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", "abcde"},
		{"expect 100-continue", "POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", "hi"},
		{"head larger than the fast path's buffer", "GET /big HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("x", 6<<10) + "\r\n\r\n", "a /big"},
		{"HTTP/1.0", "GET /old HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", "a /old"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn := dialT(t, addr)
			if _, err := io.WriteString(conn, "GET /first HTTP/1.1\r\nHost: a\r\n\r\n"+tc.req+"GET /after HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resps, bodies := readResponses(t, bufio.NewReader(conn), 3)
			if bodies[0] != "a /first" || bodies[1] != tc.body || bodies[2] != "a /after" {
				t.Errorf("bodies %.40q, want %.40q in the middle", bodies, tc.body)
			}
			for i, r := range resps {
				if r.StatusCode != 200 {
					t.Errorf("response %d: status %d", i, r.StatusCode)
				}
			}
		})
	}
}

func TestH1RequestBodyNotReadByTheHandlerIsSkipped(t *testing.T) {
	up := h1Upstream(t)
	addr := startEnv(t).basic(up.Addr())
	conn := dialT(t, addr)
	// The upstream does not read the body of GET /x; the next request must still parse.
	if _, err := io.WriteString(conn, "GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nGET /yGET /z HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_, bodies := readResponses(t, bufio.NewReader(conn), 2)
	if bodies[0] != "a /x" || bodies[1] != "a /z" {
		t.Errorf("bodies %q, want a /x then a /z (the body bytes are not a request)", bodies)
	}
	if up.count.Load() != 2 {
		t.Errorf("upstream saw %d requests, want 2", up.count.Load())
	}
}

// BenchmarkH1Head is the fast path's head parsing alone.
func BenchmarkH1Head(b *testing.B) {
	head := "GET /productpage?u=normal HTTP/1.1\r\nHost: bookinfo.demo.mesh:9080\r\nUser-Agent: fortio.org/fortio-1.68.2\r\n" +
		"Accept: */*\r\nX-Request-Id: 2f0d2d86-2c43-4f9b-9d0b-8e5f3f6f4b2e\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n"
	h := http.Header{}
	vals := make([]string, 0, 16)
	b.ReportAllocs()
	for b.Loop() {
		clear(h)
		var ok bool
		_, vals, ok = parseH1Head(head, h, vals[:0])
		if !ok {
			b.Fatal("not accepted")
		}
	}
}

// resetRequest must clear every exported field, including fields a later Go release adds.
func TestResetRequestClearsEveryExportedField(t *testing.T) {
	r := new(http.Request)
	v := reflect.ValueOf(r).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		if !v.Type().Field(i).IsExported() {
			continue
		}
		switch f.Kind() {
		case reflect.String:
			f.SetString("x")
		case reflect.Int, reflect.Int64:
			f.SetInt(1)
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan:
			switch f.Kind() {
			case reflect.Pointer:
				f.Set(reflect.New(f.Type().Elem()))
			case reflect.Map:
				f.Set(reflect.MakeMap(f.Type()))
			case reflect.Slice:
				f.Set(reflect.MakeSlice(f.Type(), 1, 1))
			case reflect.Func:
				f.Set(reflect.MakeFunc(f.Type(), func([]reflect.Value) []reflect.Value { return nil }))
			case reflect.Chan: // Cancel is receive-only
				f.Set(reflect.MakeChan(reflect.ChanOf(reflect.BothDir, f.Type().Elem()), 0).Convert(f.Type()))
			}
		case reflect.Interface:
			f.Set(reflect.ValueOf(io.NopCloser(nil)))
		default:
			t.Fatalf("field %s: kind %v not covered by this test", v.Type().Field(i).Name, f.Kind())
		}
	}
	resetRequest(r)
	for i := range v.NumField() {
		if v.Type().Field(i).IsExported() && !v.Field(i).IsZero() {
			t.Errorf("resetRequest left %s set", v.Type().Field(i).Name)
		}
	}
}

// A filter chain replaced by an update drains its fast-path connections: the next answer on an
// established connection says Connection: close and the connection ends; no request fails.
func TestH1ReplacedChainClosesKeptConnections(t *testing.T) {
	up := h1Upstream(t)
	e := startEnv(t)
	addr := e.basic(up.Addr())
	conn := dialT(t, addr)
	br := bufio.NewReader(conn)
	send := func() *http.Response {
		t.Helper()
		if _, err := io.WriteString(conn, "GET /k HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resps, bodies := readResponses(t, br, 1)
		if resps[0].StatusCode != 200 || bodies[0] != "a /k" {
			t.Fatalf("status %d %q during the drain", resps[0].StatusCode, bodies[0])
		}
		return resps[0]
	}
	if send().Close {
		t.Fatal("closed before any update")
	}
	e.set(xdsclient.ListenerType, "2", httpListener(t, "l", "r", func(h *hcmv3.HttpConnectionManager) { h.StatPrefix = "l2" }))
	e.waitACK(xdsclient.ListenerType, "2")
	waitUntil(t, "Connection: close from the replaced chain", func() bool { return send().Close })
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after Connection: close: %v, want EOF", err)
	}
}
