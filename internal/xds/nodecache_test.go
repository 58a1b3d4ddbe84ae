package xds

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"testing"

	"canton.dev/canton/internal/resource"
)

// TestNextCarriesNodePartsOverOnlyWhenTheirInputsAreUnchanged checks the node cache across
// snapshots: for every testdata input and every object of it (of Services and Workloads, the
// first), the snapshot without the object
// is made with Next from the snapshot with it (which generated every node first, so its node
// parts are cached) and the other way round, and every node's configuration must be exactly
// what a fresh snapshot of the same input gives: resources, versions, type versions, skips and
// encodings. A change of routing only (a VirtualService or DestinationRule) must reuse the
// listeners of the plain sidecars.
func TestNextCarriesNodePartsOverOnlyWhenTheirInputsAreUnchanged(t *testing.T) {
	cases, err := filepath.Glob("testdata/*/input.yaml")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	cases = append(cases, "testdata/outbound/selectors.yaml")
	reused, freeReused := 0, 0
	for _, c := range cases {
		dir := filepath.Dir(c)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			var in Input
			if filepath.Base(c) == "input.yaml" {
				in = loadInput(t, dir)
			} else {
				in = loadFiles(t, "testdata/bookinfo.yaml", c)
			}
			full, err := NewSnapshot(in)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(uint64(len(dir)), 11))
			pool := labelPool(full.m)
			var nodes []Node
			for _, base := range []Node{loadNode(t, dir), defaultNode()} {
				nodes = append(nodes, nodeVariants(rng, base, pool, 3)...)
			}
			seen := map[string]bool{}
			for i, o := range in.Objects {
				if (o.Kind == "Service" || o.Kind == "Workload") && seen[o.Kind] {
					continue // the first of each is enough: they are many, and alike
				}
				seen[o.Kind] = true
				without := in
				without.Objects = slices.Delete(slices.Clone(in.Objects), i, i+1)
				without.Revision = in.Revision + 1
				what := fmt.Sprintf("without %s", o.Ref())
				routing := o.Kind == "VirtualService" || o.Kind == "DestinationRule"
				vs := o.Kind == "VirtualService"
				r, f := checkNext(t, what+" (from with)", full, without, nodes, routing, vs)
				reused, freeReused = reused+r, freeReused+f
				partial, err := NewSnapshot(without)
				if err != nil {
					t.Fatal(err)
				}
				r, f = checkNext(t, what+" (back to with)", partial, in, nodes, routing, vs)
				reused, freeReused = reused+r, freeReused+f
			}
		})
	}
	if reused == 0 {
		t.Error("no node part was ever carried over to the next snapshot")
	}
	if freeReused == 0 {
		t.Error("no outbound clusters and endpoints were ever carried over to the next snapshot")
	}
}

