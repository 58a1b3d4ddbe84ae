package identity

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var oidNameConstraints = asn1.ObjectIdentifier{2, 5, 29, 30}

// nameConstraints decodes c's name constraints extension by hand, so that
// the test reads the DER peers read, not crypto/x509's view of it. Each
// entry is "permitted|excluded dns|uri|tag<n> <value>"; critical reports the
// extension's criticality.
func nameConstraints(t *testing.T, c *x509.Certificate) (entries []string, critical bool) {
	t.Helper()
	for _, ext := range c.Extensions {
		if !ext.Id.Equal(oidNameConstraints) {
			continue
		}
		var seq asn1.RawValue
		if rest, err := asn1.Unmarshal(ext.Value, &seq); err != nil || len(rest) > 0 || seq.Tag != asn1.TagSequence {
			t.Fatalf("%q: malformed name constraints: %v", c.Subject.CommonName, err)
		}
		for rest := seq.Bytes; len(rest) > 0; {
			var subtrees asn1.RawValue
			var err error
			if rest, err = asn1.Unmarshal(rest, &subtrees); err != nil || subtrees.Class != asn1.ClassContextSpecific || subtrees.Tag > 1 {
				t.Fatalf("%q: malformed subtrees: %v", c.Subject.CommonName, err)
			}
			kind := map[int]string{0: "permitted", 1: "excluded"}[subtrees.Tag]
			for inner := subtrees.Bytes; len(inner) > 0; {
				var subtree, base asn1.RawValue
				if inner, err = asn1.Unmarshal(inner, &subtree); err != nil {
					t.Fatalf("%q: malformed subtree: %v", c.Subject.CommonName, err)
				}
				if _, err := asn1.Unmarshal(subtree.Bytes, &base); err != nil || base.Class != asn1.ClassContextSpecific {
					t.Fatalf("%q: malformed general name: %v", c.Subject.CommonName, err)
				}
				form := map[int]string{2: "dns", 6: "uri"}[base.Tag]
				if form == "" {
					form = "tag" + strconv.Itoa(base.Tag)
				}
				entries = append(entries, kind+" "+form+" "+string(base.Bytes))
			}
		}
		return entries, ext.Critical
	}
	return nil, false
}

// TestCAConstraintExtension checks the DER of the name constraints of every
// kind of CA certificate this package mints: the domain as a DNS constraint,
// and the domain and its subdomains (".domain") as URI constraints, critical.
func TestCAConstraintExtension(t *testing.T) {
	root := newTestRoot(t)
	scope, err := root.NewIntermediate("bookinfo.demo.mesh", time.Hour, testNow)
	if err != nil {
		t.Fatal(err)
	}
	nested, err := scope.NewIntermediate("v2.bookinfo.demo.mesh", time.Hour, testNow)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := NewRootCA(testMesh, testNow)
	if err != nil {
		t.Fatal(err)
	}
	cross, err := root.CrossSign(r2.Cert, testNow)
	if err != nil {
		t.Fatal(err)
	}
	want := func(d string) []string {
		return []string{"permitted dns " + d, "permitted uri " + d, "permitted uri ." + d}
	}
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		want []string
	}{
		{"root", root.Cert, want(testMesh)},
		{"scope intermediate", scope.Cert, want("bookinfo.demo.mesh")},
		{"nested scope intermediate", nested.Cert, want("v2.bookinfo.demo.mesh")},
		{"cross certificate", cross, want(testMesh)},
	} {
		got, critical := nameConstraints(t, tc.cert)
		if !critical {
			t.Errorf("%s: name constraints missing or not critical", tc.name)
		}
		slices.Sort(got)
		slices.Sort(tc.want)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: name constraints %q, want %q", tc.name, got, tc.want)
		}
	}
}

// oldFormRoot is a root CA as this package minted them before URI
// constraints came in pairs: PermittedURIDomains is [mesh] alone.
func oldFormRoot(t *testing.T, now time.Time) *CA {
	t.Helper()
	key := newTestKey(t)
	tmpl, err := caTemplate(testMesh, "canton root CA "+testMesh+" (old form)", now.Add(-clockSkew), now.Add(RootCATTL))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.PermittedURIDomains = []string{testMesh}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, Key: key}
}

