package proof

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"canton.dev/canton/internal/identity"
)

// hierarchy is a fake mesh of depth 4 (demo.mesh -> a -> b.a -> c.b.a) plus
// a sibling scope x.demo.mesh, its CAs made in memory.
type hierarchy struct {
	t     testing.TB
	now   time.Time
	roots *x509.CertPool
	ca    map[string]*identity.CA
}

var (
	depth   = []string{"demo.mesh", "a.demo.mesh", "b.a.demo.mesh", "c.b.a.demo.mesh"}
	sibling = "x.demo.mesh"
)

func newHierarchy(t testing.TB) *hierarchy {
	t.Helper()
	now := time.Unix(1_800_000_000, 0)
	root, err := identity.NewRootCA("demo.mesh", now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	h := &hierarchy{t: t, now: now, roots: x509.NewCertPool(), ca: map[string]*identity.CA{"demo.mesh": root}}
	h.roots.AddCert(root.Cert)
	for i := 1; i < len(depth); i++ {
		h.ca[depth[i]] = h.intermediate(h.ca[depth[i-1]], depth[i])
	}
	h.ca[sibling] = h.intermediate(root, sibling)
	return h
}

func (h *hierarchy) intermediate(parent *identity.CA, domain string) *identity.CA {
	h.t.Helper()
	ca, err := parent.NewIntermediate(domain, 24*time.Hour, h.now.Add(-time.Hour))
	if err != nil {
		h.t.Fatal(err)
	}
	return ca
}

func anchorOf(scope string) string { return "anchor-" + strings.SplitN(scope, ".", 2)[0] }

func (h *hierarchy) sign(ca *identity.CA, st Statement) Signed {
	h.t.Helper()
	if st.TTL == 0 {
		st.TTL = 30
	}
	s, err := Sign(ca, st, h.now)
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

// referral from scope parent to child, naming child's CA and anchor.
func (h *hierarchy) referral(parent, child string) Signed {
	return h.sign(h.ca[parent], Statement{Kind: KindReferral, Scope: parent, Name: child, Anchor: anchorOf(parent),
		Anchors: []string{anchorOf(child)}, ChildCA: h.ca[child].Cert.Raw})
}

// walk is the referrals from the root scope down to owner.
func (h *hierarchy) walk(owner string) []Signed {
	var refs []Signed
	for i := 1; i < len(depth); i++ {
		if !within(owner, depth[i]) {
			break
		}
		refs = append(refs, h.referral(depth[i-1], depth[i]))
	}
	if owner == sibling {
		refs = append(refs, h.referral("demo.mesh", sibling))
	}
	return refs
}

func (h *hierarchy) final(scope string, kind Kind, name, target string, p Payload) Signed {
	st := Statement{Kind: kind, Scope: scope, Name: name, Target: target, Anchor: anchorOf(scope)}
	if kind != KindAlias {
		st.Digest = p.Digest()
	}
	return h.sign(h.ca[scope], st)
}

func found(name string) Payload {
	return Payload{Canonical: name, Found: true, Service: []byte(`{"kind":"Service"}`), Workloads: []byte(`[]`), Identity: "spiffe://x/sa/y"}
}

func notFound(name string) Payload { return Payload{Canonical: name, Reason: "does not exist"} }

// answerStep is a full walk from the root to owner and its answer for name.
func (h *hierarchy) answerStep(owner, name string) Step {
	return Step{Referrals: h.walk(owner), Final: h.final(owner, KindAnswer, name, "", found(name))}
}

func TestVerify(t *testing.T) {
	h := newHierarchy(t)
	type tc struct {
		name    string
		ask     string
		proof   func() *Proof
		payload Payload
		now     time.Time
		roots   *x509.CertPool
		wantErr string   // "" = valid
		scopes  []string // of the last hop, when valid
	}
	cases := []tc{}
	for _, scope := range depth {
		n := "svc." + scope
		cases = append(cases, tc{name: "answer at " + scope, ask: n, payload: found(n), scopes: depth[:slices.Index(depth, scope)+1],
			proof: func() *Proof { return &Proof{Steps: []Step{h.answerStep(scope, n)}} }})
	}
	cases = append(cases, []tc{
		{name: "answer for a namespace below the owner's apex", ask: "svc.ns.c.b.a.demo.mesh", payload: found("svc.ns.c.b.a.demo.mesh"), scopes: depth,
			proof: func() *Proof { return &Proof{Steps: []Step{h.answerStep(depth[3], "svc.ns.c.b.a.demo.mesh")}} }},
		{name: "entry below the root (an anchor hosting b only)", ask: "svc.c.b.a.demo.mesh", payload: found("svc.c.b.a.demo.mesh"), scopes: depth[2:],
			proof: func() *Proof {
				return &Proof{Steps: []Step{{Referrals: []Signed{h.referral(depth[2], depth[3])}, Final: h.final(depth[3], KindAnswer, "svc.c.b.a.demo.mesh", "", found("svc.c.b.a.demo.mesh"))}}}
			}},
		{name: "negative answer at depth 4", ask: "nope.c.b.a.demo.mesh", payload: notFound("nope.c.b.a.demo.mesh"), scopes: depth,
			proof: func() *Proof {
				return &Proof{Steps: []Step{{Referrals: h.walk(depth[3]), Final: h.final(depth[3], KindNegative, "nope.c.b.a.demo.mesh", "", notFound("nope.c.b.a.demo.mesh"))}}}
			}},
		{name: "alias to a name in the same scope", ask: "old.b.a.demo.mesh", payload: found("new.b.a.demo.mesh"), scopes: depth[2:3],
			proof: func() *Proof {
				return &Proof{Steps: []Step{
					{Referrals: h.walk(depth[2]), Final: h.final(depth[2], KindAlias, "old.b.a.demo.mesh", "new.b.a.demo.mesh", Payload{})},
					{Final: h.final(depth[2], KindAnswer, "new.b.a.demo.mesh", "", found("new.b.a.demo.mesh"))},
				}}
			}},
		{name: "alias to another scope (depth 4 -> sibling)", ask: "pay.c.b.a.demo.mesh", payload: found("pay.x.demo.mesh"), scopes: []string{"demo.mesh", sibling},
			proof: func() *Proof {
				return &Proof{Steps: []Step{
					{Referrals: h.walk(depth[3]), Final: h.final(depth[3], KindAlias, "pay.c.b.a.demo.mesh", "pay.x.demo.mesh", Payload{})},
					h.answerStep(sibling, "pay.x.demo.mesh"),
				}}
			}},
		{name: "alias loop", ask: "l1.a.demo.mesh", payload: found("l1.a.demo.mesh"), wantErr: "alias loop",
			proof: func() *Proof {
				return &Proof{Steps: []Step{
					{Final: h.final(depth[1], KindAlias, "l1.a.demo.mesh", "l2.a.demo.mesh", Payload{})},
					{Final: h.final(depth[1], KindAlias, "l2.a.demo.mesh", "l1.a.demo.mesh", Payload{})},
					{Final: h.final(depth[1], KindAnswer, "l1.a.demo.mesh", "", found("l1.a.demo.mesh"))},
				}}
			}},
		{name: "proof ends with an alias", ask: "old.a.demo.mesh", payload: found("new.a.demo.mesh"), wantErr: "not an answer",
			proof: func() *Proof {
				return &Proof{Steps: []Step{{Final: h.final(depth[1], KindAlias, "old.a.demo.mesh", "new.a.demo.mesh", Payload{})}}}
			}},
		{name: "alias step signed for another name", ask: "old.a.demo.mesh", payload: found("new.a.demo.mesh"), wantErr: "not old.a.demo.mesh",
			proof: func() *Proof {
				return &Proof{Steps: []Step{
					{Final: h.final(depth[1], KindAlias, "other.a.demo.mesh", "new.a.demo.mesh", Payload{})},
					{Final: h.final(depth[1], KindAnswer, "new.a.demo.mesh", "", found("new.a.demo.mesh"))},
				}}
			}},
		{name: "answer followed by more steps", ask: "svc.a.demo.mesh", payload: found("svc.a.demo.mesh"), wantErr: "more steps follow",
			proof: func() *Proof {
				return &Proof{Steps: []Step{h.answerStep(depth[1], "svc.a.demo.mesh"), h.answerStep(depth[1], "svc.a.demo.mesh")}}
			}},
		{name: "expired answer", ask: "svc.b.a.demo.mesh", payload: found("svc.b.a.demo.mesh"), now: h.now.Add(30*time.Second + ClockSkew + time.Second), wantErr: "expired",
			proof: func() *Proof { return &Proof{Steps: []Step{h.answerStep(depth[2], "svc.b.a.demo.mesh")}} }},
		{name: "within ttl and skew", ask: "svc.b.a.demo.mesh", payload: found("svc.b.a.demo.mesh"), now: h.now.Add(30*time.Second + ClockSkew), scopes: depth[:3],
			proof: func() *Proof { return &Proof{Steps: []Step{h.answerStep(depth[2], "svc.b.a.demo.mesh")}} }},
		{name: "signed in the future", ask: "svc.b.a.demo.mesh", payload: found("svc.b.a.demo.mesh"), now: h.now.Add(-ClockSkew - time.Second), wantErr: "in the future",
			proof: func() *Proof { return &Proof{Steps: []Step{h.answerStep(depth[2], "svc.b.a.demo.mesh")}} }},
		{name: "tampered workloads", ask: "svc.b.a.demo.mesh", wantErr: "does not match",
			payload: Payload{Canonical: "svc.b.a.demo.mesh", Found: true, Service: []byte(`{"kind":"Service"}`), Workloads: []byte(`[{"evil":1}]`), Identity: "spiffe://x/sa/y"},
			proof:   func() *Proof { return &Proof{Steps: []Step{h.answerStep(depth[2], "svc.b.a.demo.mesh")}} }},
		{name: "negative answer presented as found", ask: "svc.b.a.demo.mesh", payload: found("svc.b.a.demo.mesh"), wantErr: "found=true",
			proof: func() *Proof {
				return &Proof{Steps: []Step{{Referrals: h.walk(depth[2]), Final: h.final(depth[2], KindNegative, "svc.b.a.demo.mesh", "", notFound("svc.b.a.demo.mesh"))}}}
			}},
		{name: "tampered statement (name changed after signing)", ask: "evil.b.a.demo.mesh", payload: found("evil.b.a.demo.mesh"), wantErr: "signature",
			proof: func() *Proof {
				s := h.answerStep(depth[2], "svc.b.a.demo.mesh")
				s.Final.Name = "evil.b.a.demo.mesh"
				s.Final.Digest = found("evil.b.a.demo.mesh").Digest()
				return &Proof{Steps: []Step{s}}
			}},
		{name: "tampered referral anchors", ask: "svc.b.a.demo.mesh", payload: found("svc.b.a.demo.mesh"), wantErr: "signature",
			proof: func() *Proof {
				s := h.answerStep(depth[2], "svc.b.a.demo.mesh")
				s.Referrals[1].Anchors = []string{"anchor-b", "rogue"}
				return &Proof{Steps: []Step{s}}
			}},
		{name: "tampered ttl", ask: "svc.b.a.demo.mesh", payload: found("svc.b.a.demo.mesh"), wantErr: "signature",
			proof: func() *Proof {
				s := h.answerStep(depth[2], "svc.b.a.demo.mesh")
				s.Final.TTL = 3600
				return &Proof{Steps: []Step{s}}
			}},
		{name: "sibling's CA answers for a delegated child", ask: "svc.a.demo.mesh", payload: found("svc.a.demo.mesh"), wantErr: `named CA canton scope CA a.demo.mesh (serial`,
			proof: func() *Proof {
				f := h.sign(h.ca[sibling], Statement{Kind: KindAnswer, Scope: "a.demo.mesh", Name: "svc.a.demo.mesh", Anchor: "anchor-a", Digest: found("svc.a.demo.mesh").Digest()})
				return &Proof{Steps: []Step{{Referrals: h.walk(depth[1]), Final: f}}}
			}},
		{name: "sibling's CA answers for another scope (no referral)", ask: "svc.a.demo.mesh", payload: found("svc.a.demo.mesh"), wantErr: "not of scope a.demo.mesh",
			proof: func() *Proof {
				f := h.sign(h.ca[sibling], Statement{Kind: KindAnswer, Scope: "a.demo.mesh", Name: "svc.a.demo.mesh", Anchor: "anchor-a", Digest: found("svc.a.demo.mesh").Digest()})
				return &Proof{Steps: []Step{{Final: f}}}
			}},
		{name: "scope CA answers for a name outside its subtree", ask: "svc.x.demo.mesh", payload: found("svc.x.demo.mesh"), wantErr: "outside scope a.demo.mesh",
			proof: func() *Proof {
				return &Proof{Steps: []Step{{Final: h.final(depth[1], KindAnswer, "svc.x.demo.mesh", "", found("svc.x.demo.mesh"))}}}
			}},
		{name: "scope CA answers for its apex label in the parent's namespace", ask: "a.demo.mesh", payload: found("a.demo.mesh"), wantErr: "demo.mesh is outside scope a.demo.mesh",
			proof: func() *Proof {
				return &Proof{Steps: []Step{{Final: h.final(depth[1], KindAnswer, "a.demo.mesh", "", found("a.demo.mesh"))}}}
			}},
		{name: "scope CA signs a referral outside its subtree", ask: "svc.y.x.demo.mesh", payload: found("svc.y.x.demo.mesh"), wantErr: "y.x.demo.mesh is outside scope a.demo.mesh",
			proof: func() *Proof {
				rogue := h.intermediate(h.ca[sibling], "y.x.demo.mesh")
				r := h.sign(h.ca[depth[1]], Statement{Kind: KindReferral, Scope: depth[1], Name: "y.x.demo.mesh", Anchor: "anchor-a", Anchors: []string{"anchor-y"}, ChildCA: rogue.Cert.Raw})
				f := h.sign(rogue, Statement{Kind: KindAnswer, Scope: "y.x.demo.mesh", Name: "svc.y.x.demo.mesh", Anchor: "anchor-y", Digest: found("svc.y.x.demo.mesh").Digest()})
				return &Proof{Steps: []Step{{Referrals: []Signed{r}, Final: f}}}
			}},
		{name: "sub-CA minted by a scope CA for a zone outside its subtree", ask: "svc.x.demo.mesh", payload: found("svc.x.demo.mesh"), wantErr: "may not vouch for x.demo.mesh",
			proof: func() *Proof {
				rogue := rogueCA(t, h.ca[depth[1]], "x.demo.mesh", h.now)
				f := h.sign(rogue, Statement{Kind: KindAnswer, Scope: "x.demo.mesh", Name: "svc.x.demo.mesh", Anchor: "anchor-x", Digest: found("svc.x.demo.mesh").Digest()})
				return &Proof{Steps: []Step{{Final: f}}}
			}},
		{name: "referral names CA X, answer signed by CA Y of the same zone", ask: "svc.b.a.demo.mesh", payload: found("svc.b.a.demo.mesh"), wantErr: "but the referral to b.a.demo.mesh named CA",
			proof: func() *Proof {
				other := h.intermediate(h.ca[depth[1]], depth[2]) // a second, valid CA for b.a.demo.mesh
				f := h.sign(other, Statement{Kind: KindAnswer, Scope: depth[2], Name: "svc.b.a.demo.mesh", Anchor: "anchor-b", Digest: found("svc.b.a.demo.mesh").Digest()})
				return &Proof{Steps: []Step{{Referrals: h.walk(depth[2]), Final: f}}}
			}},
		{name: "referral skips a level (b signed as if by the root)", ask: "svc.c.b.a.demo.mesh", payload: found("svc.c.b.a.demo.mesh"), wantErr: "named CA",
			proof: func() *Proof {
				refs := h.walk(depth[3])
				refs = []Signed{refs[0], refs[2]} // root -> a, then b -> c: b's referral is not signed by a's CA
				return &Proof{Steps: []Step{{Referrals: refs, Final: h.final(depth[3], KindAnswer, "svc.c.b.a.demo.mesh", "", found("svc.c.b.a.demo.mesh"))}}}
			}},
		{name: "answer made by an anchor the referral did not name", ask: "svc.a.demo.mesh", payload: found("svc.a.demo.mesh"), wantErr: `anchor "anchor-x"`,
			proof: func() *Proof {
				f := h.sign(h.ca[depth[1]], Statement{Kind: KindAnswer, Scope: depth[1], Name: "svc.a.demo.mesh", Anchor: "anchor-x", Digest: found("svc.a.demo.mesh").Digest()})
				return &Proof{Steps: []Step{{Referrals: h.walk(depth[1]), Final: f}}}
			}},
		{name: "referral that does not lead to the name", ask: "svc.x.demo.mesh", payload: found("svc.x.demo.mesh"), wantErr: "does not lead to namespace x.demo.mesh",
			proof: func() *Proof {
				return &Proof{Steps: []Step{{Referrals: []Signed{h.referral("demo.mesh", depth[1])}, Final: h.final(depth[1], KindAnswer, "svc.x.demo.mesh", "", found("svc.x.demo.mesh"))}}}
			}},
		{name: "untrusted root", ask: "svc.a.demo.mesh", payload: found("svc.a.demo.mesh"), roots: otherRoots(t, h.now), wantErr: "does not verify against the mesh trust bundle",
			proof: func() *Proof { return &Proof{Steps: []Step{h.answerStep(depth[1], "svc.a.demo.mesh")}} }},
		{name: "no statements", ask: "svc.a.demo.mesh", payload: found("svc.a.demo.mesh"), wantErr: "no statements",
			proof: func() *Proof { return &Proof{} }},
	}...)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			now, roots := c.now, c.roots
			if now.IsZero() {
				now = h.now
			}
			if roots == nil {
				roots = h.roots
			}
			p := c.proof()
			// Every case also goes through the wire encoding.
			back, err := Unmarshal(p.Marshal())
			if err != nil {
				t.Fatalf("round trip: %v", err)
			}
			res, err := Verify(roots, c.ask, back, c.payload, now)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, c.wantErr)
				}
				t.Logf("rejected: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			last := res.Hops[len(res.Hops)-1]
			if !slices.Equal(last.Scopes, c.scopes) {
				t.Fatalf("scopes %v, want %v", last.Scopes, c.scopes)
			}
			if res.Scope != c.scopes[len(c.scopes)-1] || !strings.Contains(res.Signer, res.Scope) {
				t.Fatalf("result scope %s signer %q", res.Scope, res.Signer)
			}
		})
	}
}

