package xds

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"canton.dev/canton/internal/resource"
)

// generateAlone is the translation without sharing, as Generate worked before the outbound
// part was shared between proxies: one gen for the whole node runs every generator, outbound
// and per node, and every resource is encoded and hashed for this node.
func generateAlone(in Input, m *model, node Node) (Resources, error) {
	g := newGen(in, m, node)
	if err := g.checkNode(); err != nil {
		return Resources{}, err
	}
	for _, sk := range m.skips {
		g.skipped[sk] = true
	}
	g.computeVisible()
	out := newResources()
	for _, gr := range slices.Concat(outboundGenerators, nodeGenerators) {
		if err := gr.run(g, out); err != nil {
			return Resources{}, fmt.Errorf("generate %s: %w", gr.name, err)
		}
	}
	if err := out.computeVersions(); err != nil {
		return Resources{}, err
	}
	out.Skipped = sortedSkips(g.skipped)
	return *out, nil
}

// loadFiles reads the objects of files, in order, as loadInput reads a case.
func loadFiles(t testing.TB, files ...string) Input {
	t.Helper()
	var objs []resource.Object
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		o, err := resource.Parse(f, b, testMesh, "bookinfo")
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o...)
	}
	for i := range objs {
		objs[i].Created = uint64(i + 1)
	}
	return Input{Mesh: testMesh, Scope: testMesh, Objects: objs, Revision: 7}
}

// knownFeatures are the capabilities the translation asks nodes about.
var knownFeatures = []string{FeatureDNSCluster, FeatureMaxRequestsPerConnection, FeatureCORS, FeatureRetryPreviousHosts,
	FeatureTransportSocketMatches, "cluster.locality_weighted_lb"}

// labelPool lists label sets that the policies of m select or compare, so that node variants
// hit (and miss) Sidecars, DestinationRules, route matches, Gateways, security policies and
// locality rules.
func labelPool(m *model) []map[string]string {
	pool := []map[string]string{nil, {"app": "productpage", "version": "v1"}, {"app": "reviews", "version": "v2"},
		{"istio": "ingressgateway"}, {LabelRegion: "us-east", LabelZone: "zone-a"}, {LabelRegion: "us-west", LabelZone: "zone-a", LabelSubzone: "s1"},
		{LabelRegion: "eu-central"}, {"unselected": "x"}}
	add := func(l map[string]string) {
		if len(l) > 0 {
			pool = append(pool, l)
		}
	}
	for _, sc := range m.sidecars {
		add(sc.spec.GetWorkloadSelector().GetLabels())
	}
	for _, dr := range m.drs {
		add(dr.spec.GetWorkloadSelector().GetMatchLabels())
	}
	for _, vs := range m.vss {
		for _, hr := range vs.spec.GetHttp() {
			for _, mt := range hr.GetMatch() {
				add(mt.GetSourceLabels())
			}
		}
		for _, tr := range vs.spec.GetTcp() {
			for _, mt := range tr.GetMatch() {
				add(mt.GetSourceLabels())
			}
		}
	}
	for _, gw := range m.gateways {
		add(gw.spec.GetSelector())
	}
	for _, pa := range m.pas {
		add(pa.spec.GetSelector().GetMatchLabels())
	}
	for _, ap := range m.aps {
		add(ap.spec.GetSelector().GetMatchLabels())
	}
	for _, ra := range m.ras {
		add(ra.spec.GetSelector().GetMatchLabels())
	}
	for _, h := range sortedKeys(m.services) {
		for _, e := range m.services[h].endpoints {
			add(e.labels)
		}
	}
	return pool
}

