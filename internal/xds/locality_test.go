package xds

import (
	"fmt"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	networking "istio.io/api/networking/v1alpha3"

	"canton.dev/canton/internal/resource"
)

func TestLocalityPriority(t *testing.T) {
	caller := parseLocalityName("us-east/zone-a/rack-1")
	toWest := []*networking.LocalityLoadBalancerSetting_Failover{{From: "eu-central", To: "ap-south"}, {From: "us-east", To: "us-west"}}
	for _, tc := range []struct {
		ep       string
		failover []*networking.LocalityLoadBalancerSetting_Failover
		want     uint32
	}{
		{"us-east/zone-a/rack-1", nil, 0},
		{"us-east/zone-a/rack-2", nil, 1},
		{"us-east/zone-a", nil, 1},
		{"us-east/zone-b/rack-1", nil, 2},
		{"us-west/zone-a/rack-1", nil, 3},
		{"", nil, 3},
		// failover from the caller's region: only its to region keeps 3.
		{"us-west/zone-a", toWest, 3},
		{"eu-central/zone-a", toWest, 4},
		{"", toWest, 4},
		{"us-east/zone-b", toWest, 2},
		// a failover entry for another region changes nothing.
		{"eu-central/zone-a", toWest[:1], 3},
	} {
		if got := localityPriority(caller, parseLocalityName(tc.ep), tc.failover); got != tc.want {
			t.Errorf("caller %v, endpoints in %q, failover %v: priority %d, want %d", caller, tc.ep, tc.failover, got, tc.want)
		}
	}
}

func TestLabelPriority(t *testing.T) {
	caller := map[string]string{LabelRegion: "us-east", LabelZone: "zone-a", "version": "v1"}
	prios := []string{LabelRegion, LabelZone, "version=v2"}
	for _, tc := range []struct {
		labels map[string]string
		want   uint32
	}{
		{map[string]string{LabelRegion: "us-east", LabelZone: "zone-a", "version": "v2"}, 0},
		{map[string]string{LabelRegion: "us-east", LabelZone: "zone-a", "version": "v1"}, 1}, // the override, not the caller's v1
		{map[string]string{LabelRegion: "us-east", LabelZone: "zone-b", "version": "v2"}, 2},
		{map[string]string{LabelRegion: "us-west", LabelZone: "zone-a", "version": "v2"}, 3},
		{nil, 3},
	} {
		got := labelPriority(caller, func(k string) string { return tc.labels[k] }, prios)
		if got != tc.want {
			t.Errorf("endpoint labels %v: priority %d, want %d", tc.labels, got, tc.want)
		}
	}
}

func TestLocalityOfEndpoints(t *testing.T) {
	labels := map[string]string{LabelRegion: "us-east", LabelZone: "zone-a", LabelSubzone: "rack-1", "app": "x"}
	for _, tc := range []struct {
		name   string
		e      endpoint
		want   string
		region string // endpointLabel(e, LabelRegion)
	}{
		{"labels", endpoint{labels: labels}, "us-east/zone-a/rack-1", "us-east"},
		{"region only", endpoint{labels: map[string]string{LabelRegion: "us-east"}}, "us-east", "us-east"},
		{"none", endpoint{labels: map[string]string{"app": "x"}}, "", ""},
		// A WorkloadEntry's locality field wins over its labels, for failoverPriority too.
		{"field", endpoint{labels: labels, locality: "eu-central/zone-b"}, "eu-central/zone-b", "eu-central"},
	} {
		if got := endpointLocality(tc.e).String(); got != tc.want {
			t.Errorf("%s: locality %q, want %q", tc.name, got, tc.want)
		}
		if got := endpointLabel(tc.e, LabelRegion); got != tc.region {
			t.Errorf("%s: region label %q, want %q", tc.name, got, tc.region)
		}
	}
}

func TestLocalityMatches(t *testing.T) {
	l := parseLocalityName("us-east/zone-a/rack-1")
	for rule, want := range map[string]bool{
		"*": true, "us-east": true, "us-east/*": true, "us-east/zone-a": true, "us-east/zone-a/*": true,
		"us-east/zone-a/rack-1": true, "*/zone-a": true, "us-east/zone-b": false, "us-west/*": false, "us-east/zone-a/rack-2": false,
	} {
		if got := localityMatches(l, rule); got != want {
			t.Errorf("%v matches %q: %t, want %t", l, rule, got, want)
		}
	}
}

