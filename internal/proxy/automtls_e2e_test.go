package proxy

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"canton.dev/canton/internal/xds"
)

// TestAutoMutualTLSEndToEnd: reviews v1's PeerAuthentication is DISABLE (its inbound listener
// serves plain text only) and v2 keeps Canton's default, STRICT. productpage's proxy, configured
// by internal/xds for the capabilities this proxy announces, reaches both through the one reviews
// cluster: v1 in plain text (a transport socket match), v2 over mutual TLS. v2's application
// sees productpage's identity in x-forwarded-client-cert, v1's sees none.
func TestAutoMutualTLSEndToEnd(t *testing.T) {
	c := &secCase{t: t, pki: testPKI(t), callers: map[string]string{}}
	c.objects = parseObjects(t, secMeshBase+`
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews-v1, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews, version: v1}}
  mtls: {mode: DISABLE}
`)
	caps := map[string]bool{}
	for _, f := range strings.Split(Capabilities, ",") {
		caps[f] = true
	}
	start := func(version string) *upstream {
		app := startUpstream(t, "reviews-"+version, func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s xfcc=%q", version, r.Header.Get("X-Forwarded-Client-Cert"))
		})
		chain, key := c.pki.svid(t, secNamespace, "reviews")
		id := "reviews-" + version + "-1"
		e := startEnv(t, func(o *Options) { o.NodeID = id })
		labels := map[string]string{"app": "reviews", "version": version}
		c.push(e, xds.Node{ID: id, Service: "reviews", Namespace: secNamespace, Labels: labels, InboundPort: 15006,
			InboundAddress: "127.0.0.1", AppAddress: app.Addr(), CertificateChain: chain, PrivateKey: key, Capabilities: caps})
		_, port, _ := net.SplitHostPort(e.listenerAddr(xds.InboundListenerName))
		c.objects = append(c.objects, parseObjects(t, fmt.Sprintf(`
apiVersion: canton.dev/v1
kind: Workload
metadata: {name: %s, namespace: bookinfo}
spec: {service: reviews, address: 127.0.0.1, port: %s, labels: {app: reviews, version: %s}, lease: 1}
`, id, port, version))...)
		return app
	}
	v1, v2 := start("v1"), start("v2")

	chain, key := c.pki.svid(t, secNamespace, "productpage")
	ce := startEnv(t, func(o *Options) { o.NodeID = "productpage-caller" })
	c.push(ce, xds.Node{ID: "productpage-caller", Service: "productpage", Namespace: secNamespace, Labels: map[string]string{"app": "productpage"},
		OutboundPort: 15001, CertificateChain: chain, PrivateKey: key, Capabilities: caps})
	c.callers[productpage] = ce.listenerAddr(xds.OutboundListenerName)

	// The balancer picks at random: call until both versions answered (2^-40 to miss one).
	for i := 0; i < 40 && (v1.count.Load() == 0 || v2.count.Load() == 0); i++ {
		if code, body := c.call(productpage, "GET", "/reviews/1"); code != http.StatusOK {
			t.Fatalf("productpage -> reviews: %d %q", code, body)
		}
	}
	if v1.count.Load() == 0 || v2.count.Load() == 0 {
		t.Fatalf("requests reached v1 %d times, v2 %d times; want both", v1.count.Load(), v2.count.Load())
	}
	if xfcc := v1.last.Load().Header.Get("X-Forwarded-Client-Cert"); xfcc != "" {
		t.Errorf("v1 (DISABLE) application got x-forwarded-client-cert %q: the caller used mutual TLS", xfcc)
	}
	if xfcc := v2.last.Load().Header.Get("X-Forwarded-Client-Cert"); !strings.Contains(xfcc, "URI=spiffe://bookinfo.demo.mesh/sa/productpage") {
		t.Errorf("v2 (STRICT) application got x-forwarded-client-cert %q, want productpage's SPIFFE ID (mutual TLS)", xfcc)
	}
}
