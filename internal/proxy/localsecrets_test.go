package proxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"canton.dev/canton/internal/proxy/xdsclient"
)

// inboundMTLS configures an inbound mTLS listener "inbound" (server key pair "default", trust bundle
// "ROOTCA", client SPIFFE IDs of the mesh) in front of app, and waits for the proxy to ACK it.
func inboundMTLS(e *env, app *upstream) {
	t := e.t
	e.set(xdsclient.ClusterType, "1", edsCluster("inbound|9080||reviews", nil))
	e.set(xdsclient.EndpointType, "1", endpoints(t, "inbound|9080||reviews", app.Addr()))
	e.set(xdsclient.RouteType, "1", simpleRoutes("r", "inbound|9080||reviews"))
	l := httpListener(t, "inbound", "r", nil)
	l.TrafficDirection = corev3.TrafficDirection_INBOUND
	l.FilterChains[0].TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, &tlsv3.DownstreamTlsContext{
			RequireClientCertificate: wrapperspb.Bool(true),
			CommonTlsContext: &tlsv3.CommonTlsContext{
				TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds("default")},
				ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
						SanType: tlsv3.SubjectAltNameMatcher_URI,
						Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://bookinfo.demo.mesh/"}}}}},
					ValidationContextSdsSecretConfig: sds("ROOTCA")}}}})}}
	e.set(xdsclient.ListenerType, "1", l)
	e.waitACK(xdsclient.EndpointType, "1")
	e.waitACK(xdsclient.ListenerType, "1")
}

// mtlsConn is one client connection to the inbound listener, HTTP/1.1 with keep-alive.
type mtlsConn struct {
	*tls.Conn
	r *bufio.Reader
}

func dialMTLS(t *testing.T, addr string, ca *testCA, certPEM, keyPEM []byte) (*mtlsConn, error) {
	t.Helper()
	kp, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "reviews.bookinfo.demo.mesh",
		Certificates: []tls.Certificate{kp}, NextProtos: []string{"http/1.1"}})
	if err != nil {
		return nil, err
	}
	// TLS 1.3: the server checks the client certificate after the client's handshake returns, so
	// a request round trip is what proves the handshake was accepted.
	c.SetDeadline(time.Now().Add(wait))
	t.Cleanup(func() { c.Close() })
	return &mtlsConn{Conn: c, r: bufio.NewReader(c)}, nil
}

