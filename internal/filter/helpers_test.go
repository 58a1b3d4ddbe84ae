package filter

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func httpFilter(t testing.TB, name string, m proto.Message) *hcmv3.HttpFilter {
	hf := &hcmv3.HttpFilter{Name: name}
	if m != nil {
		hf.ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, m)}
	}
	return hf
}

func routerFilter(t testing.TB) *hcmv3.HttpFilter {
	return httpFilter(t, "envoy.filters.http.router", &routerv3.Router{})
}

// okRouter answers 200 "upstream" and counts its calls.
type okRouter struct {
	mu    sync.Mutex
	calls int
	last  *http.Request
}

func (o *okRouter) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	o.mu.Lock()
	o.calls++
	o.last = r
	o.mu.Unlock()
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("upstream"))
	return nil
}

func (o *okRouter) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.calls
}

// fixedRand returns v (clamped to n-1) for every draw.
func fixedRand(v uint64) func(uint64) uint64 {
	return func(n uint64) uint64 { return min(v, n-1) }
}

// fakeClock is a manually advanced clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// serve runs one request through h with the given per-route config and
// returns the recorder and the flags the filters reported.
func serve(t testing.TB, h Handler, req *http.Request, route map[string]*anypb.Any) (*httptest.ResponseRecorder, Flags, error) {
	t.Helper()
	var fl Flags
	req = req.WithContext(WithRequest(req.Context(), route, nil, &fl))
	rec := httptest.NewRecorder()
	err := h.ServeHTTP(rec, req)
	return rec, fl, err
}
