package identity

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Root rotation (cross-signed, overlapping bundles): a new root R2 is
// certified by the current root R1 with a cross certificate (R2's subject,
// key and name constraints, issued by R1). While both are in the trust
// bundle, chains end with the cross certificate, so that a verifier that
// trusts only R1 builds leaf -> ... -> R2(by R1) -> R1 and one that trusts R2
// stops at R2. Once nothing depends on R1, it leaves the bundle.

// The PEM header that marks the cross certificates and bundle roots of a
// sealed CA (SealedCA.Certificates).
const (
	roleHeader = "Canton-Role"
	roleCross  = "cross"
	roleBundle = "bundle"
)

// CrossSign certifies newRoot's subject and public key with ca, which must
// be a root (self-signed, no Parents): the certificate has newRoot's subject,
// subject key ID and name constraints (URI constraints in the form every
// verifier reads alike, uriSubtrees, even when newRoot's are not), ca's
// subject key ID as authority key ID, is a CA allowed to sign certificates,
// and is valid from now (backdated by ClockSkew) until the earlier of
// newRoot's and ca's expiry. newRoot must be a self-signed CA; the names its
// constraints permit must be within ca's. (A path through the cross
// certificate is also bound by ca's own constraints.)
func (ca *CA) CrossSign(newRoot *x509.Certificate, now time.Time) (*x509.Certificate, error) {
	fail := func(err error) (*x509.Certificate, error) {
		return nil, fmt.Errorf("identity: cross-sign new root: %w", err)
	}
	if err := ca.checkUsable(now); err != nil {
		return fail(err)
	}
	if len(ca.Parents) > 0 || !isSelfSigned(ca.Cert) {
		return fail(fmt.Errorf("CA %q is not a root", ca.Cert.Subject.CommonName))
	}
	if newRoot == nil || !newRoot.IsCA || newRoot.KeyUsage&x509.KeyUsageCertSign == 0 || !isSelfSigned(newRoot) {
		return fail(errors.New("the new root is not a self-signed CA allowed to sign certificates"))
	}
	if now.Before(newRoot.NotBefore) || now.After(newRoot.NotAfter) {
		return fail(fmt.Errorf("the new root %q is not valid now", newRoot.Subject.CommonName))
	}
	if bytes.Equal(newRoot.RawSubjectPublicKeyInfo, ca.Cert.RawSubjectPublicKeyInfo) {
		return fail(errors.New("the new root has the current root's key"))
	}
	for _, d := range append(append([]string(nil), newRoot.PermittedURIDomains...), newRoot.PermittedDNSDomains...) {
		// ".d" (the subdomains of d) is checked as d, which is as strict.
		name := strings.TrimPrefix(d, ".")
		if !permits(ca.Cert.PermittedURIDomains, ca.Cert.ExcludedURIDomains, name) ||
			!permits(ca.Cert.PermittedDNSDomains, ca.Cert.ExcludedDNSDomains, name) {
			return fail(fmt.Errorf("the new root's name constraint %q is outside the names %q may sign for", d, ca.Cert.Subject.CommonName))
		}
	}
	serial, err := newSerial()
	if err != nil {
		return fail(err)
	}
	notBefore := now.Add(-clockSkew)
	if notBefore.Before(ca.Cert.NotBefore) {
		notBefore = ca.Cert.NotBefore
	}
	notAfter := newRoot.NotAfter
	if ca.Cert.NotAfter.Before(notAfter) {
		notAfter = ca.Cert.NotAfter
	}
	// AuthorityKeyId is explicit because crypto/x509 leaves it out when the
	// issuer and subject names are equal, as they are for two roots of one
	// mesh; without it OpenSSL takes the cross certificate for a self-signed
	// one and cannot build leaf -> R2(by R1) -> R1.
	tmpl := &x509.Certificate{
		SerialNumber:                serial,
		RawSubject:                  newRoot.RawSubject,
		SubjectKeyId:                newRoot.SubjectKeyId,
		AuthorityKeyId:              ca.Cert.SubjectKeyId,
		NotBefore:                   notBefore,
		NotAfter:                    notAfter,
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid:       true,
		IsCA:                        true,
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         newRoot.PermittedDNSDomains,
		ExcludedDNSDomains:          newRoot.ExcludedDNSDomains,
		PermittedURIDomains:         uriSubtrees(newRoot.PermittedURIDomains),
		ExcludedURIDomains:          uriSubtrees(newRoot.ExcludedURIDomains),
		PermittedIPRanges:           newRoot.PermittedIPRanges,
		ExcludedIPRanges:            newRoot.ExcludedIPRanges,
	}
	cert, err := ca.sign(tmpl, newRoot.PublicKey, now)
	if err != nil {
		return fail(err)
	}
	return cert, nil
}

