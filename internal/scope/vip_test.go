package scope

import (
	"net/netip"
	"slices"
	"testing"

	"canton.dev/canton/internal/resource"
)

func withRules(m Mutation) Mutation {
	m.Rules = RulesVIPs
	return m
}

func mustApply(t *testing.T, s *State, index uint64, m Mutation) Result {
	t.Helper()
	r := s.Apply(index, encode(t, m)).(Result)
	if r.Err != nil {
		t.Fatalf("apply %d (%s): %v", index, m.Op, r.Err)
	}
	return r
}

func vipsOf(t *testing.T, s *State, ns, name string) []string {
	t.Helper()
	o, ok := s.Get("Service", ns, name)
	if !ok {
		t.Fatalf("Service %s/%s missing", ns, name)
	}
	return o.VIPs
}

func checkVIPShape(t *testing.T, what string, vips []string) {
	t.Helper()
	if len(vips) != 1 {
		t.Fatalf("%s: VIPs %q, want one", what, vips)
	}
	if a, err := netip.ParseAddr(vips[0]); err != nil || !resource.IsVIP(a) {
		t.Fatalf("%s: VIP %q is not in %s", what, vips[0], resource.VIPPrefix)
	}
}

func TestServiceVIPs(t *testing.T) {
	const ns = "bookinfo.demo.mesh"
	s := newState(t)

	// Rules 0 (a log written before VIPs): nothing is allocated, so old logs replay unchanged.
	mustApply(t, s, 2, put(svc(ns, "legacy", 9080)))
	if v := vipsOf(t, s, ns, "legacy"); len(v) != 0 {
		t.Fatalf("rules 0 gave VIPs %q", v)
	}

	// Creation allocates; both Services of one put get different addresses.
	mustApply(t, s, 3, withRules(put(svc(ns, "reviews", 9080), svc(ns, "ratings", 9080))))
	reviews, ratings := vipsOf(t, s, ns, "reviews"), vipsOf(t, s, ns, "ratings")
	checkVIPShape(t, "reviews", reviews)
	checkVIPShape(t, "ratings", ratings)
	if reviews[0] == ratings[0] {
		t.Fatalf("reviews %q and ratings %q share a VIP", reviews, ratings)
	}

	// An update keeps them (and a no-op put stays a no-op).
	mustApply(t, s, 4, withRules(put(svc(ns, "reviews", 9090))))
	if got := vipsOf(t, s, ns, "reviews"); !slices.Equal(got, reviews) {
		t.Fatalf("update changed VIPs %q -> %q", reviews, got)
	}
	if r := mustApply(t, s, 5, withRules(put(svc(ns, "reviews", 9090)))); r.Objects[0].Version != 4 {
		t.Fatalf("re-applying the same Service made version %d, want unchanged 4", r.Objects[0].Version)
	}

	// A Service created under rules 0 gets its VIPs at its next put under rules 1.
	mustApply(t, s, 6, withRules(put(svc(ns, "legacy", 9080))))
	checkVIPShape(t, "legacy", vipsOf(t, s, ns, "legacy"))

	// A rename keeps them; the old name's VIPs are not given to anyone else.
	mustApply(t, s, 7, withRules(Mutation{Op: OpRename, Proposer: admin, Kind: "Service", Namespace: ns, Name: "reviews", NewName: "critiques"}))
	if got := vipsOf(t, s, ns, "critiques"); !slices.Equal(got, reviews) {
		t.Fatalf("rename changed VIPs %q -> %q", reviews, got)
	}

	// The same name in the same namespace hashes to the same place: deleted and re-created
	// it gets its old addresses back, since nobody took them.
	mustApply(t, s, 8, withRules(del("Service", ns, "ratings")))
	mustApply(t, s, 9, withRules(put(svc(ns, "ratings", 9080))))
	if got := vipsOf(t, s, ns, "ratings"); !slices.Equal(got, ratings) {
		t.Fatalf("re-created ratings got %q, want %q", got, ratings)
	}
	// Manifests show them under status, and Parse accepts that output back.
	o, _ := s.Get("Service", ns, "ratings")
	y, err := resource.ToYAML([]resource.Object{o}, testDomain)
	if err != nil {
		t.Fatal(err)
	}
	back, err := resource.Parse("svc.yaml", y, testDomain, "")
	if err != nil || len(back) != 1 || len(back[0].VIPs) != 0 {
		t.Fatalf("Parse(ToYAML) = %v, %v; want the Service without VIPs (status is the scope's):\n%s", back, err, y)
	}
}

// TestServiceVIPsProbe: when the hashed address is taken, the next free one is used, and a
// restored State knows which are taken.
func TestServiceVIPsProbe(t *testing.T) {
	const ns = "bookinfo.demo.mesh"
	want := resource.AllocateVIP(ns, "reviews", func(netip.Addr) bool { return false })

	s := newState(t)
	mustApply(t, s, 2, withRules(put(svc(ns, "reviews", 9080))))
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r := New(testDomain)
	if err := r.Restore(snap); err != nil {
		t.Fatal(err)
	}
	for _, st := range []*State{s, r} {
		if got := vipsOf(t, st, ns, "reviews"); !slices.Equal(got, []string{want.String()}) {
			t.Fatalf("VIPs %q, want %s", got, want)
		}
		// Force a collision: another Service holds the addresses "other" hashes to.
		taken := resource.AllocateVIP(ns, "other", func(netip.Addr) bool { return false })
		st.vips[taken] = objKey{"Service", ns, "squatter"}
		got := st.allocateVIPs(resource.Object{Kind: "Service", Namespace: ns, Name: "other"}, nil)
		if got[0] != taken.Next().String() {
			t.Fatalf("with %s taken the allocation is %q, want the next address %s", taken, got, taken.Next())
		}
	}
}

func TestDecodeRejectsNewerRules(t *testing.T) {
	m := put(svc("bookinfo.demo.mesh", "reviews", 9080))
	m.Rules = CurrentRules + 1
	b, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(b); err == nil {
		t.Fatalf("Decode accepted rules %d", m.Rules)
	}
}
