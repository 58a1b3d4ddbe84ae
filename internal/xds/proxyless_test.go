package xds

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	grpcxds "google.golang.org/grpc/xds" // aliased: this package is also named xds

	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/resource"
)

// Proxyless gRPC: a grpc-go client with the xds resolver, pointed at an ADS Server of this
// package fed with Istio YAML (testdata/proxyless/routing.yaml), sends real RPCs to health
// services on 127.0.0.1 that tag their answers with their version.

// proxylessTarget is what the client dials (after "xds:///"). grpc-go asks LDS for exactly
// this name (its default listener name template is "%s") and matches it against the virtual
// hosts' domains.
const proxylessTarget = "reviews.bookinfo.demo.mesh:9080"

// proxylessEnv is a running server, three backends and a connected grpc-go client.
type proxylessEnv struct {
	scope *scopeState
	srv   *Server
	conn  *grpc.ClientConn
	ports map[string]string // version -> backend port
	tls   *proxylessTLS     // nil: plaintext

	mu  sync.Mutex
	gen func(*Snapshot, Node) (Resources, error)
}

// startBackend serves the gRPC health service on 127.0.0.1:0 (over mutual TLS with
// serverTLS, else plaintext); every answer carries the header x-backend: name, and, over
// TLS, x-peer: the client's SPIFFE ID. It returns the port.
func startBackend(t *testing.T, name string, serverTLS *tls.Config) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts := []grpc.ServerOption{grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		md := metadata.Pairs("x-backend", name)
		if p, ok := peer.FromContext(ctx); ok {
			if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 && len(info.State.PeerCertificates[0].URIs) == 1 {
				md.Append("x-peer", info.State.PeerCertificates[0].URIs[0].String())
			}
		}
		grpc.SetHeader(ctx, md)
		return h(ctx, req)
	})}
	if serverTLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(serverTLS)))
	}
	srv := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	_, port, _ := net.SplitHostPort(lis.Addr().String())
	return port
}

// proxylessInput reads the routing YAML with the backends' ports, the split's weights and
// the DestinationRule's TLS mode ("" means DISABLE).
func proxylessInput(t *testing.T, ports map[string]string, w1, w2 int, rev uint64, tlsMode string) Input {
	t.Helper()
	path := filepath.Join("testdata", "proxyless", "routing.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"V1_PORT": ports["v1"], "V2_PORT": ports["v2"], "V3_PORT": ports["v3"],
		"V1_WEIGHT": strconv.Itoa(w1), "V2_WEIGHT": strconv.Itoa(w2), "TLS_MODE": cmp.Or(tlsMode, "DISABLE")}
	text := os.Expand(string(data), func(k string) string {
		v, ok := vars[k]
		if !ok {
			t.Fatalf("%s: unknown variable %s", path, k)
		}
		return v
	})
	objs, err := resource.Parse(path, []byte(text), testMesh, "bookinfo")
	if err != nil {
		t.Fatal(err)
	}
	for i := range objs {
		objs[i].Created = uint64(i + 1)
	}
	return Input{Mesh: testMesh, Scope: testMesh, Objects: objs, Revision: rev}
}

// proxylessBootstrap is grpc-go's bootstrap: one plaintext ADS server, a node that
// describes itself with Canton's node metadata as a proxyless client of namespace bookinfo,
// and, with certDir, the certificate provider instance the generated clusters name: a
// file_watcher over cert.pem (the SVID and its chain), key.pem and root.pem (the bundle).
func proxylessBootstrap(serverAddr, certDir string) []byte {
	providers := ""
	if certDir != "" {
		providers = fmt.Sprintf(`"certificate_providers": {%q: {"plugin_name": "file_watcher", "config": {
    "certificate_file": %q, "private_key_file": %q, "ca_certificate_file": %q, "refresh_interval": "60s"}}},`,
			ProxylessCertProvider, filepath.Join(certDir, "cert.pem"), filepath.Join(certDir, "key.pem"), filepath.Join(certDir, "root.pem"))
	}
	return fmt.Appendf(nil, `{%s
  "xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
  "node": {
    "id": "ratings-proxyless-1",
    "metadata": {
      %q: "bookinfo.demo.mesh",
      %q: "ratings",
      %q: "app=ratings,version=v1",
      %q: "proxyless",
      %q: ""
    }
  }
}`, providers, serverAddr, MetaNamespace, MetaService, MetaLabels, MetaKind, MetaCapabilities)
}

