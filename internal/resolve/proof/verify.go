package proof

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	// ClockSkew is how far a verifier's clock may be from a signer's.
	ClockSkew = time.Minute
	// MaxTTL bounds the TTL of any statement.
	MaxTTL = 24 * time.Hour
)

// Hop is one verified step: the name looked up, the scopes whose CAs
// vouched for it from the entry down, and what the owner said.
type Hop struct {
	Name string
	// Scopes are the signing scopes, outermost first: the entry scope, then
	// each delegated scope the referrals led to; the last is the owner.
	Scopes []string
	// Signers are the subjects of the CAs that signed, parallel to Scopes.
	Signers []string
	// Anchor is the anchor (of the owning scope) that made the final
	// statement.
	Anchor string
	// Kind is what the owner said (answer, negative answer or alias).
	Kind Kind
	// Target is the alias target (Kind == KindAlias).
	Target string
}

// Result is a verified proof.
type Result struct {
	Hops []Hop
	// Scope is the scope owning the final name, Signer the subject of its CA.
	Scope, Signer string
	// Expires is the earliest expiry among the statements.
	Expires time.Time
}

// Aliases are the names that were aliases, in order.
func (r *Result) Aliases() []string {
	var out []string
	for _, h := range r.Hops {
		if h.Kind == KindAlias {
			out = append(out, h.Name)
		}
	}
	return out
}

// Verify checks that p vouches for payload as the resolution of name at
// now, with roots as the trust anchors:
//
//   - every signer's chain verifies to roots (crypto/x509, name constraints
//     included), the signer is a CA, and the scope it signs for and the
//     namespace of the statement are within the permitted DNS domains of
//     every certificate of that chain (a CA for shop.demo.mesh may not speak
//     for pay.demo.mesh);
//   - in each step, the first signer is the entry (any scope CA of the mesh
//     whose subtree holds the name); each referral leads to a domain strictly
//     below its signer's scope and holding the name, and the next statement
//     is signed by exactly the child CA the referral named, for that domain,
//     by one of the anchors it named;
//   - the final statement of each step is about that step's name; an alias
//     step's target is the next step's name (no name twice: a loop); the last
//     step is an answer or negative answer whose digest matches payload,
//     about payload.Canonical when found;
//   - every signature is valid and every statement is within SignedAt ..
//     SignedAt+TTL (± ClockSkew).
func Verify(roots *x509.CertPool, name string, p *Proof, payload Payload, now time.Time) (*Result, error) {
	return NewVerifier(roots).Verify(name, p, payload, now)
}

// Verifier verifies proofs against fixed roots, remembering the certificate
// chains it verified (bounded; an entry is used only within the validity of
// every certificate of its chain), so that verifying the same scopes' CAs
// again costs only the statements' signatures. It is safe for concurrent use.
type Verifier struct {
	roots  *x509.CertPool
	mu     sync.Mutex
	chains map[[32]byte]*verifiedChain
}

type verifiedChain struct {
	certs               []*x509.Certificate // signer first, root last
	notBefore, notAfter time.Time
}

// maxCachedChains bounds a Verifier's memory; past it the cache restarts.
const maxCachedChains = 1024

// NewVerifier returns a Verifier trusting roots.
func NewVerifier(roots *x509.CertPool) *Verifier {
	return &Verifier{roots: roots, chains: map[[32]byte]*verifiedChain{}}
}

// Verify is the package's Verify with vf's roots and cache.
func (vf *Verifier) Verify(name string, p *Proof, payload Payload, now time.Time) (*Result, error) {
	if vf == nil || vf.roots == nil {
		return nil, errNoRoots
	}
	if p == nil || len(p.Steps) == 0 {
		return nil, fmt.Errorf("proof for %s: no statements", name)
	}
	v := vf.at(now)
	res := &Result{}
	seen := map[string]bool{}
	want := strings.ToLower(strings.TrimSuffix(name, "."))
	for i := range p.Steps {
		if seen[want] {
			return nil, fmt.Errorf("proof for %s: alias loop at %s", name, want)
		}
		seen[want] = true
		hop, err := v.step(want, &p.Steps[i])
		if err != nil {
			return nil, fmt.Errorf("proof for %s: step %d (%s): %w", name, i, want, err)
		}
		res.Hops = append(res.Hops, *hop)
		last := i == len(p.Steps)-1
		switch hop.Kind {
		case KindAlias:
			if last {
				return nil, fmt.Errorf("proof for %s: ends with the alias %s -> %s, not an answer", name, want, hop.Target)
			}
			want = hop.Target
		case KindAnswer, KindNegative:
			if !last {
				return nil, fmt.Errorf("proof for %s: step %d (%s) is an %s but %d more steps follow", name, i, want, hop.Kind, len(p.Steps)-1-i)
			}
			if (hop.Kind == KindAnswer) != payload.Found {
				return nil, fmt.Errorf("proof for %s: the signed statement is an %s, the response says found=%v", name, hop.Kind, payload.Found)
			}
			if payload.Found && payload.Canonical != want {
				return nil, fmt.Errorf("proof for %s: the answer is signed for %s, the response names %s", name, want, payload.Canonical)
			}
			if f := &p.Steps[i].Final; !bytes.Equal(f.Digest, payload.Digest()) {
				return nil, fmt.Errorf("proof for %s: the response's content does not match what scope %s signed (tampered or mixed up)", name, f.Scope)
			}
			res.Scope = hop.Scopes[len(hop.Scopes)-1]
			res.Signer = hop.Signers[len(hop.Signers)-1]
		}
	}
	res.Expires = v.expires
	return res, nil
}