// groups builds one lbGroup (priority 0, weight 1) per locality name, each with one endpoint.
func groups(locs ...string) []*lbGroup {
	var out []*lbGroup
	for i, l := range locs {
		out = append(out, &lbGroup{loc: parseLocalityName(l), weight: 1,
			lbs: []*endpointv3.LbEndpoint{lbEndpoint(fmt.Sprintf("10.0.0.%d", i+1), 80, 0)}, eps: []endpoint{{address: fmt.Sprintf("10.0.0.%d", i+1)}}})
	}
	return out
}

// describe renders groups as "locality:priority:weight" (weight "-" when the group has no endpoints).
func describe(gs []*lbGroup) string {
	var parts []string
	for _, g := range gs {
		w := fmt.Sprint(g.weight)
		if len(g.lbs) == 0 {
			w = "-"
		}
		parts = append(parts, fmt.Sprintf("%s:%d:%s", g.loc, g.priority, w))
	}
	return strings.Join(parts, " ")
}

func TestShapeFailoverCompactsPriorities(t *testing.T) {
	caller := parseLocalityName("us-east/zone-a")
	// No endpoint shares the caller's zone: the same region comes first, without gaps.
	got := describe(localityLB{prioritize: true}.shape(groups("eu-central/z", "us-east/zone-b", "us-west/z"), caller, nil))
	if want := "us-east/zone-b:0:1 eu-central/z:1:1 us-west/z:1:1"; got != want {
		t.Errorf("default failover: %s, want %s", got, want)
	}
	failover := []*networking.LocalityLoadBalancerSetting_Failover{{From: "us-east", To: "us-west"}}
	got = describe(localityLB{prioritize: true, failover: failover}.shape(groups("eu-central/z", "us-east/zone-a", "us-west/z"), caller, nil))
	if want := "us-east/zone-a:0:1 us-west/z:1:1 eu-central/z:2:1"; got != want {
		t.Errorf("failover us-east -> us-west: %s, want %s", got, want)
	}
}

func TestShapeFailoverPrioritySplitsLocalities(t *testing.T) {
	caller := parseLocalityName("us-east/zone-a")
	callerLabels := map[string]string{LabelRegion: "us-east", LabelZone: "zone-a"}
	g := groups("us-east/zone-a", "us-west/zone-a")
	// A second endpoint in us-east/zone-a, of version v2.
	g[0].lbs = append(g[0].lbs, lbEndpoint("10.0.0.9", 80, 0))
	g[0].eps = append(g[0].eps, endpoint{address: "10.0.0.9", labels: map[string]string{"version": "v2"}})
	// failoverPriority alone: by the labels only (v2 first wherever it is), not by locality.
	got := describe(localityLB{prioritize: true, failoverPriority: []string{"version=v2"}}.shape(g, caller, callerLabels))
	if want := "us-east/zone-a:0:1 us-east/zone-a:1:1 us-west/zone-a:1:1"; got != want {
		t.Errorf("failoverPriority: %s, want %s", got, want)
	}
}