// TestCrossSignOldFormRoot: a cross certificate for a root whose URI
// constraint is the single domain carries the pair, and still admits the
// mesh's namespaces for crypto/x509.
func TestCrossSignOldFormRoot(t *testing.T) {
	old := oldFormRoot(t, testNow)
	r2 := oldFormRoot(t, testNow)
	cross, err := old.CrossSign(r2.Cert, testNow)
	if err != nil {
		t.Fatalf("cross-sign an old-form root: %v", err)
	}
	if want := []string{testMesh, "." + testMesh}; !slices.Equal(cross.PermittedURIDomains, want) {
		t.Errorf("cross certificate URI constraints %q, want %q", cross.PermittedURIDomains, want)
	}
	// And the other way round: a new root (pair) certified by an old one.
	newRoot := newTestRoot(t)
	if _, err := old.CrossSign(newRoot.Cert, testNow); err != nil {
		t.Errorf("an old-form root cross-signing a new root: %v", err)
	}
	leaf := craftLeaf(t, r2, func(c *x509.Certificate) { c.URIs = []*url.URL{mustURL("spiffe://bookinfo.demo.mesh/sa/x")} })
	if err := verifyAt(leaf, []*x509.Certificate{cross}, old.Cert, testNow); err != nil {
		t.Errorf("leaf through the cross certificate: %v", err)
	}
}

func TestUriSubtrees(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{nil, []string{}},
		{[]string{"demo.mesh"}, []string{"demo.mesh", ".demo.mesh"}},
		{[]string{"demo.mesh", ".demo.mesh"}, []string{"demo.mesh", ".demo.mesh"}},
		{[]string{".demo.mesh", "demo.mesh"}, []string{".demo.mesh", "demo.mesh"}},
		{[]string{".demo.mesh"}, []string{".demo.mesh"}},
		{[]string{""}, []string{""}},
		{[]string{"a.mesh", "b.mesh", "a.mesh"}, []string{"a.mesh", ".a.mesh", "b.mesh", ".b.mesh"}},
	} {
		if got := uriSubtrees(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("uriSubtrees(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestVerifiedID(t *testing.T) {
	root := newTestRoot(t)
	scope, err := root.NewIntermediate("bookinfo.demo.mesh", time.Hour, testNow)
	if err != nil {
		t.Fatal(err)
	}
	leafFor := func(ca *CA, uri string) *x509.Certificate {
		return craftLeaf(t, ca, func(c *x509.Certificate) { c.URIs = []*url.URL{mustURL(uri)} })
	}
	good := leafFor(scope, "spiffe://bookinfo.demo.mesh/sa/reviews")
	// Certificates that only VerifiedID reads (it checks no signature).
	caWith := func(permitted, excluded []string) *x509.Certificate {
		return &x509.Certificate{IsCA: true, PermittedURIDomains: permitted, ExcludedURIDomains: excluded}
	}
	sibling := leafFor(scope, "spiffe://shop.demo.mesh/sa/api")
	caLeaf := craftLeaf(t, scope, func(c *x509.Certificate) {
		c.URIs = []*url.URL{mustURL("spiffe://bookinfo.demo.mesh/sa/reviews")}
		c.IsCA = true
	})
	tests := []struct {
		name    string
		chains  [][]*x509.Certificate
		wantErr string // "" for success
	}{
		{"scope leaf", [][]*x509.Certificate{{good, scope.Cert, root.Cert}}, ""},
		{"leaf outside the scope CA (chain crypto/x509 would refuse)", [][]*x509.Certificate{{sibling, scope.Cert, root.Cert}},
			`trust domain "shop.demo.mesh" is outside the URI name constraints of CA "canton scope CA bookinfo.demo.mesh"`},
		{"leaf outside the root", [][]*x509.Certificate{{leafFor(root, "spiffe://other.mesh/sa/x"), root.Cert}}, "outside the URI name constraints"},
		{"one chain of two passes", [][]*x509.Certificate{{sibling, scope.Cert, root.Cert}, {sibling, caWith([]string{"shop.demo.mesh"}, nil)}}, ""},
		{"old-form constraint admits subdomains (crypto/x509 reading)", [][]*x509.Certificate{{good, caWith([]string{testMesh}, nil)}}, ""},
		{"leading period excludes the apex", [][]*x509.Certificate{{leafFor(root, "spiffe://demo.mesh/anchor/a1"), caWith([]string{".demo.mesh"}, nil)}}, "outside the URI name constraints"},
		{"excluded subtree", [][]*x509.Certificate{{good, caWith(nil, []string{"bookinfo.demo.mesh"})}}, "outside the URI name constraints"},
		{"uppercase constraint", [][]*x509.Certificate{{good, caWith([]string{"DEMO.mesh"}, nil)}}, ""},
		{"unconstrained CA", [][]*x509.Certificate{{good, caWith(nil, nil)}}, ""},
		{"non-CA above the leaf", [][]*x509.Certificate{{good, {}, root.Cert}}, "above the leaf is not a CA"},
		{"leaf is a CA", [][]*x509.Certificate{{caLeaf, scope.Cert, root.Cert}}, "is a CA certificate"},
		{"no chain", nil, "no verified certificate chain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := VerifiedID(tt.chains)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("VerifiedID: %v", err)
				}
				if leaf := tt.chains[0][0]; id.String() != leaf.URIs[0].String() {
					t.Errorf("VerifiedID = %s, want %s", id, leaf.URIs[0])
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("VerifiedID = %v, %v; want error containing %q", id, err, tt.wantErr)
			}
		})
	}
	// A second chain with another leaf is never what makes a leaf pass.
	if _, err := VerifiedID([][]*x509.Certificate{{sibling, scope.Cert, root.Cert}, {good, root.Cert}}); err == nil {
		t.Error("VerifiedID accepted a leaf through a chain of another leaf")
	}
}