// VerifyReferral verifies one signed referral on its own, with vf's roots at
// now, as Verify verifies a referral inside a proof: the signer's chain
// verifies to the roots, the signer is the CA of the referral's scope and
// every certificate of its chain permits that scope and the child domain
// (s.Name), the signature over the statement is valid, the child domain is
// strictly below the scope, and the referral names anchors and a child CA
// constrained to the child domain, whose certificate it returns. The TTL
// must be within 1s..MaxTTL and the referral not signed after now (±
// ClockSkew), but unlike Verify it may have expired: a caller that keeps
// referrals (an anchor's cache of zone cuts) decides from SignedAt and TTL
// how stale is acceptable.
func (vf *Verifier) VerifyReferral(s *Signed, now time.Time) (*x509.Certificate, error) {
	switch {
	case vf == nil || vf.roots == nil:
		return nil, errNoRoots
	case s == nil:
		return nil, errors.New("proof: no referral to verify")
	case s.Kind != KindReferral:
		return nil, fmt.Errorf("%s: not a referral", s.what())
	}
	v := vf.at(now)
	if _, err := v.authentic(s, s.Name); err != nil {
		return nil, err
	}
	return v.delegation(s)
}

var errNoRoots = errors.New("proof: no trust roots to verify with")

type verifier struct {
	vf      *Verifier
	roots   *x509.CertPool
	now     time.Time
	expires time.Time
	certs   map[string]*x509.Certificate
}

// at returns a verifier of statements at now.
func (vf *Verifier) at(now time.Time) *verifier {
	return &verifier{vf: vf, roots: vf.roots, now: now, expires: time.Unix(1<<62, 0), certs: map[string]*x509.Certificate{}}
}

// step verifies the statements about one name.
func (v *verifier) step(name string, s *Step) (*Hop, error) {
	svc, ns, ok := strings.Cut(name, ".")
	if !ok || svc == "" || ns == "" {
		return nil, fmt.Errorf("%q is not <service>.<namespace>", name)
	}
	hop := &Hop{Name: name}
	var (
		named   []byte   // the child CA the previous referral named
		domain  string   // the domain it delegated
		anchors []string // the anchors it named
	)
	follow := func(s *Signed) (*x509.Certificate, error) {
		if named != nil {
			if !bytes.Equal(s.Chain[0], named) {
				signer := v.subject(s.Chain[0])
				want := v.subject(named)
				return nil, fmt.Errorf("%s signed by CA %s, but the referral to %s named CA %s", s.Kind, signer, domain, want)
			}
			if s.Scope != domain {
				return nil, fmt.Errorf("%s made as scope %s, but the referral led to %s", s.Kind, s.Scope, domain)
			}
			if !slices.Contains(anchors, s.Anchor) {
				return nil, fmt.Errorf("%s made by anchor %q, which is not one of the anchors %v the referral to %s named", s.Kind, s.Anchor, anchors, domain)
			}
		}
		cert, err := v.signed(s, ns)
		if err != nil {
			return nil, err
		}
		hop.Scopes = append(hop.Scopes, s.Scope)
		hop.Signers = append(hop.Signers, cert.Subject.CommonName)
		return cert, nil
	}
	for i := range s.Referrals {
		r := &s.Referrals[i]
		if r.Kind != KindReferral {
			return nil, fmt.Errorf("statement %d before the final one is an %s, not a referral", i, r.Kind)
		}
		if len(r.Chain) == 0 {
			return nil, fmt.Errorf("referral to %s: no certificate chain", r.Name)
		}
		if _, err := follow(r); err != nil {
			return nil, err
		}
		if _, err := v.delegation(r); err != nil {
			return nil, err
		}
		if !within(ns, r.Name) {
			return nil, fmt.Errorf("referral by scope %s to %s: does not lead to namespace %s", r.Scope, r.Name, ns)
		}
		named, domain, anchors = r.ChildCA, r.Name, r.Anchors
	}
	f := &s.Final
	switch f.Kind {
	case KindAnswer, KindNegative, KindAlias:
	default:
		return nil, fmt.Errorf("final statement is a %s, want an answer, negative answer or alias", f.Kind)
	}
	if len(f.Chain) == 0 {
		return nil, fmt.Errorf("%s: no certificate chain", f.Kind)
	}
	if _, err := follow(f); err != nil {
		return nil, err
	}
	if f.Name != name {
		return nil, fmt.Errorf("%s signed by scope %s is about %s, not %s", f.Kind, f.Scope, f.Name, name)
	}
	if f.Kind == KindAlias {
		if _, _, ok := strings.Cut(f.Target, "."); !ok {
			return nil, fmt.Errorf("alias %s -> %q: target is not <service>.<namespace>", name, f.Target)
		}
	}
	hop.Anchor, hop.Kind, hop.Target = f.Anchor, f.Kind, f.Target
	return hop, nil
}

