package workload_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"canton.dev/canton/internal/workload"
)

// testCA is a throwaway CA that signs server and client certificates for the HTTPS gateway test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns PEM certificate and key for name (a DNS name for a server, a subject for a client).
func (ca *testCA) issue(t *testing.T, name string, serial int64, client bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, DNSNames: []string{name}}
	if client {
		tmpl.ExtKeyUsage, tmpl.DNSNames = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil { // as cert-manager or certbot replace files
		t.Fatal(err)
	}
}

// TestGatewayTerminatesTLS: an Istio Gateway with an HTTPS server (tls.mode SIMPLE, credentialName
// bookinfo-cert) on a gateway run with --tls-credential bookinfo-cert=CERT,KEY serves the
// VirtualService bound to it over TLS with the certificate from those files (the anchors never see
// the key); a MUTUAL server on another port (with the CA file) refuses a client without a
// certificate and serves one with a certificate of that CA; a renewed certificate written over the
// files is served without a restart.
func TestGatewayTerminatesTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, cl := startBookinfo(ctx, t)
	page := &recorder{name: "productpage"}
	startSidecar(t, c, "productpage", "v1", page.start(t))

	dir := t.TempDir()
	serverCA, clientCA := newTestCA(t, "server CA"), newTestCA(t, "client CA")
	certFile, keyFile, caFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")
	cert, key := serverCA.issue(t, "bookinfo.example.com", 2, false)
	writeFile(t, certFile, cert)
	writeFile(t, keyFile, key)
	writeFile(t, caFile, clientCA.pem)

	simple, mutual, redirect := freePort(t), freePort(t), freePort(t)
	apply(t, cl, fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: %d, name: https, protocol: HTTPS}
    hosts: [bookinfo.example.com]
    tls: {mode: SIMPLE, credentialName: bookinfo-cert}
  - port: {number: %d, name: https-mutual, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: MUTUAL, credentialName: bookinfo-mtls}
  - port: {number: %d, name: http-redirect, protocol: HTTP}
    hosts: [bookinfo.example.com]
    tls: {httpsRedirect: true}
`, simple, mutual, redirect)+"---\n"+gatewayRoutes)
	startSidecarWith(t, c, ns, allAnchors(c), "ingressgateway", "", "", func(o *workload.Options) {
		o.Gateway, o.GatewayAddress, o.NodeID = true, "127.0.0.1", "ingressgateway-tls"
		o.Labels = map[string]string{"istio": "ingressgateway"}
		o.TLSCredentials = []workload.TLSCredential{
			{Name: "bookinfo-cert", Cert: certFile, Key: keyFile},
			{Name: "bookinfo-mtls", Cert: certFile, Key: keyFile, CA: caFile},
		}
	})

	roots := x509.NewCertPool()
	roots.AddCert(serverCA.cert)
	fetch := func(port int, clientCert *tls.Certificate) (string, *x509.Certificate, error) {
		cfg := &tls.Config{RootCAs: roots, ServerName: "bookinfo.example.com"}
		if clientCert != nil {
			cfg.Certificates = []tls.Certificate{*clientCert}
		}
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
		req, _ := http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d/productpage", port), nil)
		req.Host = "bookinfo.example.com"
		resp, err := hc.Do(req)
		if err != nil {
			return "", nil, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b))), resp.TLS.PeerCertificates[0], nil
	}
	var served *x509.Certificate
	eventually(t, 20*time.Second, func() error {
		got, leaf, err := fetch(simple, nil)
		if err == nil && got != "200 productpage /productpage" {
			err = fmt.Errorf("HTTPS through the gateway: %s", got)
		}
		served = leaf
		return err
	})
	if served.SerialNumber.Int64() != 2 {
		t.Fatalf("the gateway served certificate serial %d, want the file's (2)", served.SerialNumber.Int64())
	}

	// MUTUAL: no client certificate, no request; one signed by the CA file, served.
	if got, _, err := fetch(mutual, nil); err == nil {
		t.Fatalf("MUTUAL server without a client certificate answered %s", got)
	}
	ccert, ckey := clientCA.issue(t, "partner", 3, true)
	pair, err := tls.X509KeyPair(ccert, ckey)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, err := fetch(mutual, &pair); err != nil || got != "200 productpage /productpage" {
		t.Fatalf("MUTUAL server with a client certificate: %s %v", got, err)
	}

	// The HTTP server with httpsRedirect answers 301 to the same URL in https.
	noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/productpage?u=1", redirect), nil)
	req.Host = "bookinfo.example.com"
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != 301 || loc != "https://bookinfo.example.com/productpage?u=1" {
		t.Fatalf("httpsRedirect server: %d Location %q, want 301 to https://bookinfo.example.com/productpage?u=1", resp.StatusCode, loc)
	}

	// Renewal: new files, new certificate served, no restart.
	cert, key = serverCA.issue(t, "bookinfo.example.com", 4, false)
	writeFile(t, keyFile, key)
	writeFile(t, certFile, cert)
	eventually(t, 20*time.Second, func() error {
		_, leaf, err := fetch(simple, nil)
		if err == nil && leaf.SerialNumber.Int64() != 4 {
			err = fmt.Errorf("still serving serial %d", leaf.SerialNumber.Int64())
		}
		return err
	})
}
