package identity

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Credentials are an identity ready for mTLS: a certificate chain, its
// private key and the trust bundle that peers are verified against. The
// administrator's admin.credentials and an anchor's own identity are
// Credentials.
//
// # File format
//
// A credentials file is a sequence of PEM blocks, in this order:
//
//	one or more CERTIFICATE   the chain: the leaf (an X.509 SVID) first, then
//	                          the intermediates above it, never the root
//	exactly one PRIVATE KEY   the leaf's key, PKCS #8
//	one or more CERTIFICATE   the trust bundle: the root CAs peers must chain to
//
// The private key block separates the chain from the bundle. Lines starting
// with '#' (and blank lines) may precede the first block; Marshal writes
// such a preamble naming the ID and expiry for human readers, and parsing
// ignores it. Nothing else is allowed: no other text between or after the
// blocks, no PEM headers, no other block types. The file holds a private key
// and is written with mode 0600.
type Credentials struct {
	// Chain is the leaf certificate followed by its intermediates (not the
	// root).
	Chain []*x509.Certificate
	// Key is the private key of Chain[0].
	Key crypto.Signer
	// Bundle holds the trusted root certificates.
	Bundle []*x509.Certificate
}

// ID returns the SPIFFE ID of the leaf certificate (its one URI SAN).
func (c *Credentials) ID() (ID, error) {
	if c == nil || len(c.Chain) == 0 {
		return ID{}, errors.New("identity: credentials: no certificate")
	}
	return LeafID(c.Chain[0])
}

// NotAfter returns when the credentials stop being usable: the earliest
// expiry in the chain (normally the leaf's). Zero when there is no chain.
func (c *Credentials) NotAfter() time.Time {
	var t time.Time
	if c == nil {
		return t
	}
	for _, cert := range c.Chain {
		if t.IsZero() || cert.NotAfter.Before(t) {
			t = cert.NotAfter
		}
	}
	return t
}

// check validates the structure of c without a clock: a chain whose leaf is
// an SVID and whose other certificates are CAs, each certificate signed by
// the next, a key matching the leaf, and a non-empty bundle of CAs.
func (c *Credentials) check() error {
	if c == nil || len(c.Chain) == 0 {
		return errors.New("no certificate chain")
	}
	if _, err := LeafID(c.Chain[0]); err != nil {
		return err
	}
	for i, cert := range c.Chain[1:] {
		if !cert.IsCA {
			return fmt.Errorf("chain certificate %d (%q) is not a CA", i+2, cert.Subject.CommonName)
		}
		if err := c.Chain[i].CheckSignatureFrom(cert); err != nil {
			return fmt.Errorf("chain certificate %d is not signed by certificate %d: %w", i+1, i+2, err)
		}
	}
	if c.Key == nil {
		return errors.New("no private key")
	}
	if !keyMatches(c.Chain[0], c.Key) {
		return errors.New("private key does not match the leaf certificate")
	}
	if len(c.Bundle) == 0 {
		return errors.New("empty trust bundle")
	}
	for i, cert := range c.Bundle {
		if !cert.IsCA {
			return fmt.Errorf("bundle certificate %d (%q) is not a CA", i+1, cert.Subject.CommonName)
		}
	}
	return nil
}

// Verify checks that c's chain verifies against c's own bundle at now, name
// constraints included. Parsing does not do this, so that expired
// credentials can still be read and reported.
func (c *Credentials) Verify(now time.Time) error {
	if err := c.check(); err != nil {
		return fmt.Errorf("identity: credentials: %w", err)
	}
	if _, err := verifyChain(c.Chain, bundlePool(c.Bundle), x509.ExtKeyUsageAny, now); err != nil {
		return fmt.Errorf("identity: credentials: %w", err)
	}
	return nil
}

// Marshal encodes c in the credentials file format.
func (c *Credentials) Marshal() ([]byte, error) {
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("identity: marshal credentials: %w", err)
	}
	id, _ := c.ID() // checked above
	keyPEM, err := encodeKey(c.Key)
	if err != nil {
		return nil, fmt.Errorf("identity: marshal credentials: encode key: %w", err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# canton credentials\n# id: %s\n# not after: %s\n", id, c.NotAfter().UTC().Format(time.RFC3339))
	b.WriteString("# blocks: certificate chain (leaf first), private key, trust bundle\n")
	b.Write(encodeCerts(c.Chain))
	b.Write(keyPEM)
	b.Write(encodeCerts(c.Bundle))
	return b.Bytes(), nil
}

// ParseCredentials decodes the credentials file format strictly (see
// Credentials) and checks its structure: the leaf is an SVID, the key
// matches it, the chain links up and the bundle holds CAs. It does not look
// at the clock; use Verify for that.
func ParseCredentials(b []byte) (*Credentials, error) {
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("identity: parse credentials: %d bytes, more than %d", len(b), maxFileSize)
	}
	blocks, err := decodePEM(b, "CERTIFICATE", "PRIVATE KEY")
	if err != nil {
		return nil, fmt.Errorf("identity: parse credentials: %w", err)
	}
	c := &Credentials{}
	keys := 0
	for i, block := range blocks {
		if block.Type == "PRIVATE KEY" {
			keys++
			if keys > 1 {
				return nil, fmt.Errorf("identity: parse credentials: block %d: second private key", i+1)
			}
			if len(c.Chain) == 0 {
				return nil, fmt.Errorf("identity: parse credentials: block %d: private key before any chain certificate", i+1)
			}
			if c.Key, err = parseKey(block.Bytes); err != nil {
				return nil, fmt.Errorf("identity: parse credentials: block %d: private key: %w", i+1, err)
			}
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("identity: parse credentials: block %d: %w", i+1, err)
		}
		if keys == 0 {
			c.Chain = append(c.Chain, cert)
		} else {
			c.Bundle = append(c.Bundle, cert)
		}
	}
	if keys == 0 {
		return nil, errors.New("identity: parse credentials: no private key block")
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("identity: parse credentials: %w", err)
	}
	return c, nil
}

// LoadCredentials reads and parses the credentials file at path.
func LoadCredentials(path string) (*Credentials, error) {
	b, err := readFileLimited(path)
	if err != nil {
		return nil, fmt.Errorf("identity: load credentials: %w", err)
	}
	c, err := ParseCredentials(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Save writes c to path in the credentials file format, mode 0600,
// replacing any existing file atomically.
func (c *Credentials) Save(path string) error {
	b, err := c.Marshal()
	if err != nil {
		return err
	}
	if err := writeFileAtomic(path, b, 0o600); err != nil {
		return fmt.Errorf("identity: save credentials: %w", err)
	}
	return nil
}