// nodeVariants derives n nodes from base, all valid and all different: per-proxy fields
// (ID, addresses, ports, path normalization, certificate, service) and the inputs of the
// outbound part (namespace, kind, labels, capabilities) vary.
func nodeVariants(rng *rand.Rand, base Node, pool []map[string]string, n int) []Node {
	namespaces := []string{base.Namespace, "bookinfo.demo.mesh", "shop.demo.mesh", "data.demo.mesh"}
	pathModes := []string{"", PathNormalizationNone, PathNormalizationBase, PathNormalizationMergeSlashes}
	var out []Node
	for i := range n {
		v := base
		v.ID = fmt.Sprintf("%s-%d", base.ID, i)
		if i == 0 {
			out = append(out, v) // the base itself
			continue
		}
		if rng.IntN(3) == 0 {
			v.Namespace = namespaces[rng.IntN(len(namespaces))]
		}
		if rng.IntN(4) == 0 && base.kind() != KindGateway && len(base.Upstreams) == 0 {
			v.Kind = KindGateway
		}
		labels := map[string]string{}
		for range rng.IntN(3) {
			maps.Copy(labels, pool[rng.IntN(len(pool))])
		}
		if rng.IntN(3) == 0 {
			labels = maps.Clone(base.Labels)
		}
		if rng.IntN(2) == 0 {
			labels["pod"] = fmt.Sprintf("p%d", i) // unique per proxy, selected by nothing
		}
		v.Labels = labels
		switch rng.IntN(4) {
		case 0:
			v.Capabilities = nil
		case 1:
			v.Capabilities = map[string]bool{}
		default:
			v.Capabilities = map[string]bool{}
			for _, f := range knownFeatures {
				v.Capabilities[f] = rng.IntN(2) == 0
			}
		}
		if rng.IntN(2) == 0 {
			v.Service = []string{"", "productpage", "reviews", "ratings", "istio-ingressgateway"}[rng.IntN(5)]
		}
		ip := fmt.Sprintf("10.%d.%d.%d", i/65536%256, i/256%256, i%256)
		if rng.IntN(5) > 0 && v.OutboundPort != 0 {
			v.OutboundPort = uint32(25000 + i)
		}
		if rng.IntN(5) == 0 && v.kind() == KindSidecar {
			v.OutboundPort = 0
		}
		switch {
		case v.kind() == KindGateway:
			v.InboundPort, v.AppAddress = 0, ""
			v.InboundAddress = []string{"", "127.0.0.2", ip}[rng.IntN(3)]
		case rng.IntN(5) == 0:
			v.InboundPort, v.InboundAddress, v.AppAddress = 0, "", ""
		default:
			v.InboundPort = uint32(16000 + i)
			v.InboundAddress = []string{"", ip, "127.0.0.1"}[rng.IntN(3)]
			v.AppAddress = fmt.Sprintf("%s:%d", ip, 8000+rng.IntN(2000))
		}
		v.AdminAddress = ip + ":15000"
		v.PathNormalization = pathModes[rng.IntN(len(pathModes))]
		if rng.IntN(4) == 0 {
			v.CertificateChain, v.PrivateKey = []byte("chain "+v.ID), []byte("key "+v.ID)
		}
		out = append(out, v)
	}
	return out
}

