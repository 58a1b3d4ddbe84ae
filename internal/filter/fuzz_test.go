package filter

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	lrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// FuzzBuildConfig feeds arbitrary bytes as the typed_config of each filter
// and as a per-route config: decoding must fail with an error or produce a
// chain that serves a request without panicking, and CheckRouteConfig must
// agree with what the request path accepts.
func FuzzBuildConfig(f *testing.F) {
	seeds := []proto.Message{
		&faultv3.HTTPFault{Abort: httpAbort(503, pct(50, 0)), MaxActiveFaults: wrapperspb.UInt32(3)},
		&faultv3.HTTPFault{Delay: headerDelay(pct(100, 1)), Abort: headerAbort(pct(100, 2))},
		rlConfig(nil),
		&lrlv3.LocalRateLimit{StatPrefix: "x"},
	}
	for i, m := range seeds {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i%2), b)
	}
	f.Add(uint8(0), []byte{0xff, 0x01})
	urls := []string{typeURL(&faultv3.HTTPFault{}), typeURL(&lrlv3.LocalRateLimit{})}
	names := []string{faultName, rlName}
	f.Fuzz(func(t *testing.T, which uint8, value []byte) {
		k := int(which % 2)
		cfg := &anypb.Any{TypeUrl: urls[k], Value: value}
		hf := &hcmv3.HttpFilter{Name: names[k], ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: cfg}}
		rt := &okRouter{}
		clock := newFakeClock()
		h, err := BuildWithOptions([]*hcmv3.HttpFilter{hf, routerFilter(t)}, rt, Options{Rand: fixedRand(0), Now: clock.Now})
		if err == nil {
			_, _, _ = serve(t, h, cancelledRequest(), nil)
		}
		route := map[string]*anypb.Any{names[k]: cfg}
		checkErr := CheckRouteConfig(route)
		// Use a chain without a listener-level config for the per-route check.
		base := []*hcmv3.HttpFilter{
			httpFilter(t, faultName, &faultv3.HTTPFault{}),
			httpFilter(t, rlName, &lrlv3.LocalRateLimit{StatPrefix: "x"}),
			routerFilter(t),
		}
		h2, err := BuildWithOptions(base, &okRouter{}, Options{Rand: fixedRand(0), Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second)
		_, _, serveErr := serve(t, h2, cancelledRequest(), route)
		if errors.Is(serveErr, context.Canceled) {
			serveErr = nil // a valid config that injected a delay
		}
		if (checkErr == nil) != (serveErr == nil) {
			t.Fatalf("CheckRouteConfig error %v but serving error %v", checkErr, serveErr)
		}
	})
}

// cancelledRequest has a cancelled context, so that injected delays (whose
// length the fuzzer chooses) end at once.
func cancelledRequest() *http.Request {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return httptest.NewRequest("GET", "/", nil).WithContext(ctx)
}
