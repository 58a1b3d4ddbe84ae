package anchor

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"canton.dev/canton/internal/resolve/proof"
)

// referralStep is a proof step that followed referrals to each of domains
// (signed at signedAt, valid for ttl), each naming anchor "<first label>-1"
// and a CA "<domain> CA".
func referralStep(signedAt time.Time, ttl time.Duration, domains ...string) proof.Step {
	var s proof.Step
	parent := "demo.mesh"
	for _, d := range domains {
		label, _, _ := strings.Cut(d, ".")
		s.Referrals = append(s.Referrals, proof.Signed{Statement: proof.Statement{
			Kind: proof.KindReferral, Scope: parent, Name: d, Anchors: []string{label + "-1"},
			ChildCA: []byte(d + " CA"), SignedAt: signedAt.Unix(), TTL: uint32(ttl / time.Second),
		}})
		parent = d
	}
	return s
}

// routeOf describes the route to ns as "anchors,anchors" (hops in order).
func routeOf(t *testing.T, a *Anchor, ns string) string {
	t.Helper()
	h, hops, err := a.route(ns)
	if err != nil {
		t.Fatal(err)
	}
	if h != nil {
		return "hosted " + h.domain
	}
	var out []string
	for _, hp := range hops {
		out = append(out, strings.Join(hp.anchors, "+"))
	}
	return strings.Join(out, ",")
}

// TestRouteUsesTheDeepestLearnedReferral: an anchor hosting no scope above
// a namespace asks the anchors of the deepest referral it learned first
// while the referral is valid, and the root's voters only after them; once
// expired the root comes first (to refresh it) and the learned anchors
// after; past MaxStale the referral is forgotten. A namespace of a scope
// hosted here is answered here whatever was learned.
func TestRouteUsesTheDeepestLearnedReferral(t *testing.T) {
	a := &Anchor{
		cfg:    Config{MaxStale: time.Hour},
		meta:   &meta{ID: "w-1", Mesh: "demo.mesh", RootVoters: []string{"r1", "r2"}},
		scopes: map[string]*hosted{},
	}
	now := time.Now()
	if got := routeOf(t, a, "shop.demo.mesh"); got != "r1+r2" {
		t.Fatalf("nothing learned: route %s, want the root voters", got)
	}
	a.referrals.learn(&proof.Proof{Steps: []proof.Step{referralStep(now, 30*time.Second, "shop.demo.mesh", "pay.shop.demo.mesh")}})
	for ns, want := range map[string]string{
		"shop.demo.mesh":        "shop-1,r1+r2",
		"orders.shop.demo.mesh": "shop-1,r1+r2",
		"pay.shop.demo.mesh":    "pay-1,r1+r2",
		"eu.pay.shop.demo.mesh": "pay-1,r1+r2",
		"web.demo.mesh":         "r1+r2",
		"shopping.demo.mesh":    "r1+r2", // not below shop.demo.mesh
		"demo.mesh":             "r1+r2",
	} {
		if got := routeOf(t, a, ns); got != want {
			t.Errorf("route to %s: %s, want %s", ns, got, want)
		}
	}
	if _, _, err := a.route("orders.web.example"); err == nil {
		t.Error("route to a namespace outside the mesh: no error")
	}
	if _, ids, _ := a.governing("pay.shop.demo.mesh"); fmt.Sprint(ids) != "[pay-1 r1 r2]" {
		t.Errorf("governing pay.shop: %v, want [pay-1 r1 r2]", ids)
	}

	// Expired: the walk first, the learned anchors while it cannot be made.
	a.referrals.learn(&proof.Proof{Steps: []proof.Step{referralStep(now.Add(-time.Minute), 30*time.Second, "web.demo.mesh")}})
	if got := routeOf(t, a, "web.demo.mesh"); got != "r1+r2,web-1" {
		t.Errorf("expired referral: route %s, want the root first, then web-1", got)
	}
	// An older referral does not replace a newer one.
	a.referrals.learn(&proof.Proof{Steps: []proof.Step{referralStep(now.Add(-2*time.Minute), 30*time.Second, "shop.demo.mesh")}})
	if got := routeOf(t, a, "shop.demo.mesh"); got != "shop-1,r1+r2" {
		t.Errorf("after learning an older referral: route %s", got)
	}
	// Past MaxStale: forgotten.
	a.referrals.learn(&proof.Proof{Steps: []proof.Step{referralStep(now.Add(-2*time.Hour), 30*time.Second, "old.demo.mesh")}})
	if got := routeOf(t, a, "old.demo.mesh"); got != "r1+r2" {
		t.Errorf("referral expired past MaxStale: route %s, want the root voters alone", got)
	}
	if _, ok := a.referrals.byD["old.demo.mesh"]; ok {
		t.Error("a referral expired past MaxStale is still remembered")
	}
	// Forgetting (an answer through it was refused) goes back to the walk.
	r, _ := a.referrals.deepest("pay.shop.demo.mesh", "", now, time.Hour)
	a.referrals.forget(r)
	if got := routeOf(t, a, "pay.shop.demo.mesh"); got != "shop-1,r1+r2" {
		t.Errorf("after forgetting pay.shop: route %s, want shop's learned anchors", got)
	}
}

// TestCheckLearnedNeedsTheNamedCAAndAnchor: an answer obtained through a
// learned referral must be signed as its scope by the CA and one of the
// anchors the referral named.
func TestCheckLearnedNeedsTheNamedCAAndAnchor(t *testing.T) {
	r := &referral{domain: "shop.demo.mesh", parent: "demo.mesh", anchors: []string{"a5"}, childCA: []byte("shop CA")}
	final := func(scope, anchor, ca string) proof.Proof {
		return proof.Proof{Steps: []proof.Step{{Final: proof.Signed{
			Statement: proof.Statement{Kind: proof.KindAnswer, Scope: scope, Name: "cart." + scope, Anchor: anchor},
			Chain:     [][]byte{[]byte(ca)},
		}}}}
	}
	for _, tc := range []struct {
		p    proof.Proof
		want string // "" for accepted, else part of the error
	}{
		{final("shop.demo.mesh", "a5", "shop CA"), ""},
		{final("shop.demo.mesh", "a5", "other CA"), "another CA"},
		{final("shop.demo.mesh", "a6", "shop CA"), `anchor "a6"`},
		{final("pay.shop.demo.mesh", "a5", "shop CA"), "without a statement signed as scope shop.demo.mesh"},
		{proof.Proof{}, "empty proof"},
	} {
		err := checkLearned(&tc.p, r)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: refused: %v", tc.p.Steps, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: %v, want an error with %q", tc.p.Steps, err, tc.want)
		}
	}
	// A referral of the child's own (the answer came from deeper) counts too.
	p := proof.Proof{Steps: []proof.Step{referralStep(time.Now(), time.Minute, "shop.demo.mesh", "pay.shop.demo.mesh")}}
	p.Steps[0].Referrals = p.Steps[0].Referrals[1:] // the child's anchors start their walk at shop
	p.Steps[0].Referrals[0].Anchor = "a5"
	p.Steps[0].Referrals[0].Chain = [][]byte{[]byte("shop CA")}
	if err := checkLearned(&p, r); err != nil {
		t.Errorf("answer vouched for by shop's referral to pay.shop: %v", err)
	}
	if !slices.Equal(r.anchors, []string{"a5"}) {
		t.Fatal("checkLearned changed the referral")
	}
}
