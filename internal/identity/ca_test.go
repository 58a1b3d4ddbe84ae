package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const testMesh = "demo.mesh"

func newTestRoot(t testing.TB) *CA {
	t.Helper()
	ca, err := NewRootCA(testMesh, testNow)
	if err != nil {
		t.Fatalf("NewRootCA: %v", err)
	}
	return ca
}

func newTestKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// verifyAt verifies leaf (with intermediates) against root with crypto/x509.
func verifyAt(leaf *x509.Certificate, intermediates []*x509.Certificate, root *x509.Certificate, now time.Time) error {
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inter := x509.NewCertPool()
	for _, c := range intermediates {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

func TestNewRootCA(t *testing.T) {
	ca := newTestRoot(t)
	c := ca.Cert
	if !c.IsCA || !c.BasicConstraintsValid || c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("root is not a signing CA: IsCA=%v BasicConstraintsValid=%v KeyUsage=%v", c.IsCA, c.BasicConstraintsValid, c.KeyUsage)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("root is not self-signed: %v", err)
	}
	if !slices.Equal(c.PermittedURIDomains, []string{testMesh, "." + testMesh}) || !slices.Equal(c.PermittedDNSDomains, []string{testMesh}) {
		t.Errorf("constraints URI=%q DNS=%q, want URI [%s .%[3]s] and DNS [%[3]s]", c.PermittedURIDomains, c.PermittedDNSDomains, testMesh)
	}
	if !c.PermittedDNSDomainsCritical {
		t.Error("name constraints are not critical")
	}
	if got := c.NotAfter.Sub(testNow); got != RootCATTL {
		t.Errorf("root valid for %v after now, want %v", got, RootCATTL)
	}
	if c.NotBefore.After(testNow) {
		t.Errorf("root NotBefore %v is after now %v", c.NotBefore, testNow)
	}
	if _, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || c.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Errorf("root key is %T, want ECDSA P-256", c.PublicKey)
	}
	if ca.Root() != c || len(ca.Chain()) != 0 {
		t.Errorf("root CA: Root()=%v Chain()=%d certs, want itself and none", ca.Root().Subject, len(ca.Chain()))
	}
	for _, bad := range []string{"", "Demo.mesh", "demo..mesh", "demo.mesh.", "*.mesh", "de_mo.mesh"} {
		if _, err := NewRootCA(bad, testNow); err == nil {
			t.Errorf("NewRootCA(%q) succeeded, want error", bad)
		}
	}
}

func TestIssue(t *testing.T) {
	ca := newTestRoot(t)
	key := newTestKey(t)
	id := AnchorID(testMesh, "a1")
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	leaf, err := ca.Issue(id, key.Public(), time.Hour, testNow, []string{"a1.anchors.demo.mesh"}, ips)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	got, err := LeafID(leaf)
	if err != nil || got != id {
		t.Fatalf("LeafID = %v, %v; want %v", got, err, id)
	}
	if leaf.IsCA || !leaf.BasicConstraintsValid {
		t.Errorf("leaf IsCA=%v BasicConstraintsValid=%v, want false, true", leaf.IsCA, leaf.BasicConstraintsValid)
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("leaf KeyUsage = %v, want digitalSignature only", leaf.KeyUsage)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("leaf ExtKeyUsage = %v, want serverAuth, clientAuth", leaf.ExtKeyUsage)
	}
	if !slices.Equal(leaf.DNSNames, []string{"a1.anchors.demo.mesh"}) || len(leaf.IPAddresses) != 2 {
		t.Errorf("leaf DNS=%v IPs=%v", leaf.DNSNames, leaf.IPAddresses)
	}
	if !leaf.NotAfter.Equal(testNow.Add(time.Hour)) || !leaf.NotBefore.Equal(testNow.Add(-clockSkew)) {
		t.Errorf("leaf validity %v..%v, want %v..%v", leaf.NotBefore, leaf.NotAfter, testNow.Add(-clockSkew), testNow.Add(time.Hour))
	}
	if !keyMatches(leaf, key) {
		t.Error("leaf does not carry the given public key")
	}
	if err := verifyAt(leaf, nil, ca.Cert, testNow); err != nil {
		t.Errorf("leaf does not verify against root: %v", err)
	}
	if err := verifyAt(leaf, nil, ca.Cert, testNow.Add(2*time.Hour)); err == nil {
		t.Error("leaf verifies after its expiry")
	}
	// A workload in a nested namespace is inside the mesh's constraints.
	if _, err := ca.Issue(WorkloadID("payments.shop.demo.mesh", "api"), key.Public(), time.Hour, testNow, nil, nil); err != nil {
		t.Errorf("Issue for nested namespace: %v", err)
	}
	// Ed25519 and RSA-2048 keys are accepted too.
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := ca.Issue(id, edKey.Public(), time.Hour, testNow, nil, nil); err != nil {
		t.Errorf("Issue for Ed25519 key: %v", err)
	}
}

