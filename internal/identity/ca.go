package identity

import (
	"bytes"
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
	"fmt"
	"math/big"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

const (
	// RootCATTL is the validity of a mesh root CA.
	RootCATTL = 10 * 365 * 24 * time.Hour
	// clockSkew backdates NotBefore so that peers whose clocks lag slightly
	// behind the issuer's accept a fresh certificate.
	clockSkew = 5 * time.Minute
	// ClockSkew is how far this package backdates NotBefore (clockSkew).
	ClockSkew = clockSkew
	// maxCSRSize bounds the CSR that SignCSR parses.
	maxCSRSize = 16 << 10
)

var oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}

// CA is a certificate authority of the mesh: the mesh root (NewRootCA) or
// the name-constrained intermediate CA of a scope (NewIntermediate).
type CA struct {
	// Cert is the CA's certificate. It must be a CA certificate allowed to
	// sign certificates; its name constraints bound what Issue will sign.
	Cert *x509.Certificate
	// Key is the private key of Cert.
	Key crypto.Signer
	// Parents are the certificates above Cert, from Cert's issuer up to and
	// including the mesh root. Empty when Cert is itself the root.
	Parents []*x509.Certificate
	// Cross are cross certificates appended to every chain this CA hands
	// out, after Chain's intermediates: during a root rotation, the new root
	// certified by the previous one, so that a verifier that still trusts
	// only the previous root verifies leaves of the new one. Usually empty.
	Cross []*x509.Certificate
	// Bundle is the mesh trust bundle: the roots that peers are verified
	// against. Empty means Root() alone (no rotation in progress); during a
	// root rotation it holds the previous root and the new one.
	Bundle []*x509.Certificate
}

// GenerateKey returns a new ECDSA P-256 private key.
func GenerateKey() (crypto.Signer, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("identity: generate P-256 key: %w", err)
	}
	return k, nil
}