// ChainsTo reports whether chain (a leaf or CA certificate first, then the
// certificates above it, as Credentials.Chain or CA.Chain hold them)
// verifies against the single root at now, name constraints included.
func ChainsTo(chain []*x509.Certificate, root *x509.Certificate, now time.Time) bool {
	if len(chain) == 0 || root == nil {
		return false
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         bundlePool([]*x509.Certificate{root}),
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	return err == nil
}

// SameCerts reports whether a and b hold the same certificates in the same
// order.
func SameCerts(a, b []*x509.Certificate) bool { return certsEqual(a, b) }

// InBundle reports whether cert is one of bundle's certificates.
func InBundle(bundle []*x509.Certificate, cert *x509.Certificate) bool {
	for _, c := range bundle {
		if cert != nil && bytes.Equal(c.Raw, cert.Raw) {
			return true
		}
	}
	return false
}

// ParseCA reads a CA from PEM text with the checks of LoadCAFiles: certPEM
// holds the CA certificate, optionally followed by its parents up to a root;
// keyPEM holds its PKCS #8 key. It is how an offline root travels in a
// request.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	ca, err := parseCA(certPEM, keyPEM, "certificate", "key")
	if err != nil {
		return nil, fmt.Errorf("identity: parse CA: %w", err)
	}
	return ca, nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

func encodeRole(certs []*x509.Certificate, role string) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Headers: map[string]string{roleHeader: role}, Bytes: c.Raw})...)
	}
	return out
}

// decodeSealedCerts splits SealedCA.Certificates: the CA certificate and its
// parents (blocks without headers, first), then cross certificates and
// bundle roots (blocks with a Canton-Role header, after them). Nothing else
// is allowed.
func decodeSealedCerts(b []byte) (chain, cross, bundle []*x509.Certificate, err error) {
	rest := trimSpace(b)
	for n := 1; len(rest) > 0; n++ {
		if !hasPrefix(rest, "-----BEGIN ") {
			return nil, nil, nil, fmt.Errorf("block %d: unexpected text, want a PEM block", n)
		}
		block, next := pem.Decode(rest)
		if block == nil || block.Type != "CERTIFICATE" || bytes.Contains(rest[1:len(rest)-len(next)], []byte("-----BEGIN ")) {
			return nil, nil, nil, fmt.Errorf("block %d: malformed PEM or not a CERTIFICATE", n)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("block %d: %w", n, err)
		}
		role, ok := block.Headers[roleHeader]
		switch {
		case len(block.Headers) == 0:
			if len(cross)+len(bundle) > 0 {
				return nil, nil, nil, fmt.Errorf("block %d: chain certificate after the cross certificates or bundle", n)
			}
			chain = append(chain, c)
		case len(block.Headers) == 1 && ok && role == roleCross:
			if len(bundle) > 0 {
				return nil, nil, nil, fmt.Errorf("block %d: cross certificate after the bundle", n)
			}
			cross = append(cross, c)
		case len(block.Headers) == 1 && ok && role == roleBundle:
			bundle = append(bundle, c)
		default:
			return nil, nil, nil, fmt.Errorf("block %d: unexpected PEM headers", n)
		}
		rest = trimSpace(next)
	}
	if len(chain) == 0 {
		return nil, nil, nil, errors.New("no CA certificate")
	}
	return chain, cross, bundle, nil
}
