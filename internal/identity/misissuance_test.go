package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRandomCSRsNeverMisissue signs 10,000 randomized CSRs (1,000 with -short) with a scope CA, a
// sibling scope's CA and the mesh root, and checks every outcome against an independent oracle:
// a certificate is issued exactly when the CSR asks for nothing but the wanted SPIFFE ID (one URI
// SAN, no DNS/IP/email SAN, no CA bit), the ID has a path, lies inside the signing CA's subtree and
// the key is acceptable. Every issued certificate must verify against the mesh root with crypto/x509
// (name constraints included), be a leaf that cannot sign, carry exactly the wanted ID and the CSR's
// key. Zero mis-issuance is the pass mark; refusing a valid request fails too.
func TestRandomCSRsNeverMisissue(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 1000
	}
	now := time.Now()
	root, err := NewRootCA("demo.mesh", now)
	if err != nil {
		t.Fatal(err)
	}
	bookinfo, err := root.NewIntermediate("bookinfo.demo.mesh", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	other, err := root.NewIntermediate("other.demo.mesh", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	type signer struct {
		ca     *CA
		domain string
	}
	signers := []signer{{bookinfo, "bookinfo.demo.mesh"}, {bookinfo, "bookinfo.demo.mesh"}, {other, "other.demo.mesh"}, {root, "demo.mesh"}}

	// A pool of keys: CSRs reuse them (key generation would dominate), plus keys Issue must refuse.
	var keys []crypto.Signer
	for range 8 {
		k, err := GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	badKeys := []crypto.Signer{weak, p224, nil} // nil: the signing CA's own key

	domains := []string{"bookinfo.demo.mesh", "reviews.bookinfo.demo.mesh", "other.demo.mesh", "demo.mesh",
		"evil.mesh", "bookinfo.demo.mesh.evil", "xbookinfo.demo.mesh", "demo.mesh.other"}
	accounts := []string{"reviews", "productpage", "a", "x-1", "svc.v2"}

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	var (
		mu       sync.Mutex
		issued   int
		failures []string
	)
	check := func(i int, rng *mrand.Rand) {
		fail := func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			if len(failures) < 20 {
				failures = append(failures, fmt.Sprintf("csr %d: ", i)+fmt.Sprintf(format, args...))
			}
		}
		s := signers[rng.IntN(len(signers))]
		domain := domains[rng.IntN(len(domains))]
		if rng.IntN(2) == 0 { // half inside the signer's subtree, so that both outcomes are common
			domain = []string{s.domain, "ns." + s.domain}[rng.IntN(2)]
		}
		want := WorkloadID(domain, accounts[rng.IntN(len(accounts))])
		if rng.IntN(20) == 0 {
			want.Path = "" // the trust domain itself: never a workload
		}
		ok := want.Path != "" && (want.TrustDomain == s.domain || strings.HasSuffix(want.TrustDomain, "."+s.domain))

		tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "csr"}}
		nURIs := []int{0, 1, 1, 1, 1, 1, 2, 3}[rng.IntN(8)]
		exact := 0
		for range nURIs {
			var u *url.URL
			switch rng.IntN(10) {
			case 0, 1, 2, 7, 8, 9:
				u = want.URL()
				exact++
			case 3:
				u = WorkloadID(want.TrustDomain, "other").URL()
			case 4:
				u = WorkloadID(domains[rng.IntN(len(domains))], "reviews").URL()
				if u.String() == want.String() {
					exact++
				}
			case 5:
				u = &url.URL{Scheme: "spiffe", Host: want.TrustDomain} // empty path
				if want.Path == "" {
					exact++
				}
			case 6:
				u = &url.URL{Scheme: "https", Host: want.TrustDomain, Path: want.Path}
			}
			tmpl.URIs = append(tmpl.URIs, u)
		}
		ok = ok && nURIs == 1 && exact == 1
		if rng.IntN(6) == 0 {
			tmpl.DNSNames = []string{[]string{"reviews.bookinfo.demo.mesh", "evil.example", "localhost"}[rng.IntN(3)]}
			ok = false
		}
		if rng.IntN(8) == 0 {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
			ok = false
		}
		if rng.IntN(12) == 0 {
			tmpl.EmailAddresses = []string{"a@bookinfo.demo.mesh"}
			ok = false
		}
		if rng.IntN(6) == 0 {
			isCA := rng.IntN(2) == 0
			v, err := asn1.Marshal(struct{ IsCA bool }{isCA})
			if err != nil {
				fail("marshal basicConstraints: %v", err)
				return
			}
			tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oidBasicConstraints, Critical: true, Value: v})
			ok = ok && !isCA
		}
		key, keyNote := keys[rng.IntN(len(keys))], "a fresh P-256 key"
		switch rng.IntN(40) {
		case 0:
			key, keyNote = badKeys[rng.IntN(len(badKeys))], "a refused key"
			if key == nil {
				key = s.ca.Key
			}
			ok = false
		case 1:
			// Another CA's key (a sibling's or the root's): Issue refuses only the signing CA's own
			// key, so this is issued; the identity is still exactly the wanted one.
			key, keyNote = []crypto.Signer{root.Key, bookinfo.Key, other.Key}[rng.IntN(3)], "another CA's key"
			if key == s.ca.Key {
				ok = false
			}
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
		if err != nil {
			fail("create CSR: %v", err)
			return
		}
		if rng.IntN(30) == 0 {
			der[len(der)-1] ^= 0x01 // a broken signature
			ok = false
		}

		cert, err := s.ca.SignCSR(der, want, time.Hour, now)
		switch {
		case err != nil && ok:
			fail("valid CSR for %s (URIs %v) refused by %s: %v", want, tmpl.URIs, s.domain, err)
			return
		case err != nil:
			return
		case !ok:
			fail("MIS-ISSUED: %s signed a CSR it must refuse: want %s, URIs %v, DNS %v, IPs %v, emails %v, key %s",
				s.domain, want, tmpl.URIs, tmpl.DNSNames, tmpl.IPAddresses, tmpl.EmailAddresses, keyNote)
			return
		}
		inter := x509.NewCertPool()
		for _, c := range s.ca.Chain() {
			inter.AddCert(c)
		}
		roots := x509.NewCertPool()
		roots.AddCert(root.Cert)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			fail("issued certificate for %s does not verify: %v", want, err)
			return
		}
		id, err := LeafID(cert)
		if err != nil || id != want || len(cert.URIs) != 1 || cert.URIs[0].String() != want.String() {
			fail("issued certificate carries %v (%v), want exactly %s", cert.URIs, err, want)
			return
		}
		if cert.IsCA || cert.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 || len(cert.DNSNames)+len(cert.IPAddresses)+len(cert.EmailAddresses) != 0 {
			fail("issued certificate for %s is not a plain leaf: CA %v, usage %v, DNS %v, IPs %v", want, cert.IsCA, cert.KeyUsage, cert.DNSNames, cert.IPAddresses)
			return
		}
		if pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
			fail("issued certificate for %s does not carry the CSR's key", want)
			return
		}
		mu.Lock()
		issued++
		mu.Unlock()
	}

	const workers = 4
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(seed, uint64(w)))
			for i := w; i < n; i += workers {
				check(i, rng)
			}
		}()
	}
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	// The generator must exercise both outcomes, or the test proves nothing.
	if issued < n/10 || issued > n*9/10 {
		t.Errorf("%d of %d CSRs were issued; the mix should have between 10%% and 90%% valid requests", issued, n)
	}
	t.Logf("%d CSRs, %d issued, %d refused", n, issued, n-issued)
}
