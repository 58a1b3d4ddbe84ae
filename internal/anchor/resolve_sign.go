package anchor

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"sync"
	"time"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/resolve/proof"
	"canton.dev/canton/internal/resource"
)

// Signed resolution (docs/design/0004-signed-resolution.md): every answer,
// negative answer and alias step is signed by the CA of the scope owning the
// name; every zone cut crossed is a referral signed by the CA of the scope
// that delegated, naming the child's anchors and CA. An anchor proves the
// walk from the outermost scope it hosts (contiguously) down to the owner,
// and an anchor that forwards across a cut adds its own referral in front of
// what the child's anchors proved and verifies the whole before passing it on.

// referralTTL is how long a signed referral may be relied on.
const referralTTL = answerTTL

// verifiers holds one proof.Verifier (and its cache of verified CA chains)
// per trust bundle, keyed by the SHA-256 of the bundle's certificates: the
// anchors of one process share them, and a new bundle (a root rotation) gets
// a new one.
var verifiers sync.Map // [32]byte -> *proof.Verifier

// resolveVerifier verifies answers against this anchor's trust bundle.
func (a *Anchor) resolveVerifier() *proof.Verifier {
	h := sha256.New()
	for _, c := range a.creds.Bundle {
		h.Write(c.Raw)
	}
	var key [32]byte
	h.Sum(key[:0])
	if v, ok := verifiers.Load(key); ok {
		return v.(*proof.Verifier)
	}
	p := x509.NewCertPool()
	for _, c := range a.creds.Bundle {
		p.AddCert(c)
	}
	v, _ := verifiers.LoadOrStore(key, proof.NewVerifier(p))
	return v.(*proof.Verifier)
}

// signAs signs st with the CA of scope h, as this anchor.
func (a *Anchor) signAs(h *hosted, st proof.Statement) (proof.Signed, error) {
	ca, err := a.scopeCA(h)
	if err != nil {
		return proof.Signed{}, err
	}
	st.Scope, st.Anchor = h.domain, a.meta.ID
	return proof.Sign(ca, st, time.Now())
}

// signFinal signs resp (an answer or negative answer for name) as scope h.
func (a *Anchor) signFinal(h *hosted, name string, resp *apipb.ResolveResponse) (proof.Step, error) {
	refs, err := a.referralsTo(h)
	if err != nil {
		return proof.Step{}, err
	}
	kind := proof.KindNegative
	if resp.Found {
		kind = proof.KindAnswer
	}
	f, err := a.signAs(h, proof.Statement{Kind: kind, Name: name, Digest: proof.PayloadOf(resp).Digest(), TTL: resp.TtlSeconds})
	if err != nil {
		return proof.Step{}, fmt.Errorf("resolve %s: sign the %s of scope %s: %w", name, kind, h.domain, err)
	}
	return proof.Step{Referrals: refs, Final: f}, nil
}

// signAlias signs the alias step name -> target as scope h.
func (a *Anchor) signAlias(h *hosted, name, target string) (proof.Step, error) {
	refs, err := a.referralsTo(h)
	if err != nil {
		return proof.Step{}, err
	}
	f, err := a.signAs(h, proof.Statement{Kind: proof.KindAlias, Name: name, Target: target, TTL: uint32(answerTTL / time.Second)})
	if err != nil {
		return proof.Step{}, fmt.Errorf("resolve %s: sign the alias of scope %s: %w", name, h.domain, err)
	}
	return proof.Step{Referrals: refs, Final: f}, nil
}

// referralsTo proves the walk to hosted scope h from the outermost scope
// hosted here above it without a gap: one referral per cut, each signed by
// the parent's CA and naming the child's CA (pinned by the Delegation or,
// unpinned, the CA the child scope holds).
func (a *Anchor) referralsTo(h *hosted) ([]proof.Signed, error) {
	var refs []proof.Signed
	for cur := h; cur.parent != ""; {
		parent, ok := a.scope(cur.parent)
		if !ok {
			break
		}
		spec := delegationOf(parent, cur.domain)
		if spec == nil {
			break
		}
		child, err := pinnedCA(spec)
		if err != nil {
			return nil, err
		}
		if child == nil {
			ca, err := a.scopeCA(cur)
			if err != nil {
				return nil, err
			}
			child = ca.Cert.Raw
		}
		r, err := a.signReferral(parent, spec, child)
		if err != nil {
			return nil, err
		}
		refs = append([]proof.Signed{r}, refs...)
		cur = parent
	}
	return refs, nil
}

