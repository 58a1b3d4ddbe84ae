package cluster

import (
	"bufio"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// FuzzSimpleResponse checks that readSimpleResponse reads what it accepts exactly as
// http.ReadResponse does (status, headers, length, close, body), and consumes nothing otherwise.
func FuzzSimpleResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n\r\nabc",
		"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nX-A: 1\r\nx-a: 2\r\nConnection: close\r\n\r\n",
		"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nhi",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
		"HTTP/1.1 204 No Content\r\nContent-Length: 4\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
	} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, head bool) {
		method := http.MethodGet
		if head {
			method = http.MethodHead
		}
		req := &http.Request{Method: method}
		br := bufio.NewReaderSize(strings.NewReader(s), 4096)
		_, _ = br.Peek(1)
		got := readSimpleResponse(br, req)
		if got == nil {
			if br.Buffered() != min(len(s), 4096) {
				t.Fatalf("%q: refused but consumed %d bytes", s, min(len(s), 4096)-br.Buffered())
			}
			return
		}
		want, err := http.ReadResponse(bufio.NewReader(strings.NewReader(s)), req)
		if err != nil {
			t.Fatalf("%q: accepted, http.ReadResponse refuses: %v", s, err)
		}
		if got.StatusCode != want.StatusCode || got.Status != want.Status || got.ContentLength != want.ContentLength ||
			got.Close != want.Close || !reflect.DeepEqual(got.Header, want.Header) || len(want.TransferEncoding) > 0 {
			t.Fatalf("%q: got %d %q len %d close %v %v, want %d %q len %d close %v %v", s, got.StatusCode, got.Status,
				got.ContentLength, got.Close, got.Header, want.StatusCode, want.Status, want.ContentLength, want.Close, want.Header)
		}
		gb, gerr := io.ReadAll(got.Body)
		wb, werr := io.ReadAll(want.Body)
		if string(gb) != string(wb) || (gerr == nil) != (werr == nil) {
			t.Fatalf("%q: body %q (%v), want %q (%v)", s, gb, gerr, wb, werr)
		}
	})
}
