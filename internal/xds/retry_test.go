package xds

import (
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
)

// Istio's default retry host predicate: on unless the route hashes to hosts, the VirtualService
// opts out with retryIgnorePreviousHosts: false, or the proxy does not support it.
func TestRetryOtherHosts(t *testing.T) {
	all := Node{}                                   // nil capabilities: every feature
	none := Node{Capabilities: map[string]bool{}}   // no optional feature
	hashed := []*routev3.RouteAction_HashPolicy{{}} // a consistent-hash route
	optOut := &networking.HTTPRetry{Attempts: 2, RetryIgnorePreviousHosts: &wrapperspb.BoolValue{Value: false}}
	optIn := &networking.HTTPRetry{Attempts: 2, RetryIgnorePreviousHosts: &wrapperspb.BoolValue{Value: true}}
	for _, tc := range []struct {
		name  string
		node  Node
		hash  []*routev3.RouteAction_HashPolicy
		retry *networking.HTTPRetry
		want  bool
	}{
		{"default", all, nil, nil, true},
		{"explicitly on", all, nil, optIn, true},
		{"opted out", all, nil, optOut, false},
		{"consistent hash", all, hashed, nil, false},
		{"proxy without the feature", none, nil, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &gen{node: tc.node}
			ra := &routev3.RouteAction{RetryPolicy: g.retryPolicy(tc.retry), HashPolicy: tc.hash}
			g.retryOtherHosts(ra, tc.retry)
			got := len(ra.RetryPolicy.GetRetryHostPredicate()) == 1
			if got != tc.want {
				t.Fatalf("predicate %v, want %v", got, tc.want)
			}
			if got && (ra.RetryPolicy.GetHostSelectionRetryMaxAttempts() != 5 ||
				ra.RetryPolicy.GetRetryHostPredicate()[0].GetName() != "envoy.retry_host_predicates.previous_hosts") {
				t.Errorf("retry policy %v", ra.RetryPolicy)
			}
		})
	}
	// No retries at all: nothing to add.
	g := &gen{node: all}
	ra := &routev3.RouteAction{RetryPolicy: g.retryPolicy(&networking.HTTPRetry{Attempts: 0})}
	g.retryOtherHosts(ra, nil)
	if ra.RetryPolicy != nil {
		t.Errorf("attempts 0: retry policy %v, want none", ra.RetryPolicy)
	}
}
