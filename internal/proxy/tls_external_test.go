package proxy

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"canton.dev/canton/internal/proxy/xdsclient"
)

// TLS origination to a server outside the mesh (a certificate with DNS names only, verified against
// the configured CA bundle and a DNS SAN matcher) works as in Envoy: only certificates that claim a
// SPIFFE ID must be valid SVIDs.
func TestUpstreamTLSToServerOutsideTheMesh(t *testing.T) {
	ca := newCA(t)
	srvCert, srvKey := ca.issue(t, []string{"api.example.com"})
	kp, _ := tls.X509KeyPair(srvCert, srvKey)
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("external")) }))
	backend.TLS = &tls.Config{Certificates: []tls.Certificate{kp}}
	backend.StartTLS()
	defer backend.Close()

	cluster := func(dns string) *clusterv3.Cluster {
		return edsCluster("c", func(c *clusterv3.Cluster) {
			c.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
				TypedConfig: mustAny(t, &tlsv3.UpstreamTlsContext{Sni: "api.example.com", CommonTlsContext: &tlsv3.CommonTlsContext{
					ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
						DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
							SanType: tlsv3.SubjectAltNameMatcher_DNS,
							Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: dns}}}}},
						ValidationContextSdsSecretConfig: sds("bundle")}}}})}}
		})
	}
	e := startEnv(t)
	e.set(xdsclient.SecretType, "1", caSecret("bundle", ca.pem))
	e.set(xdsclient.ClusterType, "1", cluster("api.example.com"))
	e.set(xdsclient.EndpointType, "1", endpoints(t, "c", backend.Listener.Addr().String()))
	e.set(xdsclient.RouteType, "1", simpleRoutes("r", "c"))
	e.set(xdsclient.ListenerType, "1", httpListener(t, "l", "r", nil))
	e.waitACK(xdsclient.SecretType, "1")
	e.waitACK(xdsclient.EndpointType, "1")
	addr := e.listenerAddr("l")
	if resp, body := get(t, client(), addr, "x", "/"); resp.StatusCode != 200 || body != "external" {
		t.Fatalf("TLS origination to an external server: %d %q", resp.StatusCode, body)
	}
	// The same server under a DNS matcher it does not satisfy is refused.
	e.set(xdsclient.ClusterType, "2", cluster("other.example.com"))
	e.waitACK(xdsclient.ClusterType, "2")
	if resp, body := get(t, client(), addr, "x", "/"); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "connection failure") {
		t.Errorf("wrong DNS SAN: %d %q, want 503 for a failed connection", resp.StatusCode, body)
	}
}
