package filter

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	lrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// nopWriter is a ResponseWriter that discards everything, so the benchmark
// measures the chain, not httptest.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

// BenchmarkChain measures one request through fault (10% abort, not hit) +
// local_ratelimit (a bucket that never empties) + router, with and without a
// per-route override, as the proxy would run it (context built by
// WithRequest per request).
func BenchmarkChain(b *testing.B) {
	filters := []*hcmv3.HttpFilter{
		httpFilter(b, faultName, &faultv3.HTTPFault{Abort: httpAbort(503, pct(10, 0))}),
		httpFilter(b, rlName, rlConfig(func(c *lrlv3.LocalRateLimit) { c.TokenBucket = bucket(1<<30, 1<<30, time.Hour) })),
		routerFilter(b),
	}
	router := HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return nil })
	h, err := BuildWithOptions(filters, router, Options{Rand: fixedRand(50)})
	if err != nil {
		b.Fatal(err)
	}
	routeCfg := map[string]*anypb.Any{
		rlName: mustAny(b, rlConfig(func(c *lrlv3.LocalRateLimit) { c.TokenBucket = bucket(1<<30, 1<<30, time.Hour) })),
	}
	for _, bc := range []struct {
		name  string
		route map[string]*anypb.Any
	}{{"listener", nil}, {"per-route", routeCfg}} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/", nil)
			w := &nopWriter{h: http.Header{}}
			var fl Flags
			b.ReportAllocs()
			for b.Loop() {
				fl = 0
				r := req.WithContext(WithRequest(req.Context(), bc.route, nil, &fl))
				if err := h.ServeHTTP(w, r); err != nil {
					b.Fatal(err)
				}
			}
		})
		// The chain alone, with the request context prepared once: what the
		// filters themselves cost.
		b.Run(bc.name+"/chain-only", func(b *testing.B) {
			var fl Flags
			req := httptest.NewRequest("GET", "/", nil)
			req = req.WithContext(WithRequest(req.Context(), bc.route, nil, &fl))
			w := &nopWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				if err := h.ServeHTTP(w, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
