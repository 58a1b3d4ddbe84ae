package xds

import (
	"context"
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

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	grpcxds "google.golang.org/grpc/xds" // aliased: this package is also named xds

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

	mu  sync.Mutex
	gen func(*Snapshot, Node) (Resources, error)
}

// startBackend serves the gRPC health service on 127.0.0.1:0; every answer carries the header
// x-backend: name. It returns the port.
func startBackend(t *testing.T, name string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		grpc.SetHeader(ctx, metadata.Pairs("x-backend", name))
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	_, port, _ := net.SplitHostPort(lis.Addr().String())
	return port
}

// proxylessInput reads the routing YAML with the backends' ports and the split's weights.
func proxylessInput(t *testing.T, ports map[string]string, w1, w2 int, rev uint64) Input {
	t.Helper()
	path := filepath.Join("testdata", "proxyless", "routing.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"V1_PORT": ports["v1"], "V2_PORT": ports["v2"], "V3_PORT": ports["v3"],
		"V1_WEIGHT": strconv.Itoa(w1), "V2_WEIGHT": strconv.Itoa(w2)}
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

// proxylessBootstrap is grpc-go's bootstrap: one plaintext ADS server and a node that
// describes itself with Canton's node metadata as a proxyless client of namespace bookinfo.
func proxylessBootstrap(serverAddr string) []byte {
	return fmt.Appendf(nil, `{
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
}`, serverAddr, MetaNamespace, MetaService, MetaLabels, MetaKind, MetaCapabilities)
}

// startProxyless serves the routing YAML (weights w1/w2) through gen and dials the target.
func startProxyless(t *testing.T, gen func(*Snapshot, Node) (Resources, error), w1, w2 int) *proxylessEnv {
	t.Helper()
	e := &proxylessEnv{scope: &scopeState{}, gen: gen, ports: map[string]string{}}
	for _, v := range []string{"v1", "v2", "v3"} {
		e.ports[v] = startBackend(t, v)
	}
	e.scope.set(t, proxylessInput(t, e.ports, w1, w2, 1))
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
	resolver, err := grpcxds.NewXDSResolverWithConfigForTesting(proxylessBootstrap(lis.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///"+proxylessTarget, grpc.WithResolvers(resolver),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
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
		e.scope.set(t, proxylessInput(t, e.ports, 0, 100, 2))
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
	snap, err := NewSnapshot(proxylessInput(t, map[string]string{"v1": "1", "v2": "2", "v3": "3"}, 75, 25, 1))
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
	snap, err := NewSnapshot(proxylessInput(t, ports, 75, 25, 1))
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
	for name, c := range res.Clusters {
		if c.(*clusterv3.Cluster).GetTransportSocket() != nil {
			// Allowed once it is certificate_provider_instance based; SDS is not.
			t.Logf("cluster %s has a transport socket; check grpc-go accepts it", name)
		}
	}
	// And the same traffic assertions as TestProxylessGRPC, without the adapter.
	e := startProxyless(t, func(s *Snapshot, n Node) (Resources, error) { return s.Generate(n) }, 75, 25)
	e.ready(t)
	if got := e.counts(t, 20, "x-canary", "yes"); got["v3"] != 20 {
		t.Errorf("x-canary: yes: %v, want all 20 on v3", got)
	}
}
