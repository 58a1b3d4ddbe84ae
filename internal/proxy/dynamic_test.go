package proxy

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"canton.dev/canton/internal/proxy/xdsclient"
	"canton.dev/canton/internal/proxy/xdstest"
)

func TestConfigChangesUnderLoadFailNoRequest(t *testing.T) {
	ua, ub := startUpstream(t, "a", nil), startUpstream(t, "b", nil)
	e := startEnv(t, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	addr := twoClusters(t, e, simpleRoutes("r", "a"), ua, ub, nil)

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get("http://" + addr + "/load")
				if err == nil {
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprint(err, resp))
					continue
				}
				ok.Add(1)
			}
		}()
	}
	// Route flips between clusters, endpoint updates, and listener changes that replace the filter
	// chain (established connections drain on the old one).
	progress := func() {
		n := ok.Load() + failed.Load()
		waitUntil(t, "requests flowing", func() bool { return ok.Load()+failed.Load() >= n+10 })
	}
	for i := 2; i < 12; i++ {
		progress()
		v := fmt.Sprint(i)
		target := []string{"a", "b"}[i%2]
		e.set(xdsclient.RouteType, v, simpleRoutes("r", target))
		e.waitACK(xdsclient.RouteType, v)
		e.set(xdsclient.EndpointType, v, endpoints(t, "a", ua.Addr()), endpoints(t, "b", ub.Addr()))
		e.waitACK(xdsclient.EndpointType, v)
		e.set(xdsclient.ListenerType, v, httpListener(t, "l", "r", func(h *hcmv3.HttpConnectionManager) { h.StatPrefix = "l" + v }))
		e.waitACK(xdsclient.ListenerType, v)
		if e.p.ListenerAddr("l") != addr {
			t.Fatalf("listener address changed on update")
		}
	}
	progress()
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || ok.Load() < 100 {
		t.Errorf("%d requests failed (first: %v), %d succeeded; want 0 failed", failed.Load(), firstErr.Load(), ok.Load())
	}
	if ua.count.Load() == 0 || ub.count.Load() == 0 {
		t.Errorf("route flips not applied: a=%d b=%d", ua.count.Load(), ub.count.Load())
	}
}

func TestServesLastGoodConfigWithoutControlPlane(t *testing.T) {
	up := startUpstream(t, "a", nil)
	e := startEnv(t)
	addr := e.basic(up.Addr())
	e.xds.Stop()
	waitUntil(t, "stale readiness", func() bool {
		ok, msg := e.p.Ready()
		return ok && strings.HasPrefix(msg, "stale")
	})
	c := client()
	for i := 0; i < 10; i++ {
		if resp, body := get(t, c, addr, "x", "/still"); resp.StatusCode != 200 || body != "a /still" {
			t.Fatalf("with the control plane gone: %d %q", resp.StatusCode, body)
		}
	}
	resp, body := get(t, c, e.p.AdminAddr(), "admin", "/ready")
	if resp.StatusCode != 200 || !strings.Contains(body, "stale") {
		t.Errorf("/ready = %d %q, want 200 saying stale", resp.StatusCode, body)
	}
	_, metrics := get(t, c, e.p.AdminAddr(), "admin", "/stats/prometheus")
	if !strings.Contains(metrics, "canton_proxy_xds_connected 0") {
		t.Errorf("metrics do not say the xDS stream is down")
	}
}

func TestReadyBeforeConfig(t *testing.T) {
	dead := xdstest.Start(t)
	dead.Stop()
	e := startEnv(t, func(o *Options) { o.XDSServers = []string{dead.Addr} })
	waitUntil(t, "admin listener", func() bool { return e.p.AdminAddr() != "" })
	resp, _ := get(t, client(), e.p.AdminAddr(), "admin", "/ready")
	if resp.StatusCode != 503 {
		t.Errorf("/ready before config = %d, want 503", resp.StatusCode)
	}
}

func TestUnsupportedConfigIsNACKedAndOldConfigKept(t *testing.T) {
	up := startUpstream(t, "a", nil)
	e := startEnv(t)
	addr := e.basic(up.Addr())
	bad := httpListener(t, "l", "r", func(h *hcmv3.HttpConnectionManager) { h.XffNumTrustedHops = 1 })
	e.set(xdsclient.ListenerType, "2", bad)
	nack := e.xds.WaitRequest(wait, "LDS NACK", func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetTypeUrl() == xdsclient.ListenerType && r.GetErrorDetail() != nil
	})
	msg := nack.GetErrorDetail().GetMessage()
	if !strings.Contains(msg, `listener "l"`) || !strings.Contains(msg, "xff_num_trusted_hops: field not supported") || nack.GetVersionInfo() != "1" {
		t.Errorf("NACK = version %q message %q", nack.GetVersionInfo(), msg)
	}
	// An unknown HTTP filter is rejected by the filter chain builder, naming it.
	badFilter := httpListener(t, "l", "r", func(h *hcmv3.HttpConnectionManager) {
		h.HttpFilters = append([]*hcmv3.HttpFilter{{Name: "envoy.filters.http.lua"}}, h.HttpFilters...)
	})
	e.set(xdsclient.ListenerType, "3", badFilter)
	nack = e.xds.WaitRequest(wait, "LDS NACK 3", func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetTypeUrl() == xdsclient.ListenerType && r.GetErrorDetail() != nil && strings.Contains(r.GetErrorDetail().GetMessage(), "lua")
	})
	if !strings.Contains(nack.GetErrorDetail().GetMessage(), "http_filters[0]") {
		t.Errorf("filter NACK does not name the filter: %q", nack.GetErrorDetail().GetMessage())
	}
	if resp, _ := get(t, client(), addr, "x", "/"); resp.StatusCode != 200 {
		t.Errorf("old config not kept: %d", resp.StatusCode)
	}
}

func TestListenersAddedAndRemoved(t *testing.T) {
	up := startUpstream(t, "a", nil)
	e := startEnv(t)
	e.basic(up.Addr())
	e.set(xdsclient.ListenerType, "2", httpListener(t, "l", "r", nil), httpListener(t, "l2", "r", nil))
	addr2 := e.listenerAddr("l2")
	if resp, _ := get(t, client(), addr2, "x", "/"); resp.StatusCode != 200 {
		t.Fatalf("added listener: %d", resp.StatusCode)
	}
	e.set(xdsclient.ListenerType, "3", httpListener(t, "l2", "r", nil))
	e.waitACK(xdsclient.ListenerType, "3")
	if e.p.ListenerAddr("l") != "" {
		t.Errorf("removed listener still running")
	}
	if e.p.ListenerAddr("l2") != addr2 {
		t.Errorf("kept listener rebound")
	}
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}
