package proof

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"
)

// TestVerifyReferral: one referral on its own is verified as Verify verifies
// a referral of a proof (chain, name constraints, signature, child CA), but
// not for its freshness.
func TestVerifyReferral(t *testing.T) {
	h := newHierarchy(t)
	a, b := depth[1], depth[2]
	valid := func() *Signed { r := h.referral(a, b); return &r }
	// Every case but those with other roots runs on a Verifier that already
	// verified a's chain at h.now: its cache must not let anything through.
	warm := NewVerifier(h.roots)
	if _, err := warm.VerifyReferral(valid(), h.now); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		s       func() *Signed
		now     time.Time      // h.now if zero
		roots   *x509.CertPool // h.roots (the warm Verifier) if nil
		wantErr string         // "" = valid, with b's CA as the child
	}{
		{name: "valid", s: valid},
		{name: "valid from the root scope", s: func() *Signed { r := h.referral(depth[0], depth[1]); return &r }},
		{name: "expired statement (freshness is the caller's)", s: valid, now: h.now.Add(2 * time.Hour)},
		{name: "wrong roots", s: valid, roots: otherRoots(t, h.now), wantErr: "does not verify against the mesh trust bundle"},
		{name: "expired signer chain", s: valid, now: h.now.Add(25 * time.Hour), wantErr: "certificate has expired"},
		{name: "signed in the future", s: valid, now: h.now.Add(-ClockSkew - time.Second), wantErr: "in the future"},
		{name: "tampered anchors", wantErr: "signature by CA",
			s: func() *Signed { r := valid(); r.Anchors = append(r.Anchors, "rogue"); return r }},
		{name: "tampered child CA", wantErr: "signature by CA",
			s: func() *Signed { r := valid(); r.ChildCA = h.ca[sibling].Cert.Raw; return r }},
		{name: "tampered signed-at", wantErr: "signature by CA",
			s: func() *Signed { r := valid(); r.SignedAt += 3600; return r }},
		{name: "tampered signature", wantErr: "signature by CA",
			s: func() *Signed { r := valid(); r.Sig[len(r.Sig)/2] ^= 1; return r }},
		{name: "an answer's signature relabelled as a referral", wantErr: "signature by CA",
			s: func() *Signed {
				r := h.sign(h.ca[a], Statement{Kind: KindAnswer, Scope: a, Name: b, Anchor: anchorOf(a), Anchors: []string{anchorOf(b)}, ChildCA: h.ca[b].Cert.Raw})
				r.Kind = KindReferral
				return &r
			}},
		{name: "not a referral", wantErr: "not a referral",
			s: func() *Signed {
				r := h.final(a, KindAnswer, "svc."+a, "", found("svc."+a))
				return &r
			}},
		{name: "signer is another scope's CA", wantErr: "not of scope " + a,
			s: func() *Signed {
				r := h.sign(h.ca[sibling], Statement{Kind: KindReferral, Scope: a, Name: b, Anchor: anchorOf(a), Anchors: []string{anchorOf(b)}, ChildCA: h.ca[b].Cert.Raw})
				return &r
			}},
		{name: "child domain outside the signer's scope", wantErr: "y.x.demo.mesh is outside scope " + a,
			s: func() *Signed {
				y := h.intermediate(h.ca[sibling], "y.x.demo.mesh")
				r := h.sign(h.ca[a], Statement{Kind: KindReferral, Scope: a, Name: "y.x.demo.mesh", Anchor: anchorOf(a), Anchors: []string{"anchor-y"}, ChildCA: y.Cert.Raw})
				return &r
			}},
		{name: "signer minted outside its issuer's subtree", wantErr: "may not vouch for x.demo.mesh",
			s: func() *Signed {
				rogue := rogueCA(t, h.ca[a], sibling, h.now)
				y := h.intermediate(h.ca[sibling], "y.x.demo.mesh")
				r := h.sign(rogue, Statement{Kind: KindReferral, Scope: sibling, Name: "y.x.demo.mesh", Anchor: "anchor-x", Anchors: []string{"anchor-y"}, ChildCA: y.Cert.Raw})
				return &r
			}},
		{name: "referral to the signer's own scope", wantErr: "not a domain strictly below",
			s: func() *Signed {
				r := h.sign(h.ca[a], Statement{Kind: KindReferral, Scope: a, Name: a, Anchor: anchorOf(a), Anchors: []string{anchorOf(a)}, ChildCA: h.ca[a].Cert.Raw})
				return &r
			}},
		{name: "child CA not constrained to the child domain", wantErr: "not a CA constrained to " + b,
			s: func() *Signed {
				r := h.sign(h.ca[a], Statement{Kind: KindReferral, Scope: a, Name: b, Anchor: anchorOf(a), Anchors: []string{anchorOf(b)}, ChildCA: h.ca[depth[3]].Cert.Raw})
				return &r
			}},
		{name: "no anchors", wantErr: "names no anchors",
			s: func() *Signed {
				r := h.sign(h.ca[a], Statement{Kind: KindReferral, Scope: a, Name: b, Anchor: anchorOf(a), ChildCA: h.ca[b].Cert.Raw})
				return &r
			}},
		{name: "ttl above MaxTTL", wantErr: "ttl",
			s: func() *Signed {
				r := h.sign(h.ca[a], Statement{Kind: KindReferral, Scope: a, Name: b, Anchor: anchorOf(a), Anchors: []string{anchorOf(b)}, ChildCA: h.ca[b].Cert.Raw, TTL: uint32(MaxTTL/time.Second) + 1})
				return &r
			}},
		{name: "no chain", wantErr: "no certificate chain",
			s: func() *Signed { r := valid(); r.Chain = nil; return r }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now, vf := tc.now, warm
			if now.IsZero() {
				now = h.now
			}
			if tc.roots != nil {
				vf = NewVerifier(tc.roots)
			}
			s := tc.s()
			child, err := vf.VerifyReferral(s, now)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr == "" && !child.Equal(h.ca[s.Name].Cert):
				t.Fatalf("child CA %q, want the CA of %s", child.Subject.CommonName, s.Name)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
			case err != nil:
				t.Logf("rejected: %v", err)
			}
		})
	}
	var nilVerifier *Verifier
	if _, err := nilVerifier.VerifyReferral(valid(), h.now); err == nil {
		t.Error("a nil Verifier accepted a referral")
	}
	if _, err := warm.VerifyReferral(nil, h.now); err == nil {
		t.Error("a nil referral was accepted")
	}
}
