package filter

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const faultName = "envoy.filters.http.fault"

func pct(num uint32, den typev3.FractionalPercent_DenominatorType) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: num, Denominator: den}
}

func httpAbort(status uint32, p *typev3.FractionalPercent) *faultv3.FaultAbort {
	return &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: status}, Percentage: p}
}

func headerAbort(p *typev3.FractionalPercent) *faultv3.FaultAbort {
	return &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HeaderAbort_{HeaderAbort: &faultv3.FaultAbort_HeaderAbort{}}, Percentage: p}
}

func fixedDelay(d time.Duration, p *typev3.FractionalPercent) *faultcommonv3.FaultDelay {
	return &faultcommonv3.FaultDelay{FaultDelaySecifier: &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(d)}, Percentage: p}
}

func headerDelay(p *typev3.FractionalPercent) *faultcommonv3.FaultDelay {
	return &faultcommonv3.FaultDelay{FaultDelaySecifier: &faultcommonv3.FaultDelay_HeaderDelay_{HeaderDelay: &faultcommonv3.FaultDelay_HeaderDelay{}}, Percentage: p}
}

func buildFaultChain(t *testing.T, cfg *faultv3.HTTPFault, disabled bool, rnd func(uint64) uint64) (Handler, *okRouter) {
	t.Helper()
	hf := httpFilter(t, faultName, cfg)
	hf.Disabled = disabled
	rt := &okRouter{}
	h, err := BuildWithOptions([]*hcmv3.HttpFilter{hf, routerFilter(t)}, rt, Options{Rand: rnd})
	if err != nil {
		t.Fatal(err)
	}
	return h, rt
}