// checkNext generates nodes on prev (caching their node parts), then on prev.Next(in), and
// compares the latter with a fresh snapshot of in. It returns how many nodes got the listeners
// prev gave them (the same messages); when routing (only VirtualServices or DestinationRules
// changed), every plain sidecar whose outbound route configuration keeps or lacks the fault
// filter alike must. It also returns how many nodes' outbound parts kept the clusters and
// endpoints of prev's (freePart); when vs (only VirtualServices changed), every node whose
// outboundKey did not change must, and otherwise none may; likewise the snapshot's model keeps
// prev's but for the VirtualServices exactly when vs.
func checkNext(t *testing.T, what string, prev *Snapshot, in Input, nodes []Node, routing, vs bool) (reused, freeReused int) {
	t.Helper()
	before := make([]Resources, len(nodes))
	for i, n := range nodes {
		before[i], _ = prev.Generate(n)
		for _, typ := range Types {
			before[i].Version(typ) // remembered for the next snapshot's layered types
		}
	}
	next, err := prev.Next(in)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := NewSnapshot(in)
	if err != nil {
		t.Fatal(err)
	}
	if kept := reflect.ValueOf(next.m.services).UnsafePointer() == reflect.ValueOf(prev.m.services).UnsafePointer(); kept != vs {
		t.Fatalf("%s: Next kept the model's services: %t, only VirtualServices changed: %t", what, kept, vs)
	}
	for i, n := range nodes {
		got, err1 := next.Generate(n)
		want, err2 := fresh.Generate(n)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("%s: node %s: error %v, fresh %v", what, n.ID, err1, err2)
		}
		if err1 != nil {
			continue
		}
		if g, w := render(t, got), render(t, want); !bytes.Equal(g, w) {
			t.Fatalf("%s: node %+v: Next gives another configuration than a fresh snapshot:\n%s", what, n, firstDiff(w, g))
		}
		if !reflect.DeepEqual(got.Versions, want.Versions) || !reflect.DeepEqual(got.Skipped, want.Skipped) {
			t.Fatalf("%s: node %s: versions or skips differ from a fresh snapshot", what, n.ID)
		}
		for _, typ := range Types {
			if g, w := got.Version(typ), want.Version(typ); g != w {
				t.Fatalf("%s: node %s: %s version %s, fresh %s", what, n.ID, typ, g, w)
			}
		}
		same := len(got.Listeners) > 0
		for name, l := range got.Listeners {
			same = same && before[i].Listeners[name] == l
		}
		if same {
			reused++
			checkPacked(t, got)
			if !routing || !plainSidecar(n) {
				t.Fatalf("%s: node %s kept its listeners (plain sidecar: %t; only routing changed: %t)", what, n.ID, plainSidecar(n), routing)
			}
		}
		sharedBefore, _ := prev.outboundFor(n)
		sharedNext, _ := next.outboundFor(n)
		if routing && plainSidecar(n) && len(got.Listeners) > 0 && sharedBefore.fault == sharedNext.fault && !same {
			t.Fatalf("%s: only routing changed, but plain sidecar %s got new listeners", what, n.ID)
		}
		if n.kind() == KindProxyless {
			continue // generated as a sidecar; its outbound part is that sidecar's
		}
		kBefore, _ := prev.outboundKeyOf(n)
		kNext, _ := next.outboundKeyOf(n)
		switch keep := sharedBefore.free == sharedNext.free; {
		case keep && !vs:
			t.Fatalf("%s: node %s kept the outbound clusters and endpoints of the previous snapshot, but not only VirtualServices changed", what, n.ID)
		case !keep && vs && kBefore == kNext:
			t.Fatalf("%s: only VirtualServices changed, but node %s got new outbound clusters and endpoints", what, n.ID)
		case keep:
			freeReused++
			for _, typ := range []string{ClusterType, EndpointType} {
				if m, pm := sharedNext.res.ByType(typ), sharedBefore.res.ByType(typ); len(m) > 0 && reflect.ValueOf(m).UnsafePointer() != reflect.ValueOf(pm).UnsafePointer() {
					t.Fatalf("%s: node %s: the %s of the outbound part are not the previous snapshot's", what, n.ID, typ)
				}
			}
		}
	}
	return reused, freeReused
}

// TestNodeDigestCoversEveryField changes each field of a Node in turn and checks that its
// digest changes: a field added to Node must be added to nodeDigest.
func TestNodeDigestCoversEveryField(t *testing.T) {
	base := defaultNode()
	base.Capabilities = map[string]bool{}
	want := nodeDigest(base)
	typ := reflect.TypeOf(base)
	for i := range typ.NumField() {
		f := typ.Field(i)
		n := base
		v := reflect.ValueOf(&n).Elem().Field(i)
		switch x := v.Addr().Interface().(type) {
		case *string:
			*x += "x"
		case *uint32:
			*x++
		case *[]byte:
			*x = []byte("x")
		case *map[string]string:
			*x = map[string]string{"k": "v"}
		case *map[string]bool:
			*x = nil // every feature; base has none
		case *[]Upstream:
			*x = []Upstream{{Service: "reviews", Address: "127.0.0.1:9000"}}
		default:
			t.Fatalf("Node.%s has type %s: add it to nodeDigest and to this test", f.Name, f.Type)
		}
		if nodeDigest(n) == want {
			t.Errorf("Node.%s is not in nodeDigest", f.Name)
		}
	}
	// Values that move between fields must not collide.
	a, b := base, base
	a.InboundAddress, a.AppAddress = "1", "2"
	b.InboundAddress, b.AppAddress = "12", ""
	if nodeDigest(a) == nodeDigest(b) {
		t.Error("nodeDigest does not separate fields")
	}
	c := base
	c.Labels = map[string]string{"a=b": "c"}
	d := base
	d.Labels = map[string]string{"a": "b=c"}
	if nodeDigest(c) == nodeDigest(d) {
		t.Error("nodeDigest does not separate label keys from values")
	}
}

