package identity

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestJoinTokenRoundTrip(t *testing.T) {
	root := newTestRoot(t)
	tok, err := NewJoinToken(root.Cert)
	if err != nil {
		t.Fatalf("NewJoinToken: %v", err)
	}
	if tok.CAPin != SPKIPin(root.Cert) || len(tok.Secret) != 32 {
		t.Fatalf("token pin/secret wrong: %x, %d bytes", tok.CAPin, len(tok.Secret))
	}
	s := tok.String()
	if !strings.HasPrefix(s, "canton-join.v1.") || len(s) != joinTokenLength {
		t.Fatalf("String() = %q (%d chars)", s, len(s))
	}
	got, err := ParseJoinToken(s)
	if err != nil {
		t.Fatalf("ParseJoinToken: %v", err)
	}
	if !bytes.Equal(got.Secret, tok.Secret) || got.CAPin != tok.CAPin {
		t.Fatal("parsed token differs")
	}
	if !tok.Matches(s) {
		t.Error("token does not match its own text")
	}
	tok2, _ := NewJoinToken(root.Cert)
	if tok.Matches(tok2.String()) || bytes.Equal(tok.Secret, tok2.Secret) {
		t.Error("two fresh tokens match each other")
	}
	if _, err := NewJoinToken(nil); err == nil {
		t.Error("NewJoinToken(nil) succeeded")
	}
	leaf, err := root.Issue(AnchorID(testMesh, "a1"), newTestKey(t).Public(), time.Hour, testNow, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewJoinToken(leaf); err == nil {
		t.Error("NewJoinToken(leaf) succeeded")
	}
	if (JoinToken{}).Matches(JoinToken{Secret: make([]byte, 32)}.String()) {
		t.Error("zero token matched")
	}
}

func TestJoinTokenTamper(t *testing.T) {
	root := newTestRoot(t)
	tok, err := NewJoinToken(root.Cert)
	if err != nil {
		t.Fatal(err)
	}
	s := tok.String()
	secretAt := len(joinTokenPrefix)
	pinAt := secretAt + 44
	flip := func(i int) string {
		b := []byte(s)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	tests := []struct {
		name    string
		in      string
		wantErr bool // false: parses but must not match
	}{
		{"secret first char", flip(secretAt), false},
		{"secret middle char", flip(secretAt + 20), false},
		{"pin char", flip(pinAt + 10), false},
		{"uppercase pin", s[:pinAt] + strings.ToUpper(s[pinAt:]), true},
		{"version", strings.Replace(s, ".v1.", ".v2.", 1), true},
		{"prefix", strings.Replace(s, "canton-join", "canton_join", 1), true},
		{"truncated", s[:len(s)-1], true},
		{"extended", s + "0", true},
		{"trailing newline", s + "\n", true},
		{"leading space", " " + s[1:], true},
		{"padded secret", s[:pinAt-2] + "=." + s[pinAt:], true},
		{"non-canonical secret bits", s[:pinAt-2] + "B." + s[pinAt:], true}, // last base64 char with non-zero padding bits
		{"std base64 alphabet", s[:secretAt] + "+" + s[secretAt+1:], true},
		{"separator moved", s[:pinAt-1] + s[pinAt:pinAt+1] + "." + s[pinAt+1:], true},
		{"non-hex pin", s[:pinAt] + "g" + s[pinAt+1:], true},
		{"empty", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.in == s {
				t.Fatal("tampered token equals the original")
			}
			_, err := ParseJoinToken(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseJoinToken err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), s[secretAt:pinAt-1]) {
				t.Fatalf("error echoes the secret: %v", err)
			}
			if tok.Matches(tt.in) {
				t.Fatal("tampered token matches")
			}
		})
	}
}

func TestJoinTokenLogValueHidesSecret(t *testing.T) {
	tok, err := NewJoinToken(newTestRoot(t).Cert)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("join token created", "token", tok)
	secret := strings.Split(tok.String(), ".")[2]
	if strings.Contains(buf.String(), secret) || !strings.Contains(buf.String(), "<redacted>") {
		t.Fatalf("log line leaks the secret or lacks the redaction: %s", buf.String())
	}
}
