package filter

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestBuildErrors(t *testing.T) {
	abort := &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{
		ErrorType:  &faultv3.FaultAbort_HttpStatus{HttpStatus: 503},
		Percentage: &typev3.FractionalPercent{Numerator: 100},
	}}
	tests := []struct {
		name    string
		filters []*hcmv3.HttpFilter
		wantErr string // substring; "" means success
	}{
		{"router only", []*hcmv3.HttpFilter{routerFilter(t)}, ""},
		{"router without typed_config", []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router"}}, ""},
		{"router with dynamic_stats", []*hcmv3.HttpFilter{httpFilter(t, "r", &routerv3.Router{DynamicStats: wrapperspb.Bool(false)})}, ""},
		{"fault then router", []*hcmv3.HttpFilter{httpFilter(t, "f", abort), routerFilter(t)}, ""},
		{"empty", nil, "http_filters: empty"},
		{"no name", []*hcmv3.HttpFilter{{}}, "http_filters[0].name: empty"},
		{"router not last", []*hcmv3.HttpFilter{routerFilter(t), httpFilter(t, "f", abort)}, "http_filters[0](envoy.filters.http.router): envoy.filters.http.router must be the last filter"},
		{"no router", []*hcmv3.HttpFilter{httpFilter(t, "f", abort)}, "http_filters[0](f): the last filter must be envoy.filters.http.router"},
		{"duplicate", []*hcmv3.HttpFilter{httpFilter(t, "f", abort), httpFilter(t, "f", abort), routerFilter(t)}, "http_filters[1](f).name: duplicate"},
		{"unknown name", []*hcmv3.HttpFilter{{Name: "envoy.filters.http.lua"}, routerFilter(t)}, "http_filters[0](envoy.filters.http.lua): filter is not supported"},
		{"unknown type", []*hcmv3.HttpFilter{httpFilter(t, "x", &corev3.Address{}), routerFilter(t)}, `http_filters[0](x).typed_config: filter type "type.googleapis.com/envoy.config.core.v3.Address" is not supported`},
		{"unknown optional skipped", []*hcmv3.HttpFilter{{Name: "envoy.filters.http.lua", IsOptional: true}, routerFilter(t)}, ""},
		{"optional after router", []*hcmv3.HttpFilter{routerFilter(t), {Name: "x", IsOptional: true}}, "must be the last filter"},
		{"router unsupported field", []*hcmv3.HttpFilter{httpFilter(t, "envoy.filters.http.router", &routerv3.Router{SuppressEnvoyHeaders: true})}, "http_filters[0](envoy.filters.http.router).typed_config.suppress_envoy_headers: not supported"},
		{"router disabled", []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", Disabled: true}}, ".disabled: the router cannot be disabled"},
		{"ecds unsupported", []*hcmv3.HttpFilter{{Name: "x", ConfigType: &hcmv3.HttpFilter_ConfigDiscovery{ConfigDiscovery: &corev3.ExtensionConfigSource{}}}, routerFilter(t)}, "http_filters[0](x).config_discovery: not supported"},
		{"fault unsupported field", []*hcmv3.HttpFilter{httpFilter(t, "f", &faultv3.HTTPFault{UpstreamCluster: "c"}), routerFilter(t)}, "http_filters[0](f).typed_config.upstream_cluster: not supported"},
		{"fault bad status", []*hcmv3.HttpFilter{httpFilter(t, "f", &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 99}}}), routerFilter(t)}, "typed_config.abort.http_status: 99 not in [200, 600)"},
		{"fault bad typed_config bytes", []*hcmv3.HttpFilter{{Name: "f", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: &anypb.Any{TypeUrl: typeURL(&faultv3.HTTPFault{}), Value: []byte{0xff}}}}, routerFilter(t)}, "http_filters[0](f).typed_config: decoding"},
		{"unknown field number", []*hcmv3.HttpFilter{{Name: "f", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: &anypb.Any{TypeUrl: typeURL(&faultv3.HTTPFault{}), Value: []byte{0xf8, 0x06, 0x01}}}}, routerFilter(t)}, "unknown field in envoy.extensions.filters.http.fault.v3.HTTPFault"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(tt.filters, &okRouter{})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Build: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Build error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
	if _, err := Build([]*hcmv3.HttpFilter{routerFilter(t)}, nil); err == nil {
		t.Fatal("Build with a nil router succeeded")
	}
}

func TestChainCallsRouterLast(t *testing.T) {
	rt := &okRouter{}
	h, err := Build([]*hcmv3.HttpFilter{
		httpFilter(t, "envoy.filters.http.fault", &faultv3.HTTPFault{}),
		routerFilter(t),
	}, rt)
	if err != nil {
		t.Fatal(err)
	}
	rec, fl, err := serve(t, h, httptest.NewRequest("GET", "/", nil), nil)
	if err != nil || rec.Code != 200 || rec.Body.String() != "upstream" || rt.count() != 1 || fl != 0 {
		t.Fatalf("got code %d body %q calls %d flags %v err %v", rec.Code, rec.Body, rt.count(), fl, err)
	}
}

