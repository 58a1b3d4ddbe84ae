package anchor

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/resource"
	"canton.dev/canton/internal/scope"
)

// Every scope has its own CA: an intermediate signed by its parent's CA and
// name-constrained to the scope's subtree, so a scope can never mint an
// identity outside it. Its key is sealed under the mesh key-encryption key
// (kek in every anchor's data dir) and replicated in the scope's state as the
// CertificateAuthority "ca", so any anchor of the scope can sign.

const (
	kekFile    = "kek"
	caName     = "ca"
	scopeCATTL = 365 * 24 * time.Hour
	// minScopeCATTL bounds how short-lived a rotated scope CA may be.
	minScopeCATTL = time.Hour
)

func loadKEK(dir string) ([]byte, error) {
	k, err := os.ReadFile(filepath.Join(dir, kekFile))
	if err != nil {
		return nil, fmt.Errorf("anchor: key-encryption key: %w", err)
	}
	if len(k) != identity.KEKSize {
		return nil, fmt.Errorf("anchor: %s: want %d bytes, found %d", filepath.Join(dir, kekFile), identity.KEKSize, len(k))
	}
	return k, nil
}

// caCache remembers the opened CA of one scope at one resource version.
type caCache struct {
	mu      sync.Mutex
	version uint64
	ca      *identity.CA
}

// scopeCA returns the opened CA of a hosted scope.
func (a *Anchor) scopeCA(h *hosted) (*identity.CA, error) {
	o, ok := h.state.Get("CertificateAuthority", h.domain, caName)
	if !ok {
		return nil, &unavailableError{fmt.Sprintf("scope %s has no CA yet; retry in a moment", h.domain)}
	}
	h.ca.mu.Lock()
	defer h.ca.mu.Unlock()
	if h.ca.ca != nil && h.ca.version == o.Version {
		return h.ca.ca, nil
	}
	ca, err := openCAObject(o, a.kek)
	if err != nil {
		return nil, fmt.Errorf("scope %s: %w", h.domain, err)
	}
	h.ca.version, h.ca.ca = o.Version, ca
	return ca, nil
}

func openCAObject(o resource.Object, kek []byte) (*identity.CA, error) {
	t, err := resource.Typed(o)
	if err != nil {
		return nil, err
	}
	spec, ok := t.(*resource.CertificateAuthoritySpec)
	if !ok {
		return nil, fmt.Errorf("unexpected CA spec %T", t)
	}
	key, err := base64.StdEncoding.DecodeString(spec.SealedKey)
	if err != nil {
		return nil, fmt.Errorf("CA sealed key: %w", err)
	}
	return identity.OpenCA(identity.SealedCA{Certificates: []byte(spec.Certificates), SealedKey: key}, kek)
}

