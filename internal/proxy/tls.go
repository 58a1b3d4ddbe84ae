package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"canton.dev/canton/internal/filter"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/proxy/route"
)

// secret is a compiled SDS Secret: a key pair, a trust bundle with SAN matchers, or both.
type secret struct {
	cert *tls.Certificate
	ca   *x509.CertPool
	sans []sanMatcher
}

func dataSource(d *corev3.DataSource, field string) ([]byte, error) {
	switch s := d.GetSpecifier().(type) {
	case *corev3.DataSource_InlineBytes:
		return s.InlineBytes, nil
	case *corev3.DataSource_InlineString:
		return []byte(s.InlineString), nil
	}
	return nil, fmt.Errorf("%s: only inline_bytes and inline_string are supported", field)
}

func compileSecret(s *tlsv3.Secret) (*secret, error) {
	out := &secret{}
	switch t := s.GetType().(type) {
	case *tlsv3.Secret_TlsCertificate:
		chain, err := dataSource(t.TlsCertificate.GetCertificateChain(), "tls_certificate.certificate_chain")
		if err != nil {
			return nil, err
		}
		key, err := dataSource(t.TlsCertificate.GetPrivateKey(), "tls_certificate.private_key")
		if err != nil {
			return nil, err
		}
		c, err := tls.X509KeyPair(chain, key)
		if err != nil {
			return nil, fmt.Errorf("tls_certificate: %w", err)
		}
		out.cert = &c
	case *tlsv3.Secret_ValidationContext:
		if err := compileValidation(t.ValidationContext, "validation_context", out); err != nil {
			return nil, err
		}
	default:
		return nil, errors.New("type: only tls_certificate and validation_context secrets are supported")
	}
	return out, nil
}

func compileValidation(v *tlsv3.CertificateValidationContext, field string, out *secret) error {
	if v.GetTrustedCa() != nil {
		pem, err := dataSource(v.GetTrustedCa(), field+".trusted_ca")
		if err != nil {
			return err
		}
		out.ca = x509.NewCertPool()
		if !out.ca.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s.trusted_ca: no PEM certificate", field)
		}
	}
	for i, m := range v.GetMatchTypedSubjectAltNames() {
		f := fmt.Sprintf("%s.match_typed_subject_alt_names[%d]", field, i)
		sm, err := route.CompileStringMatcher(m.GetMatcher(), f+".matcher")
		if err != nil {
			return err
		}
		if m.GetSanType() == tlsv3.SubjectAltNameMatcher_SAN_TYPE_UNSPECIFIED || m.GetSanType() == tlsv3.SubjectAltNameMatcher_OTHER_NAME {
			return fmt.Errorf("%s.san_type: %v is not supported", f, m.GetSanType())
		}
		out.sans = append(out.sans, sanMatcher{kind: m.GetSanType(), m: sm})
	}
	return nil
}

type sanMatcher struct {
	kind tlsv3.SubjectAltNameMatcher_SanType
	m    route.StringMatcher
}

// matchSANs reports whether any SAN of cert matches any matcher (true when there are none).
func matchSANs(cert *x509.Certificate, ms []sanMatcher) bool {
	if len(ms) == 0 {
		return true
	}
	for i := range ms {
		m := &ms[i]
		switch m.kind {
		case tlsv3.SubjectAltNameMatcher_URI:
			for _, u := range cert.URIs {
				if m.m.Match(u.String()) {
					return true
				}
			}
		case tlsv3.SubjectAltNameMatcher_DNS:
			for _, d := range cert.DNSNames {
				if m.m.Match(d) {
					return true
				}
			}
		case tlsv3.SubjectAltNameMatcher_EMAIL:
			for _, e := range cert.EmailAddresses {
				if m.m.Match(e) {
					return true
				}
			}
		case tlsv3.SubjectAltNameMatcher_IP_ADDRESS:
			for _, ip := range cert.IPAddresses {
				if m.m.Match(ip.String()) {
					return true
				}
			}
		}
	}
	return false
}

// tlsContext is a compiled CommonTlsContext: which secrets to use, looked up in the current snapshot at
// every handshake so rotated secrets apply to new connections at once.
type tlsContext struct {
	certSecret        string // SDS name of the key pair
	caSecret          string // SDS name of the trust bundle, empty: no verification of the peer
	sans              []sanMatcher
	alpn              []string
	minVersion        uint16
	maxVersion        uint16
	requireClientCert bool
	sni               string
}

var tlsVersions = map[tlsv3.TlsParameters_TlsProtocol]uint16{
	tlsv3.TlsParameters_TLS_AUTO: 0, tlsv3.TlsParameters_TLSv1_2: tls.VersionTLS12, tlsv3.TlsParameters_TLSv1_3: tls.VersionTLS13,
}

