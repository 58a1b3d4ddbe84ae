package identity

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// All of the mesh's TLS is TLS 1.3 between Canton components (and Envoy,
// which supports it), so nothing older is offered.
const minTLSVersion = tls.VersionTLS13

// ServerTLS returns the configuration of a server with credentials c (the
// anchors' one gRPC port). It presents c's chain followed by the bundle root
// that issued it, so that a client holding only a join token can check the
// root against its pin (PinnedClientTLS). Client certificates are optional,
// so that a joining node can call Join, but one that is given is verified
// against c.Bundle (name constraints included) and must be a well-formed
// SVID; handlers then learn the caller with PeerID. NextProtos is h2.
//
// c should come from ParseCredentials or CA.NewCredentials; if it is not
// usable, every handshake fails with the reason.
func ServerTLS(c *Credentials) *tls.Config { return ServerTLSFrom(NewSource(c)) }

// ServerTLSFrom is ServerTLS with credentials and bundle read from s at
// each handshake, so that they can change (renewal, root rotation) without
// restarting the server.
func ServerTLSFrom(s *Source) *tls.Config {
	return &tls.Config{
		MinVersion: minTLSVersion,
		NextProtos: []string{"h2"},
		// Handshakes use the configuration GetConfigForClient builds from
		// s's current state; GetCertificate serves direct callers.
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			st := s.load()
			return st.cert, st.certErr
		},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			st := s.load()
			return &tls.Config{
				MinVersion: minTLSVersion,
				NextProtos: []string{"h2"},
				GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
					return st.cert, st.certErr
				},
				ClientAuth: tls.VerifyClientCertIfGiven,
				ClientCAs:  st.roots,
				VerifyConnection: func(cs tls.ConnectionState) error {
					if len(cs.PeerCertificates) == 0 {
						return nil // token-only caller; PeerID will fail for it
					}
					_, err := PeerID(cs)
					return err
				},
			}, nil
		},
	}
}

// ClientTLS returns the configuration of a client with credentials c. It
// presents c's chain and accepts a server whose chain verifies against
// c.Bundle at the current time (name constraints included), whose leaf is a
// well-formed SVID, and whose SPIFFE ID accept approves (for instance
// AcceptAnchors(mesh)). Host names are not checked: the SPIFFE ID is the
// server's identity. A nil accept refuses every server. NextProtos is h2.
func ClientTLS(c *Credentials, accept func(ID) error) *tls.Config {
	return ClientTLSFrom(NewSource(c), accept)
}

// ClientTLSFrom is ClientTLS with credentials and bundle read from s at each
// handshake.
func ClientTLSFrom(s *Source, accept func(ID) error) *tls.Config {
	return &tls.Config{
		MinVersion: minTLSVersion,
		NextProtos: []string{"h2"},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			st := s.load()
			return st.cert, st.certErr
		},
		// The standard verification checks host names, which SPIFFE
		// identities do not use; VerifyConnection verifies the chain instead.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := verifyChain(cs.PeerCertificates, s.load().roots, x509.ExtKeyUsageServerAuth, time.Now())
			if err != nil {
				return fmt.Errorf("identity: server certificate: %w", err)
			}
			if accept == nil {
				return fmt.Errorf("identity: server %s: no accept policy configured", id)
			}
			if err := accept(id); err != nil {
				return fmt.Errorf("identity: server %s refused: %w", id, err)
			}
			return nil
		},
	}
}

// Source holds the credentials a TLS endpoint presents and the trust bundle
// it verifies peers against, both replaceable at any time (certificate
// renewal, root rotation). Safe for concurrent use.
type Source struct {
	mu sync.Mutex // serialises writers
	v  atomic.Pointer[sourceState]
}

type sourceState struct {
	creds   *Credentials
	cert    *tls.Certificate
	certErr error
	bundle  []*x509.Certificate
	roots   *x509.CertPool
}

// NewSource returns a Source presenting c and trusting c.Bundle.
func NewSource(c *Credentials) *Source {
	s := &Source{}
	s.store(c, bundleOf(c))
	return s
}

func (s *Source) load() *sourceState { return s.v.Load() }

func (s *Source) store(c *Credentials, bundle []*x509.Certificate) {
	cert, err := tlsCertificate(c)
	s.v.Store(&sourceState{creds: c, cert: cert, certErr: err, bundle: bundle, roots: bundlePool(bundle)})
}