func TestFaultAbort(t *testing.T) {
	const hundred, tenK, million = typev3.FractionalPercent_HUNDRED, typev3.FractionalPercent_TEN_THOUSAND, typev3.FractionalPercent_MILLION
	tests := []struct {
		name      string
		cfg       *faultv3.HTTPFault
		rand      uint64 // the value every draw returns
		headers   map[string]string
		wantCode  int
		wantBody  string
		wantFlags Flags
		wantGRPC  string // grpc-status header, "" for none
	}{
		{"always", &faultv3.HTTPFault{Abort: httpAbort(503, pct(100, hundred))}, 0, nil, 503, faultBody, FlagFaultInjected, ""},
		{"percentage hit", &faultv3.HTTPFault{Abort: httpAbort(500, pct(30, hundred))}, 29, nil, 500, faultBody, FlagFaultInjected, ""},
		{"percentage miss", &faultv3.HTTPFault{Abort: httpAbort(500, pct(30, hundred))}, 30, nil, 200, "upstream", 0, ""},
		{"ten thousand hit", &faultv3.HTTPFault{Abort: httpAbort(500, pct(1, tenK))}, 0, nil, 500, faultBody, FlagFaultInjected, ""},
		{"ten thousand miss", &faultv3.HTTPFault{Abort: httpAbort(500, pct(1, tenK))}, 1, nil, 200, "upstream", 0, ""},
		{"million hit", &faultv3.HTTPFault{Abort: httpAbort(500, pct(999_999, million))}, 999_998, nil, 500, faultBody, FlagFaultInjected, ""},
		{"numerator above denominator is 100%", &faultv3.HTTPFault{Abort: httpAbort(502, pct(200, hundred))}, 99, nil, 502, faultBody, FlagFaultInjected, ""},
		{"no percentage means 0%", &faultv3.HTTPFault{Abort: httpAbort(500, nil)}, 0, nil, 200, "upstream", 0, ""},
		{"custom body", &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 418}, Percentage: pct(100, hundred), ResponseBody: "teapot"}}, 0, nil, 418, "teapot", FlagFaultInjected, ""},
		{"grpc status on grpc request", &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_GrpcStatus{GrpcStatus: 14}, Percentage: pct(100, hundred)}}, 0, map[string]string{"Content-Type": "application/grpc"}, 200, "", FlagFaultInjected, "14"},
		{"http status on grpc request maps", &faultv3.HTTPFault{Abort: httpAbort(503, pct(100, hundred))}, 0, map[string]string{"Content-Type": "application/grpc+proto"}, 200, "", FlagFaultInjected, "14"},
		{"http 403 on grpc maps", &faultv3.HTTPFault{Abort: httpAbort(403, pct(100, hundred))}, 0, map[string]string{"Content-Type": "application/grpc"}, 200, "", FlagFaultInjected, "7"},
		{"header abort", &faultv3.HTTPFault{Abort: headerAbort(pct(100, hundred))}, 0, map[string]string{hdrFaultAbort: "504"}, 504, faultBody, FlagFaultInjected, ""},
		{"header abort absent", &faultv3.HTTPFault{Abort: headerAbort(pct(100, hundred))}, 0, nil, 200, "upstream", 0, ""},
		{"header abort invalid", &faultv3.HTTPFault{Abort: headerAbort(pct(100, hundred))}, 0, map[string]string{hdrFaultAbort: "600"}, 200, "upstream", 0, ""},
		{"header abort not enabled", &faultv3.HTTPFault{Abort: httpAbort(500, pct(0, hundred))}, 0, map[string]string{hdrFaultAbort: "503"}, 200, "upstream", 0, ""},
		{"header grpc abort", &faultv3.HTTPFault{Abort: headerAbort(pct(100, hundred))}, 0, map[string]string{hdrFaultAbortGRPC: "5", "Content-Type": "application/grpc"}, 200, "", FlagFaultInjected, "5"},
		{"header percentage lowers", &faultv3.HTTPFault{Abort: headerAbort(pct(100, hundred))}, 50, map[string]string{hdrFaultAbort: "503", hdrFaultAbortPercent: "50"}, 200, "upstream", 0, ""},
		{"header percentage hit", &faultv3.HTTPFault{Abort: headerAbort(pct(100, hundred))}, 49, map[string]string{hdrFaultAbort: "503", hdrFaultAbortPercent: "50"}, 503, faultBody, FlagFaultInjected, ""},
		{"header percentage capped", &faultv3.HTTPFault{Abort: headerAbort(pct(10, hundred))}, 10, map[string]string{hdrFaultAbort: "503", hdrFaultAbortPercent: "100"}, 200, "upstream", 0, ""},
		{"header percentage invalid keeps config", &faultv3.HTTPFault{Abort: headerAbort(pct(100, hundred))}, 99, map[string]string{hdrFaultAbort: "503", hdrFaultAbortPercent: "x"}, 503, faultBody, FlagFaultInjected, ""},
		{"downstream node match", &faultv3.HTTPFault{Abort: httpAbort(503, pct(100, hundred)), DownstreamNodes: []string{"a", "b"}}, 0, map[string]string{hdrDownstreamNode: "b"}, 503, faultBody, FlagFaultInjected, ""},
		{"downstream node mismatch", &faultv3.HTTPFault{Abort: httpAbort(503, pct(100, hundred)), DownstreamNodes: []string{"a"}}, 0, map[string]string{hdrDownstreamNode: "c"}, 200, "upstream", 0, ""},
		{"max active zero", &faultv3.HTTPFault{Abort: httpAbort(503, pct(100, hundred)), MaxActiveFaults: wrapperspb.UInt32(0)}, 0, nil, 200, "upstream", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, rt := buildFaultChain(t, tt.cfg, false, fixedRand(tt.rand))
			req := httptest.NewRequest("POST", "/x", nil)
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			rec, fl, err := serve(t, h, req, nil)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Code != tt.wantCode || rec.Body.String() != tt.wantBody || fl != tt.wantFlags {
				t.Fatalf("got %d %q flags %v, want %d %q flags %v", rec.Code, rec.Body, fl, tt.wantCode, tt.wantBody, tt.wantFlags)
			}
			if got := rec.Header().Get("Grpc-Status"); got != tt.wantGRPC {
				t.Fatalf("grpc-status = %q, want %q", got, tt.wantGRPC)
			}
			if wantCalls := map[bool]int{true: 1, false: 0}[tt.wantFlags == 0]; rt.count() != wantCalls {
				t.Fatalf("router called %d times, want %d", rt.count(), wantCalls)
			}
		})
	}
}

func TestFaultDelay(t *testing.T) {
	const d = 30 * time.Millisecond
	tests := []struct {
		name      string
		cfg       *faultv3.HTTPFault
		headers   map[string]string
		wantDelay time.Duration
		wantCode  int
		wantFlags Flags
	}{
		{"fixed", &faultv3.HTTPFault{Delay: fixedDelay(d, pct(100, 0))}, nil, d, 200, FlagDelayInjected},
		{"fixed not selected", &faultv3.HTTPFault{Delay: fixedDelay(time.Hour, pct(0, 0))}, nil, 0, 200, 0},
		{"header", &faultv3.HTTPFault{Delay: headerDelay(pct(100, 0))}, map[string]string{hdrFaultDelay: "30"}, d, 200, FlagDelayInjected},
		{"header missing", &faultv3.HTTPFault{Delay: headerDelay(pct(100, 0))}, nil, 0, 200, 0},
		{"header percentage zero", &faultv3.HTTPFault{Delay: headerDelay(pct(100, 0))}, map[string]string{hdrFaultDelay: "3600000", hdrFaultDelayPercent: "0"}, 0, 200, 0},
		{"delay then abort", &faultv3.HTTPFault{Delay: fixedDelay(d, pct(100, 0)), Abort: httpAbort(503, pct(100, 0))}, nil, d, 503, FlagDelayInjected | FlagFaultInjected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := buildFaultChain(t, tt.cfg, false, fixedRand(0))
			req := httptest.NewRequest("GET", "/", nil)
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			start := time.Now()
			rec, fl, err := serve(t, h, req, nil)
			elapsed := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Code != tt.wantCode || fl != tt.wantFlags {
				t.Fatalf("got %d flags %v, want %d flags %v", rec.Code, fl, tt.wantCode, tt.wantFlags)
			}
			if elapsed < tt.wantDelay || (tt.wantDelay == 0 && elapsed > time.Second) {
				t.Fatalf("request took %v, want a delay of %v", elapsed, tt.wantDelay)
			}
		})
	}
}

