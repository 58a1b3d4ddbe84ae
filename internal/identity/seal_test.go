package identity

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestSealOpenCA(t *testing.T) {
	now := time.Now()
	root, err := NewRootCA("demo.mesh", now)
	if err != nil {
		t.Fatal(err)
	}
	scope, err := root.NewIntermediate("bookinfo.demo.mesh", 30*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	kek, _ := NewKEK()
	sealed, err := SealCA(scope, kek)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed.SealedKey, []byte("PRIVATE KEY")) {
		t.Fatal("sealed key is plaintext")
	}
	opened, err := OpenCA(sealed, kek)
	if err != nil {
		t.Fatal(err)
	}
	if !opened.Cert.Equal(scope.Cert) || len(opened.Parents) != 1 || !opened.Parents[0].Equal(root.Cert) {
		t.Fatal("opened CA differs")
	}
	// The opened CA signs within its subtree only.
	key, _ := GenerateKey()
	if _, err := opened.Issue(WorkloadID("bookinfo.demo.mesh", "reviews"), key.Public(), time.Hour, now, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := opened.Issue(WorkloadID("shop.demo.mesh", "cart"), key.Public(), time.Hour, now, nil, nil); err == nil {
		t.Fatal("a scope CA issued outside its subtree")
	}

	other, _ := NewKEK()
	for name, tc := range map[string]struct {
		s   SealedCA
		kek []byte
	}{
		"wrong kek":      {sealed, other},
		"short kek":      {sealed, kek[:16]},
		"tampered key":   {SealedCA{sealed.Certificates, flip(sealed.SealedKey, len(sealed.SealedKey)-1)}, kek},
		"other cert":     {SealedCA{encodeCerts(append(root.Parents, root.Cert)), sealed.SealedKey}, kek},
		"truncated":      {SealedCA{sealed.Certificates, sealed.SealedKey[:5]}, kek},
		"no certificate": {SealedCA{nil, sealed.SealedKey}, kek},
	} {
		if _, err := OpenCA(tc.s, tc.kek); err == nil {
			t.Errorf("%s: opened", name)
		} else if strings.Contains(err.Error(), "PRIVATE") {
			t.Errorf("%s: error leaks key material: %v", name, err)
		}
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 1
	return c
}