// ensureCA gives a scope its CA once, on its leader: the root scope seals the
// mesh root CA (only the bootstrap anchor holds it on disk); a child scope gets
// an intermediate from its parent's CA. It retries until it succeeds or ctx ends.
func (a *Anchor) ensureCA(ctx context.Context, h *hosted) {
	if h.domain == a.meta.Mesh && !a.holdsRootCA() {
		return // the anchor holding the root CA seals it (see reconcileOnce)
	}
	for {
		if _, ok := h.state.Get("CertificateAuthority", h.domain, caName); ok {
			return
		}
		err := a.createCA(ctx, h)
		if err == nil || isCode(err, "exists") || isCode(err, "conflict") {
			return
		}
		a.log.Debug("scope CA not created yet", "scope", h.domain, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (a *Anchor) createCA(ctx context.Context, h *hosted) error {
	var ca *identity.CA
	if h.domain == a.meta.Mesh {
		root, err := identity.LoadCA(a.cfg.DataDir)
		if err != nil {
			return errors.New("the mesh root CA is on the bootstrap anchor; it seals it when it leads")
		}
		ca = root
	} else {
		parent, err := a.parentCA(ctx, h)
		if err != nil {
			return err
		}
		if ca, err = parent.NewIntermediate(h.domain, a.scopeCATTL(), time.Now()); err != nil {
			return err
		}
	}
	obj, err := caObject(h.domain, ca, a.kek)
	if err != nil {
		return err
	}
	zero := uint64(0)
	_, err = a.propose(ctx, h, scope.Mutation{Op: scope.OpPut, Proposer: a.proposer(), Objects: []resource.Object{obj}, IfVersions: []*uint64{&zero}})
	if err == nil {
		a.log.Info("scope CA created", "scope", h.domain, "subject", ca.Cert.Subject.CommonName)
	}
	return err
}

// scopeCATTL is Config.ScopeCATTL or its default.
func (a *Anchor) scopeCATTL() time.Duration {
	if a.cfg.ScopeCATTL > 0 {
		return a.cfg.ScopeCATTL
	}
	return scopeCATTL
}

// renewScopeCA keeps the CA of a child scope valid while this anchor leads it: once less than a
// third of Config.ScopeCATTL is left, it is replaced by a new CA from the parent scope's
// (rotateCA: the same root, so the certificates the old CA issued stay valid until they
// expire). That leaves a third of the lifetime to reach the parent scope if it is down. A CA
// cannot outlive its parent's, so while the parent's expires no later than the current one
// there is nothing to gain: the child waits for the parent to renew. Failures are logged and
// retried while the current CA keeps signing. The root scope's CA is the mesh root (or an
// offline root's intermediate); an admin rotates it (canton mesh rotate-root): it is only
// reported here when due.
func (a *Anchor) renewScopeCA(ctx context.Context, h *hosted) {
	ttl := a.scopeCATTL()
	retry := min(time.Minute, max(ttl/20, 100*time.Millisecond))
	reported := false // the current situation was logged once
	for {
		wait := retry
		if ca, err := a.scopeCA(h); err == nil {
			due := ca.Cert.NotAfter.Add(-ttl / 3)
			if wait = time.Until(due); wait <= 0 {
				wait = retry
				renewed, why := a.renewCAOnce(ctx, h, ca)
				switch {
				case renewed:
					reported = false
					continue
				case !reported:
					a.log.Warn("scope CA not renewed", "scope", h.domain, "not_after", ca.Cert.NotAfter, "why", why)
					reported = true
				}
				if h.domain == a.meta.Mesh {
					wait = time.Hour
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(wait, time.Hour)):
		}
	}
}

// renewCAOnce replaces h's CA (current) if that extends its life; why says why not.
func (a *Anchor) renewCAOnce(ctx context.Context, h *hosted, current *identity.CA) (renewed bool, why string) {
	if h.domain == a.meta.Mesh {
		return false, "the root scope's CA is rotated by an admin: canton mesh rotate-root"
	}
	parent, err := a.parentCA(ctx, h)
	if err != nil {
		return false, "parent scope's CA: " + err.Error()
	}
	capAt := parent.Cert.NotAfter
	for _, c := range parent.Parents {
		if c.NotAfter.Before(capAt) {
			capAt = c.NotAfter
		}
	}
	if !capAt.After(current.Cert.NotAfter) {
		return false, "the parent scope's CA expires first (" + capAt.UTC().Format(time.RFC3339) + "); waiting for it to renew"
	}
	resp, err := a.rotateCA(ctx, h, a.scopeCATTL())
	if err != nil {
		return false, err.Error()
	}
	a.log.Info("scope CA renewed", "scope", h.domain, "serial", resp.Serial, "not_after", time.Unix(resp.NotAfterUnix, 0).UTC())
	return true, ""
}

// RotateCA replaces a scope's CA with a new intermediate under the same root
// (see rotateCA). It runs on an anchor of the scope; others forward.
func (s *server) RotateCA(ctx context.Context, req *apipb.RotateCARequest) (*apipb.RotateCAResponse, error) {
	a := s.a
	if c := callerFrom(ctx); c.role != roleAdmin && c.role != roleAnchor {
		return nil, status.Error(codes.PermissionDenied, "rotate CA: admin only")
	}
	domain := strings.TrimSuffix(strings.ToLower(req.Scope), ".")
	ttl := scopeCATTL
	if req.TtlSeconds != 0 {
		ttl = time.Duration(req.TtlSeconds) * time.Second
	}
	if ttl < minScopeCATTL {
		return nil, status.Errorf(codes.InvalidArgument, "rotate CA of %s: ttl %s is shorter than %s", domain, ttl, minScopeCATTL)
	}
	h, remote, err := a.governing(domain)
	if err != nil {
		return nil, statusOf(err)
	}
	if h == nil {
		return forwardTo(ctx, a, remote, func(ctx context.Context, c apipb.AnchorClient) (*apipb.RotateCAResponse, error) {
			return c.RotateCA(ctx, req)
		})
	}
	if h.domain != domain {
		return nil, status.Errorf(codes.InvalidArgument, "rotate CA: %s is a namespace of scope %s, not a scope; rotate the CA of %s", domain, h.domain, h.domain)
	}
	return a.rotateCA(ctx, h, ttl)
}

// rotateCA creates a new CA for scope h, signed by the CA of its parent scope
// (for the root scope: by the CA sealed in it, the mesh root or the offline
// root's intermediate), and replaces the scope's CertificateAuthority with it
// if nobody changed it meanwhile. The root stays the same, so every
// certificate the old CA issued stays valid until it expires; new
// certificates come from the new CA.
func (a *Anchor) rotateCA(ctx context.Context, h *hosted, ttl time.Duration) (*apipb.RotateCAResponse, error) {
	if err := a.readIndex(ctx, h); err != nil {
		return nil, statusOf(err)
	}
	cur, ok := h.state.Get("CertificateAuthority", h.domain, caName)
	if !ok {
		return nil, statusOf(&unavailableError{fmt.Sprintf("scope %s has no CA yet; retry in a moment", h.domain)})
	}
	old, err := a.scopeCA(h)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "rotate CA: %v", err)
	}
	signer := old
	if h.domain != a.meta.Mesh {
		if signer, err = a.parentCA(ctx, h); err != nil {
			return nil, statusOf(err)
		}
	}
	ca, err := signer.NewIntermediate(h.domain, ttl, time.Now())
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "rotate CA of %s: %v", h.domain, err)
	}
	if !bytes.Equal(ca.Root().Raw, old.Root().Raw) && !identity.InBundle(ca.TrustBundle(), old.Root()) {
		return nil, status.Errorf(codes.FailedPrecondition, "rotate CA of %s: the new CA would chain to root %q, which neither is the current root (%q) nor trusts it; rotate the root with 'canton mesh rotate-root'", h.domain, ca.Root().Subject.CommonName, old.Root().Subject.CommonName)
	}
	obj, err := caObject(h.domain, ca, a.kek)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "rotate CA of %s: %v", h.domain, err)
	}
	version := cur.Version
	res, err := a.propose(ctx, h, scope.Mutation{Op: scope.OpPut, Proposer: a.proposer(), Objects: []resource.Object{obj}, IfVersions: []*uint64{&version}})
	if err != nil {
		return nil, statusOf(err)
	}
	a.log.Info("scope CA rotated", "scope", h.domain, "previous_serial", old.Cert.SerialNumber.Text(16),
		"serial", ca.Cert.SerialNumber.Text(16), "issuer", signer.Cert.Subject.CommonName, "not_after", ca.Cert.NotAfter)
	if !identity.SameCerts(ca.TrustBundle(), old.TrustBundle()) || len(ca.TrustBundle()) > 1 {
		// A root rotation (started, finished or in progress: resuming an
		// interrupted cascade): the scopes below follow (see root_rotate.go).
		if _, err := a.cascadeRotation(ctx, h); err != nil {
			return nil, err
		}
	}
	return &apipb.RotateCAResponse{
		Revision:       res.Revision,
		Scope:          h.domain,
		PreviousSerial: old.Cert.SerialNumber.Text(16),
		Serial:         ca.Cert.SerialNumber.Text(16),
		Issuer:         signer.Cert.Subject.CommonName,
		NotAfterUnix:   ca.Cert.NotAfter.Unix(),
	}, nil
}

