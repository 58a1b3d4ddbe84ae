package identity

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
)

// LeafID checks that cert has the shape of an X.509 SVID and returns its
// SPIFFE ID: exactly one URI SAN holding a valid SPIFFE ID, not a CA, key
// usage digitalSignature and neither keyCertSign nor cRLSign. It does not
// verify the chain; callers do that first (PeerID relies on crypto/tls).
func LeafID(cert *x509.Certificate) (ID, error) {
	if cert == nil {
		return ID{}, errors.New("identity: leaf: no certificate")
	}
	if len(cert.URIs) != 1 {
		return ID{}, fmt.Errorf("identity: leaf %s: has %d URI SANs, want exactly one SPIFFE ID", serialOf(cert), len(cert.URIs))
	}
	id, err := ParseID(cert.URIs[0].String())
	if err != nil {
		return ID{}, fmt.Errorf("identity: leaf %s: %w", serialOf(cert), err)
	}
	if id.Path == "" {
		return ID{}, fmt.Errorf("identity: leaf %s: %s names a trust domain, not a workload", serialOf(cert), id)
	}
	if cert.IsCA {
		return ID{}, fmt.Errorf("identity: leaf %s (%s): is a CA certificate", serialOf(cert), id)
	}
	if cert.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return ID{}, fmt.Errorf("identity: leaf %s (%s): key usage lacks digitalSignature", serialOf(cert), id)
	}
	if cert.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		return ID{}, fmt.Errorf("identity: leaf %s (%s): key usage allows signing certificates or CRLs", serialOf(cert), id)
	}
	return id, nil
}

// VerifiedID returns the SPIFFE ID of a peer whose certificate chain
// crypto/x509 has verified. chains are what Certificate.Verify returns (or
// tls.ConnectionState.VerifiedChains): one leaf, each chain going from it up
// to a trusted root. The leaf must pass LeafID, and at least one chain must
// have only CA certificates above the leaf, each of whose URI name
// constraints (crypto/x509 semantics, as permits) admit the ID's trust
// domain.
//
// The constraint check repeats what crypto/x509 enforces, on purpose: the
// SPIFFE ID is what peers are authorized by, so neither a verifier bug nor a
// chain assembled elsewhere may let a CA vouch for an identity outside its
// subtree.
func VerifiedID(chains [][]*x509.Certificate) (ID, error) {
	if len(chains) == 0 || len(chains[0]) == 0 {
		return ID{}, errors.New("identity: no verified certificate chain")
	}
	leaf := chains[0][0]
	id, err := LeafID(leaf)
	if err != nil {
		return ID{}, err
	}
	var first error
	for _, chain := range chains {
		err := checkChainFor(id, leaf, chain)
		if err == nil {
			return id, nil
		}
		if first == nil {
			first = err
		}
	}
	return ID{}, fmt.Errorf("identity: leaf %s (%s): %w", serialOf(leaf), id, first)
}

// checkChainFor checks that chain starts with leaf and that every
// certificate above it is a CA whose URI name constraints admit id's trust
// domain.
func checkChainFor(id ID, leaf *x509.Certificate, chain []*x509.Certificate) error {
	if len(chain) == 0 || !chain[0].Equal(leaf) {
		return errors.New("verified chains do not share one leaf")
	}
	for _, c := range chain[1:] {
		if !c.IsCA {
			return fmt.Errorf("certificate %q above the leaf is not a CA", c.Subject.CommonName)
		}
		if !permits(c.PermittedURIDomains, c.ExcludedURIDomains, id.TrustDomain) {
			return fmt.Errorf("trust domain %q is outside the URI name constraints of CA %q (permitted %q, excluded %q)",
				id.TrustDomain, c.Subject.CommonName, c.PermittedURIDomains, c.ExcludedURIDomains)
		}
	}
	return nil
}

// SPKIPin is the SHA-256 of cert's DER SubjectPublicKeyInfo, the pin that
// join tokens carry for the mesh root CA.
func SPKIPin(cert *x509.Certificate) [32]byte {
	return sha256.Sum256(cert.RawSubjectPublicKeyInfo)
}

func serialOf(cert *x509.Certificate) string {
	if cert.SerialNumber == nil {
		return "serial ?"
	}
	return "serial " + cert.SerialNumber.Text(16)
}