// startProxyless serves the routing YAML (weights w1/w2) through gen and dials the target,
// all in plaintext.
func startProxyless(t *testing.T, gen func(*Snapshot, Node) (Resources, error), w1, w2 int) *proxylessEnv {
	t.Helper()
	return startProxylessTLS(t, gen, w1, w2, nil)
}

// proxylessTLS is the mutual TLS of a proxyless test: each backend's server configuration
// and the directory of the client's certificate files.
type proxylessTLS struct {
	backends map[string]*tls.Config // by version
	certDir  string
}

// startProxylessTLS is startProxyless over mutual TLS when pt is not nil: the backends
// serve TLS, the DestinationRule says ISTIO_MUTUAL and the client uses grpc-go's xDS
// credentials with the bootstrap's certificate provider.
func startProxylessTLS(t *testing.T, gen func(*Snapshot, Node) (Resources, error), w1, w2 int, pt *proxylessTLS) *proxylessEnv {
	t.Helper()
	e := &proxylessEnv{scope: &scopeState{}, gen: gen, ports: map[string]string{}, tls: pt}
	mode, certDir := "", ""
	creds := insecure.NewCredentials()
	for _, v := range []string{"v1", "v2", "v3"} {
		var cfg *tls.Config
		if pt != nil {
			cfg = pt.backends[v]
		}
		e.ports[v] = startBackend(t, v, cfg)
	}
	if pt != nil {
		mode, certDir = "ISTIO_MUTUAL", pt.certDir
		var err error
		if creds, err = xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()}); err != nil {
			t.Fatal(err)
		}
	}
	e.scope.set(t, proxylessInput(t, e.ports, w1, w2, 1, mode))
	srv, err := NewServer(ServerOptions{
		Generate: func(n Node) (Resources, error) {
			e.scope.mu.Lock()
			snap := e.scope.snap
			e.scope.mu.Unlock()
			return e.gen(snap, n)
		},
		NodeFromProto: func(_ context.Context, pn *corev3.Node) (Node, error) { return NodeFromProto(pn) },
		Debounce:      5 * time.Millisecond,
		Logger:        slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	resolver, err := grpcxds.NewXDSResolverWithConfigForTesting(proxylessBootstrap(lis.Addr().String(), certDir))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///"+proxylessTarget, grpc.WithResolvers(resolver),
		grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e.conn = conn
	return e
}

// call sends one RPC with the given header pairs and returns the backend that answered.
func (e *proxylessEnv) call(t *testing.T, wait bool, kv ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, kv...)
	var md metadata.MD
	_, err := healthpb.NewHealthClient(e.conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&md), grpc.WaitForReady(wait))
	if err != nil {
		return "", err
	}
	if b := md.Get("x-backend"); len(b) == 1 {
		return b[0], nil
	}
	return "", fmt.Errorf("answer without an x-backend header: %v", md)
}

// counts sends n RPCs and counts the answering backends (and error codes as "error <code>").
func (e *proxylessEnv) counts(t *testing.T, n int, kv ...string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for range n {
		b, err := e.call(t, false, kv...)
		if err != nil {
			b = "error " + status.Code(err).String()
		}
		out[b]++
	}
	return out
}

// ready waits for the first successful RPC: the client has fetched LDS, RDS, CDS and EDS.
func (e *proxylessEnv) ready(t *testing.T) {
	t.Helper()
	if _, err := e.call(t, true); err != nil {
		var nacks []string
		for _, st := range e.srv.Streams() {
			if st.Nack != nil {
				nacks = append(nacks, st.Nack.TypeURL+": "+st.Nack.Message)
			}
		}
		t.Fatalf("first RPC through xds:///%s: %v; NACKs: %q", proxylessTarget, err, nacks)
	}
}

// within reports whether got/n is within tol of want.
func within(got, n int, want, tol float64) bool {
	return math.Abs(float64(got)/float64(n)-want) <= tol
}

