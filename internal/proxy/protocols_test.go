package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"canton.dev/canton/internal/proxy/xdsclient"
)

func h2Cluster(c *clusterv3.Cluster) { c.Http2ProtocolOptions = &corev3.Http2ProtocolOptions{} }

// startGRPCHealth starts a gRPC server on 127.0.0.1 with the health service, service "svc" serving,
// stopped when tb ends; it returns its address and the health server.
func startGRPCHealth(tb testing.TB) (string, *health.Server) {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(lis)
	tb.Cleanup(gs.Stop)
	return lis.Addr().String(), hs
}

// checkErrorStatusAndWatch checks, through a proxy to startGRPCHealth's server (service "svc"
// serving), that an error status comes back in the trailers and that a server stream delivers a
// message, then another once the status changes (it leaves "svc" not serving).
func checkErrorStatusAndWatch(t *testing.T, ctx context.Context, hc healthpb.HealthClient, hs *health.Server) {
	t.Helper()
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "unknown"}); status.Code(err) != codes.NotFound {
		t.Errorf("upstream error status: %v, want NotFound carried in trailers", err)
	}
	stream, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := stream.Recv(); err != nil || m.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first streamed message: %v %v", m, err)
	}
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_NOT_SERVING)
	if m, err := stream.Recv(); err != nil || m.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("second streamed message: %v %v", m, err)
	}
}

func TestGRPCUnaryStreamingAndUnavailable(t *testing.T) {
	grpcAddr, hs := startGRPCHealth(t)

	e := startEnv(t)
	e.set(xdsclient.ClusterType, "1", edsCluster("grpc", h2Cluster), edsCluster("empty", h2Cluster))
	e.set(xdsclient.EndpointType, "1", endpoints(t, "grpc", grpcAddr), endpoints(t, "empty"))
	rc := simpleRoutes("r", "grpc")
	rc.VirtualHosts[0].Routes = append([]*routev3.Route{{Match: prefixMatch("/grpc.health.v1.Health/Watch"), Action: routeTo("grpc")},
		{Match: prefixMatch("/grpc.health.v1.Health/List"), Action: routeTo("empty")}}, rc.VirtualHosts[0].Routes...)
	e.set(xdsclient.RouteType, "1", rc)
	e.set(xdsclient.ListenerType, "1", httpListener(t, "l", "r", nil))
	e.waitACK(xdsclient.EndpointType, "1")
	addr := e.listenerAddr("l")

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("unary Check through the proxy: %v %v", resp, err)
	}
	checkErrorStatusAndWatch(t, ctx, hc, hs)
	if _, err := hc.List(ctx, &healthpb.HealthListRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("no upstream: %v, want Unavailable (grpc-status 14)", err)
	}
}

func TestWebSocketUpgrade(t *testing.T) {
	// The upstream speaks just enough of the upgrade handshake, then echoes bytes.
	up := startUpstream(t, "ws", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" || !strings.EqualFold(r.Header.Get("Connection"), "upgrade") {
			http.Error(w, "not an upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw)
	})
	e := startEnv(t)
	e.set(xdsclient.ClusterType, "1", edsCluster("c", nil))
	e.set(xdsclient.EndpointType, "1", endpoints(t, "c", up.Addr()))
	e.set(xdsclient.RouteType, "1", simpleRoutes("r", "c"))
	e.set(xdsclient.ListenerType, "1", httpListener(t, "l", "r", func(h *hcmv3.HttpConnectionManager) {
		h.UpgradeConfigs = []*hcmv3.HttpConnectionManager_UpgradeConfig{{UpgradeType: "websocket"}}
	}), httpListener(t, "noupgrade", "r", nil))
	e.waitACK(xdsclient.EndpointType, "1")
	addr := e.listenerAddr("l")

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(wait))
	fmt.Fprint(conn, "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade response: %v %v", resp, err)
	}
	for _, msg := range []string{"hello", "world"} {
		fmt.Fprint(conn, msg)
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo of %q: %q %v", msg, buf, err)
		}
	}
	// Without upgrade_configs the upgrade is refused, as in Envoy.
	c2, err := net.Dial("tcp", e.listenerAddr("noupgrade"))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(wait))
	fmt.Fprint(c2, "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(c2), nil); err != nil || resp.StatusCode != 403 {
		t.Errorf("upgrade without upgrade_configs: %v %v, want 403", resp, err)
	}
}

func tcpListener(t testing.TB, name string, tp *tcpproxyv3.TcpProxy) *listenerv3.Listener {
	return &listenerv3.Listener{Name: name, Address: sockAddr("127.0.0.1", 0), FilterChains: []*listenerv3.FilterChain{{
		Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.tcp_proxy",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, tp)}}}}}}
}

func echoServer(t testing.TB, prefix string) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, prefix)
				io.Copy(c, c)
			}()
		}
	}()
	return lis.Addr().String()
}

func TestTCPProxyWeighted(t *testing.T) {
	a, b := echoServer(t, "A:"), echoServer(t, "B:")
	e := startEnv(t)
	e.set(xdsclient.ClusterType, "1", edsCluster("a", nil), edsCluster("b", nil))
	e.set(xdsclient.EndpointType, "1", endpoints(t, "a", a), endpoints(t, "b", b))
	e.set(xdsclient.ListenerType, "1", tcpListener(t, "tcp", &tcpproxyv3.TcpProxy{StatPrefix: "tcp",
		ClusterSpecifier: &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: &tcpproxyv3.TcpProxy_WeightedCluster{
			Clusters: []*tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{{Name: "a", Weight: 1}, {Name: "b", Weight: 1}}}}}))
	e.waitACK(xdsclient.EndpointType, "1")
	addr := e.listenerAddr("tcp")
	seen := map[string]int{}
	for i := 0; i < 40; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(wait))
		msg := "ping" + strconv.Itoa(i)
		io.WriteString(c, msg)
		c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || len(got) < 2 || string(got[2:]) != msg {
			t.Fatalf("echo: %q %v", got, err)
		}
		seen[string(got[:2])]++
	}
	if seen["A:"] < 5 || seen["B:"] < 5 {
		t.Errorf("weighted TCP split %v, want both clusters used", seen)
	}
	_, metrics := get(t, client(), e.p.AdminAddr(), "admin", "/stats/prometheus")
	if !strings.Contains(metrics, "istio_tcp_connections_opened_total") || !strings.Contains(metrics, "istio_tcp_sent_bytes_total") {
		t.Errorf("TCP metrics missing")
	}
}
