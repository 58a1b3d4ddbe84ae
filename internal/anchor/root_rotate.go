package anchor

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/resource"
	"canton.dev/canton/internal/scope"
)

// Root rotation (canton mesh rotate-root; design 0003 "Root rotation").
//
// Phase add: a new root R2 is certified by the current root R1 (a cross
// certificate) and the root scope's CA is replaced by one under R2 whose
// sealed object also carries the cross certificate and the bundle {R1, R2}
// (identity.CA.Cross, .Bundle). rotateCA then cascades: every child scope's
// CA is re-issued by its parent's new CA and inherits cross certificate and
// bundle, down the hierarchy. Leaves issued from then on present
// leaf -> scope CAs -> R2(by R1), so verifiers holding {R1} or {R2} both
// accept them; workloads receive {R1, R2} with their next certificate,
// anchors pick it up from the scope CAs they host (root_trust.go).
//
// Phase finish: R1 leaves the bundle (the root scope's CA is resealed without
// cross certificate and bundle, and the cascade re-issues the scopes below),
// once no scope CA and no anchor certificate chains only to R1 and the
// longest workload certificate lifetime has passed since add (force skips
// that wait).

// anchorProbeTimeout bounds the handshake that reads an anchor's certificate.
const anchorProbeTimeout = 3 * time.Second

// RotateRoot runs on an anchor of the root scope; others forward.
func (s *server) RotateRoot(ctx context.Context, req *apipb.RotateRootRequest) (*apipb.RotateRootResponse, error) {
	a := s.a
	if c := callerFrom(ctx); c.role != roleAdmin && c.role != roleAnchor {
		return nil, status.Error(codes.PermissionDenied, "rotate root: admin only")
	}
	h, remote, err := a.governing(a.meta.Mesh)
	if err != nil {
		return nil, statusOf(err)
	}
	if h == nil {
		return forwardTo(ctx, a, remote, func(ctx context.Context, c apipb.AnchorClient) (*apipb.RotateRootResponse, error) {
			return c.RotateRoot(ctx, req)
		})
	}
	if err := a.readIndex(ctx, h); err != nil {
		return nil, statusOf(err)
	}
	if req.Finish {
		return a.finishRootRotation(ctx, h, req.Force)
	}
	return a.addRoot(ctx, h, req)
}

// addRoot is phase add. Run again while a rotation is in progress (without a
// new root), it re-runs the cascade to the child scopes.
func (a *Anchor) addRoot(ctx context.Context, h *hosted, req *apipb.RotateRootRequest) (*apipb.RotateRootResponse, error) {
	cur, ok := h.state.Get("CertificateAuthority", h.domain, caName)
	if !ok {
		return nil, statusOf(&unavailableError{fmt.Sprintf("scope %s has no CA yet; retry in a moment", h.domain)})
	}
	old, err := a.scopeCA(h)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "rotate root: %v", err)
	}
	if len(old.TrustBundle()) > 1 {
		if len(req.NewRootCertPem) > 0 {
			return nil, status.Errorf(codes.FailedPrecondition, "rotate root: a rotation to %q is in progress (the bundle holds %d roots); finish it with --finish first", old.Root().Subject.CommonName, len(old.TrustBundle()))
		}
		rotated, err := a.cascadeRotation(ctx, h)
		if err != nil {
			return nil, err
		}
		return rootResponse(h.state.Revision(), old, rotated), nil
	}
	now := time.Now()
	r1 := old.Root()
	signer, err := a.currentRootSigner(old, req.CurrentRootKeyPem)
	if err != nil {
		return nil, err
	}
	var next *identity.CA
	if len(req.NewRootCertPem) == 0 {
		if len(req.NewRootKeyPem) > 0 {
			return nil, status.Error(codes.InvalidArgument, "rotate root: a new root key without its certificate")
		}
		// A generated root is sealed in the root scope itself, as at bootstrap.
		if next, err = identity.NewRootCA(a.meta.Mesh, now); err != nil {
			return nil, status.Errorf(codes.Internal, "rotate root: %v", err)
		}
	} else {
		r2, err := identity.ParseCA(req.NewRootCertPem, req.NewRootKeyPem)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "rotate root: --ca-cert/--ca-key: %v", err)
		}
		if len(r2.Parents) > 0 {
			return nil, status.Error(codes.InvalidArgument, "rotate root: --ca-cert must be a root (one self-signed certificate), not a chain")
		}
		// An offline root signs, in memory, the root scope's CA; its key is
		// not kept.
		if next, err = r2.NewIntermediate(a.meta.Mesh, scopeCATTL, now); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "rotate root: the new root cannot sign the mesh's CA: %v", err)
		}
	}
	r2 := next.Root()
	cross, err := signer.CrossSign(r2, now)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "rotate root: %v", err)
	}
	next.Cross = []*x509.Certificate{cross}
	next.Bundle = []*x509.Certificate{r1, r2}
	obj, err := caObject(h.domain, next, a.kek)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "rotate root: %v", err)
	}
	version := cur.Version
	res, err := a.propose(ctx, h, scope.Mutation{Op: scope.OpPut, Proposer: a.proposer(), Objects: []resource.Object{obj}, IfVersions: []*uint64{&version}})
	if err != nil {
		return nil, statusOf(err)
	}
	a.log.Info("mesh root rotation started", "previous_root", r1.SerialNumber.Text(16), "root", r2.SerialNumber.Text(16), "cross", cross.SerialNumber.Text(16))
	rotated, err := a.cascadeRotation(ctx, h)
	if err != nil {
		return nil, err
	}
	return rootResponse(res.Revision, next, rotated), nil
}

