package cluster

import (
	"fmt"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// loc is one locality of a test assignment: zone, weight (0: unset) and endpoint ports.
type loc struct {
	zone   string
	weight uint32
	ports  []uint32
}

// localityCluster builds a STATIC cluster with policy lb and the given localities (priority 0);
// weighted turns on locality_weighted_lb_config.
func localityCluster(t *testing.T, lb clusterv3.Cluster_LbPolicy, weighted bool, locs ...loc) *Cluster {
	t.Helper()
	a := &endpointv3.ClusterLoadAssignment{ClusterName: "c"}
	for _, l := range locs {
		le := &endpointv3.LocalityLbEndpoints{Locality: &corev3.Locality{Region: "r", Zone: l.zone}}
		if l.weight > 0 {
			le.LoadBalancingWeight = wrapperspb.UInt32(l.weight)
		}
		for _, p := range l.ports {
			le.LbEndpoints = append(le.LbEndpoints, ep(p, 0))
		}
		a.Endpoints = append(a.Endpoints, le)
	}
	c := &clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}, LbPolicy: lb, LoadAssignment: a}
	if weighted {
		c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{LocalityConfigSpecifier: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig_{
			LocalityWeightedLbConfig: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig{}}}
	}
	cl, err := New(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close(0) })
	return cl
}

// zoneShares picks n times (hashed picks with distinct keys when hashed) and returns the share of
// picks per zone and the picks per endpoint.
func zoneShares(cl *Cluster, n int, hashed bool) (map[string]float64, map[string]int) {
	zones, hosts := map[string]float64{}, map[string]int{}
	for i := 0; i < n; i++ {
		e := cl.Pick(Hash(fmt.Sprint("key-", i)), hashed)
		if e == nil {
			zones["none"] += 1 / float64(n)
			continue
		}
		zones[e.Locality] += 1 / float64(n)
		hosts[e.Addr]++
	}
	return zones, hosts
}

// With locality_weighted_lb_config a locality is chosen by its weight, then an endpoint in it: zone
// a (weight 3, one endpoint) takes 3/4 of the picks although zone b has three endpoints.
func TestLocalityWeightedPick(t *testing.T) {
	locs := []loc{{"a", 3, []uint32{1001}}, {"b", 1, []uint32{2001, 2002, 2003}}}
	for _, lb := range []clusterv3.Cluster_LbPolicy{clusterv3.Cluster_ROUND_ROBIN, clusterv3.Cluster_RANDOM, clusterv3.Cluster_LEAST_REQUEST,
		clusterv3.Cluster_RING_HASH, clusterv3.Cluster_MAGLEV} {
		hashed := lb == clusterv3.Cluster_RING_HASH || lb == clusterv3.Cluster_MAGLEV
		const n = 8000
		zones, hosts := zoneShares(localityCluster(t, lb, true, locs...), n, hashed)
		if a := zones["r/a/"]; a < 0.70 || a > 0.80 {
			t.Errorf("%v: zone a (weight 3 of 4, 1 of 4 endpoints) got %.3f of the picks, want 0.75 +- 0.05", lb, a)
		}
		for _, p := range []string{"2001", "2002", "2003"} {
			if got := hosts["127.0.0.1:"+p]; got < n/12*7/10 || got > n/12*13/10 {
				t.Errorf("%v: endpoint %s of zone b got %d picks, want about %d (zone b's quarter, evenly)", lb, p, got, n/12)
			}
		}
		// Without the config the locality weights are not used: every endpoint gets a quarter.
		zones, _ = zoneShares(localityCluster(t, lb, false, locs...), n, hashed)
		if a := zones["r/a/"]; a < 0.20 || a > 0.30 {
			t.Errorf("%v without locality_weighted_lb_config: zone a got %.3f, want 0.25 +- 0.05", lb, a)
		}
	}
}

// A locality without an available endpoint passes its picks on; a locality of weight 0 (or
// without one) gets none, and a level whose localities all have weight 0 is skipped.
func TestLocalityWeightedAvailability(t *testing.T) {
	cl := localityCluster(t, clusterv3.Cluster_ROUND_ROBIN, true,
		loc{"a", 9, []uint32{1001}}, loc{"b", 1, []uint32{2001}}, loc{"c", 0, []uint32{3001}})
	zones, _ := zoneShares(cl, 1000, false)
	if zones["r/c/"] != 0 || zones["r/a/"] < 0.89 || zones["r/a/"] > 0.91 {
		t.Errorf("shares %v, want a 0.9, b 0.1, c (weight 0) nothing", zones)
	}
	for _, e := range cl.Endpoints() {
		if e.Locality == "r/a/" {
			e.Healthy = false
		}
	}
	zones, _ = zoneShares(cl, 1000, false)
	if zones["r/b/"] < 0.999 {
		t.Errorf("zone a unavailable: shares %v, want everything in zone b", zones)
	}

	// Priority 0 has only a weight-0 locality: priority 1 takes the traffic.
	c := &clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		CommonLbConfig: &clusterv3.Cluster_CommonLbConfig{LocalityConfigSpecifier: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig_{
			LocalityWeightedLbConfig: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig{}}},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{
			{Priority: 0, LbEndpoints: []*endpointv3.LbEndpoint{ep(1001, 0)}},
			{Priority: 1, LoadBalancingWeight: wrapperspb.UInt32(1), LbEndpoints: []*endpointv3.LbEndpoint{ep(2001, 0)}},
		}}}
	cl2, err := New(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close(0)
	if got := cl2.Pick(0, false); got == nil || got.Addr != "127.0.0.1:2001" {
		t.Errorf("picked %v, want the priority 1 endpoint (priority 0's only locality has no weight)", got)
	}
}
