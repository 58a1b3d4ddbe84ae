package dashboard

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
)

func TestQuantile(t *testing.T) {
	inf := math.Inf(1)
	cases := []struct {
		name string
		q    float64
		h    histogram
		want float64
	}{
		{"empty", 0.99, histogram{}, -1},
		{"all zero", 0.99, histogram{1: 0, 5: 0, inf: 0}, -1},
		{"single bucket interpolates from zero", 0.5, histogram{10: 100, inf: 100}, 5},
		{"second bucket", 0.99, histogram{10: 150, 25: 300, inf: 300}, 24.7},
		{"median on a boundary", 0.5, histogram{10: 50, 20: 100, inf: 100}, 10},
		{"rank in +Inf gives the highest finite bound", 0.99, histogram{10: 50, 20: 90, inf: 100}, 20},
		{"only +Inf", 0.99, histogram{inf: 10}, -1},
		{"no +Inf bucket", 0.5, histogram{1: 10, 2: 20}, 1},
		{"non-monotonic input is repaired", 0.9, histogram{10: 100, 20: 90, inf: 100}, 9},
		{"p0", 0, histogram{5: 10, inf: 10}, 0},
	}
	for _, c := range cases {
		got := quantile(c.q, c.h)
		if math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%s: quantile(%v) = %v, want %v", c.name, c.q, got, c.want)
		}
	}
}

func snap(at int, calls map[callKey]callCount) snapshot {
	return snapshot{at: time.Unix(int64(at), 0), calls: calls, hists: map[histKey]histogram{}}
}

func TestCombineRates(t *testing.T) {
	a, b, c := svcRef{"n.m", "a"}, svcRef{"n.m", "b"}, svcRef{"n.m", "c"}
	src := func(from, to svcRef, v string) callKey {
		return callKey{reporter: "source", from: from, to: to, version: v, security: "unknown"}
	}
	dst := func(from, to svcRef, sec string) callKey {
		return callKey{reporter: "destination", from: from, to: to, security: sec}
	}
	cases := []struct {
		name  string
		hists map[string][]snapshot
		edge  edgeKey
		want  EdgeStats
	}{
		{
			name: "rate between two scrapes",
			hists: map[string][]snapshot{"pa": {
				snap(0, map[callKey]callCount{src(a, b, "v1"): {100, 10}}),
				snap(10, map[callKey]callCount{src(a, b, "v1"): {150, 15}}),
			}},
			edge: edgeKey{a, b},
			want: EdgeStats{Requests: 50, RPS: 5, HasRate: true, ErrorRate: 0.1, P99: -1, Versions: map[string]float64{"v1": 50}},
		},
		{
			name:  "one scrape: totals, no rate",
			hists: map[string][]snapshot{"pa": {snap(0, map[callKey]callCount{src(a, b, ""): {7, 0}})}},
			edge:  edgeKey{a, b},
			want:  EdgeStats{Requests: 7, P99: -1, Versions: map[string]float64{"": 7}},
		},
		{
			name: "counter reset counts the new value",
			hists: map[string][]snapshot{"pa": {
				snap(0, map[callKey]callCount{src(a, b, "v1"): {1000, 0}}),
				snap(4, map[callKey]callCount{src(a, b, "v1"): {20, 2}}),
			}},
			edge: edgeKey{a, b},
			want: EdgeStats{Requests: 20, RPS: 5, HasRate: true, ErrorRate: 0.1, P99: -1, Versions: map[string]float64{"v1": 20}},
		},
		{
			name: "client side preferred, mTLS from the server side",
			hists: map[string][]snapshot{
				"pa": {snap(0, map[callKey]callCount{src(a, b, "v1"): {0, 0}}), snap(10, map[callKey]callCount{src(a, b, "v1"): {100, 0}})},
				"pb": {snap(0, map[callKey]callCount{dst(a, b, "mutual_tls"): {0, 0}}), snap(10, map[callKey]callCount{dst(a, b, "mutual_tls"): {90, 0}})},
			},
			edge: edgeKey{a, b},
			want: EdgeStats{Requests: 100, RPS: 10, HasRate: true, P99: -1, MTLS: "mutual_tls", Versions: map[string]float64{"v1": 100}},
		},
		{
			name: "server side only, mixed security",
			hists: map[string][]snapshot{
				"pc": {snap(0, map[callKey]callCount{dst(a, c, "mutual_tls"): {0, 0}, dst(a, c, "none"): {0, 0}}),
					snap(2, map[callKey]callCount{dst(a, c, "mutual_tls"): {6, 0}, dst(a, c, "none"): {2, 2}})},
			},
			edge: edgeKey{a, c},
			want: EdgeStats{Requests: 8, RPS: 4, HasRate: true, ErrorRate: 0.25, P99: -1, MTLS: "mixed", Versions: map[string]float64{"": 8}},
		},
		{
			name: "baseline is the oldest snapshot inside the window",
			hists: map[string][]snapshot{"pa": {
				snap(0, map[callKey]callCount{src(a, b, ""): {0, 0}}),
				snap(100, map[callKey]callCount{src(a, b, ""): {1000, 0}}),
				snap(110, map[callKey]callCount{src(a, b, ""): {1100, 0}}),
			}},
			edge: edgeKey{a, b},
			want: EdgeStats{Requests: 100, RPS: 10, HasRate: true, P99: -1, Versions: map[string]float64{"": 100}},
		},
	}
	for _, c := range cases {
		tr := combine(c.hists, 30*time.Second)
		got := tr.edges[c.edge]
		if got == nil {
			t.Errorf("%s: no edge", c.name)
			continue
		}
		if !reflect.DeepEqual(*got, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, *got, c.want)
		}
	}
}

