package proxy

import (
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	commonfaultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	lrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"canton.dev/canton/internal/proxy/xdsclient"
	"canton.dev/canton/internal/telemetry"
)

// filterEnv is a proxy with one HTTP listener whose filter chain is filters + the router, routing
// every path to an upstream that answers 200 "a <path>"; routes may carry per-filter configs.
func filterEnv(t *testing.T, filters []*hcmv3.HttpFilter, routes []*routev3.Route) (addr string, logs *syncBuffer) {
	t.Helper()
	up := startUpstream(t, "a", nil)
	logs = &syncBuffer{}
	alog, err := telemetry.NewAccessLog(logs, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := startEnv(t, func(o *Options) { o.AccessLog = alog })
	e.set(xdsclient.ClusterType, "1", edsCluster("c", nil))
	e.set(xdsclient.EndpointType, "1", endpoints(t, "c", up.Addr()))
	e.set(xdsclient.RouteType, "1", &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: routes}}})
	e.set(xdsclient.ListenerType, "1", httpListener(t, "l", "r", func(h *hcmv3.HttpConnectionManager) {
		h.HttpFilters = append(filters, h.HttpFilters...)
	}))
	e.waitACK(xdsclient.RouteType, "1")
	e.waitACK(xdsclient.EndpointType, "1")
	return e.listenerAddr("l"), logs
}

func httpFilter(t *testing.T, name string, cfg proto.Message) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, cfg)}}
}

// A local rate limit on the listener answers 429 with the rate-limit headers once the bucket is
// empty, flags RL in the access log, and a route with its own bucket is limited separately.
func TestLocalRateLimitThroughProxy(t *testing.T) {
	bucket := func(n uint32) *typev3.TokenBucket {
		return &typev3.TokenBucket{MaxTokens: n, TokensPerFill: wrapperspb.UInt32(n), FillInterval: durationpb.New(time.Hour)}
	}
	always := &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 100}}
	listenerLimit := &lrlv3.LocalRateLimit{StatPrefix: "rl", TokenBucket: bucket(5), FilterEnabled: always, FilterEnforced: always,
		EnableXRatelimitHeaders: ratelimitv3.XRateLimitHeadersRFCVersion_DRAFT_VERSION_03}
	routeLimit := &lrlv3.LocalRateLimit{StatPrefix: "rl", TokenBucket: bucket(2), FilterEnabled: always, FilterEnforced: always}
	addr, logs := filterEnv(t, []*hcmv3.HttpFilter{httpFilter(t, "envoy.filters.http.local_ratelimit", listenerLimit)},
		[]*routev3.Route{
			{Name: "narrow", Match: prefixMatch("/narrow"), Action: routeTo("c"),
				TypedPerFilterConfig: map[string]*anypb.Any{"envoy.filters.http.local_ratelimit": mustAny(t, routeLimit)}},
			{Name: "all", Match: prefixMatch("/"), Action: routeTo("c")},
		})
	c := client()
	codes := map[int]int{}
	var limited *http.Response
	for i := 0; i < 8; i++ {
		resp, _ := get(t, c, addr, "x", "/wide")
		codes[resp.StatusCode]++
		if resp.StatusCode == http.StatusTooManyRequests {
			limited = resp
		}
	}
	if codes[200] != 5 || codes[429] != 3 {
		t.Fatalf("listener bucket of 5, 8 requests: %v, want 5×200 and 3×429", codes)
	}
	if limited.Header.Get("X-Ratelimit-Limit") == "" || limited.Header.Get("X-Ratelimit-Remaining") != "0" {
		t.Errorf("429 headers %v, want X-RateLimit-Limit and X-RateLimit-Remaining: 0", limited.Header)
	}
	narrow := map[int]int{}
	for i := 0; i < 4; i++ {
		resp, _ := get(t, c, addr, "x", "/narrow")
		narrow[resp.StatusCode]++
	}
	if narrow[200] != 2 || narrow[429] != 2 {
		t.Errorf("route bucket of 2, 4 requests: %v, want 2×200 and 2×429", narrow)
	}
	waitUntil(t, "12 access log lines", func() bool { return strings.Count(logs.String(), "\n") >= 12 })
	rl := 0
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		if m["response_code"] == float64(429) && m["response_flags"] == "RL" {
			rl++
		}
	}
	if rl != 5 {
		t.Errorf("%d access log entries with 429 RL, want 5", rl)
	}
}

// Fault injection by percentage through the proxy: an abort of 30 % and a delay of 50 % over 1,000
// requests land within binomial tolerance (±5 standard deviations), flagged FI and DI.
func TestFaultPercentagesThroughProxy(t *testing.T) {
	fault := &faultv3.HTTPFault{
		Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 503},
			Percentage: &typev3.FractionalPercent{Numerator: 30, Denominator: typev3.FractionalPercent_HUNDRED}},
		Delay: &commonfaultv3.FaultDelay{FaultDelaySecifier: &commonfaultv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(time.Millisecond)},
			Percentage: &typev3.FractionalPercent{Numerator: 500_000, Denominator: typev3.FractionalPercent_MILLION}},
	}
	addr, logs := filterEnv(t, []*hcmv3.HttpFilter{httpFilter(t, "envoy.filters.http.fault", fault)},
		[]*routev3.Route{{Name: "all", Match: prefixMatch("/"), Action: routeTo("c")}})
	const n = 1000
	c := client()
	aborted := 0
	for i := 0; i < n; i++ {
		resp, body := get(t, c, addr, "x", "/")
		switch {
		case resp.StatusCode == 503:
			aborted++
		case resp.StatusCode != 200 || body != "a /":
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	within := func(got int, p float64) bool {
		mean, sd := n*p, math.Sqrt(n*p*(1-p))
		return float64(got) >= mean-5*sd && float64(got) <= mean+5*sd
	}
	if !within(aborted, 0.3) {
		t.Errorf("%d of %d aborted, want about 30 %%", aborted, n)
	}
	waitUntil(t, "an access log line per request", func() bool { return strings.Count(logs.String(), "\n") >= n })
	delayed := 0
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		if f, _ := m["response_flags"].(string); strings.Contains(f, "DI") {
			delayed++
		}
	}
	if !within(delayed, 0.5) {
		t.Errorf("%d of %d delayed, want about 50 %%", delayed, n)
	}
}
