package anchor

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"canton.dev/canton/internal/resource"
	"canton.dev/canton/internal/scope"
	"canton.dev/canton/internal/xds"
)

// TestReferenceIndexFollowsChanges: the names a scope's objects refer to, as
// the reference index follows them change by change (and reads them again
// after a Restore compacted the events away), are always those a full
// reading of the scope gives.
func TestReferenceIndexFollowsChanges(t *testing.T) {
	const mesh, ns = "demo.mesh", "shop.demo.mesh"
	st := scope.New(mesh)
	index := uint64(1)
	apply := func(m scope.Mutation) {
		t.Helper()
		b, err := scope.Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		st.Apply(index, b)
		index++
	}
	apply(scope.Mutation{Op: scope.OpGenesis, Proposer: "anchor/a1", Genesis: &scope.Genesis{Domain: mesh, Incarnation: "00c0ffee", Anchors: []string{"a1"}}})
	var r referenceIndex
	check := func(when string) {
		t.Helper()
		want := xds.ReferencedHosts(st.List("", ""), mesh)
		if got := r.hosts(st, mesh); !slices.Equal(got, want) {
			t.Fatalf("%s: the index refers to %v, a full reading to %v", when, got, want)
		}
	}
	check("at genesis")
	rng := rand.New(rand.NewPCG(1, 2))
	seen := 0
	for i := range 300 {
		name := fmt.Sprintf("p%d", rng.IntN(6))
		host := fmt.Sprintf("svc%d.other%d.demo.mesh", rng.IntN(4), rng.IntN(3))
		var o resource.Object
		switch rng.IntN(4) {
		case 0:
			o = resource.Object{Kind: "VirtualService", Namespace: ns, Name: name,
				Spec: fmt.Appendf(nil, `{"hosts":[%q],"http":[{"route":[{"destination":{"host":%q}}]}]}`, name, host)}
		case 1:
			o = resource.Object{Kind: "DestinationRule", Namespace: ns, Name: name, Spec: fmt.Appendf(nil, `{"host":%q}`, host)}
		case 2:
			o = resource.Object{Kind: "Alias", Namespace: ns, Name: name, Spec: fmt.Appendf(nil, `{"target":%q,"actions":["resolve"]}`, host)}
		case 3:
			kinds := []string{"VirtualService", "DestinationRule", "Alias"}
			apply(scope.Mutation{Op: scope.OpDelete, Proposer: "p", Kind: kinds[rng.IntN(3)], Namespace: ns, Name: name})
		}
		if o.Kind != "" {
			apply(scope.Mutation{Op: scope.OpPut, Proposer: "p", Objects: []resource.Object{o}})
		}
		if rng.IntN(3) == 0 { // the index reads after a few changes at once too
			check(fmt.Sprintf("after change %d", i))
			seen = max(seen, len(r.hosts(st, mesh)))
		}
		if i == 150 {
			// A change the index has not read, then a restore: the events
			// it needs are gone, so it reads everything again.
			apply(scope.Mutation{Op: scope.OpPut, Proposer: "p", Objects: []resource.Object{{Kind: "DestinationRule", Namespace: ns, Name: "restored",
				Spec: []byte(`{"host":"late.other9.demo.mesh"}`)}}})
			snap, err := st.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			st = scope.New(mesh)
			if err := st.Restore(snap); err != nil {
				t.Fatal(err)
			}
			check("after a restore")
		}
	}
	if seen < 3 {
		t.Fatalf("at most %d names referred to at once: the test proves little", seen)
	}
}