// Credentials returns the credentials s presents.
func (s *Source) Credentials() *Credentials { return s.load().creds }

// Bundle returns the roots s trusts.
func (s *Source) Bundle() []*x509.Certificate { return s.load().bundle }

// SetCredentials makes s present c from the next handshake on; the trusted
// bundle does not change.
func (s *Source) SetCredentials(c *Credentials) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.store(c, s.load().bundle)
}

// SetBundle makes s trust bundle from the next handshake on. It reports
// whether the bundle changed. An empty bundle is ignored (it would refuse
// every peer).
func (s *Source) SetBundle(bundle []*x509.Certificate) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.load()
	if len(bundle) == 0 || certsEqual(st.bundle, bundle) {
		return false
	}
	s.store(st.creds, bundle)
	return true
}

// PinnedClientTLS returns the configuration of a client that has no
// credentials yet, only a join token: it presents no certificate and
// accepts a server whose presented chain contains a CA certificate with
// SubjectPublicKeyInfo SHA-256 pin, to which the server's well-formed SVID
// leaf verifies (name constraints included). ServerTLS presents the root for
// this purpose. NextProtos is h2.
func PinnedClientTLS(pin [32]byte) *tls.Config {
	return &tls.Config{
		MinVersion:         minTLSVersion,
		NextProtos:         []string{"h2"},
		InsecureSkipVerify: true, // verified against the pin in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			certs := cs.PeerCertificates
			if len(certs) == 0 {
				return errors.New("identity: server presented no certificate")
			}
			roots := x509.NewCertPool()
			found := false
			for _, c := range certs[1:] {
				if c.IsCA && SPKIPin(c) == pin {
					roots.AddCert(c)
					found = true
				}
			}
			if !found {
				return fmt.Errorf("identity: server chain has no CA with the pinned key %x", pin)
			}
			if _, err := verifyChain(certs, roots, x509.ExtKeyUsageServerAuth, time.Now()); err != nil {
				return fmt.Errorf("identity: server certificate: %w", err)
			}
			return nil
		},
	}
}

// PeerID returns the SPIFFE ID of the peer of a connection whose certificate
// crypto/tls verified (cs.VerifiedChains), checking that the leaf is a
// well-formed SVID within the name constraints of its chain (VerifiedID).
// On a server built with ServerTLS this is the caller's
// identity; it fails when the caller presented no certificate. (A client
// built with ClientTLS has already checked the server with accept; its
// VerifiedChains are empty because it verifies the chain itself.)
func PeerID(cs tls.ConnectionState) (ID, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return ID{}, errors.New("identity: peer presented no verified certificate")
	}
	return VerifiedID(cs.VerifiedChains)
}

// verifyChain verifies that certs[0] (the leaf, then intermediates) chains
// to roots at now for usage, and that the leaf is an SVID within the name
// constraints of its chain (VerifiedID).
func verifyChain(certs []*x509.Certificate, roots *x509.CertPool, usage x509.ExtKeyUsage, now time.Time) (ID, error) {
	if len(certs) == 0 {
		return ID{}, errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	if err != nil {
		return ID{}, err
	}
	return VerifiedID(chains)
}

// tlsCertificate builds what a peer with c presents: c's chain, then the
// bundle root that issued the chain's last certificate (when the chain does
// not end at a self-signed root already).
func tlsCertificate(c *Credentials) (*tls.Certificate, error) {
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("identity: credentials not usable for TLS: %w", err)
	}
	der := make([][]byte, 0, len(c.Chain)+1)
	for _, cert := range c.Chain {
		der = append(der, cert.Raw)
	}
	last := c.Chain[len(c.Chain)-1]
	if !bytes.Equal(last.RawIssuer, last.RawSubject) || last.CheckSignatureFrom(last) != nil {
		for _, root := range c.Bundle {
			if bytes.Equal(last.RawIssuer, root.RawSubject) && last.CheckSignatureFrom(root) == nil {
				der = append(der, root.Raw)
				break
			}
		}
	}
	return &tls.Certificate{Certificate: der, PrivateKey: c.Key, Leaf: c.Chain[0]}, nil
}

func bundleOf(c *Credentials) []*x509.Certificate {
	if c == nil {
		return nil
	}
	return c.Bundle
}

func bundlePool(bundle []*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range bundle {
		pool.AddCert(c)
	}
	return pool
}
