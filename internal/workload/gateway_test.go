package workload_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"canton.dev/canton/internal/resource"
	"canton.dev/canton/internal/workload"
)

// recorder is a sample application that answers "<name> <path>" and records each request's
// path and x-forwarded-client-cert header.
type recorder struct {
	name string
	mu   sync.Mutex
	seen []seenRequest
}

type seenRequest struct{ path, xfcc string }

func (r *recorder) start(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.seen = append(r.seen, seenRequest{req.URL.Path, req.Header.Get("X-Forwarded-Client-Cert")})
		r.mu.Unlock()
		io.WriteString(w, r.name+" "+req.URL.Path)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// requests returns the requests seen for path.
func (r *recorder) requests(path string) []seenRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []seenRequest
	for _, s := range r.seen {
		if s.path == path {
			out = append(out, s)
		}
	}
	return out
}

// freePort returns a loopback port nothing listens on (now).
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// get sends GET path with host to addr and returns "<status> <body>".
func get(addr, host, path string) string {
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	req.Host = host
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
}

func gatewayYAML(ports ...int) string {
	var servers []string
	for _, p := range ports {
		servers = append(servers, fmt.Sprintf("  - port: {number: %d, name: http-%d, protocol: HTTP}\n    hosts: [\"*\"]\n", p, p))
	}
	return `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway}
spec:
  selector: {istio: ingressgateway}
  servers:
` + strings.Join(servers, "")
}

const gatewayRoutes = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo}
spec:
  hosts: [bookinfo.example.com]
  gateways: [bookinfo-gateway]
  http:
  - match: [{uri: {prefix: /productpage}}]
    route:
    - destination: {host: productpage, port: {number: 9080}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ingress-deny-secret}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules:
  - to: [{operation: {paths: [/productpage/secret]}}]
`

// TestGatewayProxyServesIstioGatewayAndVirtualService runs canton proxy --gateway with an
// Istio Gateway (an HTTP server on a port) and a VirtualService bound to it routing
// /productpage to productpage's sidecar: requests through the gateway reach productpage over
// mTLS as the gateway's SPIFFE ID (XFCC), an AuthorizationPolicy selecting the gateway's labels
// denies a path at the gateway (403; the same path through the mesh is allowed), an unknown host
// gets 404, the gateway has no sidecar listeners and its Workload records that it is a gateway.
// A Gateway port the proxy cannot bind is rejected with a NACK naming the address, and the
// listeners it had keep serving.
func TestGatewayProxyServesIstioGatewayAndVirtualService(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, cl := startBookinfo(ctx, t)
	page := &recorder{name: "productpage"}
	startSidecar(t, c, "productpage", "v1", page.start(t))
	caller := startSidecar(t, c, "reviews", "v1", "") // a client-only sidecar of the mesh

	port := freePort(t)
	apply(t, cl, gatewayYAML(port)+"---\n"+gatewayRoutes)
	var all []int
	for i := range c.Len() {
		all = append(all, i)
	}
	gw := startSidecarWith(t, c, ns, all, "ingressgateway", "", "", func(o *workload.Options) {
		o.Gateway, o.GatewayAddress, o.NodeID = true, "127.0.0.1", "ingressgateway-1"
		o.Labels = map[string]string{"istio": "ingressgateway"}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	eventually(t, 20*time.Second, func() error {
		if got := get(addr, "bookinfo.example.com", "/productpage"); got != "200 productpage /productpage" {
			return fmt.Errorf("GET /productpage through the gateway: %s", got)
		}
		return nil
	})
	seen := page.requests("/productpage")
	if len(seen) == 0 {
		t.Fatal("productpage saw no request for /productpage")
	}
	for _, s := range seen {
		if !strings.Contains(s.xfcc, "URI=spiffe://"+ns+"/sa/ingressgateway") || !strings.HasPrefix(s.xfcc, "By=spiffe://"+ns+"/sa/productpage;") {
			t.Fatalf("productpage's sidecar forwarded x-forwarded-client-cert %q, want the gateway's SPIFFE ID as the mTLS peer", s.xfcc)
		}
	}

	if got := get(addr, "bookinfo.example.com", "/productpage/secret"); !strings.HasPrefix(got, "403 ") {
		t.Errorf("GET /productpage/secret through the gateway: %s, want 403 (DENY policy selecting the gateway)", got)
	}
	if n := len(page.requests("/productpage/secret")); n != 0 {
		t.Errorf("productpage saw /productpage/secret %d times; the gateway should have denied it", n)
	}
	// The policy selects the gateway only: the mesh's own callers reach the path.
	if got := get(caller.w.Outbound(), "productpage:9080", "/productpage/secret"); got != "200 productpage /productpage/secret" {
		t.Errorf("GET /productpage/secret from a sidecar: %s, want 200 (the policy selects the gateway only)", got)
	}
	if got := get(addr, "unknown.example.com", "/productpage"); !strings.HasPrefix(got, "404") {
		t.Errorf("GET with an unknown host through the gateway: %s, want 404", got)
	}

	px := gw.w.Proxy()
	if got := px.ListenerAddr(fmt.Sprintf("http.%d", port)); got != addr {
		t.Errorf("gateway listener http.%d on %q, want %s", port, got, addr)
	}
	for _, name := range []string{"inbound", "outbound"} {
		if got := px.ListenerAddr(name); got != "" {
			t.Errorf("the gateway runs a sidecar listener %s on %s", name, got)
		}
	}
	res, err := cl.Get(ctx, "Workload", ns, "ingressgateway-1", "")
	if err != nil {
		t.Fatal(err)
	}
	var spec resource.WorkloadSpec
	if err := json.Unmarshal(res.Objects[0].Spec, &spec); err != nil {
		t.Fatal(err)
	}
	if !spec.Gateway || spec.Labels["istio"] != "ingressgateway" || spec.Address != "127.0.0.1" {
		t.Errorf("the gateway's Workload is %+v, want gateway: true with label istio=ingressgateway on 127.0.0.1", spec)
	}

	// A second server on a port someone else holds: the proxy cannot bind it and says so.
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldAddr := held.Addr().String()
	apply(t, cl, gatewayYAML(port, held.Addr().(*net.TCPAddr).Port))
	eventually(t, 20*time.Second, func() error {
		for i := range c.Len() {
			st, err := statusOf(ctx, c, i)
			if err != nil {
				return err
			}
			for _, p := range st.Proxies {
				if p.Id == "ingressgateway-1" && strings.Contains(p.NackMessage, heldAddr) && strings.Contains(p.NackMessage, "address already in use") {
					return nil
				}
			}
		}
		return fmt.Errorf("no anchor reports the gateway's NACK for %s", heldAddr)
	})
	if got := get(addr, "bookinfo.example.com", "/productpage"); got != "200 productpage /productpage" {
		t.Errorf("after the rejected update, GET /productpage through the gateway: %s", got)
	}
	if got := px.ListenerAddr(fmt.Sprintf("http.%d", held.Addr().(*net.TCPAddr).Port)); got != "" {
		t.Errorf("the gateway runs a listener on %s, the port another process holds", got)
	}
}
