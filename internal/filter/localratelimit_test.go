package filter

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	lrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const rlName = "envoy.filters.http.local_ratelimit"

func runtimePct(num uint32) *corev3.RuntimeFractionalPercent {
	return &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: num}, RuntimeKey: "rl_enabled"}
}

func bucket(max, perFill uint32, every time.Duration) *typev3.TokenBucket {
	return &typev3.TokenBucket{MaxTokens: max, TokensPerFill: wrapperspb.UInt32(perFill), FillInterval: durationpb.New(every)}
}

func rlConfig(mut func(*lrlv3.LocalRateLimit)) *lrlv3.LocalRateLimit {
	c := &lrlv3.LocalRateLimit{
		StatPrefix:     "http_local_rate_limiter",
		TokenBucket:    bucket(2, 1, time.Second),
		FilterEnabled:  runtimePct(100),
		FilterEnforced: runtimePct(100),
	}
	if mut != nil {
		mut(c)
	}
	return c
}

func buildRLChain(t *testing.T, cfg *lrlv3.LocalRateLimit, clock *fakeClock, rnd func(uint64) uint64) (Handler, *okRouter) {
	t.Helper()
	rt := &okRouter{}
	h, err := BuildWithOptions([]*hcmv3.HttpFilter{httpFilter(t, rlName, cfg), routerFilter(t)}, rt, Options{Rand: rnd, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return h, rt
}

// step is one request of a rate-limit scenario.
type step struct {
	advance   time.Duration
	wantCode  int
	wantFlags Flags
	wantHdr   map[string]string // response headers that must have these values ("" = absent)
}

func TestLocalRateLimit(t *testing.T) {
	tests := []struct {
		name  string
		cfg   *lrlv3.LocalRateLimit
		rand  uint64
		steps []step
	}{
		{"bucket empties and refills", rlConfig(nil), 0, []step{
			{0, 200, 0, nil}, {0, 200, 0, nil}, {0, 429, FlagRateLimited, nil},
			{999 * time.Millisecond, 429, FlagRateLimited, nil},
			{time.Millisecond, 200, 0, nil}, {0, 429, FlagRateLimited, nil},
			{time.Hour, 200, 0, nil}, {0, 200, 0, nil}, {0, 429, FlagRateLimited, nil},
		}},
		{"tokens per fill", rlConfig(func(c *lrlv3.LocalRateLimit) { c.TokenBucket = bucket(3, 2, time.Second) }), 0, []step{
			{0, 200, 0, nil}, {0, 200, 0, nil}, {0, 200, 0, nil}, {0, 429, FlagRateLimited, nil},
			{time.Second, 200, 0, nil}, {0, 200, 0, nil}, {0, 429, FlagRateLimited, nil},
		}},
		{"custom status and headers", rlConfig(func(c *lrlv3.LocalRateLimit) {
			c.TokenBucket = bucket(1, 1, 10*time.Second)
			c.Status = &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable}
			c.ResponseHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-local-rate-limit", Value: "true"}}}
			c.EnableRetryAfterHeader = true
		}), 0, []step{
			{0, 200, 0, map[string]string{"X-Local-Rate-Limit": "", "Retry-After": ""}},
			{4 * time.Second, 503, FlagRateLimited, map[string]string{"X-Local-Rate-Limit": "true", "Retry-After": "6"}},
		}},
		{"x-ratelimit headers", rlConfig(func(c *lrlv3.LocalRateLimit) {
			c.EnableXRatelimitHeaders = ratelimitv3.XRateLimitHeadersRFCVersion_DRAFT_VERSION_03
			c.TokenBucket = bucket(2, 1, 60*time.Second)
		}), 0, []step{
			{0, 200, 0, map[string]string{hdrRateLimitLimit: "2", hdrRateLimitRemaining: "1", hdrRateLimitReset: "60"}},
			{1500 * time.Millisecond, 200, 0, map[string]string{hdrRateLimitRemaining: "0", hdrRateLimitReset: "59"}},
			{0, 429, FlagRateLimited, map[string]string{hdrRateLimitRemaining: "0", hdrRateLimitReset: "59"}},
		}},
		{"not enabled by default", rlConfig(func(c *lrlv3.LocalRateLimit) { c.FilterEnabled = nil }), 0, []step{
			{0, 200, 0, nil}, {0, 200, 0, nil}, {0, 200, 0, nil},
		}},
		{"enabled fraction miss", rlConfig(func(c *lrlv3.LocalRateLimit) { c.FilterEnabled = runtimePct(50) }), 50, []step{
			{0, 200, 0, nil}, {0, 200, 0, nil}, {0, 200, 0, nil},
		}},
		{"not enforced", rlConfig(func(c *lrlv3.LocalRateLimit) { c.FilterEnforced = nil }), 0, []step{
			{0, 200, 0, nil}, {0, 200, 0, nil}, {0, 200, 0, nil},
		}},
		{"no bucket", rlConfig(func(c *lrlv3.LocalRateLimit) { c.TokenBucket = nil }), 0, []step{
			{0, 200, 0, nil}, {0, 200, 0, nil}, {0, 200, 0, nil},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			h, _ := buildRLChain(t, tt.cfg, clock, fixedRand(tt.rand))
			for i, s := range tt.steps {
				clock.Advance(s.advance)
				rec, fl, err := serve(t, h, httptest.NewRequest("GET", "/", nil), nil)
				if err != nil {
					t.Fatal(err)
				}
				if rec.Code != s.wantCode || fl != s.wantFlags {
					t.Fatalf("step %d: got %d flags %v, want %d flags %v", i, rec.Code, fl, s.wantCode, s.wantFlags)
				}
				if s.wantCode == 429 && rec.Body.String() != rateLimitedBody {
					t.Fatalf("step %d: body %q", i, rec.Body)
				}
				for k, v := range s.wantHdr {
					if got := rec.Header().Get(k); got != v {
						t.Fatalf("step %d: header %s = %q, want %q", i, k, got, v)
					}
				}
			}
		})
	}
}

func TestLocalRateLimitNotEnforcedAddsRequestHeaders(t *testing.T) {
	cfg := rlConfig(func(c *lrlv3.LocalRateLimit) {
		c.TokenBucket = bucket(1, 1, time.Second)
		c.FilterEnforced = runtimePct(0)
		c.RequestHeadersToAddWhenNotEnforced = []*corev3.HeaderValueOption{{
			Header:       &corev3.HeaderValue{Key: "x-rate-limited", Value: "shadow"},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}}
	})
	h, rt := buildRLChain(t, cfg, newFakeClock(), fixedRand(0))
	serve(t, h, httptest.NewRequest("GET", "/", nil), nil)
	if got := rt.last.Header.Get("X-Rate-Limited"); got != "" {
		t.Fatalf("header added while under the limit: %q", got)
	}
	rec, fl, _ := serve(t, h, httptest.NewRequest("GET", "/", nil), nil)
	if rec.Code != 200 || fl != 0 || rt.last.Header.Get("X-Rate-Limited") != "shadow" {
		t.Fatalf("over the limit, not enforced: %d flags %v header %q", rec.Code, fl, rt.last.Header.Get("X-Rate-Limited"))
	}
}

func TestLocalRateLimitGRPC(t *testing.T) {
	for _, tt := range []struct {
		exhausted bool
		want      string
	}{{false, "14"}, {true, "8"}} {
		cfg := rlConfig(func(c *lrlv3.LocalRateLimit) {
			c.TokenBucket = bucket(1, 1, time.Second)
			c.RateLimitedAsResourceExhausted = tt.exhausted
		})
		h, _ := buildRLChain(t, cfg, newFakeClock(), fixedRand(0))
		req := func() *httptest.ResponseRecorder {
			r := httptest.NewRequest("POST", "/pkg.Svc/Method", nil)
			r.Header.Set("Content-Type", "application/grpc")
			rec, _, _ := serve(t, h, r, nil)
			return rec
		}
		req()
		rec := req()
		if rec.Code != 200 || rec.Header().Get("Grpc-Status") != tt.want || rec.Header().Get("Grpc-Message") != rateLimitedBody {
			t.Fatalf("exhausted=%v: %d grpc-status %q message %q", tt.exhausted, rec.Code, rec.Header().Get("Grpc-Status"), rec.Header().Get("Grpc-Message"))
		}
	}
}

// TestLocalRateLimitPerRoute checks that routes with their own config get
// their own bucket, shared by every request of that route, and that the
// listener bucket is untouched by them.
func TestLocalRateLimitPerRoute(t *testing.T) {
	clock := newFakeClock()
	h, _ := buildRLChain(t, rlConfig(func(c *lrlv3.LocalRateLimit) { c.TokenBucket = bucket(1, 1, time.Hour) }), clock, fixedRand(0))
	routeA := map[string]*anypb.Any{rlName: mustAny(t, rlConfig(func(c *lrlv3.LocalRateLimit) { c.TokenBucket = bucket(2, 1, time.Hour) }))}
	routeB := map[string]*anypb.Any{rlName: mustAny(t, rlConfig(func(c *lrlv3.LocalRateLimit) { c.TokenBucket = bucket(1, 1, time.Hour) }))}
	want := []struct {
		route map[string]*anypb.Any
		code  int
	}{
		{routeA, 200}, {routeB, 200}, {nil, 200}, {routeA, 200}, {routeA, 429}, {routeB, 429}, {nil, 429},
	}
	for i, w := range want {
		rec, _, err := serve(t, h, httptest.NewRequest("GET", "/", nil), w.route)
		if err != nil || rec.Code != w.code {
			t.Fatalf("request %d: %d (err %v), want %d", i, rec.Code, err, w.code)
		}
	}
}

func TestLocalRateLimitConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		cfg     *lrlv3.LocalRateLimit
		wantErr string
	}{
		{"no stat prefix", rlConfig(func(c *lrlv3.LocalRateLimit) { c.StatPrefix = "" }), "typed_config.stat_prefix: required"},
		{"zero tokens", rlConfig(func(c *lrlv3.LocalRateLimit) { c.TokenBucket.MaxTokens = 0 }), "token_bucket.max_tokens: must be greater than 0"},
		{"zero per fill", rlConfig(func(c *lrlv3.LocalRateLimit) { c.TokenBucket.TokensPerFill = wrapperspb.UInt32(0) }), "token_bucket.tokens_per_fill: must be greater than 0"},
		{"no interval", rlConfig(func(c *lrlv3.LocalRateLimit) { c.TokenBucket.FillInterval = nil }), "token_bucket.fill_interval: required"},
		{"short interval", rlConfig(func(c *lrlv3.LocalRateLimit) { c.TokenBucket.FillInterval = durationpb.New(time.Millisecond) }), "below the minimum"},
		{"descriptors", rlConfig(func(c *lrlv3.LocalRateLimit) {
			c.Descriptors = []*ratelimitv3.LocalRateLimitDescriptor{{}}
		}), "typed_config.descriptors: not supported"},
		{"stage", rlConfig(func(c *lrlv3.LocalRateLimit) { c.Stage = 1 }), "typed_config.stage: not supported"},
		{"status", rlConfig(func(c *lrlv3.LocalRateLimit) { c.Status = &typev3.HttpStatus{Code: 99} }), "status.code: 99"},
		{"bad header", rlConfig(func(c *lrlv3.LocalRateLimit) {
			c.ResponseHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "bad key", Value: "v"}}}
		}), "response_headers_to_add[0].header.key"},
		{"header substitution", rlConfig(func(c *lrlv3.LocalRateLimit) {
			c.ResponseHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "k", Value: "%START_TIME%"}}}
		}), "response_headers_to_add[0].header.value: %COMMAND% substitution"},
		{"enabled without default", rlConfig(func(c *lrlv3.LocalRateLimit) { c.FilterEnabled = &corev3.RuntimeFractionalPercent{RuntimeKey: "k"} }), "filter_enabled.default_value: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build([]*hcmv3.HttpFilter{httpFilter(t, rlName, tt.cfg), routerFilter(t)}, &okRouter{})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "http_filters[0]("+rlName+").typed_config") {
				t.Fatalf("error %q does not name the filter", err)
			}
		})
	}
	if _, err := Build([]*hcmv3.HttpFilter{{Name: rlName}, routerFilter(t)}, &okRouter{}); err == nil {
		t.Fatal("local_ratelimit without typed_config accepted")
	}
}

func TestTokenBucketClockBackwards(t *testing.T) {
	b := &tokenBucket{max: 1, perFill: 1, interval: time.Second}
	now := time.Unix(100, 0)
	if ok, _, _ := b.take(now); !ok {
		t.Fatal("first take failed")
	}
	if ok, _, reset := b.take(now.Add(-time.Hour)); ok || reset != time.Second {
		t.Fatalf("take after the clock went back: ok=%v reset=%v", ok, reset)
	}
	if ok, _, _ := b.take(now.Add(-time.Hour + time.Second)); !ok {
		t.Fatal("bucket did not refill one interval after the clock went back")
	}
}
