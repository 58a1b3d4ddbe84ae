package identity

import (
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newTestCreds(t testing.TB, ca *CA, id ID) *Credentials {
	t.Helper()
	c, err := ca.NewCredentials(id, time.Hour, testNow, nil, nil)
	if err != nil {
		t.Fatalf("NewCredentials(%s): %v", id, err)
	}
	return c
}

func TestCredentialsRoundTrip(t *testing.T) {
	root := newTestRoot(t)
	scope, err := root.NewIntermediate("bookinfo.demo.mesh", 24*time.Hour, testNow)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		ca        *CA
		id        ID
		chainLen  int
		wantAfter time.Time
	}{
		{"admin from root", root, AdminID(testMesh, "admin"), 1, testNow.Add(time.Hour)},
		{"workload from scope CA", scope, WorkloadID("bookinfo.demo.mesh", "reviews"), 2, testNow.Add(time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCreds(t, tt.ca, tt.id)
			if len(c.Chain) != tt.chainLen || len(c.Bundle) != 1 || c.Bundle[0] != root.Cert {
				t.Fatalf("NewCredentials: chain %d bundle %d", len(c.Chain), len(c.Bundle))
			}
			b, err := c.Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if !strings.Contains(string(b), "# id: "+tt.id.String()+"\n") {
				t.Errorf("marshalled preamble lacks the ID:\n%s", b[:200])
			}
			path := filepath.Join(t.TempDir(), "x.credentials")
			if err := c.Save(path); err != nil {
				t.Fatalf("Save: %v", err)
			}
			if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("credentials file mode %v, %v; want 0600", st.Mode().Perm(), err)
			}
			got, err := LoadCredentials(path)
			if err != nil {
				t.Fatalf("LoadCredentials: %v", err)
			}
			if !certsEqual(got.Chain, c.Chain) || !certsEqual(got.Bundle, c.Bundle) || !keyMatches(got.Chain[0], got.Key) {
				t.Fatal("loaded credentials differ from saved ones")
			}
			if id, err := got.ID(); err != nil || id != tt.id {
				t.Errorf("ID() = %v, %v; want %v", id, err, tt.id)
			}
			if !got.NotAfter().Equal(tt.wantAfter) {
				t.Errorf("NotAfter() = %v, want %v", got.NotAfter(), tt.wantAfter)
			}
			if err := got.Verify(testNow); err != nil {
				t.Errorf("Verify(now): %v", err)
			}
			if err := got.Verify(testNow.Add(2 * time.Hour)); err == nil {
				t.Error("Verify after expiry succeeded")
			}
			again, err := got.Marshal()
			if err != nil || string(again) != string(b) {
				t.Errorf("re-marshal differs (err %v)", err)
			}
		})
	}
}

func pemOf(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func TestParseCredentialsRefusals(t *testing.T) {
	root := newTestRoot(t)
	c := newTestCreds(t, root, AnchorID(testMesh, "a1"))
	other := newTestCreds(t, newTestRoot(t), AnchorID(testMesh, "a2"))
	leaf := pemOf("CERTIFICATE", c.Chain[0].Raw)
	keyPEM, _ := encodeKey(c.Key)
	key := string(keyPEM)
	otherKeyPEM, _ := encodeKey(other.Key)
	bundle := pemOf("CERTIFICATE", root.Cert.Raw)
	twoURIs := craftLeaf(t, root, func(x *x509.Certificate) {
		x.URIs = append(x.URIs, mustURL("spiffe://demo.mesh/anchor/a2"))
	})
	caLeaf := craftLeaf(t, root, func(x *x509.Certificate) { x.IsCA = true; x.KeyUsage |= x509.KeyUsageCertSign })
	noSPIFFE := craftLeaf(t, root, func(x *x509.Certificate) { x.URIs = []*url.URL{mustURL("https://demo.mesh/x")} })

	if _, err := ParseCredentials([]byte("# comment\n\n" + leaf + key + bundle)); err != nil {
		t.Fatalf("baseline: %v", err)
	}
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{"empty", "", "no PEM blocks"},
		{"comments only", "# a\n# b\n", "no PEM blocks"},
		{"text before blocks", "hello\n" + leaf + key + bundle, "unexpected text"},
		{"text between blocks", leaf + "junk\n" + key + bundle, "unexpected text"},
		{"trailing text", leaf + key + bundle + "junk", "unexpected text"},
		{"comment after first block", leaf + "# c\n" + key + bundle, "unexpected text"},
		{"truncated block", leaf + key + bundle[:len(bundle)-10], "malformed PEM"},
		{"malformed block before a good one", "-----BEGIN CERTIFICATE-----\n!!!\n" + leaf + key + bundle, "malformed PEM"},
		{"PEM headers", leaf + strings.Replace(key, "KEY-----\n", "KEY-----\nProc-Type: 4,ENCRYPTED\n\n", 1) + bundle, "headers are not allowed"},
		{"unknown block type", leaf + key + pemOf("EC PRIVATE KEY", []byte{1}) + bundle, "unexpected PEM type"},
		{"no key", leaf + bundle, "no private key"},
		{"key first", key + leaf + bundle, "before any chain certificate"},
		{"two keys", leaf + key + key + bundle, "second private key"},
		{"no bundle", leaf + key, "empty trust bundle"},
		{"key of another leaf", leaf + string(otherKeyPEM) + bundle, "does not match"},
		{"bad key DER", leaf + pemOf("PRIVATE KEY", []byte{0x30, 0}) + bundle, "private key"},
		{"bad certificate DER", pemOf("CERTIFICATE", []byte{0x30, 0}) + key + bundle, "block 1"},
		{"leaf with two URI SANs", pemOf("CERTIFICATE", twoURIs.Raw) + key + bundle, "2 URI SANs"},
		{"leaf is a CA", pemOf("CERTIFICATE", caLeaf.Raw) + key + bundle, "CA"},
		{"leaf URI not SPIFFE", pemOf("CERTIFICATE", noSPIFFE.Raw) + key + bundle, "must start with"},
		{"bundle holds a leaf", leaf + key + leaf, "not a CA"},
		{"intermediate not a CA", leaf + leaf + key + bundle, "not a CA"},
		{"intermediate did not sign leaf", leaf + pemOf("CERTIFICATE", newTestRoot(t).Cert.Raw) + key + bundle, "not signed by"},
		{"oversized", strings.Repeat("#", maxFileSize+1), "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCredentials([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseCredentials = %v, %v; want error containing %q", got != nil, err, tt.wantErr)
			}
		})
	}
}

func TestCredentialsInvalid(t *testing.T) {
	root := newTestRoot(t)
	c := newTestCreds(t, root, AnchorID(testMesh, "a1"))
	noKey := &Credentials{Chain: c.Chain, Bundle: c.Bundle}
	if _, err := noKey.Marshal(); err == nil {
		t.Error("Marshal without key succeeded")
	}
	if err := noKey.Save(filepath.Join(t.TempDir(), "x")); err == nil {
		t.Error("Save without key succeeded")
	}
	var empty Credentials
	if _, err := empty.ID(); err == nil {
		t.Error("ID of empty credentials succeeded")
	}
	if !empty.NotAfter().IsZero() {
		t.Error("NotAfter of empty credentials is not zero")
	}
	foreign := &Credentials{Chain: c.Chain, Key: c.Key, Bundle: []*x509.Certificate{newTestRoot(t).Cert}}
	if err := foreign.Verify(testNow); err == nil {
		t.Error("Verify against a foreign bundle succeeded")
	}
	if _, err := LoadCredentials(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("LoadCredentials of a missing file succeeded")
	}
}