func TestIssueClampsToCAExpiry(t *testing.T) {
	ca := newTestRoot(t)
	now := ca.Cert.NotAfter.Add(-time.Hour)
	leaf, err := ca.Issue(AnchorID(testMesh, "a1"), newTestKey(t).Public(), 24*time.Hour, now, nil, nil)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if !leaf.NotAfter.Equal(ca.Cert.NotAfter) {
		t.Errorf("leaf NotAfter %v, want clamped to CA NotAfter %v", leaf.NotAfter, ca.Cert.NotAfter)
	}
}

func TestIssueRefusals(t *testing.T) {
	ca := newTestRoot(t)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	type args struct {
		ca  *CA
		id  ID
		pub crypto.PublicKey
		ttl time.Duration
		now time.Time
		dns []string
		ips []net.IP
	}
	tests := []struct {
		name    string
		change  func(*args)
		wantErr string
	}{
		{"invalid id", func(a *args) { a.id = ID{testMesh, "/a//b"} }, "empty segment"},
		{"zero id", func(a *args) { a.id = ID{} }, "empty"},
		{"other mesh", func(a *args) { a.id = AnchorID("other.mesh", "a1") }, "outside the names"},
		{"suffix lookalike", func(a *args) { a.id = AnchorID("evildemo.mesh", "a1") }, "outside the names"},
		{"parent of mesh", func(a *args) { a.id = AnchorID("mesh", "a1") }, "outside the names"},
		{"trust domain not a DNS name", func(a *args) { a.id = AnchorID("a_b.demo.mesh", "a1") }, "must be a DNS name"},
		{"trust domain only", func(a *args) { a.id = ID{TrustDomain: testMesh} }, "names a trust domain"},
		{"zero ttl", func(a *args) { a.ttl = 0 }, "must be positive"},
		{"negative ttl", func(a *args) { a.ttl = -time.Hour }, "must be positive"},
		{"before CA validity", func(a *args) { a.now = testNow.Add(-time.Hour) }, "not valid at"},
		{"after CA validity", func(a *args) { a.now = testNow.Add(RootCATTL + time.Hour) }, "not valid at"},
		{"DNS name outside mesh", func(a *args) { a.dns = []string{"example.com"} }, "outside the names"},
		{"invalid DNS name", func(a *args) { a.dns = []string{"A.demo.mesh"} }, "invalid character"},
		{"wildcard DNS name", func(a *args) { a.dns = []string{"*.demo.mesh"} }, "invalid character"},
		{"empty DNS name", func(a *args) { a.dns = []string{""} }, "empty DNS name"},
		{"duplicate DNS name", func(a *args) { a.dns = []string{"x.demo.mesh", "x.demo.mesh"} }, "given twice"},
		{"malformed IP", func(a *args) { a.ips = []net.IP{{1, 2, 3}} }, "invalid IP"},
		{"nil public key", func(a *args) { a.pub = nil }, "no public key"},
		{"P-224 key", func(a *args) { a.pub = &p224.PublicKey }, "P-256 or P-384"},
		{"RSA-1024 key", func(a *args) { a.pub = &rsa1024.PublicKey }, "at least 2048"},
		{"unsupported key type", func(a *args) { a.pub = "not a key" }, "unsupported public key"},
		{"CA's own key", func(a *args) { a.pub = ca.Key.Public() }, "CA's own key"},
		{"CA without key", func(a *args) { a.ca = &CA{Cert: ca.Cert} }, "no certificate or key"},
		{"empty CA", func(a *args) { a.ca = &CA{} }, "no certificate or key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := args{ca: ca, id: AnchorID(testMesh, "a1"), pub: newTestKey(t).Public(), ttl: time.Hour, now: testNow}
			if _, err := a.ca.Issue(a.id, a.pub, a.ttl, a.now, a.dns, a.ips); err != nil {
				t.Fatalf("baseline Issue: %v", err)
			}
			tt.change(&a)
			cert, err := a.ca.Issue(a.id, a.pub, a.ttl, a.now, a.dns, a.ips)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Issue = %v, %v; want error containing %q", cert != nil, err, tt.wantErr)
			}
		})
	}
}

