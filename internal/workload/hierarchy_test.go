package workload_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"canton.dev/canton/internal/meshtest"
	"canton.dev/canton/internal/workload"
)

// echoApp is a sample service answering "<name> <x-forwarded-client-cert>": what its
// inbound proxy told it about the verified caller.
func echoApp(t *testing.T, name string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name+" "+r.Header.Get("X-Forwarded-Client-Cert"))
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// askDNS asks the DNS server at addr one question over UDP.
func askDNS(addr, name string, qtype uint16) (*mdns.Msg, error) {
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	r, _, err := (&mdns.Client{Net: "udp", Timeout: 3 * time.Second}).Exchange(m, addr)
	return r, err
}

// aRecords are the addresses of the A records of an answer, sorted.
func aRecords(r *mdns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*mdns.A); ok {
			out = append(out, a.A.String())
		}
	}
	slices.Sort(out)
	return out
}

// call sends one request for host through a sidecar's outbound listener and
// returns "<status> <body>" (or the transport error).
func call(via *sidecar, host string) string {
	req, _ := http.NewRequest("GET", "http://"+via.w.Outbound()+"/pay", nil)
	req.Host = host
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
}

// TestGrandchildScopeAuthorizesCallersAcrossZoneCutsWithoutRoot (issue #6): the
// root scope demo.mesh runs on a1-a3, its child shop.demo.mesh on a4-a6 and the
// grandchild pay.shop.demo.mesh on a7, so no anchor replicates two of them.
// The anchors joined in that order, and none of a4-a7 replicates the root
// scope: shop's three anchors learn each other's addresses, and that of
// pay.shop's anchor, which joined after them, from the root scope's Anchor
// objects (they used to know only the anchors that joined before them, so
// shop could not elect and could not reach pay.shop).
//
// productpage and ratings, two service accounts of shop, call payments of
// pay.shop (exported to shop) through their proxies over mTLS: payments sees
// each caller's SPIFFE ID in x-forwarded-client-cert, set by its inbound proxy
// from the verified client certificate; productpage's DNS answers payments'
// name, verified across the zone cut. An AuthorizationPolicy in pay.shop that
// allows only shop's productpage (Istio's principal form) then turns ratings
// away with 403 while productpage goes on. With every root anchor stopped,
// both outcomes hold, DNS still gives verified answers, and a payments
// workload registered after the root went away gets productpage's traffic:
// shop's anchor keeps following pay.shop without the root.
func TestGrandchildScopeAuthorizesCallersAcrossZoneCutsWithoutRoot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const shop, pay = "shop.demo.mesh", "pay.shop.demo.mesh"
	const payments = "payments." + pay + ":8080"
	c, _, applyIn := startScopeTree(ctx, t, meshtest.Options{Anchors: 7, RootVoters: 3}, []scopeOn{
		{shop, []string{"a4", "a5", "a6"}},
		{pay, []string{"a7"}},
	})
	applyIn(pay, `apiVersion: canton.dev/v1
kind: Service
metadata: {name: payments}
spec:
  ports: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: canton.dev/v1
kind: Export
metadata: {name: payments-to-shop}
spec: {services: [payments], to: [shop.demo.mesh]}
`)
	applyIn(shop, `apiVersion: canton.dev/v1
kind: Service
metadata: {name: productpage}
spec:
  ports: [{name: http, port: 9080, protocol: HTTP}]
---
apiVersion: canton.dev/v1
kind: Service
metadata: {name: ratings}
spec:
  ports: [{name: http, port: 9080, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: payments}
spec:
  hosts: [payments.pay.shop.demo.mesh]
  http:
  - route:
    - destination: {host: payments.pay.shop.demo.mesh}
`)
	shopAnchors, payAnchors := []int{3, 4, 5}, []int{6}
	payV1 := startSidecarIn(t, c, pay, payAnchors, "payments", "v1", echoApp(t, "payments-v1"))
	pp := startSidecarWith(t, c, shop, shopAnchors, "productpage", "v1", app(t, "productpage"), func(o *workload.Options) { o.DNS = "127.0.0.1:0" })
	ratings := startSidecarIn(t, c, shop, shopAnchors, "ratings", "v1", app(t, "ratings"))

	const ppID, ratingsID = "spiffe://shop.demo.mesh/sa/productpage", "spiffe://shop.demo.mesh/sa/ratings"
	// sawCaller: payments answered, and its proxy named exactly this verified caller.
	sawCaller := func(got, version, id string) bool {
		xfcc, ok := strings.CutPrefix(got, "200 payments-"+version+" ")
		if !ok || strings.Contains(xfcc, ",") { // one element: no hop besides the verified caller
			return false
		}
		fields := strings.Split(xfcc, ";")
		return slices.Contains(fields, "By=spiffe://pay.shop.demo.mesh/sa/payments") && slices.Contains(fields, "URI="+id)
	}
	eventually(t, 30*time.Second, func() error {
		if got := call(pp, payments); !sawCaller(got, "v1", ppID) {
			return fmt.Errorf("productpage -> payments: %q", got)
		}
		if got := call(ratings, payments); !sawCaller(got, "v1", ratingsID) {
			return fmt.Errorf("ratings -> payments before any policy: %q", got)
		}
		return nil
	})

	// productpage's DNS answers payments with proofs from shop's anchor: its
	// referral to pay.shop, signed by shop's CA, and pay.shop's answer.
	paymentsV1, _, _ := net.SplitHostPort(payV1.w.Inbound())
	eventually(t, 10*time.Second, func() error {
		r, err := askDNS(pp.w.DNS(), "payments."+pay, mdns.TypeA)
		if err != nil {
			return err
		}
		if got := aRecords(r); r.Rcode != mdns.RcodeSuccess || !slices.Equal(got, []string{paymentsV1}) {
			return fmt.Errorf("productpage's DNS: payments.%s A: %s %v, want [%s]", pay, mdns.RcodeToString[r.Rcode], got, paymentsV1)
		}
		return nil
	})

	applyIn(pay, `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: payments-callers}
spec:
  selector: {matchLabels: {app: payments}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/shop/sa/productpage"]}}]
`)
	const denied = "403 RBAC: access denied"
	eventually(t, 20*time.Second, func() error {
		if got := call(ratings, payments); got != denied {
			return fmt.Errorf("ratings -> payments under the policy: %q, want %q", got, denied)
		}
		return nil
	})
	check := func(when string) {
		t.Helper()
		for range 5 {
			if got := call(pp, payments); !sawCaller(got, "v1", ppID) && !sawCaller(got, "v2", ppID) {
				t.Fatalf("%s: productpage -> payments: %q", when, got)
			}
			if got := call(ratings, payments); got != denied {
				t.Fatalf("%s: ratings -> payments: %q, want %q", when, got, denied)
			}
		}
	}
	check("under the policy")

	// The root scope goes away entirely.
	for i := range 3 {
		if err := c.Stop(i); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		check("with every root anchor stopped")
		time.Sleep(300 * time.Millisecond) // let time pass: retries towards the root fail meanwhile
	}
	// A name productpage's DNS never asked before gets a fresh answer across
	// the cut, verified: NXDOMAIN, not SERVFAIL.
	if r, err := askDNS(pp.w.DNS(), "refunds."+pay, mdns.TypeA); err != nil || r.Rcode != mdns.RcodeNameError {
		t.Fatalf("with every root anchor stopped, productpage's DNS for refunds.%s (no such service): %v %v, want NXDOMAIN", pay, r, err)
	}

	// pay.shop and shop still work as control planes: a payments workload
	// registered now reaches productpage's proxy through shop's import of
	// payments, and is covered by the policy too.
	startSidecarIn(t, c, pay, payAnchors, "payments", "v2", echoApp(t, "payments-v2"))
	eventually(t, 20*time.Second, func() error {
		for range 4 {
			if got := call(pp, payments); sawCaller(got, "v2", ppID) {
				return nil
			}
		}
		return fmt.Errorf("productpage never reached payments v2, registered with the root down")
	})
	seen := map[string]int{}
	for range 10 {
		got := call(pp, payments)
		switch {
		case sawCaller(got, "v1", ppID):
			seen["v1"]++
		case sawCaller(got, "v2", ppID):
			seen["v2"]++
		default:
			t.Fatalf("with the root down, after payments v2 registered: productpage -> payments: %q", got)
		}
		if got := call(ratings, payments); got != denied {
			t.Fatalf("with the root down, after payments v2 registered: ratings -> payments: %q, want %q", got, denied)
		}
	}
	if seen["v1"] == 0 || seen["v2"] == 0 {
		t.Fatalf("productpage's calls with the root down did not reach both payments workloads: %v", seen)
	}
}