func TestIsError(t *testing.T) {
	cases := []struct {
		labels map[string]string
		want   bool
	}{
		{map[string]string{"response_code": "200"}, false},
		{map[string]string{"response_code": "404"}, false},
		{map[string]string{"response_code": "503"}, true},
		{map[string]string{"response_code": "0"}, true},
		{map[string]string{"response_code": "200", "grpc_response_status": "14"}, true},
		{map[string]string{"response_code": "200", "grpc_response_status": "0"}, false},
		{map[string]string{"response_code": "200", "grpc_response_status": "unknown"}, false},
	}
	for _, c := range cases {
		if got := isError(c.labels); got != c.want {
			t.Errorf("isError(%v) = %v", c.labels, got)
		}
	}
}

func dest(host, subset string) *networking.Destination {
	return &networking.Destination{Host: host, Subset: subset}
}

func TestComputeSplits(t *testing.T) {
	type want struct {
		host, subset string
		pct          float64
	}
	cases := []struct {
		name  string
		dests []weighted
		want  []want
	}{
		{"single destination takes all whatever its weight", []weighted{{dest("reviews", "v1"), 0}}, []want{{"reviews.bookinfo.demo.mesh", "v1", 100}}},
		{"single with weight 30", []weighted{{dest("reviews", "v1"), 30}}, []want{{"reviews.bookinfo.demo.mesh", "v1", 100}}},
		{"50/50", []weighted{{dest("reviews", "v1"), 50}, {dest("reviews", "v3"), 50}},
			[]want{{"reviews.bookinfo.demo.mesh", "v1", 50}, {"reviews.bookinfo.demo.mesh", "v3", 50}}},
		{"weights not summing to 100 are proportions", []weighted{{dest("a", "x"), 1}, {dest("a", "y"), 3}},
			[]want{{"a.bookinfo.demo.mesh", "x", 25}, {"a.bookinfo.demo.mesh", "y", 75}}},
		{"zero weight among several takes none", []weighted{{dest("a", "x"), 0}, {dest("a", "y"), 10}},
			[]want{{"a.bookinfo.demo.mesh", "x", 0}, {"a.bookinfo.demo.mesh", "y", 100}}},
		{"all zero", []weighted{{dest("a", "x"), 0}, {dest("a", "y"), 0}},
			[]want{{"a.bookinfo.demo.mesh", "x", 0}, {"a.bookinfo.demo.mesh", "y", 0}}},
		{"negative weight takes none", []weighted{{dest("a", "x"), -5}, {dest("a", "y"), 5}},
			[]want{{"a.bookinfo.demo.mesh", "x", 0}, {"a.bookinfo.demo.mesh", "y", 100}}},
		{"hosts qualified", []weighted{{dest("ratings.bookinfo.svc.cluster.local", ""), 80}, {dest("other.shop.demo.mesh", ""), 20}},
			[]want{{"ratings.bookinfo.demo.mesh", "", 80}, {"other.shop.demo.mesh", "", 20}}},
	}
	for _, c := range cases {
		got := computeSplits(c.dests, "bookinfo.demo.mesh", "demo.mesh")
		if len(got) != len(c.want) {
			t.Fatalf("%s: %d splits", c.name, len(got))
		}
		for i, w := range c.want {
			if got[i].Host != w.host || got[i].Subset != w.subset || math.Abs(got[i].Percent-w.pct) > 1e-9 {
				t.Errorf("%s: split %d = %+v, want %+v", c.name, i, got[i], w)
			}
		}
	}
}

