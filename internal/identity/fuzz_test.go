package identity

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// idOracle is an independent statement of the SPIFFE ID grammar; the
// segment and length rules are checked beside it.
var idOracle = regexp.MustCompile(`^spiffe://[a-z0-9._-]+(/[A-Za-z0-9._-]+)*$`)

func FuzzParseID(f *testing.F) {
	for _, s := range []string{
		"spiffe://demo.mesh/anchor/a1", "spiffe://demo.mesh", "spiffe://bookinfo.demo.mesh/sa/reviews",
		"spiffe://demo.mesh/", "spiffe://demo.mesh/a/../b", "spiffe://demo.mesh/./b", "spiffe://Demo.mesh/a",
		"spiffe:///a", "spiffe://", "SPIFFE://x/y", "spiffe://x/a%2Fb", "spiffe://x/a?q#f", "spiffe://x:1/a",
		"spiffe://u@x/a", "spiffe://x//a", "spiffe://x/a/", "spiffe://x/...", "https://x/a", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		want := idOracle.MatchString(s) && len(s) <= maxIDLength && validOracleParts(s)
		if (err == nil) != want {
			t.Fatalf("ParseID(%q) err = %v, oracle says valid=%v", s, err, want)
		}
		if err != nil {
			return
		}
		if id.String() != s || id.URL().String() != s {
			t.Fatalf("ParseID(%q) = %#v, which prints as %q / %q", s, id, id.String(), id.URL().String())
		}
		if err := id.Validate(); err != nil {
			t.Fatalf("Validate of parsed %q: %v", s, err)
		}
		// The URL form round-trips through net/url, as certificate SANs do.
		u, err := url.Parse(s)
		if err != nil || u.String() != s {
			t.Fatalf("url.Parse(%q) = %v, %v", s, u, err)
		}
	})
}

func validOracleParts(s string) bool {
	rest := strings.TrimPrefix(s, "spiffe://")
	td, path, _ := strings.Cut(rest, "/")
	if len(td) > maxTrustDomainLength {
		return false
	}
	if path == "" {
		return true
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

var fuzzFixture = sync.OnceValues(func() (*CA, error) { return NewRootCA(testMesh, testNow) })

func fuzzCA(f *testing.F) *CA {
	ca, err := fuzzFixture()
	if err != nil {
		f.Fatal(err)
	}
	return ca
}

func FuzzParseCredentials(f *testing.F) {
	root := fuzzCA(f)
	scope, err := root.NewIntermediate("bookinfo.demo.mesh", time.Hour, testNow)
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range []*Credentials{
		newTestCreds(f, root, AdminID(testMesh, "admin")),
		newTestCreds(f, scope, WorkloadID("bookinfo.demo.mesh", "reviews")),
	} {
		b, err := c.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(bytes.Replace(b, []byte("-----BEGIN PRIVATE KEY-----"), []byte("x-----BEGIN PRIVATE KEY-----"), 1))
		f.Add(b[:len(b)/2])
		f.Add(b[bytes.Index(b, []byte("-----BEGIN")):])
	}
	f.Add([]byte("# only a comment\n"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCredentials(b)
		if err != nil {
			return
		}
		if _, err := c.ID(); err != nil {
			t.Fatalf("parsed credentials have no ID: %v", err)
		}
		out, err := c.Marshal()
		if err != nil {
			t.Fatalf("parsed credentials do not marshal: %v", err)
		}
		again, err := ParseCredentials(out)
		if err != nil {
			t.Fatalf("marshalled credentials do not parse: %v", err)
		}
		if !certsEqual(again.Chain, c.Chain) || !certsEqual(again.Bundle, c.Bundle) || !keyMatches(again.Chain[0], again.Key) {
			t.Fatal("credentials changed across marshal/parse")
		}
	})
}

func FuzzParseJoinToken(f *testing.F) {
	tok, err := NewJoinToken(fuzzCA(f).Cert)
	if err != nil {
		f.Fatal(err)
	}
	s := tok.String()
	f.Add(s)
	f.Add(s + "\n")
	f.Add(strings.ToUpper(s))
	f.Add(s[:len(s)-1])
	f.Add(JoinToken{Secret: make([]byte, 32)}.String())
	f.Add("canton-join.v1..")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseJoinToken(s)
		if err != nil {
			if tok.Matches(s) {
				t.Fatal("an unparsable token matched")
			}
			return
		}
		if tok.String() != s {
			t.Fatalf("ParseJoinToken(%q).String() = %q: not canonical", s, tok.String())
		}
		if len(tok.Secret) != joinSecretSize || !tok.Matches(s) {
			t.Fatalf("parsed token (secret %d bytes) does not match its own text", len(tok.Secret))
		}
	})
}

// FuzzSignCSR feeds arbitrary bytes to the CSR checks: whatever is signed
// must be a well-formed SVID for exactly the wanted ID and the CSR's key.
func FuzzSignCSR(f *testing.F) {
	ca := fuzzCA(f)
	want := WorkloadID("bookinfo.demo.mesh", "reviews")
	key := newTestKey(f)
	good, err := NewCSR(want, key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	other, _ := NewCSR(AnchorID(testMesh, "a1"), key)
	f.Add(other)
	twoURIs, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{want.URL(), want.URL()}}, key)
	f.Add(twoURIs)
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		cert, err := ca.SignCSR(der, want, time.Hour, testNow)
		if err != nil {
			return
		}
		id, err := LeafID(cert)
		if err != nil || id != want {
			t.Fatalf("signed certificate has ID %v, %v; want %v", id, err, want)
		}
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatalf("signed an unparsable CSR: %v", err)
		}
		if !cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(csr.PublicKey) {
			t.Fatal("signed certificate does not carry the CSR's key")
		}
		if cert.IsCA || len(cert.DNSNames)+len(cert.IPAddresses)+len(cert.EmailAddresses) > 0 {
			t.Fatal("signed certificate is a CA or has extra SANs")
		}
	})
}