func (a *Anchor) signReferral(parent *hosted, spec *resource.DelegationSpec, childCA []byte) (proof.Signed, error) {
	r, err := a.signAs(parent, proof.Statement{Kind: proof.KindReferral, Name: spec.Domain, Anchors: slices.Clone(spec.Anchors), ChildCA: childCA, TTL: uint32(referralTTL / time.Second)})
	if err != nil {
		return proof.Signed{}, fmt.Errorf("sign the referral of scope %s to %s: %w", parent.domain, spec.Domain, err)
	}
	return r, nil
}

// delegationOf is parent's Delegation of exactly domain, or nil.
func delegationOf(parent *hosted, domain string) *resource.DelegationSpec {
	if spec := deepestCut(parent, domain); spec != nil && spec.Domain == domain {
		return spec
	}
	return nil
}

// deepestCut is the Delegation of h that governs ns (the zone cut holding
// it; cuts of one scope never nest), or nil; governing follows the same one.
// It is on the path of every request, so it costs O(labels of ns), not
// O(delegations).
func deepestCut(h *hosted, ns string) *resource.DelegationSpec {
	d, ok := h.state.Cut(ns)
	if !ok {
		return nil
	}
	spec, err := delegationSpec(d)
	if err != nil {
		return nil
	}
	return spec
}

// pinnedCA is the DER of the child CA a Delegation pins, or nil.
func pinnedCA(spec *resource.DelegationSpec) ([]byte, error) {
	if spec.CACert == "" {
		return nil, nil
	}
	block, _ := pem.Decode([]byte(spec.CACert))
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("delegation of %s: caCert is not a PEM certificate", spec.Domain)
	}
	return block.Bytes, nil
}

// vouchForChild puts this anchor's proof of the walk to the cut in front of
// the first step of what the child's anchors proved: the referrals from the
// outermost scope hosted here down to parent, then parent's referral to the
// cut. Whatever the child proved above the cut (it may host more of the
// hierarchy) is replaced by that. The referral names the CA the Delegation
// pins or, unpinned, the CA that signed the child's first statement as the
// cut's scope, if that CA is constrained to exactly the cut's domain.
func (a *Anchor) vouchForChild(p *proof.Proof, parent *hosted, spec *resource.DelegationSpec) error {
	if len(p.Steps) == 0 {
		return fmt.Errorf("the anchors of %s sent an empty proof", spec.Domain)
	}
	s := &p.Steps[0]
	recs := append(slices.Clone(s.Referrals), s.Final)
	k := slices.IndexFunc(recs, func(r proof.Signed) bool { return r.Scope == spec.Domain })
	if k < 0 || len(recs[k].Chain) == 0 {
		return fmt.Errorf("the anchors of %s answered without a statement signed as scope %s", spec.Domain, spec.Domain)
	}
	child, err := pinnedCA(spec)
	if err != nil {
		return err
	}
	if child == nil {
		c, err := x509.ParseCertificate(recs[k].Chain[0])
		if err != nil {
			return fmt.Errorf("the anchors of %s signed with an unparsable certificate: %w", spec.Domain, err)
		}
		if !c.IsCA || !slices.Equal(c.PermittedDNSDomains, []string{spec.Domain}) {
			return fmt.Errorf("the anchors of %s signed with %q, not a CA of exactly %s (permitted %v)", spec.Domain, c.Subject.CommonName, spec.Domain, c.PermittedDNSDomains)
		}
		child = c.Raw
	}
	mine, err := a.referralsTo(parent)
	if err != nil {
		return err
	}
	r, err := a.signReferral(parent, spec, child)
	if err != nil {
		return err
	}
	mine = append(mine, r)
	s.Referrals = append(mine, recs[k:len(recs)-1]...)
	return nil
}