// delegation checks what referral r delegates, past its signature: a domain
// strictly below the referring scope, to anchors, whose scope's CA is a CA
// constrained to that domain; it returns that CA.
func (v *verifier) delegation(r *Signed) (*x509.Certificate, error) {
	if !within(r.Name, r.Scope) || r.Name == r.Scope {
		return nil, fmt.Errorf("referral by scope %s to %s: not a domain strictly below the referring scope", r.Scope, r.Name)
	}
	if len(r.Anchors) == 0 {
		return nil, fmt.Errorf("referral by scope %s to %s names no anchors", r.Scope, r.Name)
	}
	child, err := v.parse(r.ChildCA)
	if err != nil {
		return nil, fmt.Errorf("referral by scope %s to %s: child CA: %w", r.Scope, r.Name, err)
	}
	if !child.IsCA || !slices.Contains(child.PermittedDNSDomains, r.Name) {
		return nil, fmt.Errorf("referral by scope %s to %s names %q, not a CA constrained to %s", r.Scope, r.Name, child.Subject.CommonName, r.Name)
	}
	return child, nil
}

// signed verifies one statement (authentic) and that it is valid at v.now,
// and returns its signer.
func (v *verifier) signed(s *Signed, ns string) (*x509.Certificate, error) {
	signer, err := v.authentic(s, ns)
	if err != nil {
		return nil, err
	}
	at := time.Unix(s.SignedAt, 0)
	exp := at.Add(time.Duration(s.TTL) * time.Second)
	if v.now.After(exp.Add(ClockSkew)) {
		return nil, fmt.Errorf("%s: expired at %s (signed %s, ttl %ds; now %s)", s.what(), exp.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339), s.TTL, v.now.UTC().Format(time.RFC3339))
	}
	if exp.Before(v.expires) {
		v.expires = exp
	}
	return signer, nil
}

// what names a statement in errors.
func (s *Signed) what() string {
	return fmt.Sprintf("%s for %s by scope %s", s.Kind, s.Name, s.Scope)
}

// authentic verifies one statement's chain at v.now, coverage (of namespace
// ns, or a referral's child domain), signature, TTL and that it was not
// signed in the future, and returns its signer. Whether it expired is left
// to signed.
func (v *verifier) authentic(s *Signed, ns string) (*x509.Certificate, error) {
	what := s.what()
	chain, err := v.chain(s.Chain)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	signer := chain[0]
	if !signer.IsCA || signer.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s: signer %q is not a scope CA", what, signer.Subject.CommonName)
	}
	if !slices.Contains(signer.PermittedDNSDomains, s.Scope) {
		return nil, fmt.Errorf("%s: CA %q is the CA of %v, not of scope %s", what, signer.Subject.CommonName, signer.PermittedDNSDomains, s.Scope)
	}
	subject := ns // the namespace answered for
	if s.Kind == KindReferral {
		subject = s.Name
	}
	if !within(subject, s.Scope) {
		return nil, fmt.Errorf("%s: %s is outside scope %s", what, subject, s.Scope)
	}
	for _, c := range chain {
		for _, d := range []string{s.Scope, subject} {
			if !permitted(c, d) {
				return nil, fmt.Errorf("%s: CA %q in the chain may not vouch for %s (permitted %v, excluded %v)", what, c.Subject.CommonName, d, c.PermittedDNSDomains, c.ExcludedDNSDomains)
			}
		}
	}
	if err := checkSignature(signer, message(&s.Statement), s.Sig); err != nil {
		return nil, fmt.Errorf("%s: signature by CA %q: %w", what, signer.Subject.CommonName, err)
	}
	if s.TTL == 0 || time.Duration(s.TTL)*time.Second > MaxTTL {
		return nil, fmt.Errorf("%s: ttl %ds outside 1s..%s", what, s.TTL, MaxTTL)
	}
	if at := time.Unix(s.SignedAt, 0); at.After(v.now.Add(ClockSkew)) {
		return nil, fmt.Errorf("%s: signed at %s, in the future (now %s)", what, at.UTC().Format(time.RFC3339), v.now.UTC().Format(time.RFC3339))
	}
	return signer, nil
}

