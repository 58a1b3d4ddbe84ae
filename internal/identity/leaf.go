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
