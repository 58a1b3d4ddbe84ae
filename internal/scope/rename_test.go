package scope

import (
	"bytes"
	"encoding/json"
	"testing"

	"canton.dev/canton/internal/resource"
)

func rename(ns, name, newName string) Mutation {
	return Mutation{Op: OpRename, Proposer: admin, Kind: "svc", Namespace: ns, Name: name, NewName: newName}
}

func grant() Mutation {
	return Mutation{Op: OpGrantLease, Proposer: "anchor/a1", Lease: &Lease{TTLSeconds: 15}}
}

func workloadOf(ns, name, service string, lease uint64) resource.Object {
	o := workload(ns, name, lease)
	o.Spec = json.RawMessage(`{"service":"` + service + `","address":"127.0.0.1","port":9080,"lease":` + itoa(lease) + `,"proxy":"p-` + name + `"}`)
	return o
}

func wantAlias(ns, name, target string) func(t *testing.T, s *State, r Result) {
	return func(t *testing.T, s *State, r Result) {
		t.Helper()
		o, ok := s.Get("Alias", ns, name)
		if !ok {
			t.Fatalf("Alias %s/%s does not exist", ns, name)
		}
		spec, err := resource.Typed(o)
		if err != nil {
			t.Fatal(err)
		}
		a := spec.(*resource.AliasSpec)
		if a.Target != target || len(a.Actions) != 2 || a.Actions[0] != "resolve" || a.Actions[1] != "invoke" {
			t.Errorf("Alias %s/%s = %+v, want target %s, actions [resolve invoke]", ns, name, a, target)
		}
	}
}

func wantWorkloadService(ns, name, service string, version uint64) func(t *testing.T, s *State, r Result) {
	return func(t *testing.T, s *State, r Result) {
		t.Helper()
		o, ok := s.Get("Workload", ns, name)
		if !ok {
			t.Fatalf("Workload %s/%s does not exist", ns, name)
		}
		spec, err := resource.Typed(o)
		if err != nil {
			t.Fatal(err)
		}
		w := spec.(*resource.WorkloadSpec)
		if w.Service != service || o.Version != version || w.Proxy != "p-"+name || w.Port != 9080 {
			t.Errorf("Workload %s/%s: service %s version %d spec %+v; want service %s version %d", ns, name, w.Service, o.Version, w, service, version)
		}
	}
}