// TestOpenSSLVerifiesChains runs `openssl verify` (an RFC 5280 verifier, as
// Envoy's BoringSSL is) on chains this package mints: namespace identities
// under the root, under scope CAs and through a root rotation's cross
// certificate pass, identities outside a CA's subtree do not, and neither does a namespace identity under a CA whose URI
// constraint is the single domain (the interoperability bug the constraint
// pair fixes; it also shows that this openssl enforces URI constraints).
func TestOpenSSLVerifiesChains(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not on PATH: skipping the interoperability check of name constraints with an RFC 5280 verifier")
	}
	root := newTestRoot(t)
	scope, err := root.NewIntermediate("bookinfo.demo.mesh", time.Hour, testNow)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(ca *CA, id ID) *x509.Certificate {
		t.Helper()
		leaf, err := ca.Issue(id, newTestKey(t).Public(), time.Hour, testNow, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return leaf
	}
	craft := func(ca *CA, uri string) *x509.Certificate {
		return craftLeaf(t, ca, func(c *x509.Certificate) { c.URIs = []*url.URL{mustURL(uri)} })
	}
	old := oldFormRoot(t, testNow)
	rot := newRotation(t) // at the real clock
	tests := []struct {
		name    string
		leaf    *x509.Certificate
		inter   []*x509.Certificate
		root    *x509.Certificate
		at      time.Time
		wantErr string // "" when openssl must print OK
	}{
		{"anchor under the root", issue(root, AnchorID(testMesh, "a1")), nil, root.Cert, testNow, ""},
		{"namespace under the root", issue(root, WorkloadID("bookinfo.demo.mesh", "reviews")), nil, root.Cert, testNow, ""},
		{"namespace under its scope CA", issue(scope, WorkloadID("bookinfo.demo.mesh", "reviews")), scope.Chain(), root.Cert, testNow, ""},
		{"sub-namespace under the scope CA", issue(scope, WorkloadID("v2.bookinfo.demo.mesh", "reviews")), scope.Chain(), root.Cert, testNow, ""},
		{"through the cross certificate, old root trusted", rot.leaf.Chain[0], rot.leaf.Chain[1:], rot.r1.Cert, time.Now(), ""},
		{"past the cross certificate, new root trusted", rot.leaf.Chain[0], rot.leaf.Chain[1:], rot.r2.Cert, time.Now(), ""},
		{"sibling namespace under the scope CA", craft(scope, "spiffe://shop.demo.mesh/sa/api"), scope.Chain(), root.Cert, testNow, "permitted subtree violation"},
		{"suffix lookalike under the root", craft(root, "spiffe://evildemo.mesh/sa/api"), nil, root.Cert, testNow, "permitted subtree violation"},
		{"namespace under an old-form root", craft(old, "spiffe://bookinfo.demo.mesh/sa/reviews"), nil, old.Cert, testNow, "permitted subtree violation"},
	}
	dir := t.TempDir()
	write := func(name string, certs ...*x509.Certificate) string {
		var b []byte
		for _, c := range certs {
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"verify", "-attime", strconv.FormatInt(tt.at.Unix(), 10), "-CAfile", write(fmt.Sprintf("root%d.pem", i), tt.root)}
			if len(tt.inter) > 0 {
				args = append(args, "-untrusted", write(fmt.Sprintf("inter%d.pem", i), tt.inter...))
			}
			args = append(args, write(fmt.Sprintf("leaf%d.pem", i), tt.leaf))
			out, err := exec.Command(bin, args...).CombinedOutput()
			if tt.wantErr == "" {
				if err != nil || !strings.Contains(string(out), ": OK") {
					t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
				}
				return
			}
			if err == nil || !strings.Contains(string(out), tt.wantErr) {
				t.Fatalf("openssl %s: %v, want failure with %q\n%s", strings.Join(args, " "), err, tt.wantErr, out)
			}
		})
	}
}
