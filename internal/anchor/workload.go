package anchor

import (
	"context"
	"crypto/x509"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/resource"
)

// account is the service account of a workload identity (".../sa/<account>").
func account(id identity.ID) string { return strings.TrimPrefix(id.Path, "/sa/") }

// checkWorkloadObjects lets a workload write only its own Workload objects:
// in its own namespace, for its own service account.
func checkWorkloadObjects(c caller, objs []resource.Object) error {
	if c.role != roleWorkload {
		return nil
	}
	for _, o := range objs {
		if o.Kind != "Workload" || o.Namespace != c.id.TrustDomain {
			return status.Errorf(codes.PermissionDenied, "%s may only register Workloads in namespace %s, not %s %s/%s", c.id, c.id.TrustDomain, o.Kind, o.Namespace, o.Name)
		}
		t, err := resource.Typed(o)
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "%s %s: %v", o.Kind, o.Name, err)
		}
		if spec, ok := t.(*resource.WorkloadSpec); !ok || spec.Service != account(c.id) {
			return status.Errorf(codes.PermissionDenied, "%s may only register workloads of service %s", c.id, account(c.id))
		}
	}
	return nil
}

// checkWorkloadScope lets a workload use leases only in its own namespace.
func checkWorkloadScope(c caller, ns string) error {
	if c.role == roleWorkload && ns != c.id.TrustDomain {
		return status.Errorf(codes.PermissionDenied, "%s may only use leases of namespace %s", c.id, c.id.TrustDomain)
	}
	return nil
}

// Workload certificate lifetimes.
const (
	defaultSVIDTTL = 24 * time.Hour
	maxSVIDTTL     = 7 * 24 * time.Hour
)

// IssueCertificate signs a workload SVID. Entitlement: the join token (first
// issue) or a verified certificate for the same identity (rotation). The
// scope governing the identity's namespace signs; other anchors forward. An
// anchor also renews its own certificate here (renewAnchorCertificate).
func (s *server) IssueCertificate(ctx context.Context, req *apipb.IssueCertificateRequest) (*apipb.IssueCertificateResponse, error) {
	a := s.a
	csr, err := x509.ParseCertificateRequest(req.Csr)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "issue certificate: csr: %v", err)
	}
	if len(csr.URIs) != 1 {
		return nil, status.Error(codes.InvalidArgument, "issue certificate: the CSR must name exactly one SPIFFE ID")
	}
	want, err := identity.ParseID(csr.URIs[0].String())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "issue certificate: %v", err)
	}
	if want.TrustDomain == a.meta.Mesh && strings.HasPrefix(want.Path, "/anchor/") {
		return a.renewAnchorCertificate(ctx, req, want)
	}
	if !strings.HasPrefix(want.Path, "/sa/") || strings.Count(want.Path, "/") != 2 || !inZone(want.TrustDomain, a.meta.Mesh) {
		return nil, status.Errorf(codes.PermissionDenied, "issue certificate: %s is not a workload identity of mesh %s (want spiffe://<namespace>/sa/<account>)", want, a.meta.Mesh)
	}
	ttl := defaultSVIDTTL
	if req.TtlSeconds != 0 {
		ttl = time.Duration(req.TtlSeconds) * time.Second
		if ttl > maxSVIDTTL {
			return nil, status.Errorf(codes.InvalidArgument, "issue certificate: ttl %s exceeds %s", ttl, maxSVIDTTL)
		}
	}
	// The scope that governs the identity's namespace signs, with its own CA.
	h, remote, err := a.governing(want.TrustDomain)
	if err != nil {
		return nil, statusOf(err)
	}
	if h == nil {
		return forwardTo(ctx, a, remote, func(ctx context.Context, c apipb.AnchorClient) (*apipb.IssueCertificateResponse, error) {
			return c.IssueCertificate(ctx, req)
		})
	}
	if err := a.entitled(callerFrom(ctx), req.Token, want); err != nil {
		return nil, err
	}
	ca, err := a.scopeCA(h)
	if err != nil {
		return nil, statusOf(err)
	}
	chain, bundle, err := signWorkload(ca, req.Csr, want, ttl)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "issue certificate: %v", err)
	}
	return &apipb.IssueCertificateResponse{Chain: chain, Bundle: bundle, Mesh: a.meta.Mesh}, nil
}

// entitled decides whether a caller may obtain a certificate for want: with
// the join token, or as that very workload (rotation), or as the admin. An
// anchor forwarding a request is judged by the caller it names.
func (a *Anchor) entitled(c caller, token string, want identity.ID) error {
	if token != "" {
		return a.checkJoinToken(token)
	}
	principal := c.principal
	if c.role == roleWorkload || c.role == roleAdmin {
		principal = c.id.String()
	}
	if principal == want.String() {
		return nil
	}
	if id, err := identity.ParseID(principal); err == nil && id.TrustDomain == a.meta.Mesh && strings.HasPrefix(id.Path, "/admin/") {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "issue certificate: %s needs a join token or a valid certificate of that identity", want)
}