func TestDistributeWeights(t *testing.T) {
	for _, tc := range []struct {
		name string
		locs []string
		to   map[string]uint32
		want string
	}{
		{"shared by wildcard", []string{"a/1", "a/2", "b/1"}, map[string]uint32{"a/*": 80, "b/1": 20}, "a/1:0:40 a/2:0:40 b/1:0:20"},
		{"rounded up", []string{"a/1", "a/2", "a/3"}, map[string]uint32{"a/*": 100}, "a/1:0:34 a/2:0:34 a/3:0:34"},
		{"unmatched get nothing", []string{"a/1", "c/1"}, map[string]uint32{"a/1": 100}, "a/1:0:100 c/1:0:-"},
		{"weight 0 gets nothing", []string{"a/1", "b/1"}, map[string]uint32{"a/1": 100, "b/*": 0}, "a/1:0:100 b/1:0:-"},
		{"most specific entry first", []string{"a/1", "a/2"}, map[string]uint32{"a/*": 30, "a/1": 70}, "a/1:0:70 a/2:0:30"},
	} {
		g := groups(tc.locs...)
		distributeWeights(g, tc.to)
		if got := describe(g); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// localityInput is a scope with reviews workloads in three localities; dr is the reviews
// DestinationRule's trafficPolicy (YAML, "" for none).
func localityInput(t *testing.T, trafficPolicy string) Input {
	t.Helper()
	src := `apiVersion: canton.dev/v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec:
  ports: [{name: http, port: 9080}]
`
	for i, loc := range [][2]string{{"us-east", "zone-a"}, {"us-east", "zone-b"}, {"us-west", "zone-a"}} {
		src += fmt.Sprintf(`---
apiVersion: canton.dev/v1
kind: Workload
metadata: {name: reviews-%d, namespace: bookinfo}
spec: {service: reviews, address: 127.0.0.%d, port: 15101, labels: {app: reviews, topology.kubernetes.io/region: %s, topology.kubernetes.io/zone: %s}, lease: 1}
`, i, i+1, loc[0], loc[1])
	}
	if trafficPolicy != "" {
		src += `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  trafficPolicy: ` + trafficPolicy + "\n"
	}
	objs, err := resource.Parse("locality.yaml", []byte(src), testMesh, "bookinfo")
	if err != nil {
		t.Fatal(err)
	}
	for i := range objs {
		objs[i].Created = uint64(i + 1)
	}
	return Input{Mesh: testMesh, Scope: testMesh, Objects: objs, Revision: 1}
}

func callerIn(region, zone string) Node {
	n := defaultNode()
	n.ID = "productpage-" + zone
	n.Labels = map[string]string{"app": "productpage", "version": "v1", LabelRegion: region, LabelZone: zone}
	return n
}

// Without a localityLbSetting the endpoints do not depend on the caller's locality, and callers in
// different localities share one generated outbound part; with one, each locality gets its own.
func TestLocalityOnlyWhereAsked(t *testing.T) {
	callers := []Node{callerIn("us-east", "zone-a"), callerIn("us-east", "zone-b"), callerIn("us-west", "zone-a")}
	for _, tc := range []struct {
		name          string
		trafficPolicy string
		parts         int
	}{
		{"no DestinationRule", "", 1},
		{"outlier detection only", "{outlierDetection: {consecutive5xxErrors: 1}}", 1},
		{"locality disabled", "{outlierDetection: {consecutive5xxErrors: 1}, loadBalancer: {localityLbSetting: {enabled: false}}}", 1},
		{"locality failover", "{outlierDetection: {consecutive5xxErrors: 1}, loadBalancer: {localityLbSetting: {enabled: true}}}", 3},
	} {
		snap, err := NewSnapshot(localityInput(t, tc.trafficPolicy))
		if err != nil {
			t.Fatal(err)
		}
		var first string
		same := true
		for _, n := range callers {
			res, err := snap.Generate(n)
			if err != nil {
				t.Fatal(err)
			}
			cla := res.Endpoints["outbound|9080||reviews.bookinfo.demo.mesh"].(*endpointv3.ClusterLoadAssignment)
			got := fmt.Sprint(cla.GetEndpoints())
			if first == "" {
				first = got
			} else if got != first {
				same = false
			}
		}
		if same != (tc.parts == 1) {
			t.Errorf("%s: endpoints the same for every caller locality: %t, want %t", tc.name, same, tc.parts == 1)
		}
		parts := 0
		snap.outbound.Range(func(_, _ any) bool { parts++; return true })
		if parts != tc.parts {
			t.Errorf("%s: %d outbound parts generated for %d callers, want %d", tc.name, parts, len(callers), tc.parts)
		}
	}
}

// A proxy that cannot balance by locality weight gets no distribute (reported) and the plain
// endpoints; one that can gets the weights and locality_weighted_lb_config.
func TestDistributeNeedsCapability(t *testing.T) {
	in := localityInput(t, "{loadBalancer: {localityLbSetting: {distribute: [{from: us-east/*, to: {us-east/zone-a: 90, us-west/*: 10}}]}}}")
	for _, supports := range []bool{false, true} {
		n := callerIn("us-east", "zone-a")
		n.Capabilities = map[string]bool{FeatureLocalityWeightedLB: supports}
		res, err := Generate(in, n)
		if err != nil {
			t.Fatal(err)
		}
		name := "outbound|9080||reviews.bookinfo.demo.mesh"
		c := res.Clusters[name].(*clusterv3.Cluster)
		cla := res.Endpoints[name].(*endpointv3.ClusterLoadAssignment)
		var weights []uint32
		for _, le := range cla.GetEndpoints() {
			weights = append(weights, le.GetLoadBalancingWeight().GetValue())
		}
		reported := false
		for _, s := range res.Skipped {
			reported = reported || strings.Contains(s.String(), "localityLbSetting.distribute")
		}
		weighted := c.GetCommonLbConfig().GetLocalityWeightedLbConfig() != nil
		if supports {
			if !weighted || fmt.Sprint(weights) != "[90 10]" || reported {
				t.Errorf("with %s: locality weighted %t, weights %v, reported %t; want true, [90 10] (us-east/zone-b gets nothing), false",
					FeatureLocalityWeightedLB, weighted, weights, reported)
			}
		} else if weighted || fmt.Sprint(weights) != "[1 1 1]" || !reported {
			t.Errorf("without %s: locality weighted %t, weights %v, reported %t; want false, [1 1 1], true",
				FeatureLocalityWeightedLB, weighted, weights, reported)
		}
	}
}
