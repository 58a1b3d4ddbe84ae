package filter

import (
	"fmt"
	"net/http"
	"net/netip"
	"testing"

	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
)

// istioLikeRBAC is an ALLOW filter shaped like Istio's translation of n
// AuthorizationPolicy rules: each allows one principal to GET/POST under its
// own path prefix, or a suffix, or an exact health path, from a CIDR, on a
// port. Only the last policy matches benchRequest, so every request walks
// all of them.
func istioLikeRBAC(n int) *rbacv3.RBAC {
	r := rules(allow)
	for i := range n {
		r.Policies[fmt.Sprintf("ns[bookinfo]-policy[p%02d]-rule[0]", i)] = policy(
			[]*rbacconfigv3.Permission{pAnd(
				pOr(pMethod("GET"), pMethod("POST")),
				pOr(pPath(smPrefix(fmt.Sprintf("/api/v%d/", i))), pPath(smSuffix("/info")), pPath(smExact("/health"))),
				pOr(pDstPort(9080)),
			)},
			[]*rbacconfigv3.Principal{idAnd(
				idOr(idAuth(smExact(fmt.Sprintf("spiffe://bookinfo.demo.mesh/sa/sa%02d", i)))),
				idOr(idDirect("10.0.0.0", 8)),
				idNot(idOr(idHeader(hmString("x-debug", smExact("1"))))),
			)},
		)
	}
	return &rbacv3.RBAC{Rules: r}
}

func benchRequest(n int) *http.Request {
	return rreq{
		method: "POST", target: fmt.Sprintf("/api/v%d/reviews/1", n-1),
		peer: peer(fmt.Sprintf("bookinfo.demo.mesh/sa/sa%02d", n-1)), dst: "10.0.0.5:9080",
		hdr: map[string]string{"Content-Type": "application/json", "X-Request-Id": "abc"},
	}.build()
}

// BenchmarkRBAC measures the RBAC filter deciding one request against n
// Istio-shaped policies (the request matches only the last one), chain
// and context prepared once: the cost of the matching itself.
func BenchmarkRBAC(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			h, _ := buildRBACChainTo(b, istioLikeRBAC(n), nopRouter)
			req := benchRequest(n)
			w := &nopWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				if err := h.ServeHTTP(w, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestRBACMatchDoesNotAllocate guards the hot path: deciding a request
// against Istio-shaped policies allocates nothing.
func TestRBACMatchDoesNotAllocate(t *testing.T) {
	h, f := buildRBACChainTo(t, istioLikeRBAC(10), nopRouter)
	req := benchRequest(10)
	w := &nopWriter{h: http.Header{}}
	allocs := testing.AllocsPerRun(200, func() {
		if err := h.ServeHTTP(w, req); err != nil {
			t.Fatal(err)
		}
	})
	if f.stats.allowed.Load() == 0 || f.stats.denied.Load() != 0 {
		t.Fatalf("request not allowed by its policy: allowed %d denied %d", f.stats.allowed.Load(), f.stats.denied.Load())
	}
	if allocs != 0 {
		t.Fatalf("%v allocations per request, want 0", allocs)
	}
}

// nopRouter answers nothing, so allocation counts are the filter's.
var nopRouter = HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })

// istioLikeNetworkRBAC is the network filter shaped like Istio's translation of n TCP rules:
// each allows one principal from a CIDR on a port. Only the last policy matches benchConn.
func istioLikeNetworkRBAC(n int) *netrbacv3.RBAC {
	r := rules(allow)
	for i := range n {
		r.Policies[fmt.Sprintf("ns[bookinfo]-policy[p%02d]-rule[0]", i)] = policy(
			[]*rbacconfigv3.Permission{pAnd(pOr(pDstPort(9080), pDstPort(uint32(7000+i))))},
			[]*rbacconfigv3.Principal{idAnd(
				idOr(idAuth(smExact(fmt.Sprintf("spiffe://bookinfo.demo.mesh/sa/sa%02d", i)))),
				idOr(idDirect("10.0.0.0", 8)),
			)},
		)
	}
	return &netrbacv3.RBAC{StatPrefix: "tcp.", Rules: r}
}

func benchConn(n int) *Conn {
	return &Conn{Peer: Peer{Principal: fmt.Sprintf("bookinfo.demo.mesh/sa/sa%02d", n-1), Namespace: "bookinfo.demo.mesh",
		IP: netip.MustParseAddr("10.1.2.3")}, Destination: netip.MustParseAddrPort("10.0.0.5:9080")}
}

// BenchmarkNetworkRBAC measures the network RBAC filter deciding one connection against n
// Istio-shaped policies (the connection matches only the last one).
func BenchmarkNetworkRBAC(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			f := buildNet(b, istioLikeNetworkRBAC(n))
			c := benchConn(n)
			b.ReportAllocs()
			for b.Loop() {
				if ok, _ := f.Allow(c); !ok {
					b.Fatal("connection denied")
				}
			}
		})
	}
}