// TestProxylessGRPC drives a grpc-go xds client with the routes, clusters and endpoints the
// generator produces from Istio YAML: a 75/25 weighted split, a header match, fault aborts
// with a gRPC and an HTTP status, and a pushed change of the split.
func TestProxylessGRPC(t *testing.T) {
	e := startProxyless(t, func(s *Snapshot, n Node) (Resources, error) { return s.Generate(n) }, 75, 25)
	e.ready(t)

	t.Run("weighted", func(t *testing.T) {
		const n = 400
		got := e.counts(t, n)
		// Binomial standard deviation at n=400, p=0.75 is 0.022; 0.08 is over 3.5 of them.
		if got["v1"]+got["v2"] != n || !within(got["v1"], n, 0.75, 0.08) {
			t.Errorf("%d RPCs without headers: %v, want about 75%% v1 and 25%% v2 and nothing else", n, got)
		}
	})
	t.Run("header-match", func(t *testing.T) {
		if got := e.counts(t, 30, "x-canary", "yes"); got["v3"] != 30 {
			t.Errorf("x-canary: yes: %v, want all 30 on v3", got)
		}
		if got := e.counts(t, 30, "x-canary", "no"); got["v3"] != 0 || got["v1"]+got["v2"] != 30 {
			t.Errorf("x-canary: no: %v, want the split (v1, v2) only", got)
		}
	})
	t.Run("fault-abort", func(t *testing.T) {
		if got := e.counts(t, 20, "x-fault", "grpc"); got["error "+codes.ResourceExhausted.String()] != 20 {
			t.Errorf("abort grpcStatus RESOURCE_EXHAUSTED: %v, want 20 ResourceExhausted errors", got)
		}
		// grpc-go maps the HTTP status of an abort as for responses: 503 is Unavailable.
		if got := e.counts(t, 20, "x-fault", "http"); got["error "+codes.Unavailable.String()] != 20 {
			t.Errorf("abort httpStatus 503: %v, want 20 Unavailable errors", got)
		}
	})
	t.Run("change-is-pushed", func(t *testing.T) {
		e.scope.set(t, proxylessInput(t, e.ports, 0, 100, 2, ""))
		e.srv.Notify()
		deadline := time.Now().Add(5 * time.Second)
		for {
			got := e.counts(t, 20)
			if got["v2"] == 20 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after the split changed to 0/100, still %v", got)
			}
			time.Sleep(20 * time.Millisecond) // poll the data plane; the push itself is asynchronous
		}
	})
	for _, st := range e.srv.Streams() {
		if st.Nack != nil {
			t.Errorf("grpc-go rejected %s version %s: %s", st.Nack.TypeURL, st.Nack.Version, st.Nack.Message)
		}
	}
}

// TestProxylessEndpointsHaveLocality: grpc-go NACKs a ClusterLoadAssignment with a
// LocalityLbEndpoints whose locality is unset ("EDS response contains a locality without
// ID"); the generator leaves it unset for endpoints without a locality (all Canton Workloads).
func TestProxylessEndpointsHaveLocality(t *testing.T) {
	snap, err := NewSnapshot(proxylessInput(t, map[string]string{"v1": "1", "v2": "2", "v3": "3"}, 75, 25, 1, ""))
	if err != nil {
		t.Fatal(err)
	}
	n := defaultNode()
	res, err := snap.Generate(n)
	if err != nil {
		t.Fatal(err)
	}
	for name, m := range res.Endpoints {
		for i, lle := range m.(*endpointv3.ClusterLoadAssignment).GetEndpoints() {
			if lle.GetLocality() == nil {
				t.Errorf("endpoints %s: endpoints[%d] has no locality", name, i)
			}
		}
	}
}

