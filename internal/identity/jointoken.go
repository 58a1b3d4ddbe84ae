package identity

import (
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// JoinToken is what a new anchor or proxy presents to obtain its first
// identity (kubeadm-style): a random secret, plus the SHA-256 pin of the
// mesh root CA's SubjectPublicKeyInfo, with which the joiner verifies the
// server (PinnedClientTLS) before it has the trust bundle.
//
// # Text form
//
//	canton-join.v1.<secret>.<pin>
//
// <secret> is the 32-byte secret in unpadded base64url (43 characters),
// <pin> the 32-byte pin in lowercase hex (64 characters); 123 characters in
// all. Parsing accepts exactly this canonical form (no surrounding space),
// so every valid token has one spelling. The secret makes the token a
// credential: keep join.token files at mode 0600 and out of logs (a
// JoinToken logs through slog without its secret).
type JoinToken struct {
	Secret []byte
	CAPin  [32]byte
}

const (
	joinTokenPrefix = "canton-join.v1."
	joinSecretSize  = 32
	joinTokenLength = len(joinTokenPrefix) + 43 + 1 + 64
)

// NewJoinToken returns a token with a fresh random secret and the pin of
// the CA certificate ca (the mesh root).
func NewJoinToken(ca *x509.Certificate) (JoinToken, error) {
	if ca == nil || !ca.IsCA {
		return JoinToken{}, errors.New("identity: new join token: the pinned certificate must be a CA")
	}
	t := JoinToken{Secret: make([]byte, joinSecretSize), CAPin: SPKIPin(ca)}
	if _, err := rand.Read(t.Secret); err != nil {
		return JoinToken{}, fmt.Errorf("identity: new join token: %w", err)
	}
	return t, nil
}

// String returns the text form, secret included.
func (t JoinToken) String() string {
	return joinTokenPrefix + base64.RawURLEncoding.EncodeToString(t.Secret) + "." + hex.EncodeToString(t.CAPin[:])
}

// LogValue keeps the secret out of structured logs.
func (t JoinToken) LogValue() slog.Value {
	return slog.StringValue(joinTokenPrefix + "<redacted>." + hex.EncodeToString(t.CAPin[:]))
}

// ParseJoinToken parses the canonical text form (see JoinToken). Callers
// reading a file trim the trailing newline first.
func ParseJoinToken(s string) (JoinToken, error) {
	// Never echo s: it holds a secret.
	if len(s) != joinTokenLength {
		return JoinToken{}, fmt.Errorf("identity: join token: %d characters, want %d", len(s), joinTokenLength)
	}
	rest, ok := strings.CutPrefix(s, joinTokenPrefix)
	if !ok {
		return JoinToken{}, fmt.Errorf("identity: join token: must start with %q", joinTokenPrefix)
	}
	secretText, pinText, ok := strings.Cut(rest, ".")
	if !ok || len(secretText) != 43 || len(pinText) != 64 {
		return JoinToken{}, errors.New("identity: join token: want <43-character secret>.<64-character pin> after the prefix")
	}
	secret, err := base64.RawURLEncoding.Strict().DecodeString(secretText)
	if err != nil || len(secret) != joinSecretSize {
		return JoinToken{}, errors.New("identity: join token: secret is not canonical unpadded base64url of 32 bytes")
	}
	var t JoinToken
	t.Secret = secret
	if n, err := hex.Decode(t.CAPin[:], []byte(pinText)); err != nil || n != 32 || hex.EncodeToString(t.CAPin[:]) != pinText {
		return JoinToken{}, errors.New("identity: join token: CA pin is not 64 lowercase hex digits")
	}
	return t, nil
}

// Matches reports whether presented is the text form of t: the same secret
// (compared in constant time) and the same CA pin. A token without a secret
// matches nothing.
func (t JoinToken) Matches(presented string) bool {
	p, err := ParseJoinToken(presented)
	if err != nil || len(t.Secret) != joinSecretSize {
		return false
	}
	secretOK := subtle.ConstantTimeCompare(t.Secret, p.Secret)
	pinOK := subtle.ConstantTimeCompare(t.CAPin[:], p.CAPin[:])
	return secretOK&pinOK == 1
}
