package proxy

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"canton.dev/canton/internal/proxy/xdsclient"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t testing.TB) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns PEM chain and key for a leaf with the given DNS names and URIs.
func (ca *testCA) issue(t testing.TB, dns []string, uris ...string) (certPEM, keyPEM []byte) {
	return ca.issueWith(t, nil, dns, uris...)
}

// issueWith is issue with the certificate template changed by mutate (if not nil) before signing.
func (ca *testCA) issueWith(t testing.TB, mutate func(*x509.Certificate), dns []string, uris ...string) (certPEM, keyPEM []byte) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "leaf"},
		DNSNames: dns, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	for _, u := range uris {
		pu, _ := url.Parse(u)
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	if mutate != nil {
		mutate(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}

func keyPairSecret(name string, certPEM, keyPEM []byte) *tlsv3.Secret {
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: certPEM}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: keyPEM}}}}}
}

func caSecret(name string, caPEM []byte) *tlsv3.Secret {
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: caPEM}}}}}
}

func sds(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}
}

func TestInboundMTLSWithSPIFFEIdentity(t *testing.T) {
	ca := newCA(t)
	srvCert, srvKey := ca.issue(t, []string{"reviews.bookinfo.demo.mesh"}, "spiffe://bookinfo.demo.mesh/sa/reviews")
	cliCert, cliKey := ca.issue(t, nil, "spiffe://bookinfo.demo.mesh/sa/productpage")
	badCert, badKey := ca.issue(t, nil, "spiffe://evil.demo.mesh/sa/x")
	// Certificates that match the SAN matcher but are no valid SVIDs.
	caCliCert, caCliKey := ca.issueWith(t, asCA, nil, "spiffe://bookinfo.demo.mesh/sa/productpage")
	twoCert, twoKey := ca.issue(t, nil, "spiffe://bookinfo.demo.mesh/sa/productpage", "spiffe://evil.demo.mesh/sa/x")
	noIDCert, noIDKey := ca.issue(t, []string{"productpage.bookinfo.demo.mesh"})
	app := startUpstream(t, "app", nil)
	e := startEnv(t)
	e.set(xdsclient.SecretType, "1", keyPairSecret("svid", srvCert, srvKey), caSecret("bundle", ca.pem))
	e.set(xdsclient.ClusterType, "1", edsCluster("inbound|9080||reviews.bookinfo.demo.mesh", nil))
	e.set(xdsclient.EndpointType, "1", endpoints(t, "inbound|9080||reviews.bookinfo.demo.mesh", app.Addr()))
	e.set(xdsclient.RouteType, "1", simpleRoutes("r", "inbound|9080||reviews.bookinfo.demo.mesh"))
	l := httpListener(t, "inbound", "r", nil)
	l.TrafficDirection = corev3.TrafficDirection_INBOUND
	l.FilterChains[0].TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, &tlsv3.DownstreamTlsContext{
			RequireClientCertificate: wrapperspb.Bool(true),
			CommonTlsContext: &tlsv3.CommonTlsContext{
				TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds("svid")},
				ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
						SanType: tlsv3.SubjectAltNameMatcher_URI,
						Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://bookinfo.demo.mesh/"}}}}},
					ValidationContextSdsSecretConfig: sds("bundle")}}}})}}
	e.set(xdsclient.ListenerType, "1", l)
	e.waitACK(xdsclient.EndpointType, "1")
	addr := e.listenerAddr("inbound")

	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	mk := func(certPEM, keyPEM []byte) *http.Client {
		tc := &tls.Config{RootCAs: roots, ServerName: "reviews.bookinfo.demo.mesh"}
		if certPEM != nil {
			kp, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{kp}
		}
		return &http.Client{Timeout: wait, Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}}
	}
	resp, err := mk(cliCert, cliKey).Get("https://" + addr + "/ok")
	if err != nil {
		t.Fatalf("mTLS request: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "app /ok" || resp.ProtoMajor != 2 {
		t.Errorf("mTLS request: %d %q over HTTP/%d, want 200 over HTTP/2 (ALPN)", resp.StatusCode, body, resp.ProtoMajor)
	}
	// HTTP/1.1 over TLS: the proxy terminates TLS itself and applies the HTTP/1.1 guard.
	h1 := mk(cliCert, cliKey)
	h1.Transport.(*http.Transport).ForceAttemptHTTP2 = false
	h1.Transport.(*http.Transport).TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	if resp, err := h1.Get("https://" + addr + "/h1"); err != nil || resp.ProtoMajor != 1 || resp.StatusCode != 200 {
		t.Errorf("HTTP/1.1 over mTLS: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	kp, _ := tls.X509KeyPair(cliCert, cliKey)
	tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "reviews.bookinfo.demo.mesh",
		Certificates: []tls.Certificate{kp}, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	tc.SetDeadline(time.Now().Add(wait))
	io.WriteString(tc, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(tc), nil); err != nil || resp.StatusCode != 400 {
		t.Errorf("CL+TE over TLS: %v %v, want 400", resp, err)
	}
	tc.Close()
	if _, err := mk(nil, nil).Get("https://" + addr + "/"); err == nil {
		t.Errorf("request without a client certificate succeeded")
	}
	if _, err := mk(badCert, badKey).Get("https://" + addr + "/"); err == nil {
		t.Errorf("request with a non-matching SPIFFE ID succeeded")
	}
	for name, c := range map[string][2][]byte{"a CA certificate": {caCliCert, caCliKey}, "two URI SANs": {twoCert, twoKey},
		"no SPIFFE ID": {noIDCert, noIDKey}} {
		if _, err := mk(c[0], c[1]).Get("https://" + addr + "/"); err == nil {
			t.Errorf("request with a client certificate with %s succeeded", name)
		}
	}
	_, metrics := get(t, client(), e.p.AdminAddr(), "admin", "/stats/prometheus")
	if !strings.Contains(metrics, `source_principal="spiffe://bookinfo.demo.mesh/sa/productpage"`) ||
		!strings.Contains(metrics, `connection_security_policy="mutual_tls"`) {
		t.Errorf("peer identity not reported in metrics")
	}
	// Secrets are redacted in /config_dump.
	_, dump := get(t, client(), e.p.AdminAddr(), "admin", "/config_dump")
	if strings.Contains(dump, "PRIVATE KEY") || !strings.Contains(dump, "[redacted]") {
		t.Errorf("config_dump leaks a private key or does not redact")
	}
}

func TestUpstreamMTLS(t *testing.T) {
	ca := newCA(t)
	srvCert, srvKey := ca.issue(t, []string{"backend.test"}, "spiffe://bookinfo.demo.mesh/sa/backend")
	cliCert, cliKey := ca.issue(t, nil, "spiffe://bookinfo.demo.mesh/sa/productpage")
	kp, _ := tls.X509KeyPair(srvCert, srvKey)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "peer %s", r.TLS.PeerCertificates[0].URIs[0])
	}))
	backend.TLS = &tls.Config{Certificates: []tls.Certificate{kp}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	backend.StartTLS()
	defer backend.Close()

	e := startEnv(t)
	e.set(xdsclient.SecretType, "1", keyPairSecret("svid", cliCert, cliKey), caSecret("bundle", ca.pem))
	e.set(xdsclient.ClusterType, "1", edsCluster("c", func(c *clusterv3.Cluster) {
		c.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
			TypedConfig: mustAny(t, &tlsv3.UpstreamTlsContext{Sni: "backend.test", CommonTlsContext: &tlsv3.CommonTlsContext{
				TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds("svid")},
				ValidationContextType:          &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{ValidationContextSdsSecretConfig: sds("bundle")}}})}}
	}))
	e.set(xdsclient.EndpointType, "1", endpoints(t, "c", backend.Listener.Addr().String()))
	e.set(xdsclient.RouteType, "1", simpleRoutes("r", "c"))
	e.set(xdsclient.ListenerType, "1", httpListener(t, "l", "r", nil))
	e.waitACK(xdsclient.SecretType, "1")
	e.waitACK(xdsclient.EndpointType, "1")
	addr := e.listenerAddr("l")
	resp, body := get(t, client(), addr, "x", "/")
	if resp.StatusCode != 200 || body != "peer spiffe://bookinfo.demo.mesh/sa/productpage" {
		t.Errorf("upstream mTLS: %d %q", resp.StatusCode, body)
	}
}

