package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// pki is a throwaway CA with one server and one client certificate (ECDSA P-256, the same type for
// Canton and HAProxy), written as PEM files in a directory.
type pki struct {
	CA                    []byte // CA certificate, PEM
	ServerCert, ServerKey []byte // PEM
	ClientCert, ClientKey []byte // PEM

	CAFile                        string
	ServerCertFile, ServerKeyFile string
	ClientCertFile, ClientKeyFile string
	ServerBundle, ClientBundle    string // certificate followed by key, as HAProxy wants them
}

const (
	trustDomain  = "bench.local"
	serverName   = "inbound.bench.local"
	serverSPIFFE = "spiffe://bench.local/sa/inbound"
	clientSPIFFE = "spiffe://bench.local/sa/outbound"
)

// newPKI creates the CA and certificates and writes them under dir.
func newPKI(dir string) (*pki, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: ca key: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "canton bench ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("pki: ca certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("pki: ca certificate: %w", err)
	}
	leaf := func(serial int64, cn, spiffe string, dns []string) (certPEM, keyPEM []byte, err error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		u, err := url.Parse(spiffe)
		if err != nil {
			return nil, nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			DNSNames:     dns,
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
			URIs:         []*url.URL{u},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			return nil, nil, err
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
	}
	p := &pki{CA: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})}
	if p.ServerCert, p.ServerKey, err = leaf(2, serverName, serverSPIFFE, []string{serverName}); err != nil {
		return nil, fmt.Errorf("pki: server certificate: %w", err)
	}
	if p.ClientCert, p.ClientKey, err = leaf(3, "outbound.bench.local", clientSPIFFE, nil); err != nil {
		return nil, fmt.Errorf("pki: client certificate: %w", err)
	}
	files := []struct {
		path *string
		name string
		data []byte
	}{
		{&p.CAFile, "ca.pem", p.CA},
		{&p.ServerCertFile, "server.pem", p.ServerCert},
		{&p.ServerKeyFile, "server.key", p.ServerKey},
		{&p.ClientCertFile, "client.pem", p.ClientCert},
		{&p.ClientKeyFile, "client.key", p.ClientKey},
		{&p.ServerBundle, "server-bundle.pem", append(append([]byte{}, p.ServerCert...), p.ServerKey...)},
		{&p.ClientBundle, "client-bundle.pem", append(append([]byte{}, p.ClientCert...), p.ClientKey...)},
	}
	for _, f := range files {
		*f.path = filepath.Join(dir, f.name)
		if err := os.WriteFile(*f.path, f.data, 0o600); err != nil {
			return nil, fmt.Errorf("pki: write %s: %w", *f.path, err)
		}
	}
	return p, nil
}
