package proof

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"canton.dev/canton/internal/identity"
)

// Payload is the part of an answer its Digest covers: what a resolver acts
// on. The field set is fixed; adding one needs a new context string.
type Payload struct {
	Canonical string
	Found     bool
	Service   []byte // JSON resource.Object of the Service
	Workloads []byte // JSON array of Workloads
	Identity  string
	Reason    string
}

// Digest is the SHA-256 of p's canonical encoding.
func (p Payload) Digest() []byte {
	b := []byte("canton resolve payload v1\x00")
	b = appendString(b, p.Canonical)
	if p.Found {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = appendBytes(b, p.Service)
	b = appendBytes(b, p.Workloads)
	b = appendString(b, p.Identity)
	b = appendString(b, p.Reason)
	b = binary.AppendUvarint(b, 0) // room for a version of the payload
	sum := sha256.Sum256(b)
	return sum[:]
}

// Sign signs st with ca's key, stamping it with now (Unix seconds). The
// chain is ca's certificate and every certificate above it, root included.
func Sign(ca *identity.CA, st Statement, now time.Time) (Signed, error) {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return Signed{}, errors.New("proof: sign: no CA")
	}
	st.SignedAt = now.Unix()
	sig, err := signMessage(ca.Key, message(&st))
	if err != nil {
		return Signed{}, fmt.Errorf("proof: sign %s for %s with CA %q: %w", st.Kind, st.Name, ca.Cert.Subject.CommonName, err)
	}
	chain := make([][]byte, 0, 1+len(ca.Parents))
	chain = append(chain, ca.Cert.Raw)
	for _, c := range ca.Parents {
		chain = append(chain, c.Raw)
	}
	return Signed{Statement: st, Chain: chain, Sig: sig}, nil
}

func signMessage(key crypto.Signer, msg []byte) ([]byte, error) {
	switch key.Public().(type) {
	case ed25519.PublicKey:
		return key.Sign(rand.Reader, msg, crypto.Hash(0))
	case *rsa.PublicKey:
		h := sha256.Sum256(msg)
		return key.Sign(rand.Reader, h[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256})
	case *ecdsa.PublicKey:
		h := sha256.Sum256(msg)
		return key.Sign(rand.Reader, h[:], crypto.SHA256)
	default:
		return nil, fmt.Errorf("unsupported key type %T", key.Public())
	}
}

// checkSignature verifies sig over msg with cert's public key, with the
// scheme signMessage uses for that key type.
func checkSignature(cert *x509.Certificate, msg, sig []byte) error {
	var alg x509.SignatureAlgorithm
	switch cert.PublicKey.(type) {
	case ed25519.PublicKey:
		alg = x509.PureEd25519
	case *rsa.PublicKey:
		alg = x509.SHA256WithRSAPSS
	case *ecdsa.PublicKey:
		alg = x509.ECDSAWithSHA256
	default:
		return fmt.Errorf("unsupported key type %T", cert.PublicKey)
	}
	return cert.CheckSignature(alg, msg, sig)
}