// get sends one keep-alive request on the connection and returns the status and body.
func (c *mtlsConn) get(path string) (int, string, error) {
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: reviews\r\n\r\n", path); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func (c *mtlsConn) serverSerial() string {
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func pemSerial(t *testing.T, certPEM []byte) string {
	b, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.String()
}

// secretRequests returns the resource names of every SDS request the proxy sent.
func secretRequests(e *env) [][]string {
	var out [][]string
	for _, r := range e.xds.Requests() {
		if r.GetTypeUrl() == xdsclient.SecretType {
			out = append(out, r.GetResourceNames())
		}
	}
	return out
}

func TestLocalSecretsInboundMTLSAndRotation(t *testing.T) {
	ca := newCA(t)
	cert1, key1 := ca.issue(t, []string{"reviews.bookinfo.demo.mesh"}, "spiffe://bookinfo.demo.mesh/sa/reviews")
	cliCert, cliKey := ca.issue(t, nil, "spiffe://bookinfo.demo.mesh/sa/productpage")
	src := NewStaticSecrets()
	src.Set(CertificateSecret("default", cert1, key1))
	src.Set(ValidationSecret("ROOTCA", ca.pem))
	app := startUpstream(t, "app", nil)
	var logs syncBuffer
	e := startEnv(t, func(o *Options) {
		o.LocalSecrets = src
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	inboundMTLS(e, app) // the xDS server has no secrets at all
	addr := e.listenerAddr("inbound")

	old, err := dialMTLS(t, addr, ca, cliCert, cliKey)
	if err != nil {
		t.Fatalf("mTLS handshake with local secrets: %v", err)
	}
	if code, body, err := old.get("/one"); err != nil || code != 200 || body != "app /one" {
		t.Fatalf("request over mTLS with local secrets: %d %q %v", code, body, err)
	}
	if got, want := old.serverSerial(), pemSerial(t, cert1); got != want {
		t.Errorf("server certificate serial %s, want the local one %s", got, want)
	}
	for _, names := range secretRequests(e) {
		if slices.Contains(names, "default") || slices.Contains(names, "ROOTCA") {
			t.Errorf("proxy requested local secrets from the control plane: %v", names)
		}
	}

	// Rotation: new handshakes present the new certificate, the established connection keeps working.
	cert2, key2 := ca.issue(t, []string{"reviews.bookinfo.demo.mesh"}, "spiffe://bookinfo.demo.mesh/sa/reviews")
	src.Set(CertificateSecret("default", cert2, key2))
	want2 := pemSerial(t, cert2)
	waitUntil(t, "new handshakes present the rotated certificate", func() bool {
		c, err := dialMTLS(t, addr, ca, cliCert, cliKey)
		if err != nil {
			t.Fatalf("handshake after rotation: %v", err)
		}
		defer c.Close()
		return c.serverSerial() == want2
	})
	fresh, err := dialMTLS(t, addr, ca, cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	if code, _, err := fresh.get("/new"); err != nil || code != 200 {
		t.Errorf("request on a connection with the rotated certificate: %d %v", code, err)
	}
	if code, body, err := old.get("/two"); err != nil || code != 200 || body != "app /two" {
		t.Errorf("established connection after rotation: %d %q %v, want 200", code, body, err)
	}
	if got := old.serverSerial(); got != pemSerial(t, cert1) {
		t.Errorf("established connection changed certificate: %s", got)
	}

	// A bad local secret is refused and the previous one stays in force.
	src.Set(CertificateSecret("default", []byte("not a certificate"), []byte("not a key")))
	waitUntil(t, "bad local secret logged", func() bool { return strings.Contains(logs.String(), "local secret rejected") })
	c, err := dialMTLS(t, addr, ca, cliCert, cliKey)
	if err != nil {
		t.Fatalf("handshake after a bad local secret: %v", err)
	}
	if code, _, err := c.get("/after-bad"); err != nil || code != 200 || c.serverSerial() != want2 {
		t.Errorf("after a bad local secret: %d %v, serial %s want %s", code, err, c.serverSerial(), want2)
	}

	_, dump := get(t, client(), e.p.AdminAddr(), "admin", "/config_dump")
	if strings.Contains(dump, "PRIVATE KEY") || !strings.Contains(dump, `"ROOTCA"`) || !strings.Contains(dump, `"default"`) {
		t.Errorf("config_dump: want local secret names and no key material:\n%s", dump)
	}
}

// A secret the source learns after the proxy subscribed to it over SDS is dropped from the
// subscription and served locally from then on; the listener waiting for it (warming) starts.
func TestLocalSecretAppearingLaterLeavesSDS(t *testing.T) {
	ca := newCA(t)
	cert, key := ca.issue(t, []string{"reviews.bookinfo.demo.mesh"}, "spiffe://bookinfo.demo.mesh/sa/reviews")
	cliCert, cliKey := ca.issue(t, nil, "spiffe://bookinfo.demo.mesh/sa/productpage")
	src := NewStaticSecrets()
	src.Set(CertificateSecret("default", cert, key))
	app := startUpstream(t, "app", nil)
	e := startEnv(t, func(o *Options) { o.LocalSecrets = src })
	inboundMTLS(e, app)
	e.xds.WaitRequest(wait, "SDS subscription to ROOTCA only", func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetTypeUrl() == xdsclient.SecretType && slices.Equal(r.GetResourceNames(), []string{"ROOTCA"})
	})
	if a := e.p.ListenerAddr("inbound"); a != "" {
		t.Errorf("listener runs at %s without its trust bundle (should be warming)", a)
	}
	src.Set(ValidationSecret("ROOTCA", ca.pem))
	e.xds.WaitRequest(wait, "SDS unsubscription", func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetTypeUrl() == xdsclient.SecretType && len(r.GetResourceNames()) == 0
	})
	c, err := dialMTLS(t, e.listenerAddr("inbound"), ca, cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	if code, body, err := c.get("/late"); err != nil || code != 200 || body != "app /late" {
		t.Errorf("request after the trust bundle appeared locally: %d %q %v", code, body, err)
	}
	for _, names := range secretRequests(e) {
		if slices.Contains(names, "default") {
			t.Errorf("proxy requested the local key pair from the control plane: %v", names)
		}
	}
}

func TestStaticSecrets(t *testing.T) {
	var zero StaticSecrets // the zero value works
	ch := zero.Changed()
	zero.Set(ValidationSecret("a", []byte("x")))
	select {
	case <-ch:
	default:
		t.Fatal("Set did not fire Changed")
	}
	s := NewStaticSecrets()
	in := CertificateSecret("k", []byte("chain"), []byte("key"))
	s.Set(in)
	in.GetTlsCertificate().GetCertificateChain().GetSpecifier().(*corev3.DataSource_InlineBytes).InlineBytes[0] = 'X'
	got, ok := s.Secret("k")
	if !ok || string(got.GetTlsCertificate().GetCertificateChain().GetInlineBytes()) != "chain" ||
		string(got.GetTlsCertificate().GetPrivateKey().GetInlineBytes()) != "key" {
		t.Errorf("Secret(k) = %v, %v: want the value as Set (a copy)", got, ok)
	}
	if _, ok := s.Secret("missing"); ok {
		t.Error("Secret(missing) found")
	}
	if v := ValidationSecret("ca", []byte("pem")); string(v.GetValidationContext().GetTrustedCa().GetInlineBytes()) != "pem" || v.GetName() != "ca" {
		t.Errorf("ValidationSecret = %v", v)
	}
	var _ SecretSource = s
}
