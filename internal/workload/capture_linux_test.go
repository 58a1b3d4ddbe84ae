//go:build linux

package workload_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"canton.dev/canton/internal/meshtest"
	"canton.dev/canton/internal/meshtest/netns"
	"canton.dev/canton/internal/resource"
	"canton.dev/canton/internal/workload"
)

// TestTransparentCaptureToVIPs runs TestTransparentCaptureToVIPsInNetns in a fresh network
// namespace (root, iptables): the iptables rules and the route it adds vanish with it.
func TestTransparentCaptureToVIPs(t *testing.T) {
	netns.Run(t, "TestTransparentCaptureToVIPsInNetns", 100*time.Second)
}

// TestTransparentCaptureToVIPsInNetns: an application that knows nothing of the mesh looks a
// service up in its sidecar's DNS, gets the service's VIP and connects to it; iptables
// redirects the connection to the sidecar's capture listener, which routes it as the service's
// rules say, over mTLS, to the service's endpoints. Both services live in another scope (data)
// than the caller (web), so the VIPs come through the import, as the owning scope allocated
// them: an HTTP service (routed by its VirtualService, whatever Host the app sends) and a TCP
// service. A VIP of no service, and a port the service does not have, are closed.
func TestTransparentCaptureToVIPsInNetns(t *testing.T) {
	netns.Enter(t)
	netns.LocalRoute(t, resource.VIPPrefix.String())

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const data, web = "data.demo.mesh", "web.demo.mesh"
	c, cl, applyIn := startScopes(ctx, t, meshtest.Options{Anchors: 3, RootVoters: 1}, map[string]string{data: "a2", web: "a3"})
	applyIn(data, `apiVersion: canton.dev/v1
kind: Service
metadata: {name: api}
spec:
  ports: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: canton.dev/v1
kind: Service
metadata: {name: echo}
spec:
  ports: [{name: tcp, port: 7000, protocol: TCP}]
---
apiVersion: canton.dev/v1
kind: Export
metadata: {name: to-web}
spec: {services: [api, echo], to: [web.demo.mesh]}
`)
	applyIn(web, frontendService+`---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default}
spec:
  egress: [{hosts: ["./*", "*/api.data.demo.mesh", "*/echo.data.demo.mesh"]}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api}
spec:
  host: api.data.demo.mesh
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api}
spec:
  hosts: [api.data.demo.mesh]
  http:
  - route:
    - destination: {host: api.data.demo.mesh, subset: v2}
`)
	startSidecarIn(t, c, data, []int{1}, "api", "v1", app(t, "api-v1"))
	var xfcc atomic.Value // the x-forwarded-client-cert api v2 last saw
	xfcc.Store("")
	apiV2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		xfcc.Store(r.Header.Get("X-Forwarded-Client-Cert"))
		io.WriteString(w, "api-v2")
	})}
	go srv.Serve(apiV2)
	t.Cleanup(func() { srv.Close() })
	startSidecarIn(t, c, data, []int{1}, "api", "v2", apiV2.Addr().String())
	startSidecarIn(t, c, data, []int{1}, "echo", "v1", tcpEcho(t, "echo"))
	front := startSidecarWith(t, c, web, []int{2}, "frontend", "v1", "", func(o *workload.Options) {
		o.Capture, o.DNS = "127.0.0.1:0", "127.0.0.1:0"
	})
	capture := front.w.Capture()
	_, capturePort, err := net.SplitHostPort(capture)
	if err != nil || capturePort == "0" {
		t.Fatalf("capture address %q: want a bound port", capture)
	}
	// Only connections to VIPs are redirected: everything else (the proxy's own connections
	// to endpoints and anchors) stays as it is.
	netns.NAT(t, "iptables", "-A", "OUTPUT", "-p", "tcp", "-d", resource.VIPPrefix.String(), "-j", "REDIRECT", "--to-ports", capturePort)

	// The VIPs the scope allocated, as the admin reads them.
	vipOf := func(name string) netip.Addr {
		res, err := cl.Get(ctx, "Service", data, name, "")
		if err != nil || len(res.Objects) != 1 || len(res.Objects[0].VIPs) != 1 {
			t.Fatalf("Service %s/%s: %v %v, want one with a VIP", data, name, res.Objects, err)
		}
		return netip.MustParseAddr(res.Objects[0].VIPs[0])
	}
	apiVIP, echoVIP := vipOf("api"), vipOf("echo")
	if !resource.IsVIP(apiVIP) || !resource.IsVIP(echoVIP) || apiVIP == echoVIP {
		t.Fatalf("VIPs api %s, echo %s: want two distinct addresses in %s", apiVIP, echoVIP, resource.VIPPrefix)
	}

	// The sidecar's DNS answers the mesh name with the VIP (AAAA: none, so clients use it).
	lookup := func(name string, qtype uint16) ([]string, error) {
		m := new(mdns.Msg)
		m.SetQuestion(mdns.Fqdn(name), qtype)
		r, _, err := (&mdns.Client{Net: "udp", Timeout: 3 * time.Second}).Exchange(m, front.w.DNS())
		if err != nil {
			return nil, err
		}
		if r.Rcode != mdns.RcodeSuccess {
			return nil, fmt.Errorf("%s: rcode %s", name, mdns.RcodeToString[r.Rcode])
		}
		var out []string
		for _, rr := range r.Answer {
			switch rr := rr.(type) {
			case *mdns.A:
				out = append(out, rr.A.String())
			case *mdns.AAAA:
				out = append(out, rr.AAAA.String())
			}
		}
		return out, nil
	}
	eventually(t, 20*time.Second, func() error {
		got, err := lookup("api.data.demo.mesh", mdns.TypeA)
		if err == nil && (len(got) != 1 || got[0] != apiVIP.String()) {
			err = fmt.Errorf("A api.data.demo.mesh = %v, want the VIP %s", got, apiVIP)
		}
		return err
	})
	if got, err := lookup("api.data.demo.mesh", mdns.TypeAAAA); err != nil || len(got) != 0 {
		t.Fatalf("AAAA api.data.demo.mesh = %v %v, want none", got, err)
	}

	// HTTP to the VIP, with the Host an application would send (or none it knows of): the
	// VirtualService sends everything to v2, through the mesh (mTLS: the app sees the client's
	// SPIFFE ID in x-forwarded-client-cert).
	httpc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(host string) (string, error) {
		req, _ := http.NewRequest("GET", "http://"+net.JoinHostPort(apiVIP.String(), "8080")+"/", nil)
		req.Host = host
		resp, err := httpc.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		return string(b), nil
	}
	eventually(t, 20*time.Second, func() error {
		for _, host := range []string{"api.data.demo.mesh:8080", "api.data.demo.mesh", apiVIP.String() + ":8080"} {
			body, err := get(host)
			if err != nil {
				return fmt.Errorf("GET via VIP, Host %s: %v", host, err)
			}
			if body != "api-v2" {
				return fmt.Errorf("GET via VIP, Host %s: %q, want api-v2 (the VirtualService's subset)", host, body)
			}
		}
		return nil
	})

	if got := xfcc.Load().(string); !strings.Contains(got, "URI=spiffe://web.demo.mesh/sa/frontend") {
		t.Fatalf("api saw x-forwarded-client-cert %q: want the caller's SPIFFE ID (mTLS between the sidecars)", got)
	}

	// TCP to the other VIP: bytes both ways.
	eventually(t, 20*time.Second, func() error {
		out, err := exchange(net.JoinHostPort(echoVIP.String(), "7000"), "ping")
		if err != nil || out != "echo:ping" {
			return fmt.Errorf("TCP via VIP %s: %q %v, want echo:ping", echoVIP, out, err)
		}
		return nil
	})

	// What is not a service's port is closed by the capture listener (registry only).
	for _, dst := range []string{net.JoinHostPort(echoVIP.String(), "7001"), "240.0.0.1:7000"} {
		out, err := exchange(dst, "ping")
		if err == nil && out != "" || err != nil && !strings.Contains(err.Error(), "reset") && !strings.Contains(err.Error(), "EOF") {
			t.Fatalf("connection to %s (no such service port): %q %v, want it closed", dst, out, err)
		}
	}
}