func TestSplitRules(t *testing.T) {
	vs := &networking.VirtualService{
		Hosts: []string{"reviews"},
		Http: []*networking.HTTPRoute{
			{
				Name: "jason",
				Match: []*networking.HTTPMatchRequest{
					{Headers: map[string]*networking.StringMatch{"end-user": {MatchType: &networking.StringMatch_Exact{Exact: "jason"}}}},
					{Uri: &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: "/beta"}}, Method: &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: "GET"}}},
				},
				Route: []*networking.HTTPRouteDestination{{Destination: dest("reviews", "v2")}},
				Fault: &networking.HTTPFaultInjection{Abort: &networking.HTTPFaultInjection_Abort{
					ErrorType: &networking.HTTPFaultInjection_Abort_HttpStatus{HttpStatus: 500}, Percentage: &networking.Percent{Value: 12.5}}},
			},
			{Redirect: &networking.HTTPRedirect{Uri: "/new", Authority: "x.demo.mesh"}},
			{Route: []*networking.HTTPRouteDestination{{Destination: dest("reviews", "v1"), Weight: 90}, {Destination: dest("reviews", "v3"), Weight: 10}}},
		},
		Tcp: []*networking.TCPRoute{{Route: []*networking.RouteDestination{{Destination: dest("db", ""), Weight: 100}}}},
	}
	rules := splitRules("reviews", "bookinfo.demo.mesh", "demo.mesh", vs)
	if len(rules) != 4 {
		t.Fatalf("%d rules", len(rules))
	}
	r0 := rules[0]
	if r0.Namespace != "bookinfo" || r0.Name != "jason" || len(r0.Matches) != 2 ||
		r0.Matches[0] != "header end-user = jason" || r0.Matches[1] != "path starts with /beta and method = GET" {
		t.Errorf("rule 0: %+v", r0)
	}
	if len(r0.Splits) != 1 || r0.Splits[0].Percent != 100 || r0.Splits[0].Label("reviews.bookinfo.demo.mesh") != "v2" {
		t.Errorf("rule 0 splits: %+v", r0.Splits)
	}
	if len(r0.Notes) != 1 || r0.Notes[0] != "fault: abort with 500 for 12.5% of requests" {
		t.Errorf("rule 0 notes: %q", r0.Notes)
	}
	if rules[1].Action != "redirect 301 to x.demo.mesh/new" || len(rules[1].Splits) != 0 {
		t.Errorf("rule 1: %+v", rules[1])
	}
	if rules[2].Matches != nil || rules[2].Splits[0].Percent != 90 || rules[2].Splits[1].Percent != 10 {
		t.Errorf("rule 2: %+v", rules[2])
	}
	if rules[3].Protocol != "tcp" || rules[3].Splits[0].Label("reviews.bookinfo.demo.mesh") != "db" {
		t.Errorf("rule 3: %+v", rules[3])
	}
	if !vsApplies(vs, "bookinfo.demo.mesh", "demo.mesh", "reviews.bookinfo.demo.mesh") || vsApplies(vs, "bookinfo.demo.mesh", "demo.mesh", "ratings.bookinfo.demo.mesh") {
		t.Errorf("vsApplies")
	}
	wild := &networking.VirtualService{Hosts: []string{"*.bookinfo.demo.mesh"}}
	if !vsApplies(wild, "other.demo.mesh", "demo.mesh", "reviews.bookinfo.demo.mesh") {
		t.Errorf("wildcard host does not apply")
	}
}