func TestRename(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
	}{
		{"moves service, leaves alias, moves workloads", []step{
			{m: put(svc(bk, "reviews", 9080), svc(bk, "ratings", 9080))}, // 2
			{m: grant()}, // 3
			{m: put(workloadOf(bk, "reviews-a", "reviews", 3), workloadOf(bk, "reviews-b", "reviews", 3), workloadOf(bk, "ratings-a", "ratings", 3))}, // 4
			{m: rename(bk, "reviews", "critiques"), check: all( // 5
				wantGone("Service", bk, "reviews"),
				wantObject("Service", bk, "critiques", "00c0ffee-2", 5, 2),
				wantObject("Alias", bk, "reviews", "00c0ffee-5", 5, 5),
				wantAlias(bk, "reviews", "00c0ffee-2"),
				wantWorkloadService(bk, "reviews-a", "critiques", 5),
				wantWorkloadService(bk, "reviews-b", "critiques", 5),
				wantWorkloadService(bk, "ratings-a", "ratings", 4),
				wantObject("Workload", bk, "reviews-a", "00c0ffee-4", 5, 4),
				func(t *testing.T, s *State, r Result) {
					var got []string
					for _, o := range r.Objects {
						got = append(got, o.Kind+"/"+o.Name+"@"+itoa(o.Version))
					}
					if j := join(got); j != "Service/critiques@5 Alias/reviews@5 Workload/reviews-a@5 Workload/reviews-b@5" {
						t.Errorf("result objects = %s", j)
					}
					evs, err := s.Events(5)
					if err != nil {
						t.Fatal(err)
					}
					got = nil
					for _, e := range evs {
						got = append(got, e.Type+":"+e.Object.Kind+"/"+e.Object.Name)
					}
					if j := join(got); j != "delete:Service/reviews put:Service/critiques put:Alias/reviews put:Workload/reviews-a put:Workload/reviews-b" {
						t.Errorf("events = %s", j)
					}
				})},
			// Workloads under the lease still go with it after the move.
			{m: Mutation{Op: OpRevokeLease, Proposer: admin, LeaseIDs: []uint64{3}}, check: all(wantGone("Workload", bk, "reviews-a"), wantGone("Workload", bk, "ratings-a"))},
			// Renaming back is refused while the alias holds the old name.
			{m: rename(bk, "critiques", "reviews"), code: CodeConflict},
			{m: del("Alias", bk, "reviews")},
			{m: rename(bk, "critiques", "reviews"), check: all(wantObject("Service", bk, "reviews", "00c0ffee-2", 9, 2), wantAlias(bk, "critiques", "00c0ffee-2"))},
		}},
		{"rejections", []step{
			{m: put(svc(bk, "a", 1), svc(bk, "b", 1))}, // 2
			{m: rename(bk, "nope", "c"), code: CodeNotFound, msg: "not-found: Service bookinfo.demo.mesh/nope does not exist"},
			{m: rename(bk, "a", "b"), code: CodeExists, msg: "exists: Service bookinfo.demo.mesh/b already exists (uid 00c0ffee-2.1)"},
			{m: rename(bk, "a", "a"), code: CodeInvalid},
			{m: rename(bk, "a", "Not_A_Name"), code: CodeInvalid},
			{m: rename(bk, "a", ""), code: CodeInvalid, msg: "invalid: namespace, name and newName: required"},
			{m: Mutation{Op: OpRename, Proposer: admin, Kind: "dr", Namespace: bk, Name: "a", NewName: "c"}, code: CodeInvalid,
				msg: "invalid: kind: only a Service can be renamed, not a DestinationRule"},
			{m: rename("other.mesh", "a", "c"), code: CodeOutOfZone},
			{m: Mutation{Op: OpRename, Proposer: admin, Namespace: bk, Name: "a", NewName: "c", IfVersion: u64(7)}, code: CodeConflict,
				msg: "conflict: Service bookinfo.demo.mesh/a: expected version 7, found 2"},
			{m: Mutation{Op: OpRename, Proposer: admin, Namespace: bk, Name: "a", NewName: "c", IfVersion: u64(0)}, code: CodeInvalid},
			{m: put(resource.Object{Kind: "Alias", Namespace: bk, Name: "c", Spec: json.RawMessage(`{"target":"x","actions":["resolve"]}`)})}, // 12
			{m: rename(bk, "a", "c"), code: CodeConflict},
			{raw: []byte(`{"op":"rename","proposer":"p","namespace":"` + bk + `","name":"a","newName":"d","leaseIds":[1]}`), code: CodeInvalid,
				msg: `invalid: decode mutation: leaseIds: not allowed with op "rename"`},
			{raw: []byte(`{"op":"put","proposer":"p","newName":"d","objects":[{"kind":"svc","namespace":"` + bk + `","name":"z","spec":{"ports":[{"name":"h","port":1}]}}]}`), code: CodeInvalid,
				msg: `invalid: decode mutation: newName: not allowed with op "put"`},
			{m: Mutation{Op: OpRename, Proposer: admin, Namespace: bk, Name: "a", NewName: "d", IfVersion: u64(2)}, check: all(
				wantObject("Service", bk, "d", "00c0ffee-2", 16, 2), wantAlias(bk, "a", "00c0ffee-2"))},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { runSteps(t, tc.steps) })
	}
}

// TestRenameDeterministic applies the same log with a rename to two States (one restored
// from a snapshot midway) and checks byte-identical snapshots and a valid lineage.
func TestRenameDeterministic(t *testing.T) {
	log := encodeLog(t, []Mutation{
		genesis(),
		put(svc(bk, "reviews", 9080)),
		grant(),
		put(workloadOf(bk, "w1", "reviews", 3), workloadOf(bk, "w2", "reviews", 3)),
		rename(bk, "reviews", "critiques"),
		put(svc(bk, "reviews2", 1)),
	})
	a := New(testDomain)
	applyLog(t, a, log, 1)
	b := New(testDomain)
	applyLog(t, b, log[:3], 1)
	snap, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	c := New(testDomain)
	if err := c.Restore(snap); err != nil {
		t.Fatal(err)
	}
	applyLog(t, c, log[3:], 4)
	sa, _ := a.Snapshot()
	sc, _ := c.Snapshot()
	if !bytes.Equal(sa, sc) {
		t.Errorf("snapshots differ:\n%s\n%s", sa, sc)
	}
	recs := a.Lineage(0, 0)
	if err := VerifyLineage(recs); err != nil {
		t.Fatal(err)
	}
	last := recs[len(recs)-2]
	if want := `{"op":"rename","proposer":"` + admin + `","kind":"Service","namespace":"` + bk + `","name":"reviews","newName":"critiques"}`; last.Index != 5 || string(last.Mutation) != want {
		t.Errorf("lineage record %d: %s\nwant %s", last.Index, last.Mutation, want)
	}
	if _, ok := a.Get("Service", bk, "critiques"); !ok {
		t.Error("renamed Service missing")
	}
}
