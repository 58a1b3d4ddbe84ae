package proxy

import (
	"net"
	"strconv"
	"testing"
	"time"

	"canton.dev/canton/internal/proxy/xdsclient"
)

// TestBoundSocketsAreServedAndClosed: a listener and the admin endpoint whose
// addresses the caller bound in advance serve on those very sockets (no
// second bind, so no window for another process to take the port); a bound
// socket no listener claims is closed when the proxy stops.
func TestBoundSocketsAreServedAndClosed(t *testing.T) {
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	lnL, lnAdmin, lnUnused := listen(), listen(), listen()
	up := startUpstream(t, "a", nil)
	e := startEnv(t, func(o *Options) {
		o.AdminAddr = lnAdmin.Addr().String()
		o.Bound = map[string]net.Listener{lnL.Addr().String(): lnL, lnAdmin.Addr().String(): lnAdmin, lnUnused.Addr().String(): lnUnused}
	})
	host, port, _ := net.SplitHostPort(lnL.Addr().String())
	p, _ := strconv.Atoi(port)
	e.set(xdsclient.ClusterType, "1", edsCluster("c", nil))
	e.set(xdsclient.EndpointType, "1", endpoints(t, "c", up.Addr()))
	e.set(xdsclient.RouteType, "1", simpleRoutes("r", "c"))
	l := httpListener(t, "l", "r", nil)
	l.Address = sockAddr(host, uint32(p))
	e.set(xdsclient.ListenerType, "1", l)
	e.waitACK(xdsclient.ListenerType, "1")
	e.waitACK(xdsclient.EndpointType, "1") // else the first request may find the cluster without endpoints
	if got := e.listenerAddr("l"); got != lnL.Addr().String() {
		t.Fatalf("listener on %s, want the bound %s", got, lnL.Addr())
	}
	if resp, body := get(t, client(), lnL.Addr().String(), "svc", "/x"); resp.StatusCode != 200 {
		t.Fatalf("through the bound listener: %d %s", resp.StatusCode, body)
	}
	if got := e.p.AdminAddr(); got != lnAdmin.Addr().String() {
		t.Fatalf("admin on %q, want the bound %s", got, lnAdmin.Addr())
	}
	resp, err := client().Get("http://" + lnAdmin.Addr().String() + "/ready")
	if err != nil {
		t.Fatalf("admin on the bound socket: %v", err)
	}
	resp.Body.Close()

	e.stop()
	select {
	case <-e.done:
		e.done <- nil // for the cleanup's receive
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	for name, ln := range map[string]net.Listener{"unused": lnUnused, "listener": lnL, "admin": lnAdmin} {
		if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
			c.Close()
			t.Errorf("%s socket %s still accepts after the proxy stopped", name, ln.Addr())
		}
	}
}
