package proxy

import (
	"bufio"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"canton.dev/canton/internal/proxy/httpsafe"
)

var h1HeadSeeds = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /p?q=1&r=%20 HTTP/1.1\r\nHost: a:80\r\nUser-Agent: x\r\nAccept: */*\r\n\r\n",
	"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 12\r\nX-Dup: 1\r\nx-dup: 2\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\nPragma: no-cache\r\n\r\n",
	"GET /a%2Fb HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX:   spaced\t \r\n\r\n",
	"GET /?%zz HTTP/1.1\r\nHost: a\r\n\r\n",
	// Everything below must be left to net/http.
	"GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a%2 HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\nHost: a\n\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"GET / HTTP/1.1\r\n\r\n",
	"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
	"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
	"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
	"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX Y: z\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
}

// FuzzH1Head checks that the fast path's parser accepts only heads that the strictness guard and
// net/http both accept, and that it reads them as net/http does.
func FuzzH1Head(f *testing.F) {
	for _, s := range h1HeadSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h := http.Header{}
		hd, _, ok := parseH1Head(s, h, nil)
		if !ok {
			return
		}
		if err := httpsafe.NewScanner(60 << 10).Feed([]byte(s)); err != nil {
			t.Fatalf("accepted %q, which the guard refuses: %v", s, err)
		}
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(s)))
		if err != nil {
			t.Fatalf("accepted %q, which net/http refuses: %v", s, err)
		}
		if req.Method != hd.method || req.RequestURI != hd.target || req.Host != hd.host || req.Close != hd.close ||
			req.ContentLength != hd.cl || req.URL.RawQuery != hd.query {
			t.Fatalf("%q: parsed %+v, net/http: %s %s host %q close %v length %d query %q", s, hd, req.Method,
				req.RequestURI, req.Host, req.Close, req.ContentLength, req.URL.RawQuery)
		}
		if hd.escaped != strings.Contains(hd.path, "%") || !hd.escaped && req.URL.Path != hd.path {
			t.Fatalf("%q: path %q (escaped %v), net/http %q", s, hd.path, hd.escaped, req.URL.Path)
		}
		if len(req.TransferEncoding) > 0 || len(req.Trailer) > 0 {
			t.Fatalf("%q: accepted a transfer coding or trailers", s)
		}
		if !reflect.DeepEqual(map[string][]string(h), map[string][]string(req.Header)) {
			t.Fatalf("%q: header %v, net/http %v", s, h, req.Header)
		}
	})
}

func TestParseH1HeadLeavesUnusualRequestsToNetHTTP(t *testing.T) {
	accept := map[string]bool{}
	for _, s := range h1HeadSeeds[:7] {
		accept[s] = true
	}
	for _, s := range h1HeadSeeds {
		_, _, ok := parseH1Head(s, http.Header{}, nil)
		if ok != accept[s] {
			t.Errorf("parseH1Head(%q) ok = %v, want %v", s, ok, accept[s])
		}
	}
}

func TestParseH1HeadValuesDoNotAlias(t *testing.T) {
	h := http.Header{}
	_, vals, ok := parseH1Head("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", h, make([]string, 0, 8))
	if !ok {
		t.Fatal("not accepted")
	}
	h["A"] = append(h["A"], "x") // as forward does with X-Forwarded-For
	if h["B"][0] != "2" || len(vals) != 2 {
		t.Fatalf("appending to one value changed another: %v", h)
	}
}
