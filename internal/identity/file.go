package identity

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// maxFileSize bounds every file this package reads.
const maxFileSize = 1 << 20

// writeFileAtomic writes data to path with perm through a temporary file in
// the same directory and a rename, so readers see the old or the new file,
// never a torn one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// readFileLimited reads path, refusing files larger than maxFileSize.
func readFileLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("larger than %d bytes", maxFileSize)
	}
	return b, nil
}

func encodeCerts(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseKey(der []byte) (crypto.Signer, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key of type %T cannot sign", k)
	}
	if err := checkPublicKey(s.Public()); err != nil {
		return nil, err
	}
	return s, nil
}

// decodePEM splits b into PEM blocks strictly: before the first block only
// blank lines and '#' comment lines, between and after blocks only
// whitespace, no PEM headers, and only the block types in allowed.
func decodePEM(b []byte, allowed ...string) ([]*pem.Block, error) {
	rest := skipComments(b)
	var blocks []*pem.Block
	for len(trimSpace(rest)) > 0 {
		rest = trimSpace(rest)
		if !hasPrefix(rest, "-----BEGIN ") {
			return nil, fmt.Errorf("block %d: unexpected text %q, want a PEM block", len(blocks)+1, truncate(string(firstLine(rest))))
		}
		block, next := pem.Decode(rest)
		// pem.Decode skips a malformed block and returns the next good one;
		// a second BEGIN inside what it consumed means it did.
		if block == nil || bytes.Contains(rest[1:len(rest)-len(next)], []byte("-----BEGIN ")) {
			return nil, fmt.Errorf("block %d: malformed PEM", len(blocks)+1)
		}
		if len(block.Headers) > 0 {
			return nil, fmt.Errorf("block %d (%s): PEM headers are not allowed", len(blocks)+1, block.Type)
		}
		ok := false
		for _, t := range allowed {
			ok = ok || block.Type == t
		}
		if !ok {
			return nil, fmt.Errorf("block %d: unexpected PEM type %q", len(blocks)+1, truncate(block.Type))
		}
		blocks = append(blocks, block)
		rest = next
	}
	if len(blocks) == 0 {
		return nil, errors.New("no PEM blocks")
	}
	return blocks, nil
}

func skipComments(b []byte) []byte {
	for len(b) > 0 {
		line := firstLine(b)
		t := trimSpace(line)
		if len(t) > 0 && t[0] != '#' {
			return b
		}
		b = b[len(line):]
		if len(b) > 0 { // drop the newline
			b = b[1:]
		}
	}
	return b
}

func firstLine(b []byte) []byte {
	for i, c := range b {
		if c == '\n' {
			return b[:i]
		}
	}
	return b
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	return b
}

func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }

// SaveCA writes ca to dir/ca.crt (Cert then Parents, PEM, mode 0644) and
// dir/ca.key (PKCS #8 PEM, mode 0600), creating dir (0700) if needed. Each
// file is replaced atomically.
func SaveCA(dir string, ca *CA) error {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return fmt.Errorf("identity: save CA to %s: CA has no certificate or key", dir)
	}
	if !keyMatches(ca.Cert, ca.Key) {
		return fmt.Errorf("identity: save CA to %s: key does not match certificate", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("identity: save CA: %w", err)
	}
	keyPEM, err := encodeKey(ca.Key)
	if err != nil {
		return fmt.Errorf("identity: save CA to %s: encode key: %w", dir, err)
	}
	if err := writeFileAtomic(filepath.Join(dir, "ca.key"), keyPEM, 0o600); err != nil {
		return fmt.Errorf("identity: save CA key: %w", err)
	}
	certs := append([]*x509.Certificate{ca.Cert}, ca.Parents...)
	if err := writeFileAtomic(filepath.Join(dir, "ca.crt"), encodeCerts(certs), 0o644); err != nil {
		return fmt.Errorf("identity: save CA certificate: %w", err)
	}
	return nil
}

// LoadCA reads a CA written by SaveCA and checks it: the key matches the
// certificate, the certificate is a CA allowed to sign certificates, and
// each certificate of the chain is signed by the next.
func LoadCA(dir string) (*CA, error) {
	return LoadCAFiles(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
}

// LoadCAFiles reads a CA from a PEM certificate file (the CA certificate,
// optionally followed by its parents up to a root) and a PEM PKCS #8 key
// file, with the checks of LoadCA. It is how a user-supplied (offline) root
// is read.
func LoadCAFiles(certPath, keyPath string) (*CA, error) {
	certPEM, err := readFileLimited(certPath)
	if err != nil {
		return nil, fmt.Errorf("identity: load CA: %w", err)
	}
	keyPEM, err := readFileLimited(keyPath)
	if err != nil {
		return nil, fmt.Errorf("identity: load CA: %w", err)
	}
	ca, err := parseCA(certPEM, keyPEM, certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("identity: load CA: %w", err)
	}
	return ca, nil
}

func parseCA(certPEM, keyPEM []byte, certPath, keyPath string) (*CA, error) {
	blocks, err := decodePEM(certPEM, "CERTIFICATE")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	certs := make([]*x509.Certificate, len(blocks))
	for i, b := range blocks {
		if certs[i], err = x509.ParseCertificate(b.Bytes); err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", certPath, i+1, err)
		}
		if !certs[i].IsCA || certs[i].KeyUsage&x509.KeyUsageCertSign == 0 {
			return nil, fmt.Errorf("%s: certificate %d (%q) is not a CA allowed to sign certificates", certPath, i+1, certs[i].Subject.CommonName)
		}
		if i > 0 {
			if err := certs[i-1].CheckSignatureFrom(certs[i]); err != nil {
				return nil, fmt.Errorf("%s: certificate %d is not signed by certificate %d: %w", certPath, i, i+1, err)
			}
		}
	}
	kb, err := decodePEM(keyPEM, "PRIVATE KEY")
	if err != nil || len(kb) != 1 {
		if err == nil {
			err = fmt.Errorf("%d keys, want 1", len(kb))
		}
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	key, err := parseKey(kb[0].Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	if !keyMatches(certs[0], key) {
		return nil, fmt.Errorf("%s does not hold the key of %s", keyPath, certPath)
	}
	return &CA{Cert: certs[0], Key: key, Parents: certs[1:]}, nil
}