// TestSharedOutboundMatchesGeneratingAlone generates the configuration of many distinct proxies
// of every testdata input through one Snapshot, concurrently, so that they share outbound parts,
// and checks that every proxy gets exactly, byte for byte and version for version, what
// generating it alone (without any sharing) gives.
func TestSharedOutboundMatchesGeneratingAlone(t *testing.T) {
	cases, err := filepath.Glob("testdata/*/input.yaml")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	// Besides the golden cases, policies that select the caller on the outbound side.
	cases = append(cases, "testdata/outbound/selectors.yaml")
	for _, c := range cases {
		dir := filepath.Dir(c)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			var in Input
			if filepath.Base(c) == "input.yaml" {
				in = loadInput(t, dir)
			} else {
				in = loadFiles(t, "testdata/bookinfo.yaml", c)
			}
			snap, err := NewSnapshot(in)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(uint64(len(dir)), 7))
			pool := labelPool(snap.m)
			gw := Node{ID: "ingress", Namespace: "bookinfo.demo.mesh", Kind: KindGateway, Labels: map[string]string{"istio": "ingressgateway"}}
			reviews := defaultNode()
			reviews.ID, reviews.Service, reviews.Labels = "reviews", "reviews", map[string]string{"app": "reviews", "version": "v2"}
			var nodes []Node
			for _, base := range []Node{loadNode(t, dir), defaultNode(), reviews, gw} {
				nodes = append(nodes, nodeVariants(rng, base, pool, 12)...)
			}
			shared := make([]Resources, len(nodes))
			errs := make([]error, len(nodes))
			var wg sync.WaitGroup
			for i, n := range nodes {
				wg.Go(func() { shared[i], errs[i] = snap.Generate(n) })
			}
			wg.Wait()
			keys := map[outboundKey]bool{}
			for i, n := range nodes {
				k, _ := snap.outboundKeyOf(n)
				keys[k] = true
				alone, err := generateAlone(in, snap.m, n)
				if (err == nil) != (errs[i] == nil) {
					t.Fatalf("node %+v: shared error %v, alone %v", n, errs[i], err)
				}
				if err != nil {
					continue
				}
				if got, want := render(t, shared[i]), render(t, alone); !bytes.Equal(got, want) {
					t.Fatalf("node %+v: shared output differs from generating alone:\n%s", n, firstDiff(want, got))
				}
				if !reflect.DeepEqual(shared[i].Versions, alone.Versions) {
					t.Fatalf("node %+v: versions differ:\nshared %v\nalone  %v", n, shared[i].Versions, alone.Versions)
				}
				for _, typ := range Types {
					if got, want := shared[i].Version(typ), alone.Version(typ); got != want {
						t.Fatalf("node %+v: %s version %s, alone %s", n, typ, got, want)
					}
					if got, want := shared[i].sortedNames(typ), sortedKeys(alone.ByType(typ)); !slices.Equal(got, want) {
						t.Fatalf("node %+v: %s names %v, alone %v", n, typ, got, want)
					}
				}
				checkPacked(t, shared[i])
			}
			if len(keys) >= len(nodes) {
				t.Errorf("%d nodes had %d outbound keys: nothing was shared", len(nodes), len(keys))
			}
		})
	}
}

// checkPacked checks that every resource's Any encoding (shared ones from the outbound part)
// holds the resource.
func checkPacked(t *testing.T, r Resources) {
	t.Helper()
	for _, typ := range Types {
		for name, msg := range r.ByType(typ) {
			a, err := r.Packed(typ, name)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := anypb.New(msg)
			if !proto.Equal(a, want) {
				t.Fatalf("%s %s: packed encoding is not the resource's", typ, name)
			}
		}
	}
}

// TestSnapshotNextReusesUnchangedObjects checks that Next gives what NewSnapshot gives, and
// decodes again only the objects whose spec changed.
func TestSnapshotNextReusesUnchangedObjects(t *testing.T) {
	in := loadInput(t, "testdata/reviews-jason")
	first, err := NewSnapshot(in)
	if err != nil {
		t.Fatal(err)
	}
	changed := in
	changed.Objects = slices.Clone(in.Objects)
	var vsKey objectKey
	for i, o := range changed.Objects {
		if o.Kind == "VirtualService" && o.Name == "reviews" {
			o.Spec = []byte(strings.Replace(string(o.Spec), `"v2"`, `"v3"`, 1))
			changed.Objects[i] = o
			vsKey = objectKey{o.Kind, o.Namespace, o.Name}
		}
	}
	changed.Revision++
	next, err := first.Next(changed)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := NewSnapshot(changed)
	if err != nil {
		t.Fatal(err)
	}
	got, err := next.Generate(defaultNode())
	if err != nil {
		t.Fatal(err)
	}
	want, err := fresh.Generate(defaultNode())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(render(t, got), render(t, want)) || !reflect.DeepEqual(got.Versions, want.Versions) {
		t.Fatal("Next gives another configuration than NewSnapshot")
	}
	if d, _ := next.m.decoded.get(vsKey); vsKey.name == "" || d.typed == first.m.decoded.vs[vsKey].typed {
		t.Fatal("the changed VirtualService was not decoded again")
	}
	for _, m := range []map[objectKey]decodedSpec{next.m.decoded.vs, next.m.decoded.other} {
		for k, d := range m {
			if f, _ := first.m.decoded.get(k); k != vsKey && d.typed != f.typed {
				t.Errorf("%v: unchanged, decoded again", k)
			}
		}
	}
}

