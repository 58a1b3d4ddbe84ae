package xds

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"canton.dev/canton/internal/resource"
)

func TestGenerateIsDeterministic(t *testing.T) {
	in := loadInput(t, "testdata/matches-rewrite-redirect")
	first, err := Generate(in, defaultNode())
	if err != nil {
		t.Fatal(err)
	}
	want := render(t, first)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 5; i++ {
		shuffled := in
		shuffled.Objects = append([]resource.Object(nil), in.Objects...)
		rng.Shuffle(len(shuffled.Objects), func(a, b int) {
			shuffled.Objects[a], shuffled.Objects[b] = shuffled.Objects[b], shuffled.Objects[a]
		})
		got, err := Generate(shuffled, defaultNode())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(render(t, got), want) {
			t.Fatalf("shuffle %d: output depends on object order", i)
		}
		for _, typ := range Types {
			if got.Version(typ) != first.Version(typ) {
				t.Fatalf("shuffle %d: version of %s changed", i, typ)
			}
		}
	}
}

func TestVersionsChangeOnlyForChangedResources(t *testing.T) {
	in := loadInput(t, "testdata/reviews-jason")
	before, err := Generate(in, defaultNode())
	if err != nil {
		t.Fatal(err)
	}
	// Retarget jason to v3: only the outbound route configuration changes.
	changed := in
	changed.Objects = append([]resource.Object(nil), in.Objects...)
	for i, o := range changed.Objects {
		if o.Kind == "VirtualService" && o.Name == "reviews" {
			o.Spec = []byte(strings.Replace(string(o.Spec), `"v2"`, `"v3"`, 1))
			changed.Objects[i] = o
		}
	}
	changed.Revision++
	after, err := Generate(changed, defaultNode())
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range Types {
		for name, v := range before.Versions[typ] {
			moved := after.Versions[typ][name] != v
			if want := typ == RouteType && name == OutboundRouteName; moved != want {
				t.Errorf("%s %s: version changed = %v, want %v", typ, name, moved, want)
			}
		}
	}
}

