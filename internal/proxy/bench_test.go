package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"canton.dev/canton/internal/proxy/xdsclient"
)

var kib = strings.Repeat("x", 1024)

func benchGet(b *testing.B, c *http.Client, url string) {
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}

// BenchmarkDirect is the baseline: the same client straight to the upstream (1 KiB responses).
func BenchmarkDirect(b *testing.B) {
	up := startUpstream(b, "a", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, kib) })
	benchGet(b, &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}, up.URL+"/")
}

// BenchmarkProxy sends the same requests through one proxy hop (route match, filter chain with the
// router only, round-robin cluster, pooled upstream connections). Allocations are the client's,
// the proxy's and the upstream server's together.
func BenchmarkProxy(b *testing.B) {
	up := startUpstream(b, "a", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, kib) })
	e := startEnv(b)
	addr := e.basic(up.Addr())
	benchGet(b, &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}, "http://"+addr+"/")
}

// BenchmarkConfig1000Clusters applies 1,000 EDS clusters (3 endpoints each) with one route each and
// reports the heap they occupy (heap-MB), the size that matters for the proxy's RSS.
func BenchmarkConfig1000Clusters(b *testing.B) {
	for b.Loop() {
		p, err := New(Options{XDSServers: []string{"127.0.0.1:1"}})
		if err != nil {
			b.Fatal(err)
		}
		st := xdsclient.State{Resources: map[string]xdsclient.Resources{}, Versions: map[string]string{}}
		clusters, cla := xdsclient.Resources{}, xdsclient.Resources{}
		rc := &routev3.RouteConfiguration{Name: "r"}
		for i := 0; i < 1000; i++ {
			name := fmt.Sprintf("outbound|9080||svc%d.ns.demo.mesh", i)
			clusters[name] = mustResource(b, edsCluster(name, nil))
			cla[name] = mustResource(b, endpoints(b, name, fmt.Sprintf("10.0.%d.%d:9080", i/250, i%250+1), fmt.Sprintf("10.1.%d.%d:9080", i/250, i%250+1), fmt.Sprintf("10.2.%d.%d:9080", i/250, i%250+1)))
			rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{Name: name, Domains: []string{fmt.Sprintf("svc%d.ns.demo.mesh", i)},
				Routes: []*routev3.Route{{Match: prefixMatch("/"), Action: routeTo(name)}}})
		}
		st.Resources[xdsclient.ClusterType] = clusters
		st.Resources[xdsclient.EndpointType] = cla
		st.Resources[xdsclient.RouteType] = xdsclient.Resources{"r": mustResource(b, rc)}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		old := emptySnapshot()
		for _, typ := range []string{xdsclient.ClusterType, xdsclient.EndpointType, xdsclient.RouteType} {
			s, _, err := p.build(old, typ, st)
			if err != nil {
				b.Fatal(err)
			}
			s.applyEndpoints(old)
			old = s
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heap-MB")
		runtime.KeepAlive(old)
		for _, c := range old.clusters {
			c.Close(0)
		}
	}
}

// benchSerial sends requests one after another on one keep-alive connection (1 KiB responses): the
// per-request cost of a single stream, without the scheduling noise of parallel clients.
func benchSerial(b *testing.B, url string) {
	benchSerialWith(b, &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1}}, url)
}

// BenchmarkKeepAliveDirect is BenchmarkKeepAliveProxy's baseline: the same client and upstream
// without the proxy. The difference between the two is the proxy's cost per request.
func BenchmarkKeepAliveDirect(b *testing.B) {
	up := startUpstream(b, "a", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, kib) })
	benchSerial(b, up.URL+"/")
}

// BenchmarkKeepAliveProxy is one HTTP/1.1 keep-alive client connection through one proxy hop to a
// local upstream, one request at a time, 1 KiB responses: the proxy's hottest path.
func BenchmarkKeepAliveProxy(b *testing.B) {
	up := startUpstream(b, "a", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, kib) })
	e := startEnv(b)
	addr := e.basic(up.Addr())
	benchSerial(b, "http://"+addr+"/")
}

// h2cClient is an HTTP/2 prior-knowledge (h2c) client on one connection.
func h2cClient() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p, MaxConnsPerHost: 1}}
}

// benchSerialWith is benchSerial with a given client.
func benchSerialWith(b *testing.B, c *http.Client, url string) {
	defer c.CloseIdleConnections()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || n != int64(len(kib)) {
			b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
		}
	}
}

// BenchmarkH2CProxy is one h2c client connection through one proxy hop (downstream HTTP/2 served by
// the proxy's HTTP/2 server, HTTP/1.1 upstream), one request at a time, 1 KiB responses.
func BenchmarkH2CProxy(b *testing.B) {
	up := startUpstream(b, "a", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, kib) })
	e := startEnv(b)
	addr := e.basic(up.Addr())
	benchSerialWith(b, h2cClient(), "http://"+addr+"/")
}

// BenchmarkGRPCProxy is one gRPC client connection through one proxy hop (downstream HTTP/2 served by
// the proxy's HTTP/2 server, an HTTP/2 cluster upstream), unary calls one at a time (the health service's Check).
func BenchmarkGRPCProxy(b *testing.B) {
	grpcAddr, _ := startGRPCHealth(b)
	e := startEnv(b)
	e.set(xdsclient.ClusterType, "1", edsCluster("grpc", h2Cluster))
	e.set(xdsclient.EndpointType, "1", endpoints(b, "grpc", grpcAddr))
	e.set(xdsclient.RouteType, "1", simpleRoutes("r", "grpc"))
	e.set(xdsclient.ListenerType, "1", httpListener(b, "l", "r", nil))
	e.waitACK(xdsclient.EndpointType, "1")
	conn, err := grpc.NewClient(e.listenerAddr("l"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	req := &healthpb.HealthCheckRequest{Service: "svc"}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := hc.Check(context.Background(), req)
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			b.Fatalf("Check: %v %v", resp, err)
		}
	}
}