// currentRootSigner returns the current root with its key: the root scope's
// CA when it is the root itself, the bootstrap anchor's ca.key when it holds
// the root, or the key the request brings (an offline root).
func (a *Anchor) currentRootSigner(rootScopeCA *identity.CA, keyPEM []byte) (*identity.CA, error) {
	r1 := rootScopeCA.Root()
	if len(rootScopeCA.Parents) == 0 {
		return rootScopeCA, nil
	}
	if disk, err := identity.LoadCA(a.cfg.DataDir); err == nil && bytes.Equal(disk.Cert.Raw, r1.Raw) {
		return disk, nil
	}
	if len(keyPEM) == 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "rotate root: no anchor holds the key of the current root %q (an offline root); pass it with --current-ca-key", r1.Subject.CommonName)
	}
	ca, err := identity.ParseCA(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r1.Raw}), keyPEM)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "rotate root: --current-ca-key: %v", err)
	}
	return ca, nil
}

// finishRootRotation is phase finish.
func (a *Anchor) finishRootRotation(ctx context.Context, h *hosted, force bool) (*apipb.RotateRootResponse, error) {
	cur, ok := h.state.Get("CertificateAuthority", h.domain, caName)
	if !ok {
		return nil, statusOf(&unavailableError{fmt.Sprintf("scope %s has no CA yet; retry in a moment", h.domain)})
	}
	old, err := a.scopeCA(h)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "rotate root: %v", err)
	}
	if len(old.TrustBundle()) <= 1 {
		return nil, status.Error(codes.FailedPrecondition, "rotate root --finish: no root rotation in progress")
	}
	r2 := old.Root()
	if !force && len(old.Cross) > 0 {
		added := old.Cross[0].NotBefore.Add(identity.ClockSkew)
		if until := added.Add(maxSVIDTTL); time.Now().Before(until) {
			return nil, status.Errorf(codes.FailedPrecondition, "rotate root --finish: workload certificates issued before the rotation started (%s) may chain only to the old root until %s (the longest workload certificate TTL, %s); wait, or pass --force to break those workloads",
				added.UTC().Format(time.RFC3339), until.UTC().Format(time.RFC3339), maxSVIDTTL)
		}
	}
	if deps := a.rootDependents(ctx, h, r2); len(deps) > 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "rotate root --finish: still chaining only to the old root: %s; run 'canton mesh rotate-root' again to resume the cascade, wait for anchors to renew, then retry", strings.Join(deps, "; "))
	}
	next := &identity.CA{Cert: old.Cert, Key: old.Key, Parents: old.Parents}
	obj, err := caObject(h.domain, next, a.kek)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "rotate root: %v", err)
	}
	version := cur.Version
	res, err := a.propose(ctx, h, scope.Mutation{Op: scope.OpPut, Proposer: a.proposer(), Objects: []resource.Object{obj}, IfVersions: []*uint64{&version}})
	if err != nil {
		return nil, statusOf(err)
	}
	a.log.Info("mesh root rotation finished", "root", r2.SerialNumber.Text(16))
	rotated, err := a.cascadeRotation(ctx, h)
	if err != nil {
		return nil, err
	}
	return rootResponse(res.Revision, next, rotated), nil
}

