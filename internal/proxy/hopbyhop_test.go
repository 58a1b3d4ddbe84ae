package proxy

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestRemoveHopByHop checks which headers a hop removes: the fixed hop-by-hop set, every header
// named in Connection (with empty list elements and spaces), and TE unless it asks for trailers.
func TestRemoveHopByHop(t *testing.T) {
	cases := []struct {
		name string
		in   http.Header
		want http.Header
	}{
		{"fixed set", http.Header{"Connection": {"keep-alive"}, "Keep-Alive": {"timeout=5"}, "Upgrade": {"h2c"},
			"Transfer-Encoding": {"chunked"}, "Proxy-Connection": {"x"}, "A": {"1"}}, http.Header{"A": {"1"}}},
		{"named in connection", http.Header{"Connection": {"x-foo, ,X-Bar,", "x-baz"}, "X-Foo": {"1"}, "X-Bar": {"2"},
			"X-Baz": {"3"}, "X-Keep": {"4"}}, http.Header{"X-Keep": {"4"}}},
		{"te trailers with a parameter", http.Header{"Te": {"gzip", "trailers;q=1, deflate"}}, http.Header{}}, // as before: exact token only
		{"te trailers", http.Header{"Te": {"deflate, trailers"}, "Connection": {"TE"}}, http.Header{"Te": {"trailers"}}},
		{"te without trailers", http.Header{"Te": {"gzip"}}, http.Header{}},
		{"nothing", http.Header{"B": {"2"}}, http.Header{"B": {"2"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			removeHopByHop(tc.in)
			if !reflect.DeepEqual(tc.in, tc.want) {
				t.Fatalf("got %v, want %v", tc.in, tc.want)
			}
		})
	}
}

// TestHTTPDateHeader checks that the shared Date value is today's in the HTTP format.
func TestHTTPDateHeader(t *testing.T) {
	vs := httpDateHeader()
	if len(vs) != 1 {
		t.Fatalf("%d values", len(vs))
	}
	d, err := http.ParseTime(vs[0])
	if err != nil {
		t.Fatal(err)
	}
	if since := time.Since(d); since < -time.Second || since > 2*time.Second {
		t.Fatalf("date %v is %v away from now", d, since)
	}
	if got := d.UTC().Format(http.TimeFormat); got != vs[0] {
		t.Fatalf("date %q is not in the HTTP format (%q)", vs[0], got)
	}
}

// removeHopByHopSplit is removeHopByHop as it was before its Connection parsing stopped allocating
// (strings.Split): the reference FuzzRemoveHopByHop compares against.
func removeHopByHopSplit(h http.Header) {
	for _, v := range h["Connection"] {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				if k := http.CanonicalHeaderKey(f); k != "Te" {
					delete(h, k)
				}
			}
		}
	}
	te := h["Te"]
	for _, k := range hopByHop {
		delete(h, k)
	}
	for _, v := range te {
		if hasToken([]string{v}, "trailers") {
			h["Te"] = []string{"trailers"}
			break
		}
	}
}

// FuzzRemoveHopByHop checks that removeHopByHop removes exactly what the Split-based version did.
func FuzzRemoveHopByHop(f *testing.F) {
	f.Add("x-a, ,x-b,", "trailers", "x-a")
	f.Add("te,upgrade", "deflate, TRAILERS", "x-c")
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, conn, te, other string) {
		mk := func() http.Header {
			return http.Header{"Connection": {conn}, "Te": {te}, http.CanonicalHeaderKey(other): {"v"}, "X-A": {"1"},
				"X-B": {"2"}, "Keep-Alive": {"3"}}
		}
		got, want := mk(), mk()
		removeHopByHop(got)
		removeHopByHopSplit(want)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Connection %q TE %q: got %v, want %v", conn, te, got, want)
		}
	})
}
