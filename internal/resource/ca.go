package resource

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
)

// CertificateAuthoritySpec is the spec of a CertificateAuthority
// (canton.dev/v1): a scope's CA, name-constrained to the scope's subtree,
// with its private key sealed under the mesh's key-encryption key so that
// every anchor of the scope can sign. Only anchors write it; its name is
// "ca" and its namespace the scope's domain.
type CertificateAuthoritySpec struct {
	// Certificates are PEM: the scope CA's certificate first, then its
	// parents up to and including the mesh root. Required.
	Certificates string `json:"certificates"`
	// SealedKey is the sealed private key: standard base64 of nonce ||
	// AES-GCM ciphertext (see identity.SealedCA). Required.
	SealedKey string `json:"sealedKey"`
}

func (s *CertificateAuthoritySpec) validate(o Object) error {
	if o.Name != "ca" {
		return errorf("metadata.name", "a CertificateAuthority is named \"ca\"")
	}
	rest := []byte(s.Certificates)
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil || b.Type != "CERTIFICATE" {
			return errorf(field(specPath, "certificates"), "block %d is not a certificate", n+1)
		}
		if n == 0 && !c.IsCA {
			return errorf(field(specPath, "certificates"), "the first certificate is not a CA")
		}
		n++
	}
	if n == 0 {
		return errorf(field(specPath, "certificates"), "required (PEM certificates)")
	}
	if k, err := base64.StdEncoding.DecodeString(s.SealedKey); err != nil || len(k) == 0 {
		return errorf(field(specPath, "sealedKey"), "required, base64")
	}
	return nil
}
