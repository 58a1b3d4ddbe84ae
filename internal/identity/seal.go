package identity

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
)

// KEKSize is the size of a key-encryption key (AES-256).
const KEKSize = 32

// NewKEK returns a random key-encryption key.
func NewKEK() ([]byte, error) {
	k := make([]byte, KEKSize)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	return k, nil
}

// SealedCA is a CA whose private key is encrypted, so that it can be
// replicated in a scope's state: anchors holding the KEK can sign with it.
type SealedCA struct {
	// Certificates are the CA certificate followed by its parents (PEM),
	// then, during a root rotation, the CA's cross certificates and trust
	// bundle: blocks with the PEM header "Canton-Role: cross" or
	// "Canton-Role: bundle" (see CA.Cross and CA.Bundle).
	Certificates []byte
	// SealedKey is the PKCS #8 key encrypted with AES-256-GCM under the KEK:
	// a 12-byte nonce followed by the ciphertext. The CA certificate's DER is
	// the additional data, binding the key to its certificate.
	SealedKey []byte
}

// SealCA encrypts ca's key under kek.
func SealCA(ca *CA, kek []byte) (SealedCA, error) {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return SealedCA{}, errors.New("identity: seal CA: no certificate or key")
	}
	aead, err := newAEAD(kek)
	if err != nil {
		return SealedCA{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return SealedCA{}, fmt.Errorf("identity: seal CA: %w", err)
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return SealedCA{}, err
	}
	certs := encodeCerts(append([]*x509.Certificate{ca.Cert}, ca.Parents...))
	certs = append(certs, encodeRole(ca.Cross, roleCross)...)
	certs = append(certs, encodeRole(ca.Bundle, roleBundle)...)
	return SealedCA{
		Certificates: certs,
		SealedKey:    aead.Seal(nonce, nonce, der, ca.Cert.Raw),
	}, nil
}

// OpenCA decrypts a sealed CA with kek and checks that key and certificate
// belong together.
func OpenCA(s SealedCA, kek []byte) (*CA, error) {
	certs, cross, bundle, err := decodeSealedCerts(s.Certificates)
	if err != nil {
		return nil, fmt.Errorf("identity: open CA: certificates: %w", err)
	}
	if !certs[0].IsCA {
		return nil, errors.New("identity: open CA: the first certificate is not a CA")
	}
	aead, err := newAEAD(kek)
	if err != nil {
		return nil, err
	}
	if len(s.SealedKey) < aead.NonceSize() {
		return nil, errors.New("identity: open CA: sealed key too short")
	}
	nonce, ct := s.SealedKey[:aead.NonceSize()], s.SealedKey[aead.NonceSize():]
	der, err := aead.Open(nil, nonce, ct, certs[0].Raw)
	if err != nil {
		return nil, errors.New("identity: open CA: the key does not decrypt with this anchor's KEK (wrong mesh, or tampered)")
	}
	key, err := parseKey(der)
	if err != nil {
		return nil, fmt.Errorf("identity: open CA: %w", err)
	}
	if !keyMatches(certs[0], key) {
		return nil, errors.New("identity: open CA: key does not match certificate")
	}
	return &CA{Cert: certs[0], Key: key, Parents: certs[1:], Cross: cross, Bundle: bundle}, nil
}

func newAEAD(kek []byte) (cipher.AEAD, error) {
	if len(kek) != KEKSize {
		return nil, fmt.Errorf("identity: key-encryption key must be %d bytes, not %d", KEKSize, len(kek))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