func compileCommonTLS(c *tlsv3.CommonTlsContext, field string) (*tlsContext, []string, error) {
	t := &tlsContext{alpn: c.GetAlpnProtocols(), minVersion: tls.VersionTLS12}
	var names []string
	certs := c.GetTlsCertificateSdsSecretConfigs()
	if len(certs) > 1 {
		return nil, nil, fmt.Errorf("%s.tls_certificate_sds_secret_configs: at most one is supported", field)
	}
	if len(certs) == 1 {
		if err := checkSDS(certs[0], field+".tls_certificate_sds_secret_configs[0]"); err != nil {
			return nil, nil, err
		}
		t.certSecret = certs[0].GetName()
		names = append(names, t.certSecret)
	}
	var sds *tlsv3.SdsSecretConfig
	switch v := c.GetValidationContextType().(type) {
	case *tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig:
		sds = v.ValidationContextSdsSecretConfig
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		sds = v.CombinedValidationContext.GetValidationContextSdsSecretConfig()
		if d := v.CombinedValidationContext.GetDefaultValidationContext(); d != nil {
			s := &secret{}
			if err := compileValidation(d, field+".combined_validation_context.default_validation_context", s); err != nil {
				return nil, nil, err
			}
			if s.ca != nil {
				return nil, nil, fmt.Errorf("%s.combined_validation_context.default_validation_context.trusted_ca: must come from SDS", field)
			}
			t.sans = s.sans
		}
	case nil:
	default:
		return nil, nil, fmt.Errorf("%s: validation_context must come from SDS", field)
	}
	if sds != nil {
		if err := checkSDS(sds, field+".validation_context_sds_secret_config"); err != nil {
			return nil, nil, err
		}
		t.caSecret = sds.GetName()
		names = append(names, t.caSecret)
	}
	if p := c.GetTlsParams(); p != nil {
		t.minVersion = max(tlsVersions[p.GetTlsMinimumProtocolVersion()], tls.VersionTLS12)
		t.maxVersion = tlsVersions[p.GetTlsMaximumProtocolVersion()]
		if p.GetTlsMinimumProtocolVersion() == tlsv3.TlsParameters_TLSv1_0 || p.GetTlsMinimumProtocolVersion() == tlsv3.TlsParameters_TLSv1_1 {
			return nil, nil, fmt.Errorf("%s.tls_params.tls_minimum_protocol_version: below TLS 1.2 is not supported", field)
		}
	}
	return t, names, nil
}

func checkSDS(s *tlsv3.SdsSecretConfig, field string) error {
	if s.GetName() == "" {
		return fmt.Errorf("%s.name: empty", field)
	}
	if cs := s.GetSdsConfig(); cs != nil && cs.GetAds() == nil {
		return fmt.Errorf("%s.sds_config: only ads is supported", field)
	}
	return nil
}

// upstreamTLSContext compiles a cluster's transport socket (an UpstreamTlsContext).
func upstreamTLSContext(ts *corev3.TransportSocket) (*tlsContext, error) {
	up := &tlsv3.UpstreamTlsContext{}
	if err := ts.GetTypedConfig().UnmarshalTo(up); err != nil {
		return nil, errors.New("transport_socket.typed_config: must be an UpstreamTlsContext")
	}
	tc, _, err := compileCommonTLS(up.GetCommonTlsContext(), "transport_socket.typed_config.common_tls_context")
	if err != nil {
		return nil, err
	}
	tc.sni = up.GetSni()
	return tc, nil
}

// secrets returns the key pair and trust bundle of t from the current snapshot.
func (p *Proxy) secrets(t *tlsContext) (*tls.Certificate, *x509.CertPool, []sanMatcher, error) {
	s := p.snap.Load()
	var cert *tls.Certificate
	if t.certSecret != "" {
		sec := p.lookupSecret(s, t.certSecret)
		if sec == nil || sec.cert == nil {
			return nil, nil, nil, fmt.Errorf("secret %q (key pair) not received yet", t.certSecret)
		}
		cert = sec.cert
	}
	var ca *x509.CertPool
	sans := t.sans
	if t.caSecret != "" {
		sec := p.lookupSecret(s, t.caSecret)
		if sec == nil || sec.ca == nil {
			return nil, nil, nil, fmt.Errorf("secret %q (trust bundle) not received yet", t.caSecret)
		}
		ca = sec.ca
		sans = append(sans[:len(sans):len(sans)], sec.sans...)
	}
	return cert, ca, sans, nil
}

