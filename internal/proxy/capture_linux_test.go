//go:build linux

package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os/exec"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	origdstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"canton.dev/canton/internal/meshtest/netns"
	"canton.dev/canton/internal/proxy/xdsclient"
)

// TestTransparentCapture runs TestTransparentCaptureInNetns in a fresh network namespace, so the
// iptables rules it adds never touch the host's and vanish with the namespace. Skipped without
// root, iptables or namespaces.
func TestTransparentCapture(t *testing.T) {
	netns.Run(t, "TestTransparentCaptureInNetns", 35*time.Second)
}

// TestTransparentCaptureInNetns is the body of TestTransparentCapture; it runs only in the namespace
// that test creates. Traffic is on loopback only; iptables REDIRECTs connections to fixed ports
// (nothing listens there) to the proxy's listeners, which find the original destination with
// SO_ORIGINAL_DST.
func TestTransparentCaptureInNetns(t *testing.T) {
	netns.Enter(t)

	svc := startUpstream(t, "svc", nil)
	fallback := startUpstream(t, "fallback", nil)
	echo := echoServer(t, "echo:")
	e := startEnv(t)
	e.set(xdsclient.ClusterType, "1", edsCluster("svc", nil), edsCluster("fallback", nil), edsCluster("echo", nil))
	e.set(xdsclient.EndpointType, "1", endpoints(t, "svc", svc.Addr()), endpoints(t, "fallback", fallback.Addr()),
		endpoints(t, "echo", echo))
	e.set(xdsclient.RouteType, "1", simpleRoutes("r", "svc"))
	tcpTo := func(c string) *tcpproxyv3.TcpProxy {
		return &tcpproxyv3.TcpProxy{StatPrefix: c, ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: c}}
	}
	origDstFilter := &listenerv3.ListenerFilter{Name: "envoy.filters.listener.original_dst",
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(t, &origdstv3.OriginalDst{})}}

	// Envoy's virtual outbound pattern: one bound listener takes every redirected connection and
	// hands it to the listener declared (bind_to_port false) at its original destination.
	virtual := tcpListener(t, "virtual", tcpTo("fallback")) // destinations without a listener
	virtual.UseOriginalDst = wrapperspb.Bool(true)
	svcHTTP := httpListener(t, "svc-http", "r", nil) // exact address
	svcHTTP.Address, svcHTTP.BindToPort = sockAddr("127.0.0.1", 18080), wrapperspb.Bool(false)
	svcTCP := tcpListener(t, "svc-tcp", tcpTo("echo")) // wildcard address
	svcTCP.Address, svcTCP.BindToPort = sockAddr("0.0.0.0", 18081), wrapperspb.Bool(false)
	// Inbound pattern: the original_dst filter alone; filter chains match the original port.
	inbound := tcpListener(t, "inbound", tcpTo("echo"))
	inbound.FilterChains[0].FilterChainMatch = &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(18083)}
	inbound.DefaultFilterChain = tcpListener(t, "", tcpTo("fallback")).FilterChains[0]
	inbound.ListenerFilters = []*listenerv3.ListenerFilter{origDstFilter}
	e.set(xdsclient.ListenerType, "1", virtual, svcHTTP, svcTCP, inbound)
	e.waitACK(xdsclient.ListenerType, "1")
	e.waitACK(xdsclient.RouteType, "1")
	_, vport, _ := net.SplitHostPort(e.listenerAddr("virtual"))
	_, iport, _ := net.SplitHostPort(e.listenerAddr("inbound"))
	e.listenerAddr("svc-http")
	e.listenerAddr("svc-tcp")

	// Only connections to the test's fixed ports are captured: the proxy's own connections to the
	// upstreams (ephemeral ports) are not, so no owner match is needed here.
	netns.NAT(t, "iptables", "-A", "OUTPUT", "-p", "tcp", "-d", "127.0.0.1", "--dport", "18080:18082", "-j", "REDIRECT", "--to-ports", vport)
	netns.NAT(t, "iptables", "-A", "OUTPUT", "-p", "tcp", "-d", "127.0.0.1", "--dport", "18083:18084", "-j", "REDIRECT", "--to-ports", iport)

	t.Run("hand-off to an HTTP listener at the exact address", func(t *testing.T) {
		resp, body := get(t, oneShotClient(), "127.0.0.1:18080", "svc.example", "/hello")
		if resp.StatusCode != 200 || resp.Header.Get("X-Upstream") != "svc" || body != "svc /hello" {
			t.Fatalf("got %d %q from %q, want 200 from svc", resp.StatusCode, body, resp.Header.Get("X-Upstream"))
		}
		if r := svc.last.Load(); r == nil || r.Header.Get("X-Request-Id") == "" {
			t.Errorf("request did not go through the HTTP connection manager (no X-Request-Id)")
		}
	})
	t.Run("hand-off to a TCP listener at the wildcard address", func(t *testing.T) {
		if got := echoOnce(t, "127.0.0.1:18081", "ping"); got != "echo:ping" {
			t.Fatalf("got %q, want echo:ping", got)
		}
	})
	t.Run("no listener at the destination: the receiving listener serves", func(t *testing.T) {
		resp, body := get(t, oneShotClient(), "127.0.0.1:18082", "x", "/y")
		if resp.Header.Get("X-Upstream") != "fallback" || body != "fallback /y" {
			t.Fatalf("got %q from %q, want fallback", body, resp.Header.Get("X-Upstream"))
		}
	})
	t.Run("original_dst filter: chain matched on the original port", func(t *testing.T) {
		if got := echoOnce(t, "127.0.0.1:18083", "pong"); got != "echo:pong" {
			t.Fatalf("got %q, want echo:pong", got)
		}
		resp, _ := get(t, oneShotClient(), "127.0.0.1:18084", "x", "/")
		if resp.Header.Get("X-Upstream") != "fallback" {
			t.Fatalf("port 18084 went to %q, want the default chain (fallback)", resp.Header.Get("X-Upstream"))
		}
	})
	t.Run("not redirected: served by the listener itself", func(t *testing.T) {
		resp, _ := get(t, oneShotClient(), e.listenerAddr("virtual"), "x", "/")
		if resp.Header.Get("X-Upstream") != "fallback" {
			t.Fatalf("direct connection went to %q, want fallback", resp.Header.Get("X-Upstream"))
		}
	})
	t.Run("ipv6", func(t *testing.T) {
		if _, err := exec.LookPath("ip6tables"); err != nil {
			t.Skip(netns.SkipPrefix + "ip6tables not found")
		}
		if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
			t.Skip(netns.SkipPrefix + "no IPv6 loopback: " + err.Error())
		} else {
			ln.Close()
		}
		v6 := tcpListener(t, "virtual6", tcpTo("fallback"))
		v6.Address, v6.UseOriginalDst = sockAddr("::1", 0), wrapperspb.Bool(true)
		svc6 := httpListener(t, "svc6", "r", nil)
		svc6.Address, svc6.BindToPort = sockAddr("::1", 18085), wrapperspb.Bool(false)
		e.set(xdsclient.ListenerType, "2", virtual, svcHTTP, svcTCP, inbound, v6, svc6)
		e.waitACK(xdsclient.ListenerType, "2")
		_, v6port, _ := net.SplitHostPort(e.listenerAddr("virtual6"))
		netns.NAT(t, "ip6tables", "-A", "OUTPUT", "-p", "tcp", "-d", "::1", "--dport", "18085:18086", "-j", "REDIRECT", "--to-ports", v6port)
		resp, body := get(t, oneShotClient(), "[::1]:18085", "svc.example", "/six")
		if resp.Header.Get("X-Upstream") != "svc" || body != "svc /six" {
			t.Fatalf("got %q from %q, want svc", body, resp.Header.Get("X-Upstream"))
		}
		resp, _ = get(t, oneShotClient(), "[::1]:18086", "x", "/")
		if resp.Header.Get("X-Upstream") != "fallback" {
			t.Fatalf("[::1]:18086 went to %q, want fallback", resp.Header.Get("X-Upstream"))
		}
	})
}

// oneShotClient does not reuse connections, so each request is a new captured connection.
func oneShotClient() *http.Client {
	return &http.Client{Timeout: wait, Transport: &http.Transport{DisableKeepAlives: true}}
}

func echoOnce(t *testing.T, addr, msg string) string {
	t.Helper()
	c := dialT(t, addr)
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(bufio.NewReader(c))
	if err != nil {
		t.Fatalf("read from %s: %v", addr, err)
	}
	return string(b)
}