// asCA makes a certificate template a CA allowed to sign certificates.
func asCA(c *x509.Certificate) {
	c.IsCA, c.BasicConstraintsValid = true, true
	c.KeyUsage |= x509.KeyUsageCertSign
}

// TestUpstreamRefusesInvalidSVID: with an upstream TLS context that verifies against the trust bundle
// and matches one SPIFFE ID (as the control plane generates it), the proxy connects only to an
// upstream whose leaf is a valid SVID with that ID. An upstream with another SPIFFE ID, a leaf that is
// a CA, or a leaf with two URI SANs (one of them the expected ID) is refused at the handshake: the
// request fails with 503 and never reaches it.
func TestUpstreamRefusesInvalidSVID(t *testing.T) {
	ca := newCA(t)
	const want = "spiffe://bookinfo.demo.mesh/sa/reviews"
	cliCert, cliKey := ca.issue(t, nil, "spiffe://bookinfo.demo.mesh/sa/productpage")
	type upstreamCase struct {
		name    string
		cert    func() ([]byte, []byte)
		wantErr string // "" when the upstream must be accepted
	}
	cases := []upstreamCase{
		{"good", func() ([]byte, []byte) { return ca.issue(t, nil, want) }, ""},
		{"wrongid", func() ([]byte, []byte) { return ca.issue(t, nil, "spiffe://bookinfo.demo.mesh/sa/ratings") },
			"subject alternative names do not match"},
		{"caleaf", func() ([]byte, []byte) { return ca.issueWith(t, asCA, nil, want) }, "is a CA certificate"},
		{"twouris", func() ([]byte, []byte) { return ca.issue(t, nil, want, "spiffe://evil.demo.mesh/sa/x") },
			"has 2 URI SANs"},
		{"signer", func() ([]byte, []byte) {
			return ca.issueWith(t, func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign }, nil, want)
		}, "key usage allows signing certificates"},
	}
	transport := mustAny(t, &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds("svid")},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
				SanType: tlsv3.SubjectAltNameMatcher_URI,
				Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: want}}}}},
			ValidationContextSdsSecretConfig: sds("bundle")}}}})
	var clusters, loads []proto.Message
	routes := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "all", Domains: []string{"*"}}}}
	backends := map[string]*upstream{}
	for _, c := range cases {
		certPEM, keyPEM := c.cert()
		kp, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		u := &upstream{name: c.name}
		u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u.count.Add(1)
			fmt.Fprint(w, u.name)
		}))
		u.TLS = &tls.Config{Certificates: []tls.Certificate{kp}}
		u.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
		u.StartTLS()
		t.Cleanup(u.Close)
		backends[c.name] = u
		clusters = append(clusters, edsCluster(c.name, func(cl *clusterv3.Cluster) {
			cl.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls",
				ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: transport}}
		}))
		loads = append(loads, endpoints(t, c.name, u.Addr()))
		routes.VirtualHosts[0].Routes = append(routes.VirtualHosts[0].Routes,
			&routev3.Route{Match: prefixMatch("/" + c.name), Action: routeTo(c.name)})
	}
	e := startEnv(t)
	e.set(xdsclient.SecretType, "1", keyPairSecret("svid", cliCert, cliKey), caSecret("bundle", ca.pem))
	e.set(xdsclient.ClusterType, "1", clusters...)
	e.set(xdsclient.EndpointType, "1", loads...)
	e.set(xdsclient.RouteType, "1", routes)
	e.set(xdsclient.ListenerType, "1", httpListener(t, "l", "r", nil))
	e.waitACK(xdsclient.SecretType, "1")
	e.waitACK(xdsclient.EndpointType, "1")
	e.waitACK(xdsclient.RouteType, "1")
	addr := e.listenerAddr("l")

	// The handshake's own verdict, from the configuration the clusters use.
	tc, err := upstreamTLSContext(&corev3.TransportSocket{ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: transport}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := backends[c.name]
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: wait}, "tcp", u.Addr(), e.p.clientTLS(tc))
			if err == nil {
				conn.Close()
			}
			if c.wantErr == "" && err != nil {
				t.Errorf("handshake with a valid SVID: %v", err)
			}
			if c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Errorf("handshake error = %v, want one containing %q", err, c.wantErr)
			}

			before := u.count.Load()
			resp, body := get(t, client(), addr, "x", "/"+c.name)
			if c.wantErr == "" {
				if resp.StatusCode != 200 || body != c.name || u.count.Load() != before+1 {
					t.Errorf("request through the proxy: %d %q, upstream saw %d requests, want 200 %q and 1", resp.StatusCode, body, u.count.Load()-before, c.name)
				}
				return
			}
			if resp.StatusCode != http.StatusServiceUnavailable || u.count.Load() != before {
				t.Errorf("request through the proxy: %d %q, upstream saw %d requests, want 503 and none", resp.StatusCode, body, u.count.Load()-before)
			}
		})
	}
}