// serverTLS returns the downstream TLS configuration of a filter chain.
func (p *Proxy) serverTLS(t *tlsContext, defaultALPN []string) *tls.Config {
	return &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cert, ca, sans, err := p.secrets(t)
		if err != nil {
			return nil, err
		}
		if cert == nil {
			return nil, errors.New("no server certificate configured")
		}
		cfg := &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: t.minVersion, MaxVersion: t.maxVersion, NextProtos: t.alpn}
		if len(cfg.NextProtos) == 0 {
			cfg.NextProtos = defaultALPN
		}
		if ca != nil {
			cfg.ClientCAs = ca
			cfg.ClientAuth = tls.VerifyClientCertIfGiven
			if t.requireClientCert {
				cfg.ClientAuth = tls.RequireAndVerifyClientCert
			}
			cfg.VerifyPeerCertificate = func(_ [][]byte, chains [][]*x509.Certificate) error {
				if len(chains) == 0 {
					return nil // no client certificate (allowed unless required, checked by crypto/tls)
				}
				return checkPeer(chains, sans, "client")
			}
		} else if t.requireClientCert {
			cfg.ClientAuth = tls.RequireAnyClientCert
		}
		return cfg, nil
	}}
}

// clientTLS returns the upstream TLS configuration of a cluster (UpstreamTlsContext).
func (p *Proxy) clientTLS(t *tlsContext) *tls.Config {
	return &tls.Config{
		ServerName: t.sni,
		MinVersion: t.minVersion,
		MaxVersion: t.maxVersion,
		NextProtos: t.alpn,
		// Verification against the SDS trust bundle happens in VerifyConnection, so that the bundle
		// current at handshake time is used. Without a validation context the upstream certificate is
		// not verified, as in Envoy.
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _, _, err := p.secrets(t)
			if err != nil {
				return nil, err
			}
			if cert == nil {
				return &tls.Certificate{}, nil
			}
			return cert, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, ca, sans, err := p.secrets(t)
			if err != nil {
				return err
			}
			if ca == nil {
				return nil
			}
			if len(cs.PeerCertificates) == 0 {
				return errors.New("upstream sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			chains, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: ca, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			if err != nil {
				return fmt.Errorf("upstream certificate: %w", err)
			}
			return checkPeer(chains, sans, "upstream")
		},
	}
}

// mesh reports whether an upstream TLS context reaches a proxy of the mesh: mutual TLS (a client
// certificate, a trust bundle) with the peer matched by URI SANs (SPIFFE IDs).
func (t *tlsContext) mesh() bool {
	if t.certSecret == "" || t.caSecret == "" {
		return false
	}
	for _, m := range t.sans {
		if m.kind == tlsv3.SubjectAltNameMatcher_URI {
			return true
		}
	}
	return false
}

// checkPeer checks a peer whose certificate chains crypto/x509 verified against the trust bundle (who
// names the peer in errors: "client" or "upstream"). A peer presenting a SPIFFE ID must hold a valid
// X.509 SVID, the only kind of certificate the mesh issues: exactly one URI SAN that is a SPIFFE ID
// with a path, not a CA, no keyCertSign or cRLSign, and a trust domain within the URI name constraints
// of every CA of its chain (identity.VerifiedID; crypto/x509 enforces the constraints too, this check
// does not depend on it). A certificate without a SPIFFE ID (an external server's, verified against
// a CA bundle the configuration gives) is left to the SAN matchers, as in Envoy; it never yields a
// principal (peerOf). Then one of its SANs must match one of sans, if any.
func checkPeer(chains [][]*x509.Certificate, sans []sanMatcher, who string) error {
	leaf := chains[0][0]
	if hasSPIFFEID(leaf) {
		if _, err := identity.VerifiedID(chains); err != nil {
			return fmt.Errorf("%s certificate is not a valid SPIFFE SVID of the mesh: %w", who, err)
		}
	}
	if !matchSANs(leaf, sans) {
		return fmt.Errorf("%s certificate subject alternative names do not match", who)
	}
	return nil
}

// hasSPIFFEID reports whether a certificate names any spiffe:// URI.
func hasSPIFFEID(c *x509.Certificate) bool {
	for _, u := range c.URIs {
		if strings.EqualFold(u.Scheme, "spiffe") {
			return true
		}
	}
	return false
}

// peerOf returns the verified SPIFFE identity of a TLS connection's client, if any: the peer's
// address always, and its principal and namespace when crypto/tls verified its chain and the leaf is a
// valid SVID of it (checkPeer refused the handshake otherwise; this is checked again, not assumed).
func peerOf(cs *tls.ConnectionState, remote net.Addr) (filter.Peer, bool) {
	var p filter.Peer
	if ap, err := netipAddr(remote); err == nil {
		p.IP = ap
	}
	if cs == nil || len(cs.VerifiedChains) == 0 {
		return p, false
	}
	id, err := identity.VerifiedID(cs.VerifiedChains)
	if err != nil {
		return p, false
	}
	p.Principal = id.TrustDomain + id.Path
	p.Namespace = id.TrustDomain // the namespace domain of a Canton SPIFFE ID
	return p, true
}
