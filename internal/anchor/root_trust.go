package anchor

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"time"

	"canton.dev/canton/internal/identity"
)

// Anchors follow the mesh trust bundle live. The bundle travels with every
// scope CA (CertificateAuthority "ca", see identity.SealedCA): a root
// rotation commits {old, new} in the root scope's CA and cascades it down to
// every scope CA, so an anchor learns it from the highest scope it hosts —
// the root scope itself when it hosts it, a child scope's CA (which the
// cascade re-issued from its parent) otherwise — with no extra call to the
// root scope's anchors. followTrust re-reads it (in memory, opened CAs are
// cached per version) every trustPoll and hands it to the TLS Source of the
// anchor's port and of its outgoing connections, so handshakes from then on
// verify peers against it. It also renews the anchor's own certificate when
// it no longer chains to the current root or passed half its lifetime.

const (
	trustPoll  = 250 * time.Millisecond
	renewRetry = 2 * time.Second
)

func (a *Anchor) followTrust() {
	tick := time.NewTicker(trustPoll)
	defer tick.Stop()
	var nextRenew time.Time
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-tick.C:
		}
		ca, ok := a.highestScopeCA()
		if !ok {
			continue
		}
		bundle := ca.TrustBundle()
		if a.tls.SetBundle(bundle) {
			a.log.Info("trust bundle changed", "roots", len(bundle), "root", ca.Root().Subject.CommonName)
			a.saveBundle(bundle)
			a.repinJoinToken(bundle, ca.Root())
		}
		now := time.Now()
		if now.Before(nextRenew) || !a.needsRenewal(ca.Root(), now) {
			continue
		}
		if err := a.renewOwnCertificate(a.ctx); err != nil {
			a.log.Warn("anchor certificate not renewed", "err", err)
			nextRenew = now.Add(renewRetry)
		}
	}
}

// highestScopeCA opens the CA of the hosted scope closest to the root that
// has one.
func (a *Anchor) highestScopeCA() (*identity.CA, bool) {
	a.mu.RLock()
	var best *hosted
	for _, h := range a.scopes {
		if best == nil || labels(h.domain) < labels(best.domain) ||
			labels(h.domain) == labels(best.domain) && h.domain < best.domain {
			if _, ok := h.state.Get("CertificateAuthority", h.domain, caName); ok {
				best = h
			}
		}
	}
	a.mu.RUnlock()
	if best == nil {
		return nil, false
	}
	ca, err := a.scopeCA(best)
	if err != nil {
		a.log.Debug("scope CA not readable", "scope", best.domain, "err", err)
		return nil, false
	}
	return ca, true
}

func labels(domain string) int { return strings.Count(domain, ".") + 1 }

// needsRenewal reports whether the anchor's certificate must be renewed: it
// does not chain to root (the root the scope CAs now chain to), or it is past
// half its lifetime.
func (a *Anchor) needsRenewal(root *x509.Certificate, now time.Time) bool {
	c := a.tls.Credentials()
	if c == nil || len(c.Chain) == 0 {
		return false
	}
	if !identity.ChainsTo(c.Chain, root, now) {
		return true
	}
	leaf := c.Chain[0]
	return now.After(leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2))
}

// saveBundle rewrites the credentials file with the new bundle, so that a
// restarted anchor trusts it from its first handshake, before its scopes'
// state is loaded.
func (a *Anchor) saveBundle(bundle []*x509.Certificate) {
	c := a.tls.Credentials()
	if c == nil {
		return
	}
	next := &identity.Credentials{Chain: c.Chain, Key: c.Key, Bundle: bundle}
	if err := next.Save(filepath.Join(a.cfg.DataDir, credentialsFile)); err != nil {
		a.log.Warn("trust bundle not saved", "err", err)
		return
	}
	a.tls.SetCredentials(next)
}

// repinJoinToken keeps the join token usable across a root rotation: once the root it pins
// has left the trust bundle (the rotation finished), join.token keeps its secret and pins
// root, the root the scope CAs chain to now. Tokens handed out before then stop admitting
// anyone (their pin is the retired root's), so the new join.token must be handed out again.
// An anchor without a join token (one that joined) has nothing to do.
func (a *Anchor) repinJoinToken(bundle []*x509.Certificate, root *x509.Certificate) {
	path := filepath.Join(a.cfg.DataDir, joinTokenFile)
	text, err := os.ReadFile(path)
	if err != nil {
		return
	}
	tok, err := identity.ParseJoinToken(strings.TrimSpace(string(text)))
	if err != nil {
		a.log.Warn("join token not re-pinned", "file", path, "err", err)
		return
	}
	for _, c := range bundle {
		if identity.SPKIPin(c) == tok.CAPin {
			return // still trusted
		}
	}
	tok.CAPin = identity.SPKIPin(root)
	if err := writeFileAtomic(path, []byte(tok.String()+"\n"), 0o600); err != nil {
		a.log.Warn("join token not re-pinned", "file", path, "err", err)
		return
	}
	a.log.Info("join token re-pinned to the new root; hand out the new join.token (tokens pinning the retired root no longer work)",
		"file", path, "root", root.Subject.CommonName)
}