// NewRootCA creates the self-signed root CA of mesh, valid from now for
// RootCATTL, name-constrained to mesh and its subdomains for both URI SANs
// (SPIFFE IDs; see uriSubtrees) and DNS SANs. mesh must be a lowercase DNS
// name.
func NewRootCA(mesh string, now time.Time) (*CA, error) {
	if err := checkDNSName(mesh); err != nil {
		return nil, fmt.Errorf("identity: new root CA for mesh %q: %w", mesh, err)
	}
	key, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	tmpl, err := caTemplate(mesh, "canton root CA "+mesh, now.Add(-clockSkew), now.Add(RootCATTL))
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("identity: new root CA for mesh %q: sign: %w", mesh, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("identity: new root CA for mesh %q: parse own certificate: %w", mesh, err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// NewIntermediate creates a CA for domain (a scope's domain), signed by ca and
// name-constrained to domain and its subdomains. domain must be within ca's
// permitted names. The validity runs from now for ttl, cut at ca's own expiry.
// The new CA's Parents are ca.Cert followed by ca.Parents.
func (ca *CA) NewIntermediate(domain string, ttl time.Duration, now time.Time) (*CA, error) {
	fail := func(err error) (*CA, error) {
		return nil, fmt.Errorf("identity: new intermediate CA for %q: %w", domain, err)
	}
	if err := checkDNSName(domain); err != nil {
		return fail(err)
	}
	if err := ca.checkUsable(now); err != nil {
		return fail(err)
	}
	if !permits(ca.Cert.PermittedURIDomains, ca.Cert.ExcludedURIDomains, domain) ||
		!permits(ca.Cert.PermittedDNSDomains, ca.Cert.ExcludedDNSDomains, domain) {
		return fail(fmt.Errorf("outside the names CA %q may sign for", ca.Cert.Subject.CommonName))
	}
	if ttl <= 0 {
		return fail(fmt.Errorf("ttl %v must be positive", ttl))
	}
	key, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	notBefore, notAfter := ca.validity(ttl, now)
	tmpl, err := caTemplate(domain, "canton scope CA "+domain, notBefore, notAfter)
	if err != nil {
		return nil, err
	}
	cert, err := ca.sign(tmpl, key.Public(), now)
	if err != nil {
		return fail(err)
	}
	parents := append([]*x509.Certificate{ca.Cert}, ca.Parents...)
	return &CA{Cert: cert, Key: key, Parents: parents, Cross: ca.Cross, Bundle: ca.Bundle}, nil
}

func caTemplate(domain, commonName string, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber:                serial,
		Subject:                     pkix.Name{Organization: []string{"canton"}, CommonName: commonName},
		NotBefore:                   notBefore,
		NotAfter:                    notAfter,
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid:       true,
		IsCA:                        true,
		PermittedDNSDomainsCritical: true, // RFC 5280: name constraints MUST be critical
		PermittedDNSDomains:         []string{domain},
		PermittedURIDomains:         uriSubtrees([]string{domain}),
	}, nil
}

// uriSubtrees returns URI name constraints (crypto/x509 form) that mean the
// same subtrees to every verifier: each constraint "d" is followed by ".d"
// unless the list has it already.
//
// crypto/x509 reads a URI constraint "d" as d and all its subdomains, but
// RFC 5280 (section 4.2.1.10), OpenSSL and BoringSSL (so Envoy) read it as
// exactly the host d, and ".d" as the subdomains of d only. A CA constrained
// to "demo.mesh" alone is therefore refused by OpenSSL for
// spiffe://bookinfo.demo.mesh/... ("permitted subtree violation"); with both
// "demo.mesh" and ".demo.mesh" every verifier accepts exactly demo.mesh and
// its subdomains. (A DNS constraint "d" already means d and its subdomains to
// all of them, so DNS constraints need no such pair.) Applied to excluded
// constraints it makes OpenSSL exclude what crypto/x509 excludes.
func uriSubtrees(constraints []string) []string {
	out := make([]string, 0, 2*len(constraints))
	for _, c := range constraints {
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
		if c == "" || strings.HasPrefix(c, ".") {
			continue
		}
		if sub := "." + c; !slices.Contains(constraints, sub) && !slices.Contains(out, sub) {
			out = append(out, sub)
		}
	}
	return out
}

// Root returns the mesh root certificate: the last of Parents, or Cert when
// ca is the root.
func (ca *CA) Root() *x509.Certificate {
	if len(ca.Parents) == 0 {
		return ca.Cert
	}
	return ca.Parents[len(ca.Parents)-1]
}

// Chain returns the certificates a leaf issued by ca presents after itself:
// Cert and the intermediates above it, without the root, then the cross
// certificates (Cross). It is empty for a root CA outside a root rotation.
func (ca *CA) Chain() []*x509.Certificate {
	var chain []*x509.Certificate
	if len(ca.Parents) > 0 {
		chain = append(chain, ca.Cert)
		chain = append(chain, ca.Parents[:len(ca.Parents)-1]...)
	}
	return append(chain, ca.Cross...)
}

// TrustBundle returns the roots peers are verified against: Bundle, or
// Root() alone when Bundle is empty.
func (ca *CA) TrustBundle() []*x509.Certificate {
	if len(ca.Bundle) > 0 {
		return ca.Bundle
	}
	return []*x509.Certificate{ca.Root()}
}

// Issue signs a leaf certificate (an X.509 SVID) for id and pub: exactly one
// URI SAN (id), plus the given DNS names and IPs; CA=false; key usage
// digitalSignature; extended key usage serverAuth and clientAuth. It is valid
// from now (backdated a few minutes for clock skew) for ttl, cut at the
// expiry of ca's chain.
//
// Issue refuses an invalid id, an id or DNS name outside ca's name
// constraints, a non-positive ttl, a time outside ca's validity, an
// unsupported or weak public key, and ca's own key. Entitlement (whether the
// requester may have id) is the caller's decision.
func (ca *CA) Issue(id ID, pub crypto.PublicKey, ttl time.Duration, now time.Time, dnsNames []string, ips []net.IP) (*x509.Certificate, error) {
	fail := func(err error) (*x509.Certificate, error) {
		return nil, fmt.Errorf("identity: issue %s: %w", quote(id.String()), err)
	}
	if err := id.Validate(); err != nil {
		return fail(err)
	}
	if id.Path == "" {
		return fail(errors.New("the ID names a trust domain, not a workload; a leaf needs a path"))
	}
	if err := ca.checkUsable(now); err != nil {
		return fail(err)
	}
	if err := checkDNSName(id.TrustDomain); err != nil {
		return fail(fmt.Errorf("trust domain must be a DNS name to be name-constrained: %w", err))
	}
	if !permits(ca.Cert.PermittedURIDomains, ca.Cert.ExcludedURIDomains, id.TrustDomain) {
		return fail(fmt.Errorf("trust domain %q is outside the names CA %q may sign for %v", id.TrustDomain, ca.Cert.Subject.CommonName, ca.Cert.PermittedURIDomains))
	}
	if ttl <= 0 {
		return fail(fmt.Errorf("ttl %v must be positive", ttl))
	}
	seen := make(map[string]bool, len(dnsNames))
	for _, name := range dnsNames {
		if err := checkDNSName(name); err != nil {
			return fail(err)
		}
		if seen[name] {
			return fail(fmt.Errorf("DNS name %q given twice", name))
		}
		seen[name] = true
		if !permits(ca.Cert.PermittedDNSDomains, ca.Cert.ExcludedDNSDomains, name) {
			return fail(fmt.Errorf("DNS name %q is outside the names CA %q may sign for %v", name, ca.Cert.Subject.CommonName, ca.Cert.PermittedDNSDomains))
		}
	}
	for _, ip := range ips {
		if ip == nil || (ip.To4() == nil && len(ip) != net.IPv6len) {
			return fail(fmt.Errorf("invalid IP address %v", ip))
		}
		if len(ca.Cert.PermittedIPRanges) > 0 && !ipInRanges(ip, ca.Cert.PermittedIPRanges) || ipInRanges(ip, ca.Cert.ExcludedIPRanges) {
			return fail(fmt.Errorf("IP address %v is outside the ranges CA %q may sign for", ip, ca.Cert.Subject.CommonName))
		}
	}
	if err := checkPublicKey(pub); err != nil {
		return fail(err)
	}
	if eq, ok := pub.(interface{ Equal(crypto.PublicKey) bool }); ok && eq.Equal(ca.Key.Public()) {
		return fail(errors.New("public key is the CA's own key"))
	}
	serial, err := newSerial()
	if err != nil {
		return fail(err)
	}
	notBefore, notAfter := ca.validity(ttl, now)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		URIs:                  []*url.URL{id.URL()},
		DNSNames:              dnsNames,
		IPAddresses:           ips,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
	}
	cert, err := ca.sign(tmpl, pub, now)
	if err != nil {
		return fail(err)
	}
	return cert, nil
}

// SignCSR issues a leaf for the key of a PKCS #10 CSR (DER). The CSR's
// signature must be valid, it must ask for exactly one URI SAN equal to want
// and for no other SAN, and it must not ask to be a CA. The certificate is
// built by Issue from want and the CSR's key alone; nothing else of the CSR
// is copied. Whether the requester is entitled to want is the caller's
// decision.
func (ca *CA) SignCSR(csrDER []byte, want ID, ttl time.Duration, now time.Time) (*x509.Certificate, error) {
	fail := func(err error) (*x509.Certificate, error) {
		return nil, fmt.Errorf("identity: sign CSR for %s: %w", quote(want.String()), err)
	}
	if len(csrDER) > maxCSRSize {
		return fail(fmt.Errorf("CSR is %d bytes, more than %d", len(csrDER), maxCSRSize))
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return fail(err)
	}
	if err := csr.CheckSignature(); err != nil {
		return fail(fmt.Errorf("CSR signature: %w", err))
	}
	if err := checkCSRNames(csr, want); err != nil {
		return fail(err)
	}
	for _, ext := range csr.Extensions {
		if !ext.Id.Equal(oidBasicConstraints) {
			continue
		}
		var bc struct {
			IsCA       bool `asn1:"optional"`
			MaxPathLen int  `asn1:"optional,default:-1"`
		}
		rest, err := asn1.Unmarshal(ext.Value, &bc)
		if err != nil || len(rest) > 0 {
			return fail(errors.New("CSR has a malformed basicConstraints extension"))
		}
		if bc.IsCA {
			return fail(errors.New("CSR asks for a CA certificate"))
		}
	}
	return ca.Issue(want, csr.PublicKey, ttl, now, nil, nil)
}

func checkCSRNames(csr *x509.CertificateRequest, want ID) error {
	if len(csr.URIs) != 1 {
		return fmt.Errorf("CSR has %d URI SANs, want exactly one", len(csr.URIs))
	}
	got, err := ParseID(csr.URIs[0].String())
	if err != nil {
		return fmt.Errorf("CSR URI SAN: %w", err)
	}
	if got != want {
		return fmt.Errorf("CSR asks for %s", quote(got.String()))
	}
	if n := len(csr.DNSNames) + len(csr.IPAddresses) + len(csr.EmailAddresses); n > 0 {
		return fmt.Errorf("CSR asks for %d DNS/IP/email SANs, want none", n)
	}
	return nil
}

// NewCSR returns a DER PKCS #10 CSR for id signed by key, with id as its one
// URI SAN and nothing else.
func NewCSR(id ID, key crypto.Signer) ([]byte, error) {
	if err := id.Validate(); err != nil {
		return nil, fmt.Errorf("identity: new CSR: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, key)
	if err != nil {
		return nil, fmt.Errorf("identity: new CSR for %s: %w", quote(id.String()), err)
	}
	return der, nil
}

// NewCredentials generates a key, issues a leaf for id with Issue and returns
// it as credentials: the leaf and ca's chain, the key, and ca's root as the
// trust bundle.
func (ca *CA) NewCredentials(id ID, ttl time.Duration, now time.Time, dnsNames []string, ips []net.IP) (*Credentials, error) {
	key, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	leaf, err := ca.Issue(id, key.Public(), ttl, now, dnsNames, ips)
	if err != nil {
		return nil, err
	}
	return &Credentials{
		Chain:  append([]*x509.Certificate{leaf}, ca.Chain()...),
		Key:    key,
		Bundle: ca.TrustBundle(),
	}, nil
}

// checkUsable checks that ca can sign at now.
func (ca *CA) checkUsable(now time.Time) error {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return errors.New("CA has no certificate or key")
	}
	if !ca.Cert.IsCA || ca.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("certificate %q is not a CA allowed to sign certificates", ca.Cert.Subject.CommonName)
	}
	for _, c := range append([]*x509.Certificate{ca.Cert}, ca.Parents...) {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return fmt.Errorf("CA certificate %q is not valid at %s (valid %s to %s)", c.Subject.CommonName,
				now.UTC().Format(time.RFC3339), c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// validity returns the NotBefore/NotAfter of a certificate issued by ca at
// now for ttl: backdated for clock skew but not before ca's own NotBefore,
// and not after the earliest expiry in ca's chain.
func (ca *CA) validity(ttl time.Duration, now time.Time) (time.Time, time.Time) {
	notBefore := now.Add(-clockSkew)
	if notBefore.Before(ca.Cert.NotBefore) {
		notBefore = ca.Cert.NotBefore
	}
	notAfter := now.Add(ttl)
	for _, c := range append([]*x509.Certificate{ca.Cert}, ca.Parents...) {
		if c.NotAfter.Before(notAfter) {
			notAfter = c.NotAfter
		}
	}
	return notBefore, notAfter
}

// sign signs tmpl with ca and then verifies the result with crypto/x509
// against ca's root at now, so that nothing this package signs would fail
// verification by a peer (name constraints included).
func (ca *CA) sign(tmpl *x509.Certificate, pub crypto.PublicKey, now time.Time) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse signed certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root())
	inter := x509.NewCertPool()
	if len(ca.Parents) > 0 {
		inter.AddCert(ca.Cert)
		for _, c := range ca.Parents[:len(ca.Parents)-1] {
			inter.AddCert(c)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("signed certificate does not verify against the CA chain: %w", err)
	}
	return cert, nil
}

// permits reports whether name (lowercase) passes DNS-style name
// constraints with crypto/x509 semantics: no permitted list permits
// everything; "d" matches d and its subdomains; ".d" matches only subdomains
// of d; "" matches all. Constraints compare case-insensitively.
func permits(permitted, excluded []string, name string) bool {
	match := func(c string) bool {
		c = strings.ToLower(c)
		switch {
		case c == "":
			return true
		case strings.HasPrefix(c, "."):
			return strings.HasSuffix(name, c) && len(name) > len(c)
		default:
			return domainWithin(name, c)
		}
	}
	for _, c := range excluded {
		if match(c) {
			return false
		}
	}
	if len(permitted) == 0 {
		return true
	}
	for _, c := range permitted {
		if match(c) {
			return true
		}
	}
	return false
}

func ipInRanges(ip net.IP, ranges []*net.IPNet) bool {
	for _, r := range ranges {
		if r.Contains(ip) {
			return true
		}
	}
	return false
}

// checkPublicKey accepts ECDSA P-256/P-384, Ed25519 and RSA of at least 2048
// bits.
func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k == nil || (k.Curve != elliptic.P256() && k.Curve != elliptic.P384()) {
			return errors.New("ECDSA public key must be on P-256 or P-384")
		}
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return errors.New("malformed Ed25519 public key")
		}
	case *rsa.PublicKey:
		if k == nil || k.N.BitLen() < 2048 {
			return errors.New("RSA public key must have at least 2048 bits")
		}
	case nil:
		return errors.New("no public key")
	default:
		return fmt.Errorf("unsupported public key type %T", pub)
	}
	return nil
}

func newSerial() (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("identity: serial number: %w", err)
	}
	b[0] &= 0x7f
	b[0] |= 0x40 // never zero, always 127 bits
	return new(big.Int).SetBytes(b), nil
}

// keyMatches reports whether key is the private key of cert.
func keyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(cert.PublicKey)
}

// certsEqual reports whether a and b hold the same certificates.
func certsEqual(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i].Raw, b[i].Raw) {
			return false
		}
	}
	return true
}