func TestLayoutDeterministic(t *testing.T) {
	nodes := []graphNode{{"productpage"}, {"details"}, {"reviews"}, {"ratings"}, {"lonely"}, {"unknown"}}
	edges := []graphEdge{{"unknown", "productpage"}, {"productpage", "details"}, {"productpage", "reviews"},
		{"reviews", "ratings"}, {"ratings", "reviews"}, {"reviews", "reviews"}, {"productpage", "reviews"}}
	want := computeLayout(nodes, edges)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20; i++ {
		n := append([]graphNode(nil), nodes...)
		e := append([]graphEdge(nil), edges...)
		rng.Shuffle(len(n), func(i, j int) { n[i], n[j] = n[j], n[i] })
		rng.Shuffle(len(e), func(i, j int) { e[i], e[j] = e[j], e[i] })
		if got := computeLayout(n, e); !reflect.DeepEqual(got, want) {
			t.Fatalf("layout depends on input order:\n%+v\n%+v", got, want)
		}
	}
	layer := map[string]int{}
	for _, p := range want.Nodes {
		layer[p.ID] = p.Layer
	}
	if !(layer["unknown"] < layer["productpage"] && layer["productpage"] < layer["reviews"] && layer["reviews"] < layer["ratings"]) {
		t.Errorf("callers are not left of callees: %v", layer)
	}
	if layer["details"] != layer["reviews"] {
		t.Errorf("details and reviews should share a column: %v", layer)
	}
	if layer["lonely"] <= layer["ratings"] {
		t.Errorf("a node without edges goes right of the flow: %v", layer)
	}
	if len(want.Routes) != 6 {
		t.Errorf("%d routes, want 6 (duplicate edge merged)", len(want.Routes))
	}
	back := 0
	for _, r := range want.Routes {
		if r.Back {
			back++
		}
		if !strings.HasPrefix(r.Path, "M ") {
			t.Errorf("path %q", r.Path)
		}
	}
	if back != 2 { // ratings -> reviews and the self-loop
		t.Errorf("%d back edges, want 2", back)
	}
	// Nothing overlaps: nodes of a column are at least a node apart.
	for i, a := range want.Nodes {
		for _, b := range want.Nodes[i+1:] {
			if a.X == b.X && math.Abs(a.Y-b.Y) < nodeH {
				t.Errorf("nodes %s and %s overlap", a.ID, b.ID)
			}
		}
		if a.X < 0 || a.Y < 0 || a.X+nodeW > want.Width || a.Y+nodeH > want.Height {
			t.Errorf("node %s outside the drawing", a.ID)
		}
	}
}

func TestLayoutWithoutEdgesIsAGrid(t *testing.T) {
	var nodes []graphNode
	for i := 0; i < 10; i++ {
		nodes = append(nodes, graphNode{fmt.Sprintf("svc-%02d", i)})
	}
	lay := computeLayout(nodes, nil)
	cols := map[float64]int{}
	for _, p := range lay.Nodes {
		cols[p.X]++
	}
	if len(cols) != 3 {
		t.Errorf("%d columns for 10 unconnected nodes, want 3 (4 per column)", len(cols))
	}
	if empty := computeLayout(nil, nil); len(empty.Nodes) != 0 || empty.Width <= 0 {
		t.Errorf("empty layout %+v", empty)
	}
}

func TestLayoutIsBounded(t *testing.T) {
	// A long chain is capped at maxLayers columns.
	var edges []graphEdge
	for i := 0; i < 200; i++ {
		edges = append(edges, graphEdge{fmt.Sprintf("n%03d", i), fmt.Sprintf("n%03d", i+1)})
	}
	lay := computeLayout(nil, edges)
	maxLayer := 0
	for _, p := range lay.Nodes {
		maxLayer = max(maxLayer, p.Layer)
	}
	if maxLayer >= maxLayers || len(lay.Nodes) != 201 {
		t.Errorf("max layer %d, %d nodes", maxLayer, len(lay.Nodes))
	}
}

func TestFormatting(t *testing.T) {
	cases := []struct{ got, want string }{
		{rpsText(EdgeStats{HasRate: true, RPS: 0.04}), "0.04/s"},
		{rpsText(EdgeStats{HasRate: true, RPS: 12.4}), "12/s"},
		{rpsText(EdgeStats{HasRate: true, RPS: 1234}), "1.2k/s"},
		{rpsText(EdgeStats{Requests: 3}), "3.0 req"},
		{rpsText(EdgeStats{}), "—"},
		{errText(EdgeStats{Requests: 10, ErrorRate: 0.0004}), "<0.1% err"},
		{errText(EdgeStats{Requests: 10, ErrorRate: 0.25}), "25% err"},
		{p99Text(-1), "p99 —"},
		{p99Text(4.25), "p99 4.2 ms"},
		{p99Text(2500), "p99 2.5 s"},
		{percentText(12.5, true), "12.5%"},
		{percentText(0, false), "100%"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
