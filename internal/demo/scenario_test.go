package demo

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestProbePlaintextRefusalMustComeFromTLS checks the security scenario's
// plaintext probe against listeners that are not a STRICT sidecar as well as
// one that behaves like it: only a listener that accepts the connection,
// closes it unanswered and speaks TLS with the expected identity passes; a
// closed port (connection refused) and a plaintext server do not.
func TestProbePlaintextRefusalMustComeFromTLS(t *testing.T) {
	const id = "spiffe://bookinfo.demo.mesh/sa/reviews"
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer plain.Close()

	strict := strictListener(t, id)

	for _, tc := range []struct {
		name, addr string
		refused    bool
		outcome    string // a prefix of the probe's outcome
		identity   string
	}{
		{"closed port", closedAddr, false, "not connected: ", ""},
		{"plaintext server", plain.Listener.Addr().String(), false, `answered "HTTP/1.1 200 OK"`, ""},
		{"mutual TLS only", strict, true, "", id},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			p := probePlaintext(ctx, tc.addr)
			if p.refused != tc.refused || !strings.HasPrefix(p.outcome, tc.outcome) || p.identity != tc.identity {
				t.Errorf("probe %s: refused %v, outcome %q, identity %q; want %v, %q…, %q", tc.addr, p.refused, p.outcome, p.identity,
					tc.refused, tc.outcome, tc.identity)
			}
			if tc.refused && !strings.HasSuffix(p.outcome, " unanswered") {
				t.Errorf("outcome %q: want the connection closed or reset unanswered", p.outcome)
			}
		})
	}
}

// strictListener serves TLS that requires a client certificate with a
// certificate naming id, as a sidecar's STRICT inbound listener does: a
// connection whose handshake fails is closed. It returns its address.
func strictListener(t *testing.T, id string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		ClientAuth: tls.RequireAnyClientCert}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = tls.Server(c, cfg).Handshake()
			}()
		}
	}()
	return ln.Addr().String()
}
