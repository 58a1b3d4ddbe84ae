package cluster

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func cla(name string, eps ...*endpointv3.LbEndpoint) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}}}
}

func ep(port uint32, weight uint32) *endpointv3.LbEndpoint {
	e := &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}}}}
	if weight > 0 {
		e.LoadBalancingWeight = wrapperspb.UInt32(weight)
	}
	return e
}

func newCluster(t *testing.T, c *clusterv3.Cluster, eps ...*endpointv3.LbEndpoint) *Cluster {
	t.Helper()
	c.Name = "c"
	c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
	c.LoadAssignment = cla("c", eps...)
	cl, err := New(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close(0) })
	return cl
}

func TestWeightedPolicies(t *testing.T) {
	for _, lb := range []clusterv3.Cluster_LbPolicy{clusterv3.Cluster_ROUND_ROBIN, clusterv3.Cluster_RANDOM, clusterv3.Cluster_LEAST_REQUEST} {
		cl := newCluster(t, &clusterv3.Cluster{LbPolicy: lb}, ep(1001, 3), ep(1002, 1))
		counts := map[string]int{}
		const n = 8000
		for i := 0; i < n; i++ {
			counts[cl.Pick(0, false).Addr]++
		}
		if share := float64(counts["127.0.0.1:1001"]) / n; share < 0.72 || share > 0.78 {
			t.Errorf("%v: share of weight-3 endpoint = %.3f, want 0.75 +- 0.03", lb, share)
		}
	}
}

func TestLeastRequestPrefersIdle(t *testing.T) {
	cl := newCluster(t, &clusterv3.Cluster{LbPolicy: clusterv3.Cluster_LEAST_REQUEST}, ep(1001, 0), ep(1002, 0))
	busy := cl.Endpoints()[0]
	for i := 0; i < 10; i++ {
		cl.Begin(busy)
	}
	idle := 0
	for i := 0; i < 1000; i++ {
		if cl.Pick(0, false) != busy {
			idle++
		}
	}
	// P2C picks the busy one only when both draws hit it: about 1/4.
	if idle < 700 || idle > 800 {
		t.Errorf("idle endpoint chosen %d/1000 times, want about 750", idle)
	}
}

func TestHashPoliciesAreConsistent(t *testing.T) {
	for _, lb := range []clusterv3.Cluster_LbPolicy{clusterv3.Cluster_RING_HASH, clusterv3.Cluster_MAGLEV} {
		cl := newCluster(t, &clusterv3.Cluster{LbPolicy: lb}, ep(1001, 0), ep(1002, 0), ep(1003, 0))
		counts := map[string]int{}
		for i := 0; i < 3000; i++ {
			h := Hash(fmt.Sprint("user-", i))
			a := cl.Pick(h, true)
			if b := cl.Pick(h, true); a != b {
				t.Fatalf("%v: same key picked %s then %s", lb, a.Addr, b.Addr)
			}
			counts[a.Addr]++
		}
		for addr, n := range counts {
			if n < 700 || n > 1300 {
				t.Errorf("%v: %s got %d of 3000 keys, want about 1000", lb, addr, n)
			}
		}
		// Removing one endpoint moves only its keys (consistency).
		before := map[int]string{}
		for i := 0; i < 1000; i++ {
			before[i] = cl.Pick(Hash(fmt.Sprint("k", i)), true).Addr
		}
		if err := cl.SetEndpoints(cla("c", ep(1001, 0), ep(1002, 0))); err != nil {
			t.Fatal(err)
		}
		moved := 0
		for i := 0; i < 1000; i++ {
			if after := cl.Pick(Hash(fmt.Sprint("k", i)), true).Addr; after != before[i] && before[i] != "127.0.0.1:1003" {
				moved++
			}
		}
		if moved > 100 { // ring hash rescales per-host replica counts, so a few keys move between survivors
			t.Errorf("%v: %d keys of remaining endpoints moved, want few", lb, moved)
		}
	}
}

func TestPriorityFailover(t *testing.T) {
	c := &clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{
			{Priority: 1, LbEndpoints: []*endpointv3.LbEndpoint{ep(2001, 0)}},
			{Priority: 0, LbEndpoints: []*endpointv3.LbEndpoint{ep(1001, 0)}},
		}}}
	cl, err := New(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close(0)
	if got := cl.Pick(0, false).Addr; got != "127.0.0.1:1001" {
		t.Errorf("picked %s, want the priority 0 endpoint", got)
	}
	for _, e := range cl.Endpoints() {
		if e.Priority == 0 {
			e.Healthy = false
		}
	}
	if got := cl.Pick(0, false).Addr; got != "127.0.0.1:2001" {
		t.Errorf("picked %s with priority 0 unhealthy, want the priority 1 endpoint", got)
	}
}