// rogueCA is a CA for domain signed by parent without the checks
// identity.NewIntermediate makes: crypto/x509 accepts the chain (the CA has
// no names of its own to check), so only the explicit check catches it.
func rogueCA(t *testing.T, parent *identity.CA, domain string, now time.Time) *identity.CA {
	t.Helper()
	key, err := identity.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "rogue CA " + domain},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
		PermittedDNSDomainsCritical: true, PermittedDNSDomains: []string{domain},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.Cert, key.Public(), parent.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &identity.CA{Cert: cert, Key: key, Parents: append([]*x509.Certificate{parent.Cert}, parent.Parents...)}
}

func otherRoots(t *testing.T, now time.Time) *x509.CertPool {
	other, err := identity.NewRootCA("demo.mesh", now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	p.AddCert(other.Cert)
	return p
}

func TestResultAliasesAndExpiry(t *testing.T) {
	h := newHierarchy(t)
	p := &Proof{Steps: []Step{
		{Referrals: h.walk(depth[1]), Final: h.final(depth[1], KindAlias, "old.a.demo.mesh", "mid.a.demo.mesh", Payload{})},
		{Final: h.final(depth[1], KindAlias, "mid.a.demo.mesh", "svc.c.b.a.demo.mesh", Payload{})},
		h.answerStep(depth[3], "svc.c.b.a.demo.mesh"),
	}}
	res, err := Verify(h.roots, "old.a.demo.mesh.", p, found("svc.c.b.a.demo.mesh"), h.now.Add(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Aliases(); !slices.Equal(got, []string{"old.a.demo.mesh", "mid.a.demo.mesh"}) {
		t.Fatalf("aliases %v", got)
	}
	if !res.Expires.Equal(h.now.Add(30 * time.Second)) {
		t.Fatalf("expires %v, want %v", res.Expires, h.now.Add(30*time.Second))
	}
}

func TestUnmarshalRejects(t *testing.T) {
	h := newHierarchy(t)
	good := (&Proof{Steps: []Step{h.answerStep(depth[2], "svc.b.a.demo.mesh")}}).Marshal()
	for name, b := range map[string][]byte{
		"empty":          nil,
		"bad magic":      append([]byte("canton-proof/2\x00"), good[len(magic):]...),
		"truncated":      good[:len(good)-3],
		"trailing":       append(append([]byte(nil), good...), 0),
		"too many steps": append(append([]byte(nil), magic...), 17),
		"unknown kind":   append(append([]byte(nil), magic...), 1, 0, 9),
		"non-minimal":    append(append([]byte(nil), magic...), 0x81, 0x00),
	} {
		if _, err := Unmarshal(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := Unmarshal(good); err != nil {
		t.Fatal(err)
	}
}

func FuzzUnmarshal(f *testing.F) {
	h := newHierarchy(f)
	f.Add((&Proof{Steps: []Step{h.answerStep(depth[3], "svc.c.b.a.demo.mesh")}}).Marshal())
	f.Add((&Proof{Steps: []Step{
		{Final: h.final(depth[1], KindAlias, "old.a.demo.mesh", "new.a.demo.mesh", Payload{})},
		{Final: h.final(depth[1], KindNegative, "new.a.demo.mesh", "", notFound("new.a.demo.mesh"))},
	}}).Marshal())
	f.Add((&Proof{}).Marshal())
	f.Add([]byte("canton-proof/1\x00\x01\x00\x01"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Unmarshal(b)
		if err != nil {
			return
		}
		if again := p.Marshal(); string(again) != string(b) {
			t.Fatalf("not canonical: %x re-encodes as %x", b, again)
		}
		// Whatever decodes must verify or fail cleanly, never panic.
		Verify(h.roots, "svc.a.demo.mesh", p, Payload{}, h.now)
	})
}