func TestGenerateRejectsInvalidNodes(t *testing.T) {
	in := Input{Mesh: testMesh, Scope: testMesh}
	for _, tc := range []struct {
		name string
		mut  func(n *Node)
		want string
	}{
		{"no id", func(n *Node) { n.ID = "" }, "id is required"},
		{"no namespace", func(n *Node) { n.Namespace = "" }, "namespace is required"},
		{"bad kind", func(n *Node) { n.Kind = "router" }, "kind"},
		{"app address not ip", func(n *Node) { n.AppAddress = "localhost:9080" }, "app address"},
		{"app port zero", func(n *Node) { n.AppAddress = "127.0.0.1:0" }, "port must not be 0"},
		{"bad inbound address", func(n *Node) { n.InboundAddress = "example" }, "inbound address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := defaultNode()
			tc.mut(&n)
			_, err := Generate(in, n)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := Generate(Input{}, defaultNode()); err == nil {
		t.Fatal("an input without mesh domain was accepted")
	}
}

func TestSidecarLimitsWhatTheNodeReceives(t *testing.T) {
	in := loadInput(t, "testdata/sidecar-scoping")
	res, err := Generate(in, defaultNode())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for name := range res.Clusters {
		got = append(got, name)
	}
	want := []string{"inbound|9080||", "outbound|6379||cache.shared.demo.mesh",
		"outbound|9080||details.bookinfo.demo.mesh", "outbound|9080||reviews.bookinfo.demo.mesh"}
	if strings.Join(sortedKeys(res.Clusters), ",") != strings.Join(want, ",") {
		t.Fatalf("clusters %v, want %v", sortedKeys(res.Clusters), want)
	}
	// Another workload of the namespace falls back to the namespace-wide Sidecar: all hosts.
	other := defaultNode()
	other.ID, other.Labels = "ratings-v1-1", map[string]string{"app": "ratings"}
	res, err = Generate(in, other)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.Clusters["outbound|8080||billing.shop.demo.mesh"]; !ok {
		t.Fatalf("namespace default Sidecar (*/*) should expose billing; clusters %v", sortedKeys(res.Clusters))
	}
}

func TestExportToDotHidesOtherNamespaces(t *testing.T) {
	in := loadInput(t, "testdata/exportto-dot")
	res, err := Generate(in, defaultNode())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.Clusters["outbound|8080||billing.shop.demo.mesh"]; ok {
		t.Fatal("billing is exported to shop only but reached bookinfo")
	}
	c := res.Clusters["outbound|8080||catalog.shop.demo.mesh"].(*clusterv3.Cluster)
	if c.GetLbPolicy() != clusterv3.Cluster_ROUND_ROBIN {
		t.Fatalf("catalog lb %v: the bookinfo-local DestinationRule should apply, not shop's private one", c.GetLbPolicy())
	}
	// From inside shop, the private VirtualService (an abort) and DestinationRule apply.
	shop := defaultNode()
	shop.ID, shop.Namespace = "catalog-1", "shop.demo.mesh"
	res, err = Generate(in, shop)
	if err != nil {
		t.Fatal(err)
	}
	c = res.Clusters["outbound|8080||catalog.shop.demo.mesh"].(*clusterv3.Cluster)
	if c.GetLbPolicy() != clusterv3.Cluster_RANDOM {
		t.Fatalf("from shop, catalog lb %v, want RANDOM", c.GetLbPolicy())
	}
	rc := res.Routes[OutboundRouteName].(*routev3.RouteConfiguration)
	if !usesFilter(rc, FaultFilterName) {
		t.Fatal("from shop, the private VirtualService's fault should apply")
	}
	if _, ok := res.Clusters["outbound|8080||billing.shop.demo.mesh"]; !ok {
		t.Fatal("billing should be visible inside shop")
	}
}

func TestWeightedRouteSplitsTraffic(t *testing.T) {
	res, err := Generate(loadInput(t, "testdata/reviews-50-v3"), defaultNode())
	if err != nil {
		t.Fatal(err)
	}
	rc := res.Routes[OutboundRouteName].(*routev3.RouteConfiguration)
	for _, vh := range rc.GetVirtualHosts() {
		if vh.GetName() != "reviews.bookinfo.demo.mesh:9080" {
			continue
		}
		wc := vh.GetRoutes()[0].GetRoute().GetWeightedClusters().GetClusters()
		if len(wc) != 2 || wc[0].GetName() != "outbound|9080|v1|reviews.bookinfo.demo.mesh" || wc[0].GetWeight().GetValue() != 50 ||
			wc[1].GetName() != "outbound|9080|v3|reviews.bookinfo.demo.mesh" || wc[1].GetWeight().GetValue() != 50 {
			t.Fatalf("weighted clusters %v", wc)
		}
		return
	}
	t.Fatal("no reviews virtual host")
}

func TestNamesAndHosts(t *testing.T) {
	for _, tc := range []struct{ host, ns, want string }{
		{"reviews", "bookinfo.demo.mesh", "reviews.bookinfo.demo.mesh"},
		{"reviews.bookinfo.svc.cluster.local", "x.demo.mesh", "reviews.bookinfo.demo.mesh"},
		{"*.bookinfo.svc.cluster.local", "x.demo.mesh", "*.bookinfo.demo.mesh"},
		{"Api.Example.COM.", "x.demo.mesh", "api.example.com"},
		{"*", "x.demo.mesh", "*"},
	} {
		if got := qualify(tc.host, tc.ns, testMesh); got != tc.want {
			t.Errorf("qualify(%q, %q) = %q, want %q", tc.host, tc.ns, got, tc.want)
		}
	}
	for _, tc := range []struct {
		pattern, host string
		want          bool
	}{
		{"*", "a.b", true}, {"*.b.c", "a.b.c", true}, {"*.b.c", "b.c", false}, {"*.c", "*.b.c", true},
		{"*.b.c", "*.c", false}, {"a.b", "a.b", true}, {"a.b", "x.a.b", false},
	} {
		if got := hostMatches(tc.pattern, tc.host); got != tc.want {
			t.Errorf("hostMatches(%q, %q) = %v", tc.pattern, tc.host, got)
		}
	}
	for _, tc := range []struct {
		exportTo []string
		objNS    string
		want     bool
	}{
		{nil, "shop.demo.mesh", true}, {[]string{"."}, "shop.demo.mesh", false}, {[]string{"."}, "bookinfo.demo.mesh", true},
		{[]string{"~"}, "bookinfo.demo.mesh", false}, {[]string{"bookinfo"}, "shop.demo.mesh", true}, {[]string{"*"}, "shop.demo.mesh", true},
	} {
		if got := exportedTo(tc.exportTo, tc.objNS, "bookinfo.demo.mesh", testMesh); got != tc.want {
			t.Errorf("exportedTo(%v, %q) = %v", tc.exportTo, tc.objNS, got)
		}
	}
}

// withYAML returns in plus the objects of doc (created after in's, in file order).
func withYAML(t *testing.T, in Input, doc string) Input {
	t.Helper()
	extra, err := resource.Parse("extra.yaml", []byte(doc), testMesh, "bookinfo")
	if err != nil {
		t.Fatal(err)
	}
	out := in
	out.Objects = append([]resource.Object(nil), in.Objects...)
	for i := range extra {
		extra[i].Created = uint64(len(in.Objects) + i + 1)
	}
	out.Objects = append(out.Objects, extra...)
	return out
}

// TestSidecarScopes covers what Istio does with a Sidecar beyond its egress hosts: no egress
// means the default "*/*" (not "nothing"), "." in the mesh root namespace's Sidecar is the
// workload's namespace, Sidecars do not apply to gateways, and the fields not translated
// (ingress, outboundTrafficPolicy ALLOW_ANY and egressProxy, inboundConnectionPool) are
// reported for the proxy the Sidecar applies to.
func TestSidecarScopes(t *testing.T) {
	base := withYAML(t, loadInput(t, "testdata/authz-allow-nothing"), `
apiVersion: canton.dev/v1
kind: Service
metadata: {name: cache, namespace: shared}
spec:
  ports: [{name: http, port: 6379, protocol: HTTP}]
`)
	const (
		cache       = "outbound|6379||cache.shared.demo.mesh"
		productpage = "outbound|9080||productpage.bookinfo.demo.mesh"
	)
	gateway := Node{ID: "ingress-1", Namespace: "bookinfo.demo.mesh", Labels: map[string]string{"istio": "ingressgateway"}, Kind: KindGateway}
	cases := []struct {
		name, sidecars string
		node           Node
		want, notWant  []string
		wantSkips      []string
	}{
		{"no egress is */*", `
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: productpage, namespace: bookinfo}
spec:
  workloadSelector: {labels: {app: productpage}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:9080
  outboundTrafficPolicy:
    mode: ALLOW_ANY
    egressProxy: {host: egress.shared}
  inboundConnectionPool: {http: {http1MaxPendingRequests: 10}}
`, defaultNode(), []string{cache, productpage}, nil, []string{
			"Sidecar bookinfo.demo.mesh/productpage: ingress: ingress listeners are not supported",
			"Sidecar bookinfo.demo.mesh/productpage: outboundTrafficPolicy.mode: ALLOW_ANY is not supported",
			"Sidecar bookinfo.demo.mesh/productpage: outboundTrafficPolicy.egressProxy: not supported",
			"Sidecar bookinfo.demo.mesh/productpage: inboundConnectionPool: not supported",
		}},
		{"REGISTRY_ONLY is what the proxy does: not reported", `
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: bookinfo}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
`, defaultNode(), []string{cache, productpage}, nil, nil},
		{"dot in the root namespace's Sidecar is the workload's namespace", `
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: demo.mesh}
spec:
  egress: [{hosts: ["./*"]}]
`, defaultNode(), []string{productpage}, []string{cache}, nil},
		{"a gateway gets no Sidecar", `
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: bookinfo}
spec:
  egress: [{hosts: ["shared/*"]}]
  ingress: [{port: {number: 9080, protocol: HTTP, name: http}}]
`, gateway, []string{cache, productpage}, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Generate(withYAML(t, base, tc.sidecars), tc.node)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.want {
				if _, ok := res.Clusters[c]; !ok {
					t.Errorf("no cluster %s; clusters %v", c, sortedKeys(res.Clusters))
				}
			}
			for _, c := range tc.notWant {
				if _, ok := res.Clusters[c]; ok {
					t.Errorf("cluster %s should not be visible", c)
				}
			}
			var skips []string
			for _, s := range res.Skipped {
				if strings.HasPrefix(s.Object, "Sidecar ") {
					skips = append(skips, s.String())
				}
			}
			joined := strings.Join(skips, "\n")
			for _, w := range tc.wantSkips {
				if !strings.Contains(joined, w) {
					t.Errorf("skipped lacks %q:\n%s", w, joined)
				}
			}
			if len(tc.wantSkips) == 0 && len(skips) > 0 {
				t.Errorf("unexpected Sidecar skips:\n%s", joined)
			}
		})
	}
}