// rootDependents lists what does not chain to root: scope CAs (the whole
// hierarchy below h) and anchors' certificates (read by a handshake with
// every anchor of the address book; an unreachable anchor counts).
func (a *Anchor) rootDependents(ctx context.Context, h *hosted, root *x509.Certificate) []string {
	var deps []string
	var walk func(domain string, depth int)
	walk = func(domain string, depth int) {
		if depth > 32 {
			return
		}
		ca, children, err := a.scopeCAAndChildren(ctx, domain)
		if err != nil {
			deps = append(deps, fmt.Sprintf("scope %s (CA unreadable: %v)", domain, err))
			return
		}
		if !bytes.Equal(ca.Root().Raw, root.Raw) {
			deps = append(deps, fmt.Sprintf("scope %s's CA", domain))
		}
		for _, c := range children {
			walk(c, depth+1)
		}
	}
	walk(h.domain, 0)
	book := a.book.snapshot()
	ids := make([]string, 0, len(book))
	for id := range book {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		chain, err := probeAnchorChain(ctx, book[id])
		if err != nil {
			deps = append(deps, fmt.Sprintf("anchor %s (unreachable at %s: %v)", id, book[id], err))
			continue
		}
		if !identity.ChainsTo(chain, root, time.Now()) {
			deps = append(deps, fmt.Sprintf("anchor %s's certificate", id))
		}
	}
	return deps
}

// scopeCAAndChildren reads the CA and the delegated child domains of scope
// domain, locally or from its anchors.
func (a *Anchor) scopeCAAndChildren(ctx context.Context, domain string) (*identity.CA, []string, error) {
	h, remote, err := a.governing(domain)
	if err != nil {
		return nil, nil, err
	}
	if h != nil {
		if h.domain != domain {
			return nil, nil, fmt.Errorf("%s is not a scope", domain)
		}
		ca, err := a.scopeCA(h)
		if err != nil {
			return nil, nil, err
		}
		return ca, childDomains(h.state.Delegations()), nil
	}
	get := func(kind string) ([]resource.Object, error) {
		resp, err := forwardTo(ctx, a, remote, func(ctx context.Context, c apipb.AnchorClient) (*apipb.GetResponse, error) {
			req := &apipb.GetRequest{Kind: kind, Namespace: domain}
			if kind == "CertificateAuthority" {
				req.Name = caName
			}
			return c.Get(ctx, req)
		})
		if err != nil {
			return nil, err
		}
		return decodeObjects(resp.Objects)
	}
	cas, err := get("CertificateAuthority")
	if err != nil || len(cas) != 1 {
		return nil, nil, fmt.Errorf("CA of %s: %v", domain, err)
	}
	ca, err := openCAObject(cas[0], a.kek)
	if err != nil {
		return nil, nil, err
	}
	dgs, err := get("Delegation")
	if err != nil {
		return nil, nil, err
	}
	return ca, childDomains(dgs), nil
}

func childDomains(delegations []resource.Object) []string {
	var out []string
	for _, d := range delegations {
		if spec, err := delegationSpec(d); err == nil {
			out = append(out, spec.Domain)
		}
	}
	sort.Strings(out)
	return out
}

// probeAnchorChain reads the certificate chain an anchor presents, without
// trusting it (only to see where it chains).
func probeAnchorChain(ctx context.Context, addr string) ([]*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, anchorProbeTimeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: &tls.Config{
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{"h2"},
		InsecureSkipVerify: true, // nothing is sent; the chain is only inspected
	}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates, nil
}

// cascadeRotation rotates the CA of every child scope of h under h's current
// CA (rotateCA cascades further down when a child's bundle changes). It
// returns h and the child scopes it rotated.
func (a *Anchor) cascadeRotation(ctx context.Context, h *hosted) ([]string, error) {
	rotated := []string{h.domain}
	for _, child := range childDomains(h.state.Delegations()) {
		hc, remote, err := a.governing(child)
		if err != nil {
			return rotated, statusOf(err)
		}
		if hc != nil && hc.domain == child {
			_, err = a.rotateCA(ctx, hc, scopeCATTL)
		} else {
			_, err = forwardTo(ctx, a, remote, func(ctx context.Context, c apipb.AnchorClient) (*apipb.RotateCAResponse, error) {
				return c.RotateCA(ctx, &apipb.RotateCARequest{Scope: child})
			})
		}
		if err != nil {
			return rotated, status.Errorf(status.Code(err), "rotate CA of child scope %s of %s: %v (run the rotation again to resume)", child, h.domain, status.Convert(err).Message())
		}
		rotated = append(rotated, child)
	}
	return rotated, nil
}

func rootResponse(revision uint64, ca *identity.CA, rotated []string) *apipb.RotateRootResponse {
	return &apipb.RotateRootResponse{
		Revision:      revision,
		Bundle:        derCerts(ca.TrustBundle()),
		RootSerial:    ca.Root().SerialNumber.Text(16),
		RotatedScopes: rotated,
	}
}