// caObject seals ca under kek as the CertificateAuthority of scope domain.
func caObject(domain string, ca *identity.CA, kek []byte) (resource.Object, error) {
	sealed, err := identity.SealCA(ca, kek)
	if err != nil {
		return resource.Object{}, err
	}
	spec, err := json.Marshal(resource.CertificateAuthoritySpec{Certificates: string(sealed.Certificates), SealedKey: base64.StdEncoding.EncodeToString(sealed.SealedKey)})
	if err != nil {
		return resource.Object{}, err
	}
	return resource.Object{Kind: "CertificateAuthority", Namespace: domain, Name: caName, Spec: spec}, nil
}

// parentCA opens the CA of the scope that delegated h: locally when this
// anchor hosts the parent, else read from the parent's anchors.
func (a *Anchor) parentCA(ctx context.Context, h *hosted) (*identity.CA, error) {
	if h.parent == "" {
		return nil, fmt.Errorf("scope %s: parent unknown", h.domain)
	}
	if p, ok := a.scope(h.parent); ok {
		return a.scopeCA(p)
	}
	_, remote, err := a.governing(h.parent)
	if err != nil {
		return nil, err
	}
	resp, err := forwardTo(ctx, a, remote, func(ctx context.Context, c apipb.AnchorClient) (*apipb.GetResponse, error) {
		return c.Get(ctx, &apipb.GetRequest{Kind: "CertificateAuthority", Namespace: h.parent, Name: caName})
	})
	if err != nil {
		return nil, fmt.Errorf("parent CA of %s: %w", h.domain, err)
	}
	objs, err := decodeObjects(resp.Objects)
	if err != nil || len(objs) != 1 {
		return nil, fmt.Errorf("parent CA of %s: malformed answer", h.domain)
	}
	return openCAObject(objs[0], a.kek)
}