func TestOutlierEjectionGrowsAndReturns(t *testing.T) {
	cl := newCluster(t, &clusterv3.Cluster{OutlierDetection: &clusterv3.OutlierDetection{
		Consecutive_5Xx: wrapperspb.UInt32(3), Interval: durationpb.New(10 * time.Millisecond),
		BaseEjectionTime: durationpb.New(50 * time.Millisecond), MaxEjectionPercent: wrapperspb.UInt32(50)}},
		ep(1001, 0), ep(1002, 0), ep(1003, 0), ep(1004, 0))
	eps := cl.Endpoints()
	bad := eps[0]
	for i := 0; i < 3; i++ {
		cl.Begin(bad)
		cl.End(bad, 503)
	}
	if !bad.Ejected() {
		t.Fatal("not ejected after 3 consecutive 5xx")
	}
	for i := 0; i < 100; i++ {
		if cl.Pick(0, false) == bad {
			t.Fatal("ejected endpoint picked")
		}
	}
	start := time.Now()
	waitFor(t, func() bool { return !bad.Ejected() })
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("returned after %v, want about the 50ms base ejection time", d)
	}
	// Second ejection lasts twice as long (multiplier 2, unless it decayed already).
	for i := 0; i < 3; i++ {
		cl.End(bad, 500)
	}
	if !bad.Ejected() || bad.Ejections() < 1 {
		t.Fatalf("not ejected again: ejected=%v ejections=%d", bad.Ejected(), bad.Ejections())
	}
	// max_ejection_percent 50 of 4: a second host may go, a third may not.
	for _, e := range eps[1:3] {
		for i := 0; i < 3; i++ {
			cl.End(e, 500)
		}
	}
	if n := cl.ejectedCount.Load(); n != 2 {
		t.Errorf("ejected = %d, want 2 (50%% of 4)", n)
	}
}

func TestBreakers(t *testing.T) {
	cl := newCluster(t, &clusterv3.Cluster{CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		MaxRequests: wrapperspb.UInt32(2), MaxPendingRequests: wrapperspb.UInt32(100), MaxRetries: wrapperspb.UInt32(1)}}}}, ep(1001, 0))
	if cl.StartRequest() != nil || cl.StartRequest() != nil {
		t.Fatal("first two requests refused")
	}
	if err := cl.StartRequest(); !errors.Is(err, ErrOverflow) {
		t.Errorf("third request: %v, want overflow", err)
	}
	cl.EndRequest()
	if cl.StartRequest() != nil {
		t.Error("request refused after one ended")
	}
	if !cl.StartRetry() || cl.StartRetry() {
		t.Error("max_retries 1 not enforced")
	}
	if cl.Overflows.Load() != 2 {
		t.Errorf("overflows = %d, want 2", cl.Overflows.Load())
	}
}

func TestRetryBudget(t *testing.T) {
	budget := func(pct float64, min uint32) *clusterv3.Cluster {
		return &clusterv3.Cluster{CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			MaxRequests: wrapperspb.UInt32(1000), MaxPendingRequests: wrapperspb.UInt32(1000), MaxRetries: wrapperspb.UInt32(1),
			RetryBudget: &clusterv3.CircuitBreakers_Thresholds_RetryBudget{
				BudgetPercent: &typev3.Percent{Value: pct}, MinRetryConcurrency: wrapperspb.UInt32(min)}}}}}
	}
	retries := func(cl *Cluster) int {
		n := 0
		for cl.StartRetry() {
			n++
		}
		for range n {
			cl.EndRetry()
		}
		return n
	}
	// 50% of 10 active requests: 5 concurrent retries (max_retries 1 is ignored under a budget).
	cl := newCluster(t, budget(50, 2), ep(1001, 0))
	for range 10 {
		if err := cl.StartRequest(); err != nil {
			t.Fatal(err)
		}
	}
	if n := retries(cl); n != 5 {
		t.Errorf("budget 50%% of 10 active: %d concurrent retries, want 5", n)
	}
	// With 2 active, min_retry_concurrency (2) applies.
	for range 8 {
		cl.EndRequest()
	}
	if n := retries(cl); n != 2 {
		t.Errorf("2 active, min_retry_concurrency 2: %d retries, want 2", n)
	}
	// Envoy's defaults: 20%, at least 3.
	d := newCluster(t, &clusterv3.Cluster{CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		RetryBudget: &clusterv3.CircuitBreakers_Thresholds_RetryBudget{}}}}}, ep(1001, 0))
	if n := retries(d); n != 3 {
		t.Errorf("default budget, idle cluster: %d retries, want 3", n)
	}
	bad := budget(101, 0)
	bad.Name, bad.ClusterDiscoveryType = "x", &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
	if _, err := New(bad, Options{}); err == nil ||
		!strings.Contains(err.Error(), "budget_percent") {
		t.Errorf("budget_percent 101: %v, want an error naming it", err)
	}
}

func TestNewRejectsUnsupported(t *testing.T) {
	for _, c := range []*clusterv3.Cluster{
		{Name: "x", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_LOGICAL_DNS}},
		{Name: "x", LbPolicy: clusterv3.Cluster_CLUSTER_PROVIDED},
		{Name: "x", LbConfig: &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(100)}}, LbPolicy: clusterv3.Cluster_MAGLEV},
	} {
		if _, err := New(c, Options{}); err == nil {
			t.Errorf("New(%v) accepted", c)
		}
	}
}

func BenchmarkPickRoundRobin(b *testing.B) {
	c := &clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment: cla("c", ep(1, 0), ep(2, 0), ep(3, 0))}
	cl, _ := New(c, Options{})
	b.ReportAllocs()
	for b.Loop() {
		cl.Pick(0, false)
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(2 * time.Millisecond) // polling with a deadline
	}
}
