package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"

	"canton.dev/canton/internal/telemetry"
	"canton.dev/canton/internal/xds"
)

// tcpApp is a TCP application that echoes what it reads and counts the connections it accepted
// and the bytes it received.
type tcpApp struct {
	addr            string
	accepted, bytes atomic.Int64
}

func startTCPApp(t *testing.T) *tcpApp {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	a := &tcpApp{addr: lis.Addr().String()}
	go func() {
		for {
			c, err := lis.Accept() // one goroutine: connections are counted in the order they arrived
			if err != nil {
				return
			}
			a.accepted.Add(1)
			go func() {
				defer c.Close()
				b := make([]byte, 512)
				for {
					n, err := c.Read(b)
					a.bytes.Add(int64(n))
					if n > 0 {
						if _, werr := c.Write(b[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return a
}

// TestTCPAuthorizationEndToEnd runs the anchors' translation (internal/xds) of
// AuthorizationPolicies for a workload serving a TCP port in a real proxy: an allowed mTLS
// principal reaches the application through the inbound TCP chain, a denied one is closed
// before the application accepts a connection or receives a byte (and the access log says
// why), and after a policy change that denies a principal, its established connection is
// closed once the drain time is over.
func TestTCPAuthorizationEndToEnd(t *testing.T) {
	pki := testPKI(t)
	app := startTCPApp(t)
	logs := &syncBuffer{}
	alog, err := telemetry.NewAccessLog(logs, nil)
	if err != nil {
		t.Fatal(err)
	}
	const base = `
apiVersion: canton.dev/v1
kind: Service
metadata: {name: db, namespace: bookinfo}
spec:
  ports: [{name: tcp-pg, port: 5432, protocol: TCP}]
`
	allowProductpage := base + `
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: db-clients, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: db}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/bookinfo/sa/productpage]}}]
  - to: [{operation: {methods: [GET]}}] # HTTP-only: matches no TCP connection
`
	denyProductpage := allowProductpage + `
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: db-revoke, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: db}}
  action: DENY
  rules: [{from: [{source: {principals: [bookinfo.demo.mesh/sa/productpage]}}]}]
`
	c := &secCase{t: t, pki: pki, objects: parseObjects(t, allowProductpage)}
	chainPEM, keyPEM := pki.svid(t, secNamespace, "db")
	e := startEnv(t, func(o *Options) { o.NodeID, o.AccessLog, o.DrainTime = "db-1", alog, 300*time.Millisecond })
	node := xds.Node{ID: "db-1", Service: "db", Namespace: secNamespace, Labels: map[string]string{"app": "db"},
		InboundPort: 15006, InboundAddress: "127.0.0.1", AppAddress: app.addr, CertificateChain: chainPEM, PrivateKey: keyPEM}
	c.push(e, node)
	addr := e.listenerAddr(xds.InboundListenerName)

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pki.bundle)
	dial := func(account string) *tls.Conn {
		t.Helper()
		cp, kp := pki.svid(t, secNamespace, account)
		cert, err := tls.X509KeyPair(cp, kp)
		if err != nil {
			t.Fatal(err)
		}
		// The proxy's certificate names a SPIFFE ID, not a host: verify its chain only.
		cfg := &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				inter := x509.NewCertPool()
				for _, ic := range cs.PeerCertificates[1:] {
					inter.AddCert(ic)
				}
				_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
					KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
				return err
			}}
		tc, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatalf("%s: mTLS handshake with the inbound listener: %v", account, err)
		}
		t.Cleanup(func() { tc.Close() })
		return tc
	}

	// Allowed: the bytes reach the application and come back.
	if out, err := exchangeOnce(dial("productpage"), "ping"); err != nil || out != "ping" {
		t.Fatalf("productpage (allowed): %q %v, want the echo", out, err)
	}
	if app.accepted.Load() != 1 {
		t.Fatalf("application accepted %d connections, want 1", app.accepted.Load())
	}

	// Denied: closed by the proxy, nothing reaches the application.
	if out, _ := exchangeOnce(dial("ratings"), "secret"); out != "" {
		t.Errorf("ratings (denied) got %q back", out)
	}
	// The application accepts in arrival order: once the next allowed connection is through, a
	// dial for the denied one would have been counted.
	if out, err := exchangeOnce(dial("productpage"), "pong"); err != nil || out != "pong" {
		t.Fatalf("productpage again: %q %v", out, err)
	}
	if n, b := app.accepted.Load(), app.bytes.Load(); n != 2 {
		t.Errorf("application accepted %d connections (received %d bytes), want 2: the denied one must not be dialled", n, b)
	}
	waitUntil(t, "access log of the denied connection", func() bool {
		return strings.Contains(logs.String(), `"connection_termination_details":"rbac_access_denied_matched_policy[none]"`)
	})

	// A held connection of productpage; then a DENY policy for it arrives.
	held := dial("productpage")
	held.SetDeadline(time.Now().Add(wait))
	buf := make([]byte, 4)
	if _, err := io.WriteString(held, "held"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(held, buf); err != nil || string(buf) != "held" {
		t.Fatalf("held connection: %q %v", buf, err)
	}
	c.objects = parseObjects(t, denyProductpage)
	c.push(e, node)
	start := time.Now()
	var ne net.Error
	if _, err := held.Read(buf); err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("held connection of a principal denied since: read %v, want it closed after the drain time", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("held connection closed after %v, want about the drain time (300ms)", d)
	}
	if out, _ := exchangeOnce(dial("productpage"), "again"); out != "" {
		t.Errorf("productpage after the DENY policy got %q back", out)
	}
	if !strings.Contains(logs.String(), `rbac_access_denied_matched_policy[ns[bookinfo.demo.mesh]-policy[db-revoke]-rule[0]]`) {
		t.Errorf("access log does not name the DENY policy:\n%s", logs.String())
	}
}

// Network RBAC filters are accepted only before a tcp_proxy; their errors name the chain, the
// filter and the field, so the proxy's NACK says what to fix.
func TestNetworkFiltersCompile(t *testing.T) {
	rbac := func(cfg *netrbacv3.RBAC) *listenerv3.Filter {
		return &listenerv3.Filter{Name: "envoy.filters.network.rbac", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, cfg)}}
	}
	allowAll := &netrbacv3.RBAC{StatPrefix: "tcp.", Rules: &rbacconfigv3.RBAC{Policies: map[string]*rbacconfigv3.Policy{"p": {
		Permissions: []*rbacconfigv3.Permission{{Rule: &rbacconfigv3.Permission_Any{Any: true}}},
		Principals:  []*rbacconfigv3.Principal{{Identifier: &rbacconfigv3.Principal_Any{Any: true}}}}}}}
	tcp := tcpListener(t, "l", &tcpproxyv3.TcpProxy{StatPrefix: "x", ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: "c"}})
	withFilters := func(l *listenerv3.Listener, pre ...*listenerv3.Filter) *listenerv3.Listener {
		l = proto.Clone(l).(*listenerv3.Listener)
		l.FilterChains[0].Filters = append(pre, l.FilterChains[0].Filters...)
		return l
	}
	spec, err := (&Proxy{}).compileListener(withFilters(tcp, rbac(&netrbacv3.RBAC{StatPrefix: "tcp.", Rules: &rbacconfigv3.RBAC{Action: rbacconfigv3.RBAC_DENY}}), rbac(allowAll)))
	if err != nil {
		t.Fatalf("two network RBAC filters before a tcp_proxy: %v", err)
	}
	if spec.chains[0].network == nil || spec.chains[0].tcp == nil {
		t.Fatal("the chain lost its network filters or its tcp_proxy")
	}
	for _, tc := range []struct {
		name string
		l    *listenerv3.Listener
		want string
	}{
		{"before an http_connection_manager", withFilters(httpListener(t, "l", "r", nil), rbac(allowAll)),
			"filter_chains[0].filters: only http_connection_manager is supported on an HTTP filter chain"},
		{"after the tcp_proxy", func() *listenerv3.Listener {
			l := withFilters(tcp)
			l.FilterChains[0].Filters = append(l.FilterChains[0].Filters, rbac(allowAll))
			return l
		}(), `filter_chains[0].filters[1].typed_config: network filter "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC" is not supported (the last filter must be`},
		{"an HTTP rule", withFilters(tcp, rbac(&netrbacv3.RBAC{StatPrefix: "tcp.", Rules: &rbacconfigv3.RBAC{Policies: map[string]*rbacconfigv3.Policy{"p": {
			Permissions: []*rbacconfigv3.Permission{{Rule: &rbacconfigv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{}}}},
			Principals:  []*rbacconfigv3.Principal{{Identifier: &rbacconfigv3.Principal_Any{Any: true}}}}}}})),
			`filter_chains[0].filters[0](envoy.filters.network.rbac).typed_config.rules.policies["p"].permissions[0].url_path: an HTTP rule`},
		{"no filter", func() *listenerv3.Listener { l := withFilters(tcp); l.FilterChains[0].Filters = nil; return l }(),
			"filter_chains[0].filters: a network filter (http_connection_manager or tcp_proxy) is required"},
	} {
		if _, err := (&Proxy{}).compileListener(tc.l); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}