func TestContextValues(t *testing.T) {
	ctx := context.Background()
	if _, ok := RouteConfig(ctx, "x"); ok {
		t.Fatal("RouteConfig on an empty context found a value")
	}
	if _, ok := PeerFrom(ctx); ok {
		t.Fatal("PeerFrom on an empty context found a peer")
	}
	AddFlags(ctx, FlagRateLimited) // must not panic without a record

	var fl Flags
	a := mustAny(t, &faultv3.HTTPFault{})
	p := Peer{Principal: "bookinfo.demo.mesh/sa/reviews", Namespace: "bookinfo.demo.mesh", IP: netip.MustParseAddr("127.0.0.1")}
	ctx1 := WithFlags(ctx, &fl)
	ctx2 := WithRouteConfig(ctx1, map[string]*anypb.Any{"f": a})
	ctx3 := WithPeer(ctx2, p)
	if got, ok := RouteConfig(ctx3, "f"); !ok || got != a {
		t.Fatalf("RouteConfig = %v, %v", got, ok)
	}
	if _, ok := RouteConfig(ctx3, "g"); ok {
		t.Fatal("RouteConfig found a missing filter")
	}
	if got, ok := PeerFrom(ctx3); !ok || got != p {
		t.Fatalf("PeerFrom = %v, %v", got, ok)
	}
	if _, ok := PeerFrom(ctx2); ok {
		t.Fatal("WithPeer changed its parent context")
	}
	AddFlags(ctx3, FlagFaultInjected)
	AddFlags(ctx1, FlagDelayInjected)
	if fl != FlagFaultInjected|FlagDelayInjected || FlagsFrom(ctx2) != fl {
		t.Fatalf("flags = %v, want DI,FI shared by derived contexts", fl)
	}
	ctx4 := WithRequest(ctx, nil, &p, nil)
	if got, ok := PeerFrom(ctx4); !ok || got != p {
		t.Fatalf("PeerFrom(WithRequest) = %v, %v", got, ok)
	}
}

func TestFlagsString(t *testing.T) {
	tests := []struct {
		f    Flags
		want string
	}{
		{0, "-"},
		{FlagDelayInjected, "DI"},
		{FlagFaultInjected, "FI"},
		{FlagRateLimited, "RL"},
		{FlagDelayInjected | FlagFaultInjected, "DI,FI"},
		{FlagDelayInjected | FlagRateLimited, "DI,RL"},
		{1 << 20, "?"},
	}
	for _, tt := range tests {
		if got := tt.f.String(); got != tt.want {
			t.Errorf("Flags(%d).String() = %q, want %q", tt.f, got, tt.want)
		}
	}
}

func TestCheckRouteConfig(t *testing.T) {
	good := mustAny(t, &faultv3.HTTPFault{})
	tests := []struct {
		name    string
		cfg     map[string]*anypb.Any
		wantErr string
	}{
		{"empty", nil, ""},
		{"fault", map[string]*anypb.Any{"f": good}, ""},
		{"disabled wrapper", map[string]*anypb.Any{"f": mustAny(t, &routev3.FilterConfig{Disabled: true})}, ""},
		{"wrapper", map[string]*anypb.Any{"f": mustAny(t, &routev3.FilterConfig{Config: good})}, ""},
		{"optional unknown", map[string]*anypb.Any{"f": mustAny(t, &routev3.FilterConfig{Config: mustAny(t, &corev3.Address{}), IsOptional: true})}, ""},
		{"unknown", map[string]*anypb.Any{"lua": mustAny(t, &corev3.Address{})}, `typed_per_filter_config["lua"]: per-route config type "type.googleapis.com/envoy.config.core.v3.Address" is not supported`},
		{"router has none", map[string]*anypb.Any{"r": mustAny(t, &routerv3.Router{})}, "is not supported"},
		{"bad fault", map[string]*anypb.Any{"f": mustAny(t, &faultv3.HTTPFault{Headers: []*routev3.HeaderMatcher{{Name: "a"}}})}, `typed_per_filter_config["f"].headers: not supported`},
		{"bad wrapped fault", map[string]*anypb.Any{"f": mustAny(t, &routev3.FilterConfig{Config: mustAny(t, &faultv3.HTTPFault{UpstreamCluster: "x"})})}, `typed_per_filter_config["f"].config.upstream_cluster: not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckRouteConfig(tt.cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckRouteConfig: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestHandlerFunc checks the adapter passes calls and errors through.
func TestHandlerFunc(t *testing.T) {
	called := false
	h := HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { called = true; return context.Canceled })
	if err := h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil)); err != context.Canceled || !called {
		t.Fatalf("HandlerFunc: called=%v err=%v", called, err)
	}
}
