package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"canton.dev/canton/internal/proxy/cluster"
	"canton.dev/canton/internal/proxy/xdsclient"
)

// h2IdleCluster makes c an h2c cluster whose pooled connections close after idle (the way the
// generator writes a DestinationRule's connectionPool.http.idleTimeout).
func h2IdleCluster(t testing.TB, idle time.Duration) func(*clusterv3.Cluster) {
	return func(c *clusterv3.Cluster) {
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(t, &upstreamhttpv3.HttpProtocolOptions{
				CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{IdleTimeout: durationpb.New(idle)},
				UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}}}),
		}
	}
}

// clusterOf returns the running cluster name.
func (e *env) clusterOf(name string) *cluster.Cluster {
	e.t.Helper()
	cl := e.p.snap.Load().clusters[name]
	if cl == nil {
		e.t.Fatalf("cluster %q not in the active snapshot", name)
	}
	return cl
}

// Regression: once the proxy had closed an idle h2c upstream connection, every later request was
// sent to the same plain-text host with TLS ("connection termination", forever), because the
// scheme was taken from Transport.TLSClientConfig, which net/http sets on first HTTP/2 use. The
// first concurrent requests raced the same way. Each round starts several gRPC calls at once on
// a pool whose connection has just been closed for idleness; all must succeed.
func TestGRPCAfterUpstreamIdleClose(t *testing.T) {
	grpcAddr, _ := startGRPCHealth(t)

	e := startEnv(t)
	e.set(xdsclient.ClusterType, "1", edsCluster("grpc", h2IdleCluster(t, 20*time.Millisecond)))
	e.set(xdsclient.EndpointType, "1", endpoints(t, "grpc", grpcAddr))
	e.set(xdsclient.RouteType, "1", simpleRoutes("r", "grpc"))
	e.set(xdsclient.ListenerType, "1", httpListener(t, "l", "r", nil))
	e.waitACK(xdsclient.EndpointType, "1")
	addr := e.listenerAddr("l")
	cl := e.clusterOf("grpc")
	if cl.IdleTimeout != 20*time.Millisecond {
		t.Fatalf("cluster idle timeout %v, want common_http_protocol_options.idle_timeout 20ms", cl.IdleTimeout)
	}

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	for round := range 3 {
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				defer cancel()
				if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "svc"}); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("round %d: call through the proxy: %v", round, err)
		}
		// The proxy closes the idle upstream connection.
		waitUntil(t, "idle upstream connection closed", func() bool { return cl.Connections() == 0 })
	}
}

// Regression, the upstream's side of the same bug: an h2c upstream that closes idle connections
// (GOAWAY, then close) must not break the next request.
func TestH2CAfterUpstreamGoAway(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protos, IdleTimeout: 20 * time.Millisecond,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) })}
	go srv.Serve(lis)
	defer srv.Close()

	e := startEnv(t)
	e.set(xdsclient.ClusterType, "1", edsCluster("c", h2Cluster))
	e.set(xdsclient.EndpointType, "1", endpoints(t, "c", lis.Addr().String()))
	e.set(xdsclient.RouteType, "1", simpleRoutes("r", "c"))
	e.set(xdsclient.ListenerType, "1", httpListener(t, "l", "r", nil))
	e.waitACK(xdsclient.EndpointType, "1")
	addr := e.listenerAddr("l")
	cl := e.clusterOf("c")
	c := client()
	defer c.CloseIdleConnections()
	// Go's h2c server closes the connection about a second after its idle GOAWAY: two rounds.
	for round := range 2 {
		resp, body := get(t, c, addr, "x", "/")
		if resp.StatusCode != 200 || body != "HTTP/2.0" {
			t.Fatalf("round %d: %d %q, want 200 from the upstream over h2c", round, resp.StatusCode, body)
		}
		waitUntil(t, "upstream closed the idle connection", func() bool { return cl.Connections() == 0 })
	}
}