func TestFaultDelayCancelled(t *testing.T) {
	h, rt := buildFaultChain(t, &faultv3.HTTPFault{Delay: fixedDelay(time.Hour, pct(100, 0))}, false, fixedRand(0))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, fl, err := serve(t, h, httptest.NewRequest("GET", "/", nil).WithContext(ctx), nil)
	if err == nil || rt.count() != 0 || fl != FlagDelayInjected {
		t.Fatalf("cancelled delay: err %v calls %d flags %v", err, rt.count(), fl)
	}
}

// TestFaultMaxActive holds one delayed request open and checks that a second
// one is not faulted while max_active_faults is reached, then is once the
// first one finished.
func TestFaultMaxActive(t *testing.T) {
	cfg := &faultv3.HTTPFault{Delay: fixedDelay(time.Hour, pct(100, 0)), Abort: httpAbort(503, pct(100, 0)), MaxActiveFaults: wrapperspb.UInt32(1)}
	hf := httpFilter(t, faultName, cfg)
	f, err := buildFault(spec{name: faultName, rand: fixedRand(0), now: time.Now}, hf.GetTypedConfig(), "cfg")
	if err != nil {
		t.Fatal(err)
	}
	rt := &okRouter{}
	h := &link{f: f, next: rt}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _, _ = serve(t, h, httptest.NewRequest("GET", "/", nil).WithContext(ctx), nil)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for f.(*fault).active.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("first request never became an active fault")
		}
		time.Sleep(time.Millisecond)
	}
	rec, fl, err := serve(t, h, httptest.NewRequest("GET", "/", nil), nil)
	if err != nil || rec.Code != 200 || fl != 0 {
		t.Fatalf("second request during overflow: %d flags %v err %v", rec.Code, fl, err)
	}
	cancel()
	wg.Wait()
	if n := f.(*fault).active.Load(); n != 0 {
		t.Fatalf("active faults after completion = %d", n)
	}
	// With nothing active, the abort applies again (the delay too, so use a
	// cancelled context to skip it).
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, fl, err := serve(t, h, httptest.NewRequest("GET", "/", nil).WithContext(ctx2), nil); err == nil || fl != FlagDelayInjected {
		t.Fatalf("after overflow: flags %v err %v", fl, err)
	}
}

func TestFaultPerRoute(t *testing.T) {
	listenerCfg := &faultv3.HTTPFault{Abort: httpAbort(500, pct(100, 0))}
	routeCfg := mustAny(t, &faultv3.HTTPFault{Abort: httpAbort(503, pct(100, 0))})
	tests := []struct {
		name     string
		disabled bool // HttpFilter.disabled
		route    map[string]*anypb.Any
		wantCode int
	}{
		{"no route config", false, nil, 500},
		{"other filter's config", false, map[string]*anypb.Any{"other": routeCfg}, 500},
		{"override", false, map[string]*anypb.Any{faultName: routeCfg}, 503},
		{"wrapped override", false, map[string]*anypb.Any{faultName: mustAny(t, &routev3.FilterConfig{Config: routeCfg})}, 503},
		{"disabled on route", false, map[string]*anypb.Any{faultName: mustAny(t, &routev3.FilterConfig{Disabled: true})}, 200},
		{"disabled by default", true, nil, 200},
		{"enabled by route", true, map[string]*anypb.Any{faultName: mustAny(t, &routev3.FilterConfig{})}, 500},
		{"enabled by route with config", true, map[string]*anypb.Any{faultName: routeCfg}, 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := buildFaultChain(t, listenerCfg, tt.disabled, fixedRand(0))
			rec, _, err := serve(t, h, httptest.NewRequest("GET", "/", nil), tt.route)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Code != tt.wantCode {
				t.Fatalf("code = %d, want %d", rec.Code, tt.wantCode)
			}
		})
	}
	// A bad per-route value is an error at request time (CheckRouteConfig
	// catches it at config time).
	h, _ := buildFaultChain(t, listenerCfg, false, fixedRand(0))
	bad := map[string]*anypb.Any{faultName: mustAny(t, &faultv3.HTTPFault{UpstreamCluster: "c"})}
	if _, _, err := serve(t, h, httptest.NewRequest("GET", "/", nil), bad); err == nil {
		t.Fatal("bad per-route config accepted")
	}
}