// chain verifies a signer's chain (DER, signer first) against the roots at
// v.now and returns the verified chain, signer first, root last.
func (v *verifier) chain(ders [][]byte) ([]*x509.Certificate, error) {
	if len(ders) == 0 {
		return nil, errors.New("no certificate chain")
	}
	h := sha256.New()
	for _, d := range ders {
		h.Write(binary.AppendUvarint(nil, uint64(len(d))))
		h.Write(d)
	}
	var key [32]byte
	h.Sum(key[:0])
	vf := v.vf
	vf.mu.Lock()
	c, ok := vf.chains[key]
	vf.mu.Unlock()
	if ok && !v.now.Before(c.notBefore) && !v.now.After(c.notAfter) {
		return c.certs, nil
	}
	signer, err := v.parse(ders[0])
	if err != nil {
		return nil, fmt.Errorf("signer: %w", err)
	}
	inter := x509.NewCertPool()
	for _, der := range ders[1:] {
		c, err := v.parse(der)
		if err != nil {
			return nil, fmt.Errorf("chain: %w", err)
		}
		inter.AddCert(c)
	}
	chains, err := signer.Verify(x509.VerifyOptions{Roots: v.roots, Intermediates: inter, CurrentTime: v.now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return nil, fmt.Errorf("CA %q does not verify against the mesh trust bundle: %w", signer.Subject.CommonName, err)
	}
	vc := &verifiedChain{certs: chains[0], notBefore: chains[0][0].NotBefore, notAfter: chains[0][0].NotAfter}
	for _, c := range chains[0] {
		if c.NotBefore.After(vc.notBefore) {
			vc.notBefore = c.NotBefore
		}
		if c.NotAfter.Before(vc.notAfter) {
			vc.notAfter = c.NotAfter
		}
	}
	vf.mu.Lock()
	if len(vf.chains) >= maxCachedChains {
		clear(vf.chains)
	}
	vf.chains[key] = vc
	vf.mu.Unlock()
	return vc.certs, nil
}

func (v *verifier) parse(der []byte) (*x509.Certificate, error) {
	if c, ok := v.certs[string(der)]; ok {
		return c, nil
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	v.certs[string(der)] = c
	return c, nil
}

// subject names a certificate by its subject and serial (two CAs of one
// scope share a subject).
func (v *verifier) subject(der []byte) string {
	c, err := v.parse(der)
	if err != nil {
		return "<unparsable certificate>"
	}
	serial := c.SerialNumber.Text(16)
	if len(serial) > 12 {
		serial = serial[:12]
	}
	return fmt.Sprintf("%s (serial %s)", c.Subject.CommonName, serial)
}

// within reports whether name is domain or below it, label-wise.
func within(name, domain string) bool {
	return name == domain || strings.HasSuffix(name, "."+domain)
}

// permitted applies c's DNS name constraints to domain with crypto/x509's
// semantics: no permitted list permits all; "d" matches d and below; ".d"
// only below.
func permitted(c *x509.Certificate, domain string) bool {
	match := func(con string) bool {
		con = strings.ToLower(con)
		switch {
		case con == "":
			return true
		case strings.HasPrefix(con, "."):
			return strings.HasSuffix(domain, con) && len(domain) > len(con)
		default:
			return within(domain, con)
		}
	}
	if slices.ContainsFunc(c.ExcludedDNSDomains, match) {
		return false
	}
	return len(c.PermittedDNSDomains) == 0 || slices.ContainsFunc(c.PermittedDNSDomains, match)
}