// BenchmarkPushDistinctProxies is one proxy's share of a push after a routing change, as the
// anchor makes it: 1,000 distinct proxies (as in BenchmarkGenerateDistinctProxies) had their
// configuration from the previous snapshot; a VirtualService changes, the next snapshot is made
// with Next, and every proxy's configuration is generated from it with the type versions a
// stream compares. The snapshot and the shared outbound part count, spread over the proxies.
func BenchmarkPushDistinctProxies(b *testing.B) {
	in := scaleInput(b, 50)
	const proxies = 1000
	nodes := make([]Node, proxies)
	for i := range nodes {
		n := defaultNode()
		n.Namespace = "ns0.demo.mesh"
		ip := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		n.ID, n.InboundAddress, n.AppAddress, n.AdminAddress = fmt.Sprintf("p-%d", i), ip, ip+":9080", ip+":15000"
		n.OutboundPort = uint32(20000 + i)
		nodes[i] = n
	}
	vs := slices.IndexFunc(in.Objects, func(o resource.Object) bool { return o.Kind == "VirtualService" && o.Name == "svc0" })
	flip := func(in Input, to string) Input {
		in.Objects = slices.Clone(in.Objects)
		o := in.Objects[vs]
		o.Spec = []byte(regexp.MustCompile(`"subset":"v\d"}}\]}\]}$`).ReplaceAllString(string(o.Spec), `"subset":"`+to+`"}}]}]}`))
		in.Objects[vs] = o
		in.Revision++
		return in
	}
	snap, err := NewSnapshot(in)
	if err != nil {
		b.Fatal(err)
	}
	generateAll := func(s *Snapshot, from, to int) string {
		var route string
		for _, n := range nodes[from:to] {
			res, err := s.Generate(n)
			if err != nil {
				b.Fatal(err)
			}
			for _, typ := range Types {
				res.Version(typ)
			}
			route = res.Version(RouteType)
		}
		return route
	}
	before := generateAll(snap, 0, proxies)
	subset := "v2"
	if next, _ := snap.Next(flip(in, subset)); generateAll(next, 0, 1) == before {
		b.Fatal("the flip does not change the routes")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%proxies == 0 {
			in = flip(in, subset)
			subset = map[string]string{"v1": "v2", "v2": "v1"}[subset]
			if snap, err = snap.Next(in); err != nil {
				b.Fatal(err)
			}
		}
		generateAll(snap, i%proxies, i%proxies+1)
	}
}

// FuzzNextMatchesFresh makes a snapshot of one fuzzed manifest, generates varied proxies on it
// (filling the node cache and the outbound parts), makes the snapshot of a second manifest with
// Next, and checks every proxy against a fresh snapshot of the second: resources, versions,
// type versions and skips. The seeds pair each testdata case with bookinfo alone (the case's
// objects removed: for some, VirtualServices only) and with the next case.
func FuzzNextMatchesFresh(f *testing.F) {
	base, err := os.ReadFile("testdata/bookinfo.yaml")
	if err != nil {
		f.Fatal(err)
	}
	cases, _ := filepath.Glob("testdata/*/input.yaml")
	var docs [][]byte
	for _, c := range cases {
		b, err := os.ReadFile(c)
		if err != nil {
			f.Fatal(err)
		}
		docs = append(docs, append(append(append([]byte(nil), base...), "\n---\n"...), b...))
	}
	for i, d := range docs {
		f.Add(d, base)
		f.Add(base, d)
		f.Add(d, docs[(i+1)%len(docs)])
	}
	parse := func(data []byte) (Input, bool) {
		objs, err := resource.Parse("fuzz.yaml", data, testMesh, "bookinfo")
		if err != nil {
			return Input{}, false
		}
		for i := range objs {
			objs[i].Created = uint64(i + 1)
		}
		return Input{Mesh: testMesh, Scope: testMesh, Objects: objs}, true
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		inA, okA := parse(a)
		inB, okB := parse(b)
		if !okA || !okB {
			return
		}
		inB.Revision = inA.Revision + 1
		first, err := NewSnapshot(inA)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(uint64(len(a)), uint64(len(b))))
		var nodes []Node
		for _, n := range []Node{defaultNode(), loadNode(t, "testdata/gateway")} {
			nodes = append(nodes, nodeVariants(rng, n, labelPool(first.m), 3)...)
		}
		for _, n := range nodes {
			if res, err := first.Generate(n); err == nil {
				for _, typ := range Types {
					res.Version(typ)
				}
			}
		}
		next, err := first.Next(inB)
		if err != nil {
			t.Fatal(err)
		}
		fresh, err := NewSnapshot(inB)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			got, err1 := next.Generate(n)
			want, err2 := fresh.Generate(n)
			if (err1 == nil) != (err2 == nil) {
				t.Fatalf("node %s: error %v, fresh %v", n.ID, err1, err2)
			}
			if err1 != nil {
				continue
			}
			if g, w := render(t, got), render(t, want); !bytes.Equal(g, w) {
				t.Fatalf("node %+v: Next gives another configuration than a fresh snapshot:\n%s", n, firstDiff(w, g))
			}
			if !reflect.DeepEqual(got.Versions, want.Versions) || !reflect.DeepEqual(got.Skipped, want.Skipped) {
				t.Fatalf("node %s: versions or skips differ from a fresh snapshot", n.ID)
			}
			for _, typ := range Types {
				if g, w := got.Version(typ), want.Version(typ); g != w {
					t.Fatalf("node %s: %s version %s, fresh %s", n.ID, typ, g, w)
				}
			}
		}
	})
}
