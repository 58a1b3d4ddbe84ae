package proxy

import (
	"net/http"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"canton.dev/canton/internal/proxy/xdsclient"
)

// With the previous_hosts retry predicate a retry never lands on the host that just failed (Istio
// sets it by default); without it, a random balancer sends about half the retries back there.
func TestRetryAvoidsPreviousHosts(t *testing.T) {
	bad := startUpstream(t, "bad", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	good := startUpstream(t, "good", nil)
	retry := func(predicate bool) *routev3.RetryPolicy {
		rp := &routev3.RetryPolicy{RetryOn: "5xx", NumRetries: wrapperspb.UInt32(1)}
		if predicate {
			rp.RetryHostPredicate = []*routev3.RetryPolicy_RetryHostPredicate{{Name: "envoy.retry_host_predicates.previous_hosts",
				ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: mustAny(t, &previoushostsv3.PreviousHostsPredicate{})}}}
		}
		return rp
	}
	e := startEnv(t)
	e.set(xdsclient.ClusterType, "1", edsCluster("c", func(c *clusterv3.Cluster) { c.LbPolicy = clusterv3.Cluster_RANDOM }))
	e.set(xdsclient.EndpointType, "1", endpoints(t, "c", bad.Addr(), good.Addr()))
	e.set(xdsclient.RouteType, "1", &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"},
		Routes: []*routev3.Route{
			{Match: prefixMatch("/other"), Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"}, RetryPolicy: retry(true)}}},
			{Match: prefixMatch("/"), Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"}, RetryPolicy: retry(false)}}},
		}}}})
	e.set(xdsclient.ListenerType, "1", httpListener(t, "l", "r", nil))
	e.waitACK(xdsclient.RouteType, "1")
	e.waitACK(xdsclient.EndpointType, "1")
	addr := e.listenerAddr("l")
	c := client()
	const n = 200
	failed := 0
	for i := 0; i < n; i++ {
		if resp, _ := get(t, c, addr, "x", "/other"); resp.StatusCode != 200 {
			failed++
		}
	}
	if failed != 0 || bad.count.Load() < n/4 {
		t.Errorf("previous_hosts: %d of %d failed (bad host tried %d times), want none failed with the bad host tried first often", failed, n, bad.count.Load())
	}
	failed = 0
	for i := 0; i < n; i++ {
		if resp, _ := get(t, c, addr, "x", "/"); resp.StatusCode != 200 {
			failed++
		}
	}
	if failed < n/20 {
		t.Errorf("without the predicate only %d of %d failed; the comparison shows nothing", failed, n)
	}
}
