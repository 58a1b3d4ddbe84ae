package proxy

import (
	"context"
	"maps"
	"slices"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"

	"canton.dev/canton/internal/proxy/subset"
	"canton.dev/canton/internal/proxy/xdsclient"
)

// SecretSource supplies secrets locally. A secret name it knows is served from it and never
// requested from the control plane; the proxy re-reads it whenever Changed fires (rotation), applying
// the new certificate to new handshakes without dropping established connections.
//
// Secret must not modify a returned message afterwards (return a new one on change). Changed may return
// the same channel every time (a value is sent on change) or a new one that is closed on the next
// change; the proxy calls it again after each event, before re-reading.
type SecretSource interface {
	Secret(name string) (*tlsv3.Secret, bool)
	Changed() <-chan struct{}
}

// CertificateSecret returns a tls_certificate secret with the PEM chain and key inline.
func CertificateSecret(name string, chainPEM, keyPEM []byte) *tlsv3.Secret {
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: inlineBytes(chainPEM), PrivateKey: inlineBytes(keyPEM)}}}
}

// ValidationSecret returns a validation_context secret whose trusted_ca is the PEM bundle inline.
func ValidationSecret(name string, bundlePEM []byte) *tlsv3.Secret {
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: inlineBytes(bundlePEM)}}}
}

func inlineBytes(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: slices.Clone(b)}}
}

// StaticSecrets is a SecretSource holding secrets set in memory, safe for concurrent use. Changed
// returns a channel closed at the next Set. The zero value is ready to use.
type StaticSecrets struct {
	mu      sync.Mutex
	secrets map[string]*tlsv3.Secret
	changed chan struct{}
}

// NewStaticSecrets returns an empty StaticSecrets.
func NewStaticSecrets() *StaticSecrets {
	return &StaticSecrets{secrets: map[string]*tlsv3.Secret{}, changed: make(chan struct{})}
}

// Set stores (a copy of) sec under sec.Name, replacing any secret of that name, and fires Changed.
func (s *StaticSecrets) Set(sec *tlsv3.Secret) {
	c := proto.Clone(sec).(*tlsv3.Secret)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.secrets == nil {
		s.secrets = map[string]*tlsv3.Secret{}
	}
	s.secrets[c.GetName()] = c
	if s.changed != nil {
		close(s.changed)
	}
	s.changed = make(chan struct{})
}

// Secret returns the secret stored under name. The caller must not modify it.
func (s *StaticSecrets) Secret(name string) (*tlsv3.Secret, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, ok := s.secrets[name]
	return sec, ok
}

// Changed returns a channel that is closed at the next Set.
func (s *StaticSecrets) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return s.changed
}

// localSecrets is what the proxy took from its SecretSource: the referenced names the source knows,
// and those of them that compiled (a name in known but not in secrets failed to compile and has no
// previous good version; handshakes needing it fail).
type localSecrets struct {
	known   map[string]bool
	raw     map[string]*tlsv3.Secret
	secrets map[string]*secret
}

func emptyLocalSecrets() *localSecrets {
	return &localSecrets{known: map[string]bool{}, raw: map[string]*tlsv3.Secret{}, secrets: map[string]*secret{}}
}

// lookupSecret returns the compiled secret name: from the local source if it knows the name, else from
// the snapshot (SDS). Nil if neither has it.
func (p *Proxy) lookupSecret(s *snapshot, name string) *secret {
	return secretIn(s, p.local.Load(), name)
}

func secretIn(s *snapshot, l *localSecrets, name string) *secret {
	if l.known[name] {
		return l.secrets[name]
	}
	return s.secrets[name]
}

// readLocal reads from the local source every secret name s refers to, reusing what the published
// state compiled. A local secret that does not compile is logged and its previous version (if any)
// kept: it is the workload's own configuration, not the control plane's, so it never NACKs an xDS
// response. It reports whether the set of names served locally changed (subscriptions must follow).
// The caller holds p.mu and publishes the result (p.local) together with s.
func (p *Proxy) readLocal(s *snapshot) (*localSecrets, bool) {
	old := p.local.Load()
	src := p.opts.LocalSecrets
	if src == nil {
		return old, false
	}
	next := emptyLocalSecrets()
	for _, name := range referencedSecrets(s) {
		m, ok := src.Secret(name)
		if !ok || m == nil {
			continue
		}
		next.known[name] = true
		if prev := old.raw[name]; prev != nil && (prev == m || proto.Equal(prev, m)) {
			next.raw[name] = prev
			if c := old.secrets[name]; c != nil {
				next.secrets[name] = c
			}
			continue
		}
		c, err := compileLocalSecret(m)
		if err != nil {
			p.log.Error("local secret rejected, keeping the previous version", "secret", name, "err", err)
			if c := old.secrets[name]; c != nil {
				next.raw[name], next.secrets[name] = old.raw[name], c
			}
			continue
		}
		next.raw[name], next.secrets[name] = m, c
		if old.known[name] {
			p.log.Info("local secret rotated", "secret", name)
		}
	}
	return next, !maps.Equal(old.known, next.known)
}

func compileLocalSecret(m *tlsv3.Secret) (*secret, error) {
	if err := subset.Check(m); err != nil {
		return nil, err
	}
	return compileSecret(m)
}

// watchLocal re-reads the local secrets whenever the source says they changed, until ctx is done.
func (p *Proxy) watchLocal(ctx context.Context, src SecretSource) {
	var closedCh <-chan struct{}
	for {
		ch := src.Changed()
		if ch != nil && ch == closedCh {
			p.log.Warn("local secret source: its Changed channel stays closed; rotation is no longer watched")
			return
		}
		if !p.refreshLocal() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ch:
			closedCh = nil
			if !ok {
				closedCh = ch
			}
		}
	}
}

// refreshLocal re-reads the local secrets for the current snapshot, publishes them, starts the
// listeners that were waiting for them (warming) and updates the subscriptions if the set of local
// names changed. It reports false once the proxy is shutting down.
func (p *Proxy) refreshLocal() bool {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return false
	}
	s := p.snap.Load()
	local, resubscribe := p.readLocal(s)
	starts, err := p.prepareListeners(s, local)
	if err != nil {
		// Only a bind failure of a listener that just finished warming: it stays down until the next
		// update, as a NACKed listener would; everything else proceeds.
		p.log.Error("listener start after local secret change", "err", err)
		starts = nil
	}
	p.local.Store(local)
	if err == nil {
		p.commitListeners(s, local, starts)
	}
	p.mu.Unlock()
	if resubscribe {
		p.xds.Resubscribe()
	}
	return true
}

// Subscriptions implements xdsclient.Resubscriber: the names the current snapshot needs from the control
// plane.
func (p *Proxy) Subscriptions() xdsclient.Subscriptions {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.subscriptions(p.snap.Load())
}

// subscriptions lists the RDS, EDS and SDS names s refers to, less the secrets served locally.
func (p *Proxy) subscriptions(s *snapshot) xdsclient.Subscriptions {
	subs := subscriptions(s)
	l := p.local.Load()
	if len(l.known) > 0 {
		subs[xdsclient.SecretType] = slices.DeleteFunc(subs[xdsclient.SecretType], func(n string) bool { return l.known[n] })
		if len(subs[xdsclient.SecretType]) == 0 {
			delete(subs, xdsclient.SecretType)
		}
	}
	return subs
}

func referencedSecrets(s *snapshot) []string {
	return subscriptions(s)[xdsclient.SecretType]
}
