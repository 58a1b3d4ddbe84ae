package scope

import (
	"bytes"
	"fmt"
	"testing"

	"canton.dev/canton/internal/resource"
)

// TestIndexesFollowEveryChange: along a long random log (and after Restore),
// listing one kind (served from the kind index) gives exactly the objects of
// that kind that a full listing gives, and Cut finds the Delegation whose
// zone holds a namespace exactly when one does.
func TestIndexesFollowEveryChange(t *testing.T) {
	log := randomLog(t, 600, 7)
	s := New(testDomain)
	check := func(s *State, when string) {
		t.Helper()
		all := s.List("", "")
		for _, k := range resource.Kinds() {
			for _, ns := range []string{"", testDomain, bk, "shop.demo.mesh", "a.shop.demo.mesh"} {
				var want []string
				for _, o := range all {
					if o.Kind == k.Name && (ns == "" || o.Namespace == ns) {
						want = append(want, fmt.Sprintf("%s/%s@%d", o.Namespace, o.Name, o.Version))
					}
				}
				var got []string
				for _, o := range s.List(k.Name, ns) {
					got = append(got, fmt.Sprintf("%s/%s@%d", o.Namespace, o.Name, o.Version))
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("%s: List(%s, %q) = %v, want %v", when, k.Name, ns, got, want)
				}
			}
		}
		for _, ns := range []string{testDomain, bk, "shop.demo.mesh", "a.shop.demo.mesh", "b.a.shop.demo.mesh", "other.mesh", "xshop.demo.mesh"} {
			want := ""
			for _, d := range s.Delegations() {
				if dom, err := delegationDomain(d); err == nil && (ns == dom || resource.IsSubdomain(ns, dom)) {
					want = d.Name
				}
			}
			got := ""
			if d, ok := s.Cut(ns); ok {
				got = d.Name
			}
			if got != want {
				t.Fatalf("%s: Cut(%s) = %q, want %q", when, ns, got, want)
			}
		}
	}
	cuts := 0
	for i, b := range log {
		s.Apply(uint64(i+1), b)
		if _, ok := s.Cut("a.shop.demo.mesh"); ok {
			cuts++
		}
		if i%50 == 0 {
			check(s, fmt.Sprintf("after index %d", i+1))
		}
	}
	if cuts == 0 || cuts == len(log) {
		t.Fatalf("the log never moves the zone cut (%d of %d indices cut)", cuts, len(log))
	}
	check(s, "at the end")
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r := New(testDomain)
	if err := r.Restore(snap); err != nil {
		t.Fatal(err)
	}
	check(r, "after Restore")
}

// TestCaptureSnapshotIsAsOfCapture: a captured snapshot, encoded after more
// entries were applied (changing, deleting and adding objects and lineage),
// gives the bytes of a snapshot taken at the capture.
func TestCaptureSnapshotIsAsOfCapture(t *testing.T) {
	log := randomLog(t, 600, 11)
	a, b := New(testDomain), New(testDomain)
	applyLog(t, a, log[:300], 1)
	applyLog(t, b, log[:300], 1)
	encode := a.CaptureSnapshot()
	applyLog(t, a, log[300:], 301)
	got, err := encode()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := b.Snapshot()
	if !bytes.Equal(got, want) {
		t.Fatal("a snapshot captured before more entries were applied encodes other bytes than one taken then")
	}
	now, _ := a.Snapshot()
	if bytes.Equal(now, want) {
		t.Fatal("the entries applied after the capture changed nothing: the test proves nothing")
	}
}

// TestLeasesRevision moves with the entries that grant or remove leases (and
// with Restore), not with the others.
func TestLeasesRevision(t *testing.T) {
	s := newState(t)
	steps := []struct {
		m    Mutation
		want uint64 // LeasesRevision after the entry
	}{
		{put(svc(bk, "web", 80)), 0},
		{Mutation{Op: OpGrantLease, Proposer: "anchor/a1", Lease: &Lease{TTLSeconds: 10}}, 3},
		{put(workload(bk, "w1", 3)), 3},
		{Mutation{Op: OpRevokeLease, Proposer: "anchor/a1", LeaseIDs: []uint64{99}}, 3}, // rejected
		{Mutation{Op: OpExpireLeases, Proposer: "anchor/a1", LeaseIDs: []uint64{3}}, 6},
		{del("Service", bk, "web"), 6},
	}
	for i, st := range steps {
		index := uint64(i + 2)
		s.Apply(index, encode(t, st.m))
		if got := s.LeasesRevision(); got != st.want {
			t.Fatalf("after %s at index %d: LeasesRevision %d, want %d", st.m.Op, index, got, st.want)
		}
	}
	snap, _ := s.Snapshot()
	r := New(testDomain)
	if err := r.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if got := r.LeasesRevision(); got != s.Revision() {
		t.Fatalf("after Restore: LeasesRevision %d, want the snapshot's revision %d", got, s.Revision())
	}
}