// TestProxylessNodeKindIsGenerated checks the shape of a proxyless node's resources: an API
// listener named after the dial target whose HttpConnectionManager ends with the router.
func TestProxylessNodeKindIsGenerated(t *testing.T) {

	ports := map[string]string{"v1": "1", "v2": "2", "v3": "3"}
	snap, err := NewSnapshot(proxylessInput(t, ports, 75, 25, 1, ""))
	if err != nil {
		t.Fatal(err)
	}
	node := Node{ID: "ratings-proxyless-1", Service: "ratings", Namespace: "bookinfo.demo.mesh",
		Labels: map[string]string{"app": "ratings", "version": "v1"}, Kind: "proxyless", Capabilities: map[string]bool{}}
	res, err := snap.Generate(node)
	if err != nil {
		t.Fatalf("generate for a proxyless node: %v", err)
	}
	l, ok := res.Listeners[proxylessTarget].(*listenerv3.Listener)
	if !ok {
		t.Fatalf("no listener %q; listeners: %v", proxylessTarget, sortedKeys(res.Listeners))
	}
	var hcm hcmv3.HttpConnectionManager
	if err := l.GetApiListener().GetApiListener().UnmarshalTo(&hcm); err != nil {
		t.Fatalf("listener %q: api_listener is not an HttpConnectionManager: %v", proxylessTarget, err)
	}
	filters := hcm.GetHttpFilters()
	if len(filters) == 0 || filters[len(filters)-1].GetName() != RouterFilterName {
		t.Errorf("listener %q: http filters %v must end with the router", proxylessTarget, filters)
	}
	// And the same traffic assertions as TestProxylessGRPC, without the adapter.
	e := startProxyless(t, func(s *Snapshot, n Node) (Resources, error) { return s.Generate(n) }, 75, 25)
	e.ready(t)
	if got := e.counts(t, 20, "x-canary", "yes"); got["v3"] != 20 {
		t.Errorf("x-canary: yes: %v, want all 20 on v3", got)
	}
}

// TestProxylessMutualTLS: with Istio mutual TLS on (the default; here the DestinationRule
// says ISTIO_MUTUAL), a grpc-go client gets clusters whose TLS names the certificate
// provider of its bootstrap, and talks mutual TLS to the backends: they see its SPIFFE ID,
// it checks theirs. Backend v3 holds an identity of another namespace (signed by the same
// root), so the client refuses it: the canary route to v3 fails while v1 serves.
func TestProxylessMutualTLS(t *testing.T) {
	now := time.Now()
	root, err := identity.NewRootCA(testMesh, now)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root.Root())
	issue := func(namespace, account string) *identity.Credentials {
		t.Helper()
		ca, err := root.NewIntermediate(namespace, time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		c, err := ca.NewCredentials(identity.WorkloadID(namespace, account), time.Hour, now, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	serverTLS := func(c *identity.Credentials) *tls.Config {
		cert := tls.Certificate{PrivateKey: c.Key, Leaf: c.Chain[0]}
		for _, x := range c.Chain {
			cert.Certificate = append(cert.Certificate, x.Raw)
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
			NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}
	}
	reviews := issue("bookinfo.demo.mesh", "reviews")
	pt := &proxylessTLS{certDir: t.TempDir(), backends: map[string]*tls.Config{
		"v1": serverTLS(reviews), "v2": serverTLS(reviews), "v3": serverTLS(issue("other.demo.mesh", "reviews"))}}
	client := issue("bookinfo.demo.mesh", "ratings")
	keyDER, err := x509.MarshalPKCS8PrivateKey(client.Key)
	if err != nil {
		t.Fatal(err)
	}
	var chain []byte
	for _, c := range client.Chain {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	for name, data := range map[string][]byte{
		"cert.pem": chain,
		"key.pem":  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		"root.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Root().Raw}),
	} {
		if err := os.WriteFile(filepath.Join(pt.certDir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	e := startProxylessTLS(t, func(s *Snapshot, n Node) (Resources, error) { return s.Generate(n) }, 100, 0, pt)
	e.ready(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var md metadata.MD
	if _, err := healthpb.NewHealthClient(e.conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&md)); err != nil {
		t.Fatalf("RPC over mutual TLS: %v", err)
	}
	if got, want := md.Get("x-peer"), identity.WorkloadID("bookinfo.demo.mesh", "ratings").String(); len(got) != 1 || got[0] != want {
		t.Fatalf("the backend saw client identity %v, want %s (mutual TLS)", got, want)
	}
	if got := e.counts(t, 10); got["v1"] != 10 {
		t.Errorf("without headers: %v, want all 10 on v1", got)
	}
	if got := e.counts(t, 5, "x-canary", "yes"); got["v3"] != 0 || got["error "+codes.Unavailable.String()] != 5 {
		t.Errorf("to v3, whose identity is outside bookinfo: %v, want 5 Unavailable (handshake refused)", got)
	}
	for _, st := range e.srv.Streams() {
		if st.Nack != nil {
			t.Errorf("grpc-go rejected %s version %s: %s", st.Nack.TypeURL, st.Nack.Version, st.Nack.Message)
		}
	}
}
