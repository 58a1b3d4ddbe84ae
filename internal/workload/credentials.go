package workload

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"canton.dev/canton/internal/proxy"
)

// TLSCredential is a key pair a gateway serves for the Gateway servers whose tls.credentialName
// is Name (canton proxy --gateway --tls-credential NAME=CERT,KEY[,CA]). The files stay on the
// gateway's host: the anchors never see the key. With CA, the secret "<Name>-cacert" holds the
// CAs that client certificates must chain to (tls.mode MUTUAL), as in Istio.
type TLSCredential struct {
	Name string
	Cert string // PEM certificate chain file, the leaf first
	Key  string // PEM private key file
	CA   string // optional PEM CA bundle file
}

// ParseTLSCredentials reads a --tls-credential list: NAME=CERT,KEY[,CA] entries separated by
// semicolons.
func ParseTLSCredentials(list string) ([]TLSCredential, error) {
	var out []TLSCredential
	seen := map[string]bool{}
	for _, entry := range strings.Split(list, ";") {
		if entry = strings.TrimSpace(entry); entry == "" {
			continue
		}
		name, files, ok := strings.Cut(entry, "=")
		parts := strings.Split(files, ",")
		if !ok || name == "" || len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return nil, fmt.Errorf("%q: want NAME=CERT,KEY[,CA]", entry)
		}
		if seen[name] {
			return nil, fmt.Errorf("%q: credential %s named twice", entry, name)
		}
		seen[name] = true
		c := TLSCredential{Name: name, Cert: parts[0], Key: parts[1]}
		if len(parts) == 3 {
			c.CA = parts[2]
		}
		out = append(out, c)
	}
	return out, nil
}

// credentialFiles is what a TLSCredential's files held when last loaded.
type credentialFiles struct{ cert, key, ca []byte }

// load reads and checks c's files: a key pair whose certificate is valid now, and a CA bundle of
// at least one certificate when CA is set.
func (c TLSCredential) load(now time.Time) (credentialFiles, error) {
	var f credentialFiles
	var err error
	if f.cert, err = os.ReadFile(c.Cert); err != nil {
		return f, err
	}
	if f.key, err = os.ReadFile(c.Key); err != nil {
		return f, err
	}
	pair, err := tls.X509KeyPair(f.cert, f.key)
	if err != nil {
		return f, fmt.Errorf("%s and %s: %w", c.Cert, c.Key, err)
	}
	if now.After(pair.Leaf.NotAfter) || now.Before(pair.Leaf.NotBefore) {
		return f, fmt.Errorf("%s: certificate valid from %s to %s, not now", c.Cert, pair.Leaf.NotBefore.UTC(), pair.Leaf.NotAfter.UTC())
	}
	if c.CA != "" {
		if f.ca, err = os.ReadFile(c.CA); err != nil {
			return f, err
		}
		if !x509.NewCertPool().AppendCertsFromPEM(f.ca) {
			return f, fmt.Errorf("%s: no PEM certificate", c.CA)
		}
	}
	return f, nil
}

func (f credentialFiles) equal(o credentialFiles) bool {
	return bytes.Equal(f.cert, o.cert) && bytes.Equal(f.key, o.key) && bytes.Equal(f.ca, o.ca)
}

// loadCredentials loads every Options.TLSCredentials entry into the proxy's local secrets; a bad
// one fails the start (prev nil) or is logged and the previous version kept (a reload).
func (w *Workload) loadCredentials(prev []credentialFiles) ([]credentialFiles, error) {
	out := make([]credentialFiles, len(w.opts.TLSCredentials))
	var errs []error
	for i, c := range w.opts.TLSCredentials {
		f, err := c.load(time.Now())
		switch {
		case err != nil && prev == nil:
			errs = append(errs, fmt.Errorf("proxy: --tls-credential %s: %w", c.Name, err))
			continue
		case err != nil:
			w.log.Warn("tls credential not reloaded; serving the previous one", "credential", c.Name, "err", err)
			out[i] = prev[i]
			continue
		case prev != nil && f.equal(prev[i]):
			out[i] = f
			continue
		}
		w.secrets.Set(proxy.CertificateSecret(c.Name, f.cert, f.key))
		if f.ca != nil {
			w.secrets.Set(proxy.ValidationSecret(c.Name+"-cacert", f.ca))
		}
		if prev != nil {
			w.log.Info("tls credential reloaded", "credential", c.Name)
		}
		out[i] = f
	}
	return out, errors.Join(errs...)
}

// credentialReload is how often the credential files are read again, so a renewed certificate
// (cert-manager, certbot) is served without a restart.
const credentialReload = 5 * time.Second

// reloadCredentials re-reads the credential files every credentialReload until ctx ends.
func (w *Workload) reloadCredentials(ctx context.Context, loaded []credentialFiles) {
	t := time.NewTicker(credentialReload)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		loaded, _ = w.loadCredentials(loaded)
	}
}