// BenchmarkGenerateDistinctProxies is the cost of one proxy's configuration once the outbound
// part is shared: proxies of one namespace that differ in ID, addresses and ports, as real
// sidecars do, with the type versions and names a stream needs.
func BenchmarkGenerateDistinctProxies(b *testing.B) {
	snap, err := NewSnapshot(scaleInput(b, 50))
	if err != nil {
		b.Fatal(err)
	}
	node := func(i int) Node {
		n := defaultNode()
		n.Namespace = "ns0.demo.mesh"
		ip := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		n.ID, n.InboundAddress, n.AppAddress, n.AdminAddress = fmt.Sprintf("p-%d", i), ip, ip+":9080", ip+":15000"
		n.OutboundPort = uint32(20000 + i%40000)
		return n
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := snap.Generate(node(i))
		if err != nil {
			b.Fatal(err)
		}
		for _, typ := range Types {
			res.Version(typ)
		}
	}
}

// TestHashVersionsIsUnchanged checks hashVersions against its definition: SHA-256 of the
// "name=version\n" lines in name order (all names when names is nil), first 12 bytes in hex.
func TestHashVersionsIsUnchanged(t *testing.T) {
	v := map[string]string{"b": "2", "a": "1", "c": "3"}
	def := func(names ...string) string {
		h := sha256.New()
		for _, n := range names {
			fmt.Fprintf(h, "%s=%s\n", n, v[n])
		}
		return hex.EncodeToString(h.Sum(nil)[:12])
	}
	for _, c := range []struct {
		names []string
		want  string
	}{
		{nil, def("a", "b", "c")},
		{[]string{}, def()},
		{[]string{"c", "a"}, def("a", "c")},
		{[]string{"a", "a", "b"}, def("a", "a", "b")},
		{[]string{"x"}, def("x")},
	} {
		if got := hashVersions(v, c.names); got != c.want {
			t.Errorf("hashVersions(%v) = %s, want %s", c.names, got, c.want)
		}
	}
}

// FuzzSharedOutboundMatchesAlone feeds manifests that resource.Parse accepts to one Snapshot for
// proxies that share outbound parts (and some that do not), and checks each one's configuration
// against generating it alone.
func FuzzSharedOutboundMatchesAlone(f *testing.F) {
	base, err := os.ReadFile("testdata/bookinfo.yaml")
	if err != nil {
		f.Fatal(err)
	}
	cases, _ := filepath.Glob("testdata/*/input.yaml")
	cases = append(cases, "testdata/outbound/selectors.yaml")
	for _, c := range cases {
		b, err := os.ReadFile(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append(append(append([]byte(nil), base...), "\n---\n"...), b...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := resource.Parse("fuzz.yaml", data, testMesh, "bookinfo")
		if err != nil {
			return
		}
		in := Input{Mesh: testMesh, Scope: testMesh, Objects: objs}
		snap, err := NewSnapshot(in)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(uint64(len(data)), 1))
		for _, n := range nodeVariants(rng, defaultNode(), labelPool(snap.m), 6) {
			got, err := snap.Generate(n)
			if err != nil {
				t.Fatalf("node %s: %v", n.ID, err)
			}
			want, err := generateAlone(in, snap.m, n)
			if err != nil {
				t.Fatalf("node %s alone: %v", n.ID, err)
			}
			if !bytes.Equal(render(t, got), render(t, want)) || !reflect.DeepEqual(got.Versions, want.Versions) {
				t.Fatalf("node %+v: shared configuration differs from generating alone:\n%s", n, firstDiff(render(t, want), render(t, got)))
			}
		}
	})
}

// TestVersionsAreStable generates the same proxy several times from an input whose listeners
// pack maps into Any (RBAC policies by name, JWT providers): every generation must give the
// same versions, or every scope change would push unchanged listeners again.
func TestVersionsAreStable(t *testing.T) {
	for _, dir := range []string{"testdata/authz-conditions", "testdata/authz-jwt-request-principals"} {
		in, node := loadInput(t, dir), loadNode(t, dir)
		first, err := Generate(in, node)
		if err != nil {
			t.Fatal(err)
		}
		for range 5 {
			again, err := Generate(in, node)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(again.Versions, first.Versions) {
				t.Fatalf("%s: versions differ between two generations of the same proxy:\n%v\n%v", dir, first.Versions, again.Versions)
			}
		}
	}
}