// rootCA is the CA that signs anchors' certificates: the root scope's CA when
// this anchor hosts the root scope and it is sealed (it follows root
// rotations), else the mesh CA on the bootstrap anchor's disk.
func (a *Anchor) rootCA() (*identity.CA, error) {
	if h, ok := a.scope(a.meta.Mesh); ok {
		if ca, err := a.scopeCA(h); err == nil {
			return ca, nil
		}
	}
	ca, err := identity.LoadCA(a.cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("anchor %s holds neither a sealed root scope CA nor the mesh CA", a.meta.ID)
	}
	return ca, nil
}

// signWorkload signs a workload CSR with the CA of the scope that governs the
// identity's namespace. The chain sent back holds the scope CAs below the
// root (and, during a root rotation, the new root certified by the old one);
// the bundle holds the root, or the old and new roots during a rotation.
func signWorkload(ca *identity.CA, csr []byte, want identity.ID, ttl time.Duration) (chain, bundle [][]byte, err error) {
	cert, err := ca.SignCSR(csr, want, ttl, time.Now())
	if err != nil {
		return nil, nil, err
	}
	return derChain(cert, ca), derCerts(ca.TrustBundle()), nil
}

// derChain is what a certificate issued by ca presents: itself, then ca's
// Chain (the scope CAs below the root, then any cross certificate).
func derChain(cert *x509.Certificate, ca *identity.CA) [][]byte {
	return append([][]byte{cert.Raw}, derCerts(ca.Chain())...)
}

func derCerts(certs []*x509.Certificate) [][]byte {
	out := make([][]byte, 0, len(certs))
	for _, c := range certs {
		out = append(out, c.Raw)
	}
	return out
}

// holdsRootCA reports whether the mesh root CA's key is in this anchor's data dir.
func (a *Anchor) holdsRootCA() bool {
	_, err := os.Stat(filepath.Join(a.cfg.DataDir, "ca.key"))
	return err == nil
}
