package resolve

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/resolve/proof"
)

// signedAnswer is answerFor signed by the CA of scope (its referral from
// the root scope included), as an anchor of that scope would send it.
func signedAnswer(t *testing.T, root, scopeCA *identity.CA, scope, addr string) *apipb.ResolveResponse {
	t.Helper()
	r := answerFor(t, addr)
	r.Canonical, r.Scope = "cart.shop.demo.mesh", scope
	now := time.Now()
	ref, err := proof.Sign(root, proof.Statement{Kind: proof.KindReferral, Scope: "demo.mesh", Name: "shop.demo.mesh", Anchor: "a1", Anchors: []string{"a2"}, ChildCA: scopeCA.Cert.Raw, TTL: 30}, now)
	if err != nil {
		t.Fatal(err)
	}
	f, err := proof.Sign(scopeCA, proof.Statement{Kind: proof.KindAnswer, Scope: scope, Name: "cart.shop.demo.mesh", Anchor: "a2", Digest: proof.PayloadOf(r).Digest(), TTL: 30}, now)
	if err != nil {
		t.Fatal(err)
	}
	r.Proof = (&proof.Proof{Steps: []proof.Step{{Referrals: []proof.Signed{ref}, Final: f}}}).Marshal()
	return r
}

// TestVerifiedRejectsForgedAnswers: the cache's lookup verifies every
// answer; a forged one is an error, and the cache serves the last verified
// answer (stale) instead of it.
func TestVerifiedRejectsForgedAnswers(t *testing.T) {
	root, err := identity.NewRootCA("demo.mesh", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	shop, err := root.NewIntermediate("shop.demo.mesh", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, err := root.NewIntermediate("shop.demo.mesh", time.Hour, time.Now()) // valid for the zone, but not the delegated CA
	if err != nil {
		t.Fatal(err)
	}
	var next *apipb.ResolveResponse
	lookup := Verified(func(ctx context.Context, name string) (*apipb.ResolveResponse, error) { return next, nil }, []*x509.Certificate{root.Cert})
	now := time.Now()
	c := New(lookup, time.Hour)
	c.now = func() time.Time { return now }

	next = signedAnswer(t, root, shop, "shop.demo.mesh", "127.0.0.7")
	if ans, found, err := c.Lookup(context.Background(), "cart.shop.demo.mesh"); err != nil || !found || fmt.Sprint(ans.Addrs) != "[127.0.0.7]" {
		t.Fatalf("verified answer: %+v %v %v", ans, found, err)
	}

	forged := map[string]func() *apipb.ResolveResponse{
		"no proof": func() *apipb.ResolveResponse { return answerFor(t, "10.6.6.6") },
		"endpoints swapped after signing": func() *apipb.ResolveResponse {
			r := signedAnswer(t, root, shop, "shop.demo.mesh", "127.0.0.7")
			r.Workloads = answerFor(t, "10.6.6.6").Workloads
			return r
		},
		"signed by a CA the referral does not name": func() *apipb.ResolveResponse {
			r := signedAnswer(t, root, other, "shop.demo.mesh", "10.6.6.6")
			good := signedAnswer(t, root, shop, "shop.demo.mesh", "10.6.6.6")
			p, _ := proof.Unmarshal(r.Proof)
			gp, _ := proof.Unmarshal(good.Proof)
			p.Steps[0].Referrals = gp.Steps[0].Referrals // the genuine referral names shop's CA
			r.Proof = p.Marshal()
			return r
		},
		"scope field lies": func() *apipb.ResolveResponse {
			r := signedAnswer(t, root, shop, "shop.demo.mesh", "127.0.0.7")
			r.Scope = "demo.mesh"
			return r
		},
	}
	for what, forge := range forged {
		next = forge()
		_, err := lookup(context.Background(), "cart.shop.demo.mesh")
		var ue *UnverifiedError
		if !errors.As(err, &ue) {
			t.Fatalf("%s: accepted (%v)", what, err)
		}
		t.Logf("%s: %v", what, err)
	}
	// Past the TTL, a forged answer does not replace the verified one.
	now = now.Add(31 * time.Second)
	next = forged["endpoints swapped after signing"]()
	ans, found, err := c.Lookup(context.Background(), "cart.shop.demo.mesh")
	if err != nil || !found || !ans.Stale || fmt.Sprint(ans.Addrs) != "[127.0.0.7]" {
		t.Fatalf("after a forged answer: %+v %v %v, want the last verified answer, stale", ans, found, err)
	}
	if !strings.Contains(fmt.Sprint(ans.Addrs), "127.0.0.7") {
		t.Fatal("forged endpoint served")
	}
}
