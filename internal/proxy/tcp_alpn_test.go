package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"regexp"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"canton.dev/canton/internal/proxy/xdsclient"
)

// The inbound listener of a workload serving HTTP and TCP ports (internal/xds) has two mTLS
// chains: the HTTP one without a match and a tcp_proxy one matching ALPN "istio", which mesh
// clients of TCP ports offer. Both terminate mTLS; the ALPN picks the chain per connection,
// and the TCP side reports its peer as mutual TLS.
func TestInboundChainChosenByALPN(t *testing.T) {
	ca := newCA(t)
	srvCert, srvKey := ca.issue(t, []string{"cache.bookinfo.demo.mesh"}, "spiffe://bookinfo.demo.mesh/sa/cache")
	cliCert, cliKey := ca.issue(t, nil, "spiffe://bookinfo.demo.mesh/sa/productpage")
	httpApp := startUpstream(t, "app", nil)
	tcpApp, got := countingEcho(t, "T:", nil)
	e := startEnv(t)
	e.set(xdsclient.SecretType, "1", keyPairSecret("svid", srvCert, srvKey), caSecret("bundle", ca.pem))
	e.set(xdsclient.ClusterType, "1", edsCluster("inbound|8080||", nil), edsCluster("inbound|6380||", nil))
	e.set(xdsclient.EndpointType, "1", endpoints(t, "inbound|8080||", httpApp.Addr()), endpoints(t, "inbound|6380||", tcpApp))
	e.set(xdsclient.RouteType, "1", simpleRoutes("r", "inbound|8080||"))
	mtls := &corev3.TransportSocket{Name: "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, &tlsv3.DownstreamTlsContext{
			RequireClientCertificate: wrapperspb.Bool(true),
			CommonTlsContext: &tlsv3.CommonTlsContext{
				TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds("svid")},
				ValidationContextType:          &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{ValidationContextSdsSecretConfig: sds("bundle")}}})}}
	l := httpListener(t, "inbound", "r", nil)
	l.TrafficDirection = corev3.TrafficDirection_INBOUND
	l.ListenerFilters = []*listenerv3.ListenerFilter{{Name: "envoy.filters.listener.tls_inspector",
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(t, &tlsinspectorv3.TlsInspector{})}}}
	l.FilterChains[0].TransportSocket = mtls
	tcp := tcpListener(t, "unused", &tcpproxyv3.TcpProxy{StatPrefix: "inbound|6380||",
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: "inbound|6380||"}}).FilterChains[0]
	tcp.TransportSocket = mtls
	tcp.FilterChainMatch = &listenerv3.FilterChainMatch{ApplicationProtocols: []string{"istio"}}
	l.FilterChains = append(l.FilterChains, tcp)
	e.set(xdsclient.ListenerType, "1", l)
	e.waitACK(xdsclient.ListenerType, "1")
	e.waitACK(xdsclient.EndpointType, "1")
	addr := e.listenerAddr("inbound")

	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	kp, err := tls.X509KeyPair(cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := func(alpn ...string) *tls.Config {
		return &tls.Config{RootCAs: roots, ServerName: "cache.bookinfo.demo.mesh", Certificates: []tls.Certificate{kp}, NextProtos: alpn}
	}
	c, err := tls.Dial("tcp", addr, cfg("istio"))
	if err != nil {
		t.Fatalf("mTLS with ALPN istio: %v", err)
	}
	out, err := exchangeOnce(c, "ping")
	c.Close()
	if err != nil || out != "T:ping" || got.Load() != 4 {
		t.Fatalf("mTLS with ALPN istio: %q %v (app got %d bytes), want the TCP application's T:ping", out, err, got.Load())
	}
	hc := &http.Client{Timeout: wait, Transport: &http.Transport{TLSClientConfig: cfg(), ForceAttemptHTTP2: true}}
	resp, err := hc.Get("https://" + addr + "/ok")
	if err != nil {
		t.Fatalf("HTTP over mTLS: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "app /ok" {
		t.Fatalf("HTTP over mTLS: %d %q, want the HTTP application's 200", resp.StatusCode, body)
	}
	if got.Load() != 4 {
		t.Errorf("the TCP application got %d bytes, want only the TCP client's 4", got.Load())
	}
	_, metrics := get(t, client(), e.p.AdminAddr(), "admin", "/stats/prometheus")
	re := regexp.MustCompile(`istio_tcp_connections_opened_total\{[^}]*connection_security_policy="mutual_tls"[^}]*source_principal="spiffe://bookinfo.demo.mesh/sa/productpage"`)
	if !re.MatchString(metrics) {
		t.Errorf("the TCP connection is not reported as mutual TLS from productpage:\n%s", metrics)
	}
}
