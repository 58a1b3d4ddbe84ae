package anchor

import (
	"context"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
)

// An anchor's own certificate is issued at bootstrap or join and renewed by
// the root scope's CA (IssueCertificate with the anchor's own ID): at half
// its lifetime, and as soon as it no longer chains to the root the root
// scope's CA chains to (a root rotation). Only the anchor itself may renew
// its certificate, proving itself with the current one.

// renewAnchorCertificate signs a CSR for an anchor identity with the root
// scope's CA. The caller must be that anchor (a forwarding anchor vouches for
// the principal it names).
func (a *Anchor) renewAnchorCertificate(ctx context.Context, req *apipb.IssueCertificateRequest, want identity.ID) (*apipb.IssueCertificateResponse, error) {
	if c := callerFrom(ctx); c.role != roleAnchor || c.principal != want.String() {
		return nil, status.Errorf(codes.PermissionDenied, "issue certificate: only anchor %s itself may renew its certificate", want)
	}
	h, remote, err := a.governing(a.meta.Mesh)
	if err != nil {
		return nil, statusOf(err)
	}
	if h == nil {
		return forwardTo(ctx, a, remote, func(ctx context.Context, c apipb.AnchorClient) (*apipb.IssueCertificateResponse, error) {
			return c.IssueCertificate(ctx, req)
		})
	}
	ca, err := a.scopeCA(h)
	if err != nil {
		return nil, statusOf(err)
	}
	cert, err := ca.SignCSR(req.Csr, want, anchorCertTTL, time.Now())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "issue certificate: %v", err)
	}
	return &apipb.IssueCertificateResponse{Chain: derChain(cert, ca), Bundle: derCerts(ca.TrustBundle()), Mesh: a.meta.Mesh}, nil
}

// renewOwnCertificate asks the root scope's anchors (this one, when it hosts
// the root scope) for a new certificate of this anchor, saves it and
// presents it from the next handshake on.
func (a *Anchor) renewOwnCertificate(ctx context.Context) error {
	id := identity.AnchorID(a.meta.Mesh, a.meta.ID)
	key, err := identity.GenerateKey()
	if err != nil {
		return err
	}
	csr, err := identity.NewCSR(id, key)
	if err != nil {
		return err
	}
	req := &apipb.IssueCertificateRequest{Csr: csr}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	defer cancel()
	var resp *apipb.IssueCertificateResponse
	if h, ok := a.scope(a.meta.Mesh); ok {
		ca, err := a.scopeCA(h)
		if err != nil {
			return err
		}
		cert, err := ca.SignCSR(csr, id, anchorCertTTL, time.Now())
		if err != nil {
			return err
		}
		resp = &apipb.IssueCertificateResponse{Chain: derChain(cert, ca), Bundle: derCerts(ca.TrustBundle())}
	} else {
		_, remote, err := a.governing(a.meta.Mesh)
		if err != nil {
			return err
		}
		if resp, err = forwardTo(ctx, a, remote, func(ctx context.Context, c apipb.AnchorClient) (*apipb.IssueCertificateResponse, error) {
			return c.IssueCertificate(ctx, req)
		}); err != nil {
			return err
		}
	}
	creds := &identity.Credentials{Key: key}
	if creds.Chain, err = parseDERs(resp.Chain); err != nil {
		return fmt.Errorf("renewed certificate: %w", err)
	}
	if creds.Bundle, err = parseDERs(resp.Bundle); err != nil {
		return fmt.Errorf("renewed certificate bundle: %w", err)
	}
	if err := creds.Verify(time.Now()); err != nil {
		return fmt.Errorf("renewed certificate: %w", err)
	}
	if err := creds.Save(filepath.Join(a.cfg.DataDir, credentialsFile)); err != nil {
		return err
	}
	a.tls.SetCredentials(creds)
	a.log.Info("anchor certificate renewed", "serial", creds.Chain[0].SerialNumber.Text(16), "not_after", creds.NotAfter())
	return nil
}

func parseDERs(ders [][]byte) ([]*x509.Certificate, error) {
	out := make([]*x509.Certificate, 0, len(ders))
	for _, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no certificate")
	}
	return out, nil
}