// craftLeaf signs a leaf with the CA's key directly, bypassing Issue's
// checks, to test what verifiers do with certificates Issue would refuse.
func craftLeaf(t *testing.T, ca *CA, mutate func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	return craftLeafKey(t, ca, newTestKey(t), mutate)
}

// craftLeafKey is craftLeaf for a given key.
func craftLeafKey(t *testing.T, ca *CA, key crypto.Signer, mutate func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(42),
		NotBefore:             testNow.Add(-time.Minute),
		NotAfter:              testNow.Add(time.Hour),
		URIs:                  []*url.URL{AnchorID(testMesh, "a1").URL()},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	if mutate != nil {
		mutate(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatalf("craft leaf: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// TestNameConstraintsEnforcedByVerify checks that crypto/x509, as peers use
// it, refuses certificates outside the CA's constraints even when the CA's
// key signed them.
func TestNameConstraintsEnforcedByVerify(t *testing.T) {
	root := newTestRoot(t)
	scope, err := root.NewIntermediate("bookinfo.demo.mesh", 24*time.Hour, testNow)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		ca     *CA
		uri    string
		dns    []string
		wantOK bool
	}{
		{name: "root: in mesh", ca: root, uri: "spiffe://demo.mesh/anchor/a1", wantOK: true},
		{name: "root: nested namespace", ca: root, uri: "spiffe://x.y.demo.mesh/sa/s", wantOK: true},
		{name: "root: other mesh", ca: root, uri: "spiffe://other.mesh/anchor/a1"},
		{name: "root: suffix lookalike", ca: root, uri: "spiffe://evildemo.mesh/anchor/a1"},
		{name: "root: DNS SAN outside", ca: root, uri: "spiffe://demo.mesh/anchor/a1", dns: []string{"example.com"}},
		{name: "root: DNS SAN inside", ca: root, uri: "spiffe://demo.mesh/anchor/a1", dns: []string{"a1.demo.mesh"}, wantOK: true},
		{name: "scope: own namespace", ca: scope, uri: "spiffe://bookinfo.demo.mesh/sa/reviews", wantOK: true},
		{name: "scope: sub-namespace", ca: scope, uri: "spiffe://v2.bookinfo.demo.mesh/sa/reviews", wantOK: true},
		{name: "scope: mesh anchor", ca: scope, uri: "spiffe://demo.mesh/anchor/a1"},
		{name: "scope: sibling namespace", ca: scope, uri: "spiffe://shop.demo.mesh/sa/api"},
		{name: "scope: suffix lookalike", ca: scope, uri: "spiffe://xbookinfo.demo.mesh/sa/api"},
		{name: "scope: DNS SAN of the parent domain", ca: scope, uri: "spiffe://bookinfo.demo.mesh/sa/api", dns: []string{"demo.mesh"}},
		{name: "scope: DNS SAN inside", ca: scope, uri: "spiffe://bookinfo.demo.mesh/sa/api", dns: []string{"bookinfo.demo.mesh", "api.bookinfo.demo.mesh"}, wantOK: true},
		{name: "scope: other mesh", ca: scope, uri: "spiffe://other.mesh/sa/api"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf := craftLeaf(t, tt.ca, func(c *x509.Certificate) {
				c.URIs = []*url.URL{mustURL(tt.uri)}
				c.DNSNames = tt.dns
			})
			err := verifyAt(leaf, tt.ca.Chain(), root.Cert, testNow)
			if tt.wantOK {
				if err != nil {
					t.Fatalf("verify: %v", err)
				}
				return
			}
			var inv x509.CertificateInvalidError
			if !errors.As(err, &inv) || inv.Reason != x509.CANotAuthorizedForThisName {
				t.Fatalf("verify = %v, want CANotAuthorizedForThisName", err)
			}
		})
	}
}

func TestNewIntermediate(t *testing.T) {
	root := newTestRoot(t)
	scope, err := root.NewIntermediate("bookinfo.demo.mesh", 24*time.Hour, testNow)
	if err != nil {
		t.Fatalf("NewIntermediate: %v", err)
	}
	if !scope.Cert.IsCA || scope.Root() != root.Cert || len(scope.Chain()) != 1 || scope.Chain()[0] != scope.Cert {
		t.Fatalf("scope CA: IsCA=%v chain=%d", scope.Cert.IsCA, len(scope.Chain()))
	}
	if !slices.Equal(scope.Cert.PermittedURIDomains, []string{"bookinfo.demo.mesh", ".bookinfo.demo.mesh"}) ||
		!slices.Equal(scope.Cert.PermittedDNSDomains, []string{"bookinfo.demo.mesh"}) {
		t.Errorf("scope constraints URI=%q DNS=%q", scope.Cert.PermittedURIDomains, scope.Cert.PermittedDNSDomains)
	}
	leaf, err := scope.Issue(WorkloadID("bookinfo.demo.mesh", "reviews"), newTestKey(t).Public(), time.Hour, testNow, nil, nil)
	if err != nil {
		t.Fatalf("scope Issue: %v", err)
	}
	if err := verifyAt(leaf, scope.Chain(), root.Cert, testNow); err != nil {
		t.Errorf("scope leaf does not verify: %v", err)
	}
	if _, err := scope.Issue(AnchorID(testMesh, "a1"), newTestKey(t).Public(), time.Hour, testNow, nil, nil); err == nil {
		t.Error("scope CA issued a mesh anchor identity")
	}
	// Nested scope; its leaves are cut at the parent's expiry.
	sub, err := scope.NewIntermediate("v2.bookinfo.demo.mesh", 48*time.Hour, testNow)
	if err != nil {
		t.Fatalf("nested NewIntermediate: %v", err)
	}
	if !sub.Cert.NotAfter.Equal(scope.Cert.NotAfter) {
		t.Errorf("nested CA NotAfter %v, want clamped to %v", sub.Cert.NotAfter, scope.Cert.NotAfter)
	}
	if len(sub.Chain()) != 2 || sub.Root() != root.Cert {
		t.Errorf("nested CA chain has %d certs", len(sub.Chain()))
	}
	for _, bad := range []string{"shop.demo.mesh", "demo.mesh", "other.mesh", "Bad.bookinfo.demo.mesh"} {
		if _, err := scope.NewIntermediate(bad, time.Hour, testNow); err == nil {
			t.Errorf("scope.NewIntermediate(%q) succeeded, want refusal", bad)
		}
	}
	if _, err := root.NewIntermediate("x.demo.mesh", 0, testNow); err == nil {
		t.Error("NewIntermediate with zero ttl succeeded")
	}
}

func TestNewCSRAndSignCSR(t *testing.T) {
	ca := newTestRoot(t)
	key := newTestKey(t)
	id := WorkloadID("bookinfo.demo.mesh", "reviews")
	csr, err := NewCSR(id, key)
	if err != nil {
		t.Fatalf("NewCSR: %v", err)
	}
	leaf, err := ca.SignCSR(csr, id, time.Hour, testNow)
	if err != nil {
		t.Fatalf("SignCSR: %v", err)
	}
	if got, err := LeafID(leaf); err != nil || got != id {
		t.Errorf("LeafID = %v, %v; want %v", got, err, id)
	}
	if !keyMatches(leaf, key) {
		t.Error("signed certificate does not carry the CSR's key")
	}
	if len(leaf.DNSNames) != 0 || len(leaf.IPAddresses) != 0 {
		t.Errorf("signed certificate has extra SANs: %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
	if _, err := NewCSR(ID{testMesh, "/x/"}, key); err == nil {
		t.Error("NewCSR accepted an invalid ID")
	}
}

func basicConstraintsExt(t *testing.T, isCA bool) []pkix.Extension {
	t.Helper()
	v, err := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{isCA})
	if err != nil {
		t.Fatal(err)
	}
	return []pkix.Extension{{Id: oidBasicConstraints, Critical: true, Value: v}}
}

func TestSignCSRRefusals(t *testing.T) {
	ca := newTestRoot(t)
	key := newTestKey(t)
	want := WorkloadID("bookinfo.demo.mesh", "reviews")
	mk := func(tmpl *x509.CertificateRequest, signer crypto.Signer) []byte {
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, signer)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	good := mk(&x509.CertificateRequest{URIs: []*url.URL{want.URL()}}, key)
	badSig := slices.Clone(good)
	badSig[len(badSig)-3] ^= 0x01
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	tests := []struct {
		name    string
		csr     []byte
		want    ID
		wantErr string
	}{
		{name: "garbage", csr: []byte("not a csr"), wantErr: "asn1"},
		{name: "empty", csr: nil, wantErr: "asn1"},
		{name: "oversized", csr: make([]byte, maxCSRSize+1), wantErr: "bytes, more than"},
		{name: "bad signature", csr: badSig, wantErr: "signature"},
		{name: "other identity", csr: good, want: WorkloadID("bookinfo.demo.mesh", "ratings"), wantErr: "CSR asks for"},
		{name: "no URI SAN", csr: mk(&x509.CertificateRequest{}, key), wantErr: "0 URI SANs"},
		{name: "two URI SANs", csr: mk(&x509.CertificateRequest{URIs: []*url.URL{want.URL(), AnchorID(testMesh, "a").URL()}}, key), wantErr: "2 URI SANs"},
		{name: "invalid SPIFFE URI", csr: mk(&x509.CertificateRequest{URIs: []*url.URL{mustURL("spiffe://bookinfo.demo.mesh/sa/reviews?x")}}, key), wantErr: "invalid character"},
		{name: "DNS SAN", csr: mk(&x509.CertificateRequest{URIs: []*url.URL{want.URL()}, DNSNames: []string{"reviews.bookinfo.demo.mesh"}}, key), wantErr: "DNS/IP/email"},
		{name: "IP SAN", csr: mk(&x509.CertificateRequest{URIs: []*url.URL{want.URL()}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}, key), wantErr: "DNS/IP/email"},
		{name: "email SAN", csr: mk(&x509.CertificateRequest{URIs: []*url.URL{want.URL()}, EmailAddresses: []string{"a@b.c"}}, key), wantErr: "DNS/IP/email"},
		{name: "asks for CA", csr: mk(&x509.CertificateRequest{URIs: []*url.URL{want.URL()}, ExtraExtensions: basicConstraintsExt(t, true)}, key), wantErr: "asks for a CA"},
		{name: "weak key", csr: mk(&x509.CertificateRequest{URIs: []*url.URL{want.URL()}}, p224), wantErr: "P-256 or P-384"},
		{name: "CA's own key", csr: mk(&x509.CertificateRequest{URIs: []*url.URL{want.URL()}}, ca.Key), wantErr: "CA's own key"},
		{name: "outside mesh", csr: mk(&x509.CertificateRequest{URIs: []*url.URL{WorkloadID("other.mesh", "x").URL()}}, key), want: WorkloadID("other.mesh", "x"), wantErr: "outside the names"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := want
			if tt.want != (ID{}) {
				w = tt.want
			}
			cert, err := ca.SignCSR(tt.csr, w, time.Hour, testNow)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("SignCSR = %v, %v; want error containing %q", cert != nil, err, tt.wantErr)
			}
		})
	}
	// An explicit CA:false is fine.
	notCA := mk(&x509.CertificateRequest{URIs: []*url.URL{want.URL()}, ExtraExtensions: basicConstraintsExt(t, false)}, key)
	if _, err := ca.SignCSR(notCA, want, time.Hour, testNow); err != nil {
		t.Errorf("SignCSR with basicConstraints CA:false: %v", err)
	}
}

func TestSaveLoadCA(t *testing.T) {
	root := newTestRoot(t)
	scope, err := root.NewIntermediate("bookinfo.demo.mesh", 24*time.Hour, testNow)
	if err != nil {
		t.Fatal(err)
	}
	for name, ca := range map[string]*CA{"root": root, "scope": scope} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			if err := SaveCA(dir, ca); err != nil {
				t.Fatalf("SaveCA: %v", err)
			}
			st, err := os.Stat(filepath.Join(dir, "ca.key"))
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("ca.key mode = %v, %v; want 0600", st.Mode().Perm(), err)
			}
			got, err := LoadCA(dir)
			if err != nil {
				t.Fatalf("LoadCA: %v", err)
			}
			if !got.Cert.Equal(ca.Cert) || !certsEqual(got.Parents, ca.Parents) || !keyMatches(got.Cert, got.Key) {
				t.Fatal("loaded CA differs from saved CA")
			}
			if _, err := got.Issue(WorkloadID("bookinfo.demo.mesh", "x"), newTestKey(t).Public(), time.Hour, testNow, nil, nil); err != nil {
				t.Errorf("loaded CA cannot issue: %v", err)
			}
		})
	}

	t.Run("mismatched key", func(t *testing.T) {
		dir := t.TempDir()
		other := newTestRoot(t)
		if err := SaveCA(dir, root); err != nil {
			t.Fatal(err)
		}
		keyPEM, _ := encodeKey(other.Key)
		if err := os.WriteFile(filepath.Join(dir, "ca.key"), keyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadCA(dir); err == nil || !strings.Contains(err.Error(), "does not hold the key") {
			t.Fatalf("LoadCA = %v, want key mismatch error", err)
		}
	})
	t.Run("broken chain", func(t *testing.T) {
		dir := t.TempDir()
		if err := SaveCA(dir, &CA{Cert: scope.Cert, Key: scope.Key, Parents: []*x509.Certificate{newTestRoot(t).Cert}}); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadCA(dir); err == nil || !strings.Contains(err.Error(), "not signed by") {
			t.Fatalf("LoadCA = %v, want chain error", err)
		}
	})
	t.Run("leaf is not a CA", func(t *testing.T) {
		dir := t.TempDir()
		leafKey := newTestKey(t)
		leaf, err := root.Issue(AnchorID(testMesh, "a1"), leafKey.Public(), time.Hour, testNow, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := SaveCA(dir, &CA{Cert: leaf, Key: leafKey}); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadCA(dir); err == nil || !strings.Contains(err.Error(), "not a CA") {
			t.Fatalf("LoadCA = %v, want not-a-CA error", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		if _, err := LoadCA(t.TempDir()); err == nil || !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("LoadCA of empty dir = %v, want not-exist", err)
		}
	})
	t.Run("save refuses mismatched key", func(t *testing.T) {
		if err := SaveCA(t.TempDir(), &CA{Cert: root.Cert, Key: scope.Key}); err == nil {
			t.Fatal("SaveCA accepted a key that does not match")
		}
	})
}