// TestPeerOfRequiresSVID: a connection's peer has a principal only when its verified leaf is a valid
// SVID; the address is reported either way.
func TestPeerOfRequiresSVID(t *testing.T) {
	ca := newCA(t)
	parse := func(certPEM, _ []byte) *x509.Certificate {
		b, _ := pem.Decode(certPEM)
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	remote := &net.TCPAddr{IP: net.ParseIP("10.0.0.7"), Port: 4000}
	for _, tc := range []struct {
		name      string
		leaf      *x509.Certificate
		principal string // "" when the peer must have none
	}{
		{"svid", parse(ca.issue(t, nil, "spiffe://bookinfo.demo.mesh/sa/reviews")), "bookinfo.demo.mesh/sa/reviews"},
		{"ca leaf", parse(ca.issueWith(t, asCA, nil, "spiffe://bookinfo.demo.mesh/sa/reviews")), ""},
		{"two URI SANs", parse(ca.issue(t, nil, "spiffe://bookinfo.demo.mesh/sa/reviews", "spiffe://evil.demo.mesh/sa/x")), ""},
		{"no path", parse(ca.issue(t, nil, "spiffe://bookinfo.demo.mesh")), ""},
		{"not SPIFFE", parse(ca.issue(t, nil, "https://bookinfo.demo.mesh/sa/reviews")), ""},
		{"no certificate", nil, ""},
	} {
		cs := &tls.ConnectionState{}
		if tc.leaf != nil {
			cs.VerifiedChains = [][]*x509.Certificate{{tc.leaf, ca.cert}}
		}
		p, ok := peerOf(cs, remote)
		if ok != (tc.principal != "") || p.Principal != tc.principal {
			t.Errorf("%s: peer principal %q (%v), want %q", tc.name, p.Principal, ok, tc.principal)
		}
		if ok && p.Namespace != "bookinfo.demo.mesh" {
			t.Errorf("%s: peer namespace %q, want bookinfo.demo.mesh", tc.name, p.Namespace)
		}
		if p.IP.String() != "10.0.0.7" {
			t.Errorf("%s: peer address %v, want 10.0.0.7", tc.name, p.IP)
		}
	}
}

func TestTLSPassthroughBySNI(t *testing.T) {
	mk := func(name string) *httptest.Server {
		s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, name) }))
		t.Cleanup(s.Close)
		return s
	}
	a, b := mk("a"), mk("b")
	e := startEnv(t)
	e.set(xdsclient.ClusterType, "1", edsCluster("a", nil), edsCluster("b", nil))
	e.set(xdsclient.EndpointType, "1", endpoints(t, "a", a.Listener.Addr().String()), endpoints(t, "b", b.Listener.Addr().String()))
	chain := func(names []string, cluster string) *listenerv3.FilterChain {
		return &listenerv3.FilterChain{FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: names},
			Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{
				TypedConfig: mustAny(t, &tcpproxyv3.TcpProxy{StatPrefix: cluster, ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster}})}}}}
	}
	e.set(xdsclient.ListenerType, "1", &listenerv3.Listener{Name: "sni", Address: sockAddr("127.0.0.1", 0),
		ListenerFilters: []*listenerv3.ListenerFilter{{Name: "envoy.filters.listener.tls_inspector",
			ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(t, &tlsinspectorv3.TlsInspector{})}}},
		FilterChains: []*listenerv3.FilterChain{chain([]string{"a.test"}, "a"), chain([]string{"*.b.test"}, "b")}})
	e.waitACK(xdsclient.EndpointType, "1")
	addr := e.listenerAddr("sni")
	for sni, want := range map[string]string{"a.test": "a", "x.b.test": "b"} {
		c := &http.Client{Timeout: wait, Transport: &http.Transport{TLSClientConfig: &tls.Config{ServerName: sni, InsecureSkipVerify: true}}}
		resp, err := c.Get("https://" + addr + "/")
		if err != nil {
			t.Fatalf("SNI %s: %v", sni, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		c.CloseIdleConnections()
		if string(body) != want {
			t.Errorf("SNI %s reached %q, want %q", sni, body, want)
		}
	}
	c := &http.Client{Timeout: wait, Transport: &http.Transport{TLSClientConfig: &tls.Config{ServerName: "none.test", InsecureSkipVerify: true}}}
	if _, err := c.Get("https://" + addr + "/"); err == nil {
		t.Errorf("unmatched SNI was proxied")
	}
}

func TestUpstreamHTTP2OverTLSByALPN(t *testing.T) {
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s", r.Proto)
	}))
	backend.EnableHTTP2 = true
	backend.StartTLS()
	defer backend.Close()
	e := startEnv(t)
	e.set(xdsclient.ClusterType, "1", edsCluster("c", func(c *clusterv3.Cluster) {
		h2Cluster(c)
		c.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
			TypedConfig: mustAny(t, &tlsv3.UpstreamTlsContext{Sni: "example.com", CommonTlsContext: &tlsv3.CommonTlsContext{
				AlpnProtocols: []string{"h2"}}})}}
	}))
	e.set(xdsclient.EndpointType, "1", endpoints(t, "c", backend.Listener.Addr().String()))
	e.set(xdsclient.RouteType, "1", simpleRoutes("r", "c"))
	e.set(xdsclient.ListenerType, "1", httpListener(t, "l", "r", nil))
	e.waitACK(xdsclient.EndpointType, "1")
	if resp, body := get(t, client(), e.listenerAddr("l"), "x", "/"); resp.StatusCode != 200 || body != "HTTP/2.0" {
		t.Errorf("upstream saw %d %q, want HTTP/2.0", resp.StatusCode, body)
	}
}

// BenchmarkPeerOf measures the per-request cost of reading (and re-checking) the peer's SVID.
func BenchmarkPeerOf(b *testing.B) {
	ca := newCA(b)
	certPEM, _ := ca.issue(b, nil, "spiffe://bookinfo.demo.mesh/sa/reviews")
	blk, _ := pem.Decode(certPEM)
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		b.Fatal(err)
	}
	cs := &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf, ca.cert}}}
	remote := &net.TCPAddr{IP: net.ParseIP("10.0.0.7"), Port: 4000}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := peerOf(cs, remote); !ok {
			b.Fatal("no peer")
		}
	}
}
