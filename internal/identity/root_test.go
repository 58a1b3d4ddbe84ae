package identity

import (
	"crypto/rand"
	"crypto/x509"
	"net/url"
	"slices"
	"testing"
	"time"
)

// rotation is a root rotation in progress: R1 (old), R2 (new), R2 certified
// by R1, and a scope CA and a leaf under R2 that carry the cross certificate
// and the bundle {R1, R2}; plus a leaf issued under R1 alone.
type rotation struct {
	r1, r2  *CA
	cross   *x509.Certificate
	scope   *CA
	leaf    *Credentials // under R2, chain ends with the cross certificate
	oldLeaf *Credentials // under R1 only
}

func newRotation(t testing.TB) *rotation {
	t.Helper()
	now := time.Now()
	r := &rotation{}
	var err error
	if r.r1, err = NewRootCA(testMesh, now); err != nil {
		t.Fatal(err)
	}
	if r.r2, err = NewRootCA(testMesh, now); err != nil {
		t.Fatal(err)
	}
	if r.cross, err = r.r1.CrossSign(r.r2.Cert, now); err != nil {
		t.Fatal(err)
	}
	r.r2.Cross = []*x509.Certificate{r.cross}
	r.r2.Bundle = []*x509.Certificate{r.r1.Cert, r.r2.Cert}
	if r.scope, err = r.r2.NewIntermediate("bookinfo.demo.mesh", time.Hour, now); err != nil {
		t.Fatal(err)
	}
	id := ID{TrustDomain: "bookinfo.demo.mesh", Path: "/sa/reviews"}
	if r.leaf, err = r.scope.NewCredentials(id, time.Hour, now, nil, nil); err != nil {
		t.Fatal(err)
	}
	oldScope, err := r.r1.NewIntermediate("bookinfo.demo.mesh", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if r.oldLeaf, err = oldScope.NewCredentials(id, time.Hour, now, nil, nil); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCrossSignedCertificate(t *testing.T) {
	r := newRotation(t)
	c := r.cross
	if string(c.RawSubject) != string(r.r2.Cert.RawSubject) || string(c.RawSubjectPublicKeyInfo) != string(r.r2.Cert.RawSubjectPublicKeyInfo) {
		t.Error("cross certificate does not carry the new root's subject and key")
	}
	if string(c.RawIssuer) != string(r.r1.Cert.RawSubject) || c.CheckSignatureFrom(r.r1.Cert) != nil {
		t.Error("cross certificate is not issued by the old root")
	}
	if !c.IsCA || c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Error("cross certificate is not a CA allowed to sign")
	}
	if !slices.Equal(c.PermittedURIDomains, r.r2.Cert.PermittedURIDomains) || !slices.Equal(c.PermittedDNSDomains, r.r2.Cert.PermittedDNSDomains) {
		t.Errorf("cross certificate name constraints = %q / %q, want the new root's, %q / %q",
			c.PermittedURIDomains, c.PermittedDNSDomains, r.r2.Cert.PermittedURIDomains, r.r2.Cert.PermittedDNSDomains)
	}
	if !slices.Equal(c.AuthorityKeyId, r.r1.Cert.SubjectKeyId) || len(c.AuthorityKeyId) == 0 {
		t.Errorf("cross certificate authority key ID %x, want the old root's subject key ID %x (OpenSSL needs it to tell the two roots apart)",
			c.AuthorityKeyId, r.r1.Cert.SubjectKeyId)
	}
	if c.NotAfter.After(r.r1.Cert.NotAfter) {
		t.Error("cross certificate outlives the old root")
	}
}

func TestCrossSignRefuses(t *testing.T) {
	now := time.Now()
	r := newRotation(t)
	other, err := NewRootCA("other.mesh", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.r1.CrossSign(other.Cert, now); err == nil {
		t.Error("cross-signed a root for names outside the old root's constraints")
	}
	if _, err := r.scope.CrossSign(r.r2.Cert, now); err == nil {
		t.Error("an intermediate cross-signed a root")
	}
	if _, err := r.r1.CrossSign(r.scope.Cert, now); err == nil {
		t.Error("cross-signed an intermediate as a new root")
	}
	if _, err := r.r1.CrossSign(r.r1.Cert, now); err == nil {
		t.Error("cross-signed the old root itself")
	}
}

// TestChainVerificationDuringRotation: a leaf under R2 verifies with the
// old bundle {R1} (through the cross certificate), the new {R2} and both; a
// leaf under R1 verifies with {R1} and both but not with {R2} alone.
func TestChainVerificationDuringRotation(t *testing.T) {
	r := newRotation(t)
	now := time.Now()
	if n := len(r.leaf.Chain); n != 3 || r.leaf.Chain[2] != r.cross {
		t.Fatalf("leaf chain has %d certificates, want leaf, scope CA, cross certificate", n)
	}
	for _, tc := range []struct {
		name   string
		chain  []*x509.Certificate
		bundle []*x509.Certificate
		ok     bool
	}{
		{"new leaf, old bundle", r.leaf.Chain, []*x509.Certificate{r.r1.Cert}, true},
		{"new leaf, new bundle", r.leaf.Chain, []*x509.Certificate{r.r2.Cert}, true},
		{"new leaf, both", r.leaf.Chain, []*x509.Certificate{r.r1.Cert, r.r2.Cert}, true},
		{"new leaf without cross, old bundle", r.leaf.Chain[:2], []*x509.Certificate{r.r1.Cert}, false},
		{"old leaf, old bundle", r.oldLeaf.Chain, []*x509.Certificate{r.r1.Cert}, true},
		{"old leaf, new bundle", r.oldLeaf.Chain, []*x509.Certificate{r.r2.Cert}, false},
		{"old leaf, both", r.oldLeaf.Chain, []*x509.Certificate{r.r1.Cert, r.r2.Cert}, true},
	} {
		_, err := verifyChain(tc.chain, bundlePool(tc.bundle), x509.ExtKeyUsageClientAuth, now)
		if (err == nil) != tc.ok {
			t.Errorf("%s: verify error = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	if got := r.leaf.Bundle; len(got) != 2 || !InBundle(got, r.r1.Cert) || !InBundle(got, r.r2.Cert) {
		t.Errorf("new leaf's credentials bundle has %d roots, want R1 and R2", len(got))
	}
	if err := r.leaf.Verify(now); err != nil {
		t.Errorf("new leaf credentials: %v", err)
	}
	if !ChainsTo(r.scope.Chain(), r.r2.Cert, now) || !ChainsTo(r.scope.Chain(), r.r1.Cert, now) {
		t.Error("scope CA chain does not reach both roots")
	}
	if ChainsTo(r.oldLeaf.Chain, r.r2.Cert, now) {
		t.Error("old leaf chains to the new root")
	}
}

// TestNameConstraintsThroughCross: a certificate signed with R2's key for
// a name outside the mesh fails with the old bundle (the cross certificate's
// constraints) as with the new one.
func TestNameConstraintsThroughCross(t *testing.T) {
	r := newRotation(t)
	now := time.Now()
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := newSerial()
	u, _ := url.Parse("spiffe://evil.example/sa/x")
	tmpl := &x509.Certificate{
		SerialNumber: serial, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		URIs: []*url.URL{u}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, r.r2.Cert, key.Public(), r.r2.Key)
	if err != nil {
		t.Fatal(err)
	}
	evil, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	for name, bundle := range map[string][]*x509.Certificate{"old": {r.r1.Cert}, "new": {r.r2.Cert}, "both": {r.r1.Cert, r.r2.Cert}} {
		if _, err := verifyChain([]*x509.Certificate{evil, r.cross}, bundlePool(bundle), x509.ExtKeyUsageClientAuth, now); err == nil {
			t.Errorf("%s bundle: a leaf outside the mesh verified", name)
		}
	}
}

func TestSealKeepsCrossAndBundle(t *testing.T) {
	r := newRotation(t)
	kek, err := NewKEK()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := SealCA(r.scope, kek)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenCA(sealed, kek)
	if err != nil {
		t.Fatal(err)
	}
	if !certsEqual(got.Parents, r.scope.Parents) || !certsEqual(got.Cross, r.scope.Cross) || !certsEqual(got.Bundle, r.scope.Bundle) {
		t.Errorf("opened CA: %d parents, %d cross, %d bundle; want %d, %d, %d",
			len(got.Parents), len(got.Cross), len(got.Bundle), len(r.scope.Parents), len(r.scope.Cross), len(r.scope.Bundle))
	}
	// A CA outside a rotation seals as before: no headers, bundle = root.
	plain, err := SealCA(r.r1, kek)
	if err != nil {
		t.Fatal(err)
	}
	back, err := OpenCA(plain, kek)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Cross) != 0 || len(back.TrustBundle()) != 1 || back.TrustBundle()[0] != back.Cert {
		t.Error("plain CA gained cross certificates or a bundle")
	}
	// Blocks out of order are refused.
	bad := append(encodeRole(r.scope.Bundle, roleBundle), encodeCerts([]*x509.Certificate{r.scope.Cert})...)
	if _, _, _, err := decodeSealedCerts(bad); err == nil {
		t.Error("accepted a chain certificate after the bundle")
	}
}

// TestSourceSwitchesBundle: a server built from a Source starts trusting a
// client of the new root when the bundle gains it, and stops trusting a
// client of the old root when the bundle loses it.
func TestSourceSwitchesBundle(t *testing.T) {
	r := newRotation(t)
	now := time.Now()
	server, err := r.r1.NewCredentials(AnchorID(testMesh, "a1"), time.Hour, now, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	newOnly := &Credentials{Chain: r.leaf.Chain[:2], Key: r.leaf.Key, Bundle: []*x509.Certificate{r.r2.Cert}}
	src := NewSource(server)
	cfg := ServerTLSFrom(src)
	accept := func(ID) error { return nil }
	try := func(c *Credentials) error {
		res := handshake(t, cfg, ClientTLS(&Credentials{Chain: c.Chain, Key: c.Key, Bundle: []*x509.Certificate{r.r1.Cert}}, accept))
		if res.serverErr != nil {
			return res.serverErr
		}
		if _, err := PeerID(res.server); err != nil {
			return err
		}
		return nil
	}
	if err := try(newOnly); err == nil {
		t.Fatal("server trusting R1 accepted a client chaining only to R2")
	}
	if !src.SetBundle([]*x509.Certificate{r.r1.Cert, r.r2.Cert}) {
		t.Fatal("SetBundle reported no change")
	}
	if err := try(newOnly); err != nil {
		t.Fatalf("server trusting R1 and R2 refused a client of R2: %v", err)
	}
	if err := try(r.oldLeaf); err != nil {
		t.Fatalf("server trusting R1 and R2 refused a client of R1: %v", err)
	}
	src.SetBundle([]*x509.Certificate{r.r2.Cert})
	if err := try(r.oldLeaf); err == nil {
		t.Fatal("server trusting only R2 accepted a client of R1")
	}
}

// FuzzDecodeSealedCerts: the sealed CA certificate list parser never panics,
// and what it accepts has a chain and re-encodes to the same split.
func FuzzDecodeSealedCerts(f *testing.F) {
	now := time.Now()
	r1, err := NewRootCA(testMesh, now)
	if err != nil {
		f.Fatal(err)
	}
	r2, err := NewRootCA(testMesh, now)
	if err != nil {
		f.Fatal(err)
	}
	cross, err := r1.CrossSign(r2.Cert, now)
	if err != nil {
		f.Fatal(err)
	}
	plain := encodeCerts([]*x509.Certificate{r2.Cert})
	full := append(append(append([]byte(nil), plain...), encodeRole([]*x509.Certificate{cross}, roleCross)...), encodeRole([]*x509.Certificate{r1.Cert, r2.Cert}, roleBundle)...)
	f.Add(plain)
	f.Add(full)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nCanton-Role: other\n\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("garbage"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		chain, cross, bundle, err := decodeSealedCerts(b)
		if err != nil {
			return
		}
		if len(chain) == 0 {
			t.Fatal("accepted a list without a CA certificate")
		}
		again := append(append(encodeCerts(chain), encodeRole(cross, roleCross)...), encodeRole(bundle, roleBundle)...)
		c2, x2, b2, err := decodeSealedCerts(again)
		if err != nil || !certsEqual(c2, chain) || !certsEqual(x2, cross) || !certsEqual(b2, bundle) {
			t.Fatalf("re-encoding changed the split: %v", err)
		}
	})
}

// BenchmarkVerifyThroughCross: verifying a leaf of the new root with the old
// bundle (through the cross certificate) versus the new bundle.
func BenchmarkVerifyThroughCross(b *testing.B) {
	r := newRotation(b)
	now := time.Now()
	for name, bundle := range map[string][]*x509.Certificate{"old-bundle": {r.r1.Cert}, "new-bundle": {r.r2.Cert}} {
		pool := bundlePool(bundle)
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := verifyChain(r.leaf.Chain, pool, x509.ExtKeyUsageClientAuth, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkServerConfigForClient: the per-handshake cost of reading the
// current credentials and bundle from a Source.
func BenchmarkServerConfigForClient(b *testing.B) {
	r := newRotation(b)
	cfg := ServerTLSFrom(NewSource(r.leaf))
	for b.Loop() {
		if _, err := cfg.GetConfigForClient(nil); err != nil {
			b.Fatal(err)
		}
	}
}
