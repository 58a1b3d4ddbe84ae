package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"canton.dev/canton/internal/proxy/xdsclient"
	"canton.dev/canton/internal/proxy/xdstest"
)

const wait = 5 * time.Second

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func sockAddr(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

func routerFilter(t testing.TB) []*hcmv3.HttpFilter {
	return []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router",
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}}}
}

// httpListener is a loopback listener (port 0) whose HCM takes routes from RDS name rds.
func httpListener(t testing.TB, name, rds string, mod func(*hcmv3.HttpConnectionManager)) *listenerv3.Listener {
	// Test listeners normalize paths as the generator's do (Envoy's default is not to).
	h := &hcmv3.HttpConnectionManager{StatPrefix: name, HttpFilters: routerFilter(t), NormalizePath: wrapperspb.Bool(true),
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: rds,
			ConfigSource: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}}}
	if mod != nil {
		mod(h)
	}
	return &listenerv3.Listener{Name: name, Address: sockAddr("127.0.0.1", 0), FilterChains: []*listenerv3.FilterChain{{
		Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, h)}}}}}}
}

func edsCluster(name string, mod func(*clusterv3.Cluster)) *clusterv3.Cluster {
	c := &clusterv3.Cluster{Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		ConnectTimeout: durationpb.New(time.Second),
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}}
	if mod != nil {
		mod(c)
	}
	return c
}

// endpoints is a ClusterLoadAssignment for cluster name with the given host:port addresses.
func endpoints(t testing.TB, name string, addrs ...string) *endpointv3.ClusterLoadAssignment {
	var lbs []*endpointv3.LbEndpoint
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(port)
		lbs = append(lbs, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
			Endpoint: &endpointv3.Endpoint{Address: sockAddr(host, uint32(n))}}})
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}}
}

func routeTo(cluster string) *routev3.Route_Route {
	return &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}}
}

func prefixMatch(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}}
}

// simpleRoutes sends everything to cluster.
func simpleRoutes(name, cluster string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{Name: "all", Domains: []string{"*"},
		Routes: []*routev3.Route{{Match: prefixMatch("/"), Action: routeTo(cluster)}}}}}
}

// upstream is a test HTTP server that answers with its name and counts requests.
type upstream struct {
	*httptest.Server
	name  string
	count atomic.Int64
	last  atomic.Pointer[http.Request]
}

func (u *upstream) Addr() string { return u.Listener.Addr().String() }

func startUpstream(t testing.TB, name string, h http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{name: name}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.count.Add(1)
		u.last.Store(r)
		w.Header().Set("X-Upstream", name)
		if h != nil {
			h(w, r)
			return
		}
		fmt.Fprintf(w, "%s %s", name, r.URL.RequestURI())
	}))
	t.Cleanup(u.Close)
	return u
}

// env is a proxy under test with its xDS server.
type env struct {
	t    testing.TB
	xds  *xdstest.Server
	p    *Proxy
	stop context.CancelFunc
	done chan error
	alog *strings.Builder
}

func startEnv(t testing.TB, opts ...func(*Options)) *env {
	t.Helper()
	e := &env{t: t, xds: xdstest.Start(t), done: make(chan error, 1)}
	o := Options{XDSServers: []string{e.xds.Addr}, NodeID: "test", AdminAddr: "127.0.0.1:0",
		BackoffBase: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond, DrainTime: 2 * time.Second}
	for _, f := range opts {
		f(&o)
	}
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	e.p = p
	ctx, cancel := context.WithCancel(context.Background())
	e.stop = cancel
	go func() { e.done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-e.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
	return e
}

// set pushes resources of one type at a version.
func (e *env) set(typeURL, version string, res ...proto.Message) { e.xds.Set(typeURL, version, res...) }

// waitACK waits until the proxy ACKed version of typeURL.
func (e *env) waitACK(typeURL, version string) {
	e.t.Helper()
	e.xds.WaitRequest(wait, typeURL+" ACK "+version, func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetTypeUrl() == typeURL && r.GetVersionInfo() == version && r.GetErrorDetail() == nil && r.GetResponseNonce() != ""
	})
}

// listenerAddr waits for the named listener to run and returns its address.
func (e *env) listenerAddr(name string) string {
	e.t.Helper()
	deadline := time.Now().Add(wait)
	for {
		if a := e.p.ListenerAddr(name); a != "" {
			return a
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("listener %q not running after %v", name, wait)
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
}

// basic configures listener "l" -> routes "r" -> cluster "c" with the given upstream addresses and
// returns the listener's address.
func (e *env) basic(addrs ...string) string {
	e.set(xdsclient.ClusterType, "1", edsCluster("c", nil))
	e.set(xdsclient.EndpointType, "1", endpoints(e.t, "c", addrs...))
	e.set(xdsclient.RouteType, "1", simpleRoutes("r", "c"))
	e.set(xdsclient.ListenerType, "1", httpListener(e.t, "l", "r", nil))
	e.waitACK(xdsclient.EndpointType, "1")
	e.waitACK(xdsclient.RouteType, "1")
	return e.listenerAddr("l")
}

// get sends a GET through the proxy at addr with host and headers (key, value pairs).
func get(t testing.TB, c *http.Client, addr, host, path string, kv ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s%s: %v", host, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s%s: body: %v", host, path, err)
	}
	return resp, string(b)
}

func client() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
}

func waitUntil(t testing.TB, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %v", what, wait)
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
}

func dialT(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(wait))
	t.Cleanup(func() { c.Close() })
	return c
}
