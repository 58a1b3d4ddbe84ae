package proxy

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"canton.dev/canton/internal/proxy/xdsclient"
)

// twoClusters configures clusters a and b with one upstream each and the given routes on listener "l".
func twoClusters(t *testing.T, e *env, rc *routev3.RouteConfiguration, ua, ub *upstream, mod func(*clusterv3.Cluster)) string {
	t.Helper()
	e.set(xdsclient.ClusterType, "1", edsCluster("a", mod), edsCluster("b", mod))
	e.set(xdsclient.EndpointType, "1", endpoints(t, "a", ua.Addr()), endpoints(t, "b", ub.Addr()))
	e.set(xdsclient.RouteType, "1", rc)
	e.set(xdsclient.ListenerType, "1", httpListener(t, "l", rc.GetName(), nil))
	e.waitACK(xdsclient.EndpointType, "1")
	e.waitACK(xdsclient.RouteType, "1")
	return e.listenerAddr("l")
}

func TestHeaderRoutingRewritesAndHeaderMutation(t *testing.T) {
	ua, ub := startUpstream(t, "a", nil), startUpstream(t, "b", nil)
	e := startEnv(t)
	rc := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"shop.test"},
		ResponseHeadersToAdd: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-vh", Value: "1"}}},
		Routes: []*routev3.Route{
			{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{{Name: "x-version",
				HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "v2"}}}}}},
				Action: routeTo("b")},
			{Match: prefixMatch("/api/"), Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "a"}, PrefixRewrite: "/v1/",
				HostRewriteSpecifier: &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "internal.a"}}},
				RequestHeadersToAdd:    []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-added", Value: "yes"}}},
				RequestHeadersToRemove: []string{"x-secret"}},
			{Match: prefixMatch("/old"), Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
				PathRewriteSpecifier: &routev3.RedirectAction_PathRedirect{PathRedirect: "/new"}, ResponseCode: routev3.RedirectAction_FOUND}}},
			{Match: prefixMatch("/direct"), Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 418,
				Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "teapot"}}}}},
		}}}}
	addr := twoClusters(t, e, rc, ua, ub, nil)
	c := client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	if resp, body := get(t, c, addr, "shop.test", "/x", "X-Version", "v2"); body != "b /x" || resp.Header.Get("X-Vh") != "1" {
		t.Errorf("header route: %q x-vh=%q", body, resp.Header.Get("X-Vh"))
	}
	_, body := get(t, c, addr, "shop.test", "/api/items?q=1", "X-Secret", "s")
	if body != "a /v1/items?q=1" {
		t.Errorf("prefix rewrite: got %q", body)
	}
	r := ua.last.Load()
	if r.Host != "internal.a" || r.Header.Get("X-Added") != "yes" || r.Header.Get("X-Secret") != "" {
		t.Errorf("upstream saw host %q x-added %q x-secret %q", r.Host, r.Header.Get("X-Added"), r.Header.Get("X-Secret"))
	}
	if resp, _ := get(t, c, addr, "shop.test", "/old?k=v"); resp.StatusCode != 302 || resp.Header.Get("Location") != "http://shop.test/new?k=v" {
		t.Errorf("redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, body := get(t, c, addr, "shop.test", "/direct"); resp.StatusCode != 418 || body != "teapot" {
		t.Errorf("direct response: %d %q", resp.StatusCode, body)
	}
	if resp, _ := get(t, c, addr, "other.test", "/"); resp.StatusCode != 404 {
		t.Errorf("unknown host: %d, want 404", resp.StatusCode)
	}
}

func TestWeightedSplitEndToEnd(t *testing.T) {
	ua, ub := startUpstream(t, "a", nil), startUpstream(t, "b", nil)
	e := startEnv(t)
	rc := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"},
		Routes: []*routev3.Route{{Match: prefixMatch("/"), Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
				{Name: "a", Weight: wrapperspb.UInt32(70)}, {Name: "b", Weight: wrapperspb.UInt32(30)}}}}}}}}}}}
	addr := twoClusters(t, e, rc, ua, ub, nil)
	c := client()
	const n = 1000
	for i := 0; i < n; i++ {
		if resp, _ := get(t, c, addr, "x", "/"); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	// 70% of 1000: standard deviation ~14.5; allow 4 sigma.
	if a := ua.count.Load(); a < 640 || a > 760 {
		t.Errorf("cluster a got %d of %d requests, want 700 +- 60", a, n)
	}
}

func retryRoute(policy *routev3.RetryPolicy, timeout time.Duration) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"},
		Routes: []*routev3.Route{{Match: prefixMatch("/"), Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "a"}, RetryPolicy: policy, Timeout: durationpb.New(timeout)}}}}}}}
}

func TestRetryRecoversFromFailedFirstAttempt(t *testing.T) {
	var calls atomic.Int64
	ua := startUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if calls.Add(1) == 1 {
			w.WriteHeader(503)
			return
		}
		fmt.Fprintf(w, "ok %s", body)
	})
	ub := startUpstream(t, "b", nil)
	e := startEnv(t)
	addr := twoClusters(t, e, retryRoute(&routev3.RetryPolicy{RetryOn: "5xx", NumRetries: wrapperspb.UInt32(2),
		RetryBackOff: &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(time.Millisecond)}}, 5*time.Second), ua, ub, nil)
	resp, err := client().Post("http://"+addr+"/p", "text/plain", strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok payload" || calls.Load() != 2 {
		t.Errorf("got %d %q after %d upstream calls, want 200 %q after 2", resp.StatusCode, body, calls.Load(), "ok payload")
	}
}

