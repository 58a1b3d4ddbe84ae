//go:build linux

package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	origdstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"canton.dev/canton/internal/proxy/xdsclient"
)

// netnsChildEnv marks the copy of the test binary that TestTransparentCapture runs in a new network
// namespace.
const netnsChildEnv = "CANTON_PROXY_TEST_IN_NETNS"

const captureSkip = "transparent capture test needs root, iptables and network namespaces: "

// TestTransparentCapture runs TestTransparentCaptureInNetns in a copy of the test binary started in a
// fresh network namespace (clone with CLONE_NEWNET), so the iptables rules it adds never touch the
// host's and vanish with the namespace. Skipped without root, iptables or namespaces.
func TestTransparentCapture(t *testing.T) {
	if os.Getenv(netnsChildEnv) != "" {
		t.Skip("already inside the test network namespace")
	}
	if os.Geteuid() != 0 {
		t.Skip(captureSkip + "not running as root")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip(captureSkip + "iptables not found in PATH")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestTransparentCaptureInNetns$", "-test.v", "-test.count=1",
		"-test.timeout=35s")
	cmd.Env = append(os.Environ(), netnsChildEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Skip(captureSkip + "cannot create a network namespace: " + err.Error())
	}
	err := cmd.Wait()
	t.Logf("in the network namespace:\n%s", out.String())
	if m := regexp.MustCompile(`(?m)^\s+capture_linux_test.go:\d+: (` + regexp.QuoteMeta(captureSkip) + `.*)$`).FindStringSubmatch(out.String()); m != nil &&
		strings.Contains(out.String(), "--- SKIP: TestTransparentCaptureInNetns") {
		t.Skip(m[1])
	}
	if err != nil || !strings.Contains(out.String(), "--- PASS: TestTransparentCaptureInNetns") {
		t.Fatalf("capture test in the network namespace failed: %v", err)
	}
}

// TestTransparentCaptureInNetns is the body of TestTransparentCapture; it runs only in the namespace
// that test creates. Traffic is on loopback only; iptables REDIRECTs connections to fixed ports
// (nothing listens there) to the proxy's listeners, which find the original destination with
// SO_ORIGINAL_DST.
func TestTransparentCaptureInNetns(t *testing.T) {
	if os.Getenv(netnsChildEnv) == "" {
		t.Skip("runs only inside the network namespace TestTransparentCapture creates")
	}
	// Refuse to touch anything but a fresh namespace: it has a loopback interface and nothing else.
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	if len(ifs) != 1 || ifs[0].Name != "lo" {
		t.Fatalf("not a fresh network namespace (interfaces %v): refusing to change iptables rules", ifs)
	}
	if err := loopbackUp(); err != nil {
		t.Skip(captureSkip + "bringing lo up in the namespace: " + err.Error())
	}
	if out, err := exec.Command("iptables", "-w", "5", "-t", "nat", "-S").CombinedOutput(); err != nil {
		t.Skip(captureSkip + "iptables nat table unavailable in the namespace: " + strings.TrimSpace(string(out)))
	}

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
	iptables(t, "iptables", "-A", "OUTPUT", "-p", "tcp", "-d", "127.0.0.1", "--dport", "18080:18082", "-j", "REDIRECT", "--to-ports", vport)
	iptables(t, "iptables", "-A", "OUTPUT", "-p", "tcp", "-d", "127.0.0.1", "--dport", "18083:18084", "-j", "REDIRECT", "--to-ports", iport)

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
			t.Skip(captureSkip + "ip6tables not found")
		}
		if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
			t.Skip(captureSkip + "no IPv6 loopback: " + err.Error())
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
		iptables(t, "ip6tables", "-A", "OUTPUT", "-p", "tcp", "-d", "::1", "--dport", "18085:18086", "-j", "REDIRECT", "--to-ports", v6port)
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

// iptables adds one nat rule with the given command (iptables or ip6tables).
func iptables(t *testing.T, cmd string, args ...string) {
	t.Helper()
	out, err := exec.Command(cmd, append([]string{"-w", "5", "-t", "nat"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", cmd, strings.Join(args, " "), err, out)
	}
}

// loopbackUp sets the IFF_UP flag of lo (a new network namespace starts with it down).
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS: %w", err)
	}
	return nil
}