// TestFaultPercentageStatistics runs the production random source over many
// requests and checks the aborted fraction is within tolerance.
func TestFaultPercentageStatistics(t *testing.T) {
	h, _ := buildFaultChain(t, &faultv3.HTTPFault{Abort: httpAbort(503, pct(2500, typev3.FractionalPercent_TEN_THOUSAND))}, false, nil)
	const n = 4000
	aborted := 0
	for range n {
		rec, _, _ := serve(t, h, httptest.NewRequest("GET", "/", nil), nil)
		if rec.Code == 503 {
			aborted++
		}
	}
	// 25% of 4000 = 1000, sd ~27; allow 6 sd.
	if aborted < 840 || aborted > 1160 {
		t.Fatalf("aborted %d of %d, want about 1000", aborted, n)
	}
}

func TestParseFaultHeaders(t *testing.T) {
	for _, tt := range []struct {
		v    string
		want int
		ok   bool
	}{{"200", 200, true}, {"599", 599, true}, {"199", 0, false}, {"600", 0, false}, {"", 0, false}, {"-1", 0, false}, {"+500", 0, false}, {"5 0", 0, false}, {"0500", 500, true}, {"9999999999", 0, false}} {
		if got, ok := parseFaultAbortStatus(tt.v); got != tt.want || ok != tt.ok {
			t.Errorf("parseFaultAbortStatus(%q) = %d, %v; want %d, %v", tt.v, got, ok, tt.want, tt.ok)
		}
	}
	if d, ok := parseFaultDelay("1500"); !ok || d != 1500*time.Millisecond {
		t.Errorf("parseFaultDelay(1500) = %v, %v", d, ok)
	}
	if _, ok := parseFaultGRPCStatus("x"); ok {
		t.Error("parseFaultGRPCStatus accepted x")
	}
}

// FuzzFaultHeaders checks that no header value makes the fault filter
// misbehave: aborts only with a status in [200, 600), a percentage never
// above the configured one, no panic.
func FuzzFaultHeaders(f *testing.F) {
	f.Add("503", "", "50", "100", "25")
	f.Add("", "14", "", "", "")
	f.Add("200", "0", "999999999", "0", "100")
	f.Add("abc", "-1", "1e3", " 10", "0x10")
	f.Add("5999999999999", "99999999999", "00000000001", "4294967296", "18446744073709551616")
	cfg := &faultConfig{
		abort: &faultAbort{header: true, grpcStatus: -1, pct: percent{num: 40, den: 100}, body: faultBody},
		delay: &faultDelay{header: true, pct: percent{num: 40, den: 100}},
	}
	f.Fuzz(func(t *testing.T, abortV, grpcV, abortPct, delayV, delayPct string) {
		r := &http.Request{Header: http.Header{}}
		r.Header.Set(hdrFaultAbort, abortV)
		r.Header.Set(hdrFaultAbortGRPC, grpcV)
		r.Header.Set(hdrFaultAbortPercent, abortPct)
		r.Header.Set(hdrFaultDelay, delayV)
		r.Header.Set(hdrFaultDelayPercent, delayPct)
		if p := headerPercent(cfg.abort.pct, abortPct); p.num > cfg.abort.pct.num || p.den != cfg.abort.pct.den {
			t.Fatalf("header percentage %q gave %v, above the configured %v", abortPct, p, cfg.abort.pct)
		}
		draws := 0
		always := func(n uint64) uint64 { draws++; return 0 }
		if hs, gs, ok := cfg.abortFor(r, always); ok {
			if hs < 200 || hs >= 600 {
				t.Fatalf("abort with HTTP status %d from %q", hs, abortV)
			}
			if gs < -1 {
				t.Fatalf("abort with gRPC status %d from %q", gs, grpcV)
			}
		}
		if d, ok := cfg.delayFor(r, always); ok && (d <= 0 || d > 999_999_999*time.Millisecond) {
			t.Fatalf("delay %v from %q", d, delayV)
		}
		if n, err := strconv.ParseUint(abortV, 10, 64); err == nil && n >= 200 && n < 600 && len(abortV) <= 9 {
			if _, ok := parseFaultAbortStatus(abortV); !ok {
				t.Fatalf("valid status %q rejected", abortV)
			}
		}
	})
}
