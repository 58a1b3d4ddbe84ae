package proxy

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"canton.dev/canton/internal/proxy/xdsclient"
	"canton.dev/canton/internal/telemetry"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestFaultFilterPerRouteAndAccessLog runs the filter chain of internal/filter: a fault filter that
// aborts requests, disabled on one route through typed_per_filter_config, and checks the response
// flags in the access log.
func TestFaultFilterPerRouteAndAccessLog(t *testing.T) {
	up := startUpstream(t, "a", nil)
	var logs syncBuffer
	alog, err := telemetry.NewAccessLog(&logs, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := startEnv(t, func(o *Options) { o.AccessLog = alog })
	abort := &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 503},
		Percentage: &typev3.FractionalPercent{Numerator: 100}}}
	e.set(xdsclient.ClusterType, "1", edsCluster("c", nil))
	e.set(xdsclient.EndpointType, "1", endpoints(t, "c", up.Addr()))
	noFault := &faultv3.HTTPFault{}
	rc := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"},
		Routes: []*routev3.Route{
			{Name: "safe", Match: prefixMatch("/safe"), Action: routeTo("c"),
				TypedPerFilterConfig: map[string]*anypb.Any{"envoy.filters.http.fault": mustAny(t, noFault)}},
			{Name: "faulty", Match: prefixMatch("/"), Action: routeTo("c")},
		}}}}
	e.set(xdsclient.RouteType, "1", rc)
	e.set(xdsclient.ListenerType, "1", httpListener(t, "l", "r", func(h *hcmv3.HttpConnectionManager) {
		h.HttpFilters = append([]*hcmv3.HttpFilter{{Name: "envoy.filters.http.fault",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, abort)}}}, h.HttpFilters...)
	}))
	e.waitACK(xdsclient.RouteType, "1")
	e.waitACK(xdsclient.EndpointType, "1")
	addr := e.listenerAddr("l")
	c := client()
	if resp, _ := get(t, c, addr, "x", "/boom"); resp.StatusCode != 503 {
		t.Errorf("fault abort: %d, want 503", resp.StatusCode)
	}
	if resp, body := get(t, c, addr, "x", "/safe"); resp.StatusCode != 200 || body != "a /safe" {
		t.Errorf("route with the fault disabled: %d %q", resp.StatusCode, body)
	}
	var entries []map[string]any
	waitUntil(t, "two access log lines", func() bool { return strings.Count(logs.String(), "\n") >= 2 })
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		m := map[string]any{}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("access log line %q: %v", line, err)
		}
		entries = append(entries, m)
	}
	if entries[0]["response_flags"] != "FI" || entries[0]["route_name"] != "faulty" || entries[1]["response_code"] != float64(200) {
		t.Errorf("access log entries: %v", entries)
	}
}

func TestTCPIdleTimeout(t *testing.T) {
	a := echoServer(t, "A:")
	e := startEnv(t)
	e.set(xdsclient.ClusterType, "1", edsCluster("a", nil))
	e.set(xdsclient.EndpointType, "1", endpoints(t, "a", a))
	e.set(xdsclient.ListenerType, "1", tcpListener(t, "tcp", &tcpproxyv3.TcpProxy{StatPrefix: "tcp",
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: "a"}, IdleTimeout: durationpb.New(100 * time.Millisecond)}))
	e.waitACK(xdsclient.EndpointType, "1")
	conn := dialT(t, e.listenerAddr("tcp"))
	start := time.Now()
	buf := make([]byte, 64)
	// Stay active for a while: the connection must survive past the idle timeout while bytes flow.
	for i := 0; i < 6; i++ {
		conn.Write([]byte("x"))
		time.Sleep(50 * time.Millisecond) // traffic pacing, not synchronization
		if _, err := conn.Read(buf); err != nil {
			t.Fatalf("active connection closed after %v: %v", time.Since(start), err)
		}
	}
	// Then go quiet: the proxy closes it.
	idleStart := time.Now()
	for {
		if _, err := conn.Read(buf); err != nil {
			break
		}
	}
	if d := time.Since(idleStart); d > 2*time.Second {
		t.Errorf("idle connection closed after %v, want within a few idle periods", d)
	}
}
