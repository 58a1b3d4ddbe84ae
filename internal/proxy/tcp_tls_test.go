package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"canton.dev/canton/internal/proxy/xdsclient"
)

// countingEcho is an echo server that answers prefix + what it reads and counts the bytes it got.
func countingEcho(t *testing.T, prefix string, tc *tls.Config) (addr string, got *atomic.Int64) {
	t.Helper()
	var lis net.Listener
	var err error
	if tc != nil {
		lis, err = tls.Listen("tcp", "127.0.0.1:0", tc)
	} else {
		lis, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	got = new(atomic.Int64)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := io.WriteString(c, prefix); err != nil {
					return
				}
				buf := make([]byte, 512)
				for {
					n, err := c.Read(buf)
					got.Add(int64(n))
					if n > 0 {
						c.Write(buf[:n])
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return lis.Addr().String(), got
}

// exchangeOnce writes msg on c, half-closes when it can, and returns everything read until EOF.
func exchangeOnce(c net.Conn, msg string) (string, error) {
	c.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// A tcp_proxy chain with a DownstreamTlsContext terminates mTLS: only clients with a certificate
// the chain accepts reach the cluster; plaintext and wrong identities never send it a byte.
func TestTCPChainTerminatesMTLS(t *testing.T) {
	ca := newCA(t)
	srvCert, srvKey := ca.issue(t, []string{"db.data.demo.mesh"}, "spiffe://data.demo.mesh/sa/db")
	cliCert, cliKey := ca.issue(t, nil, "spiffe://data.demo.mesh/sa/app")
	badCert, badKey := ca.issue(t, nil, "spiffe://evil.demo.mesh/sa/x")
	app, got := countingEcho(t, "A:", nil)
	e := startEnv(t)
	e.set(xdsclient.SecretType, "1", keyPairSecret("svid", srvCert, srvKey), caSecret("bundle", ca.pem))
	e.set(xdsclient.ClusterType, "1", edsCluster("inbound|5432||db", nil))
	e.set(xdsclient.EndpointType, "1", endpoints(t, "inbound|5432||db", app))
	l := tcpListener(t, "inbound-tcp", &tcpproxyv3.TcpProxy{StatPrefix: "db",
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: "inbound|5432||db"}})
	l.FilterChains[0].TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, &tlsv3.DownstreamTlsContext{
			RequireClientCertificate: wrapperspb.Bool(true),
			CommonTlsContext: &tlsv3.CommonTlsContext{
				TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds("svid")},
				ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
						SanType: tlsv3.SubjectAltNameMatcher_URI,
						Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://data.demo.mesh/"}}}}},
					ValidationContextSdsSecretConfig: sds("bundle")}}}})}}
	e.set(xdsclient.ListenerType, "1", l)
	e.waitACK(xdsclient.SecretType, "1")
	e.waitACK(xdsclient.EndpointType, "1")
	addr := e.listenerAddr("inbound-tcp")

	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	dialTLS := func(certPEM, keyPEM []byte) (string, error) {
		kp, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "db.data.demo.mesh", Certificates: []tls.Certificate{kp}})
		if err != nil {
			return "", err
		}
		defer c.Close()
		return exchangeOnce(c, "ping")
	}

	if out, err := dialTLS(cliCert, cliKey); err != nil || out != "A:ping" {
		t.Fatalf("mTLS client: %q %v, want A:ping", out, err)
	}
	if n := got.Load(); n != 4 {
		t.Fatalf("app got %d bytes from the accepted client, want 4", n)
	}
	if out, err := dialTLS(badCert, badKey); err == nil && out != "" {
		t.Errorf("client with a foreign SPIFFE ID got %q", out)
	}
	plain := dialT(t, addr)
	out, _ := exchangeOnce(plain, "GET / HTTP/1.1\r\n\r\n")
	plain.Close()
	if out != "" && out[:2] == "A:" {
		t.Errorf("plaintext client reached the app: %q", out)
	}
	if n := got.Load(); n != 4 {
		t.Errorf("app got %d bytes in all, want only the accepted client's 4", n)
	}
}

// A TCP cluster with an UpstreamTlsContext is dialled over mTLS with the proxy's certificate.
func TestTCPClusterOriginatesMTLS(t *testing.T) {
	ca := newCA(t)
	srvCert, srvKey := ca.issue(t, []string{"db.data.demo.mesh"}, "spiffe://data.demo.mesh/sa/db")
	cliCert, cliKey := ca.issue(t, nil, "spiffe://data.demo.mesh/sa/app")
	skp, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	var peer atomic.Value
	backend, got := countingEcho(t, "B:", &tls.Config{Certificates: []tls.Certificate{skp}, ClientCAs: roots,
		ClientAuth: tls.RequireAndVerifyClientCert, VerifyConnection: func(cs tls.ConnectionState) error {
			peer.Store(cs.PeerCertificates[0].URIs[0].String())
			return nil
		}})
	e := startEnv(t)
	e.set(xdsclient.SecretType, "1", keyPairSecret("svid", cliCert, cliKey), caSecret("bundle", ca.pem))
	e.set(xdsclient.ClusterType, "1", edsCluster("outbound|5432||db", func(c *clusterv3.Cluster) {
		c.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
			TypedConfig: mustAny(t, &tlsv3.UpstreamTlsContext{Sni: "db.data.demo.mesh", CommonTlsContext: &tlsv3.CommonTlsContext{
				TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds("svid")},
				ValidationContextType:          &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{ValidationContextSdsSecretConfig: sds("bundle")}}})}}
	}))
	e.set(xdsclient.EndpointType, "1", endpoints(t, "outbound|5432||db", backend))
	e.set(xdsclient.ListenerType, "1", tcpListener(t, "outbound-tcp", &tcpproxyv3.TcpProxy{StatPrefix: "db",
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: "outbound|5432||db"}}))
	e.waitACK(xdsclient.SecretType, "1")
	e.waitACK(xdsclient.EndpointType, "1")
	c := dialT(t, e.listenerAddr("outbound-tcp"))
	defer c.Close()
	out, err := exchangeOnce(c, "ping")
	if err != nil || out != "B:ping" {
		t.Fatalf("through the proxy: %q %v, want B:ping", out, err)
	}
	if p, _ := peer.Load().(string); p != "spiffe://data.demo.mesh/sa/app" || got.Load() != 4 {
		t.Errorf("backend saw peer %q and %d bytes, want the proxy's SPIFFE ID and 4", p, got.Load())
	}
}