func TestPerTryTimeoutRetriesAndRouteTimeout(t *testing.T) {
	var calls atomic.Int64
	release := make(chan struct{})
	ua := startUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 || r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		fmt.Fprint(w, "fast")
	})
	defer close(release)
	ub := startUpstream(t, "b", nil)
	e := startEnv(t)
	addr := twoClusters(t, e, retryRoute(&routev3.RetryPolicy{RetryOn: "5xx", NumRetries: wrapperspb.UInt32(1),
		PerTryTimeout: durationpb.New(100 * time.Millisecond),
		RetryBackOff:  &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(time.Millisecond)}}, 2*time.Second), ua, ub, nil)
	c := client()
	start := time.Now()
	if resp, body := get(t, c, addr, "x", "/"); resp.StatusCode != 200 || body != "fast" {
		t.Errorf("got %d %q, want the retried fast answer", resp.StatusCode, body)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v; the per-try timeout should cut the first attempt at 100ms", d)
	}
	// Every attempt times out: 504 after the retries.
	if resp, _ := get(t, c, addr, "x", "/slow"); resp.StatusCode != 504 {
		t.Errorf("slow: %d, want 504", resp.StatusCode)
	}
}

func TestCircuitBreakerOverflow(t *testing.T) {
	entered := make(chan struct{}, 10)
	release := make(chan struct{})
	ua := startUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		fmt.Fprint(w, "done")
	})
	ub := startUpstream(t, "b", nil)
	e := startEnv(t)
	addr := twoClusters(t, e, simpleRoutes("r", "a"), ua, ub, func(c *clusterv3.Cluster) {
		c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{MaxRequests: wrapperspb.UInt32(1)}}}
	})
	c := client()
	first := make(chan int, 1)
	go func() {
		resp, _ := get(t, c, addr, "x", "/")
		first <- resp.StatusCode
	}()
	<-entered
	resp, body := get(t, c, addr, "x", "/")
	close(release)
	if resp.StatusCode != 503 || resp.Header.Get("X-Envoy-Overloaded") != "true" {
		t.Errorf("overflow: %d %q overloaded=%q, want 503 with x-envoy-overloaded", resp.StatusCode, body, resp.Header.Get("X-Envoy-Overloaded"))
	}
	if s := <-first; s != 200 {
		t.Errorf("first request: %d", s)
	}
	_, metrics := get(t, c, e.p.AdminAddr(), "admin", "/stats/prometheus")
	if !strings.Contains(metrics, `response_flags="UO"`) {
		t.Errorf("no istio_requests_total with response_flags=UO in metrics")
	}
}

func TestOutlierEjectionAndReturn(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	bad := startUpstream(t, "bad", func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(500)
			return
		}
		fmt.Fprint(w, "bad-recovered")
	})
	good := startUpstream(t, "good", nil)
	e := startEnv(t)
	e.set(xdsclient.ClusterType, "1", edsCluster("c", func(c *clusterv3.Cluster) {
		c.OutlierDetection = &clusterv3.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(2), Interval: durationpb.New(20 * time.Millisecond),
			BaseEjectionTime: durationpb.New(300 * time.Millisecond), MaxEjectionPercent: wrapperspb.UInt32(50)}
	}))
	e.set(xdsclient.EndpointType, "1", endpoints(t, "c", bad.Addr(), good.Addr()))
	e.set(xdsclient.RouteType, "1", simpleRoutes("r", "c"))
	e.set(xdsclient.ListenerType, "1", httpListener(t, "l", "r", nil))
	e.waitACK(xdsclient.EndpointType, "1")
	addr := e.listenerAddr("l")
	c := client()
	for i := 0; i < 6; i++ {
		get(t, c, addr, "x", "/")
	}
	_, dump := get(t, c, e.p.AdminAddr(), "admin", "/clusters")
	if !strings.Contains(dump, bad.Addr()+"::health_flags::/failed_outlier_check") {
		t.Fatalf("bad endpoint not ejected:\n%s", dump)
	}
	before := bad.count.Load()
	for i := 0; i < 20; i++ {
		if resp, _ := get(t, c, addr, "x", "/"); resp.StatusCode != 200 {
			t.Fatalf("request %d while ejected: %d", i, resp.StatusCode)
		}
	}
	if bad.count.Load() != before {
		t.Errorf("ejected endpoint got %d requests", bad.count.Load()-before)
	}
	failing.Store(false)
	waitUntil(t, "ejected endpoint returns", func() bool {
		_, body := get(t, c, addr, "x", "/")
		return body == "bad-recovered"
	})
}

func TestMirroringSendsShadowCopies(t *testing.T) {
	var mu sync.Mutex
	var hosts []string
	shadow := startUpstream(t, "shadow", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hosts = append(hosts, r.Host)
		mu.Unlock()
		w.WriteHeader(500) // ignored: mirror responses are discarded
	})
	ua := startUpstream(t, "a", nil)
	e := startEnv(t)
	rc := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"},
		Routes: []*routev3.Route{{Match: prefixMatch("/"), Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "a"},
			RequestMirrorPolicies: []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: "b",
				RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 100}}}}}}}}}}}
	addr := twoClusters(t, e, rc, ua, shadow, nil)
	c := client()
	for i := 0; i < 5; i++ {
		if resp, body := get(t, c, addr, "svc.test:8080", "/m"); resp.StatusCode != 200 || body != "a /m" {
			t.Fatalf("primary answer: %d %q", resp.StatusCode, body)
		}
	}
	waitUntil(t, "5 mirrored requests", func() bool { return shadow.count.Load() == 5 })
	mu.Lock()
	defer mu.Unlock()
	if hosts[0] != "svc.test-shadow:8080" {
		t.Errorf("mirror host = %q, want svc.test-shadow:8080", hosts[0])
	}
}
