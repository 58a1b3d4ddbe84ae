package filter

import (
	"fmt"
	"net/netip"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// fuzzBytes hands out bytes of fuzz input, then zeros.
type fuzzBytes struct {
	b    []byte
	n    int  // budget of nodes left, so generated trees stay small
	conn bool // only rules a connection can be matched on (network RBAC)
}

func (f *fuzzBytes) next() byte {
	if len(f.b) == 0 {
		return 0
	}
	c := f.b[0]
	f.b = f.b[1:]
	return c
}

func (f *fuzzBytes) pick(n int) int { return int(f.next()) % n }

var (
	fuzzPaths      = []string{"/", "/api/", "/api/v1", "/info", "/a//b", "/%2F", "/ADMIN", "/admin"}
	fuzzPrincipals = []string{"", "bookinfo.demo.mesh/sa/reviews", "bookinfo.demo.mesh/sa/ratings", "shop.demo.mesh/sa/cart", "spiffe://x"}
	fuzzIPs        = []string{"10.0.0.1", "10.1.2.3", "192.0.2.10", "2001:db8::1", "::ffff:10.0.0.1"}
)

func (f *fuzzBytes) str() string {
	switch f.pick(3) {
	case 0:
		return fuzzPaths[f.pick(len(fuzzPaths))]
	case 1:
		return "spiffe://" + fuzzPrincipals[f.pick(len(fuzzPrincipals))]
	}
	return fuzzPrincipals[f.pick(len(fuzzPrincipals))]
}

func (f *fuzzBytes) strMatcher() *matcherv3.StringMatcher {
	s := f.str()
	nonEmpty := s
	if nonEmpty == "" {
		nonEmpty = "/"
	}
	var m *matcherv3.StringMatcher
	switch f.pick(5) {
	case 0:
		m = smExact(s)
	case 1:
		m = smPrefix(nonEmpty[:1+f.pick(len(nonEmpty))])
	case 2:
		m = smSuffix(nonEmpty[f.pick(len(nonEmpty)):])
	case 3:
		i := f.pick(len(nonEmpty))
		m = smContains(nonEmpty[i : i+1+f.pick(len(nonEmpty)-i)])
	default:
		m = smRegex(".*" + fmt.Sprint(f.pick(10)) + ".*")
	}
	m.IgnoreCase = f.next()&1 == 1
	return m
}

func (f *fuzzBytes) permission(depth int) *rbacconfigv3.Permission {
	f.n--
	k := f.pick(9)
	if depth > 4 || f.n <= 0 {
		k = 3 + k%6 // leaves only
	}
	if f.conn && k >= 4 && k <= 6 {
		return pSNI(f.strMatcher()) // instead of the HTTP leaves: path, method, header
	}
	switch k {
	case 0:
		return pAnd(f.permission(depth+1), f.permission(depth+1))
	case 1:
		return pOr(f.permission(depth+1), f.permission(depth+1))
	case 2:
		return pNot(f.permission(depth + 1))
	case 3:
		return pAny()
	case 4:
		return pPath(f.strMatcher())
	case 5:
		return pMethod([]string{"GET", "POST"}[f.pick(2)])
	case 6:
		return pHeader(hmString("x-a", f.strMatcher()))
	case 7:
		return pDstPort(uint32(9080 + f.pick(2)))
	}
	return pDstIP(fuzzIPs[f.pick(len(fuzzIPs))], uint32(f.pick(33)))
}

func (f *fuzzBytes) principal(depth int) *rbacconfigv3.Principal {
	f.n--
	k := f.pick(9)
	if depth > 4 || f.n <= 0 {
		k = 3 + k%6
	}
	if f.conn && k >= 6 {
		return idRemote(fuzzIPs[f.pick(len(fuzzIPs))], uint32(f.pick(33))) // instead of header, url_path, metadata
	}
	switch k {
	case 0:
		return idAnd(f.principal(depth+1), f.principal(depth+1))
	case 1:
		return idOr(f.principal(depth+1), f.principal(depth+1))
	case 2:
		return idNot(f.principal(depth + 1))
	case 3:
		return idAny()
	case 4:
		if f.next()&1 == 0 {
			return idAuth(nil)
		}
		return idAuth(f.strMatcher())
	case 5:
		return idDirect(fuzzIPs[f.pick(len(fuzzIPs))], uint32(f.pick(33)))
	case 6:
		return idHeader(hmPresent("x-a", f.next()&1 == 1))
	case 7:
		return idPath(f.strMatcher())
	}
	return idMeta(istioAuthnNamespace, vmString(f.strMatcher()), "request.auth.principal")
}

func (f *fuzzBytes) policies() map[string]*rbacconfigv3.Policy {
	m := map[string]*rbacconfigv3.Policy{}
	for i := range f.pick(4) {
		p := &rbacconfigv3.Policy{}
		for range 1 + f.pick(2) {
			p.Permissions = append(p.Permissions, f.permission(0))
		}
		for range 1 + f.pick(2) {
			p.Principals = append(p.Principals, f.principal(0))
		}
		m[fmt.Sprint("p", i)] = p
	}
	return m
}

func (f *fuzzBytes) request() rreq {
	q := rreq{
		method: []string{"GET", "POST"}[f.pick(2)],
		target: fuzzPaths[f.pick(len(fuzzPaths))],
		remote: netip.AddrPortFrom(netip.MustParseAddr(fuzzIPs[f.pick(len(fuzzIPs))]), 4000).String(),
		dst:    netip.AddrPortFrom(netip.MustParseAddr(fuzzIPs[f.pick(len(fuzzIPs))]), uint16(9080+f.pick(2))).String(),
	}
	if p := fuzzPrincipals[f.pick(len(fuzzPrincipals))]; p != "" || f.next()&1 == 1 {
		q.peer = &Peer{Principal: p, IP: netip.MustParseAddr(fuzzIPs[f.pick(len(fuzzIPs))])}
	}
	if f.next()&1 == 1 {
		q.hdr = map[string]string{"X-A": f.str()}
	}
	if f.next()&1 == 1 {
		q.jwt = &JWT{Principal: f.str()}
	}
	return q
}

// FuzzRBACMatch builds random policies and a random request from the
// input and checks that matching never panics, is deterministic, and that
// ALLOW and DENY over the same policies decide exactly opposite (Envoy: a
// request passes ALLOW iff some policy matches, DENY iff none does). The
// raw input is also tried as an encoded RBAC filter config, which must be
// rejected or serve without panicking.
func FuzzRBACMatch(f *testing.F) {
	f.Add([]byte{}, []byte{})
	f.Add([]byte{1, 4, 0, 1, 4, 3, 2, 2, 4, 1, 0, 1}, []byte{0, 1, 2, 3, 1, 0, 1})
	f.Add([]byte{3, 0, 2, 1, 6, 2, 1, 8, 9, 7, 3}, []byte{1, 3, 0, 4, 1, 1, 1, 2, 1})
	seedCfg, err := proto.Marshal(istioLikeRBAC(2))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seedCfg, []byte{1, 2})
	f.Fuzz(func(t *testing.T, policyBytes, reqBytes []byte) {
		g := &fuzzBytes{b: policyBytes, n: 64}
		pols := g.policies()
		q := (&fuzzBytes{b: reqBytes}).request()
		var codes [2]int
		for i, action := range []rbacconfigv3.RBAC_Action{allow, deny} {
			cfg := &rbacv3.RBAC{Rules: &rbacconfigv3.RBAC{Action: action, Policies: pols}}
			h, err := Build([]*hcmv3.HttpFilter{httpFilter(t, rbacName, cfg), routerFilter(t)}, &okRouter{})
			if err != nil {
				t.Fatalf("generated config rejected: %v", err)
			}
			c1, _, _ := q.do(t, h)
			c2, _, _ := q.do(t, h)
			if c1 != c2 {
				t.Fatalf("%v: same request got %d then %d", action, c1, c2)
			}
			codes[i] = c1
		}
		if (codes[0] == 200) == (codes[1] == 200) {
			t.Fatalf("ALLOW gave %d and DENY gave %d over the same policies", codes[0], codes[1])
		}

		raw := &anypb.Any{TypeUrl: typeURL(&rbacv3.RBAC{}), Value: policyBytes}
		hf := &hcmv3.HttpFilter{Name: rbacName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: raw}}
		if h, err := Build([]*hcmv3.HttpFilter{hf, routerFilter(t)}, &okRouter{}); err == nil {
			q.do(t, h)
		}
		route := map[string]*anypb.Any{rbacName: {TypeUrl: typeURL(&rbacv3.RBACPerRoute{}), Value: policyBytes}}
		_ = CheckRouteConfig(route)
	})
}

// FuzzNetworkRBAC builds random policies over connection attributes and a random connection,
// and checks that the network RBAC filter decides exactly as the HTTP RBAC filter does for a
// request with the same peer, addresses and SNI (one engine, two inputs), and that ALLOW and
// DENY decide opposite. The raw input is also tried as an encoded network RBAC config, which
// must be rejected or evaluate without panicking.
func FuzzNetworkRBAC(f *testing.F) {
	f.Add([]byte{}, []byte{})
	f.Add([]byte{1, 4, 0, 1, 4, 3, 2, 2, 4, 1, 0, 1}, []byte{0, 1, 2, 3, 1, 0, 1, 1})
	f.Add([]byte{3, 0, 2, 1, 6, 2, 1, 8, 9, 7, 3}, []byte{1, 3, 0, 4, 1, 1, 1, 2, 1, 0})
	seedCfg, err := proto.Marshal(istioLikeNetworkRBAC(2))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seedCfg, []byte{1, 2})
	f.Fuzz(func(t *testing.T, policyBytes, connBytes []byte) {
		pols := (&fuzzBytes{b: policyBytes, n: 64, conn: true}).policies()
		cb := &fuzzBytes{b: connBytes}
		q := cb.request()
		q.sni = []string{"", "db.data.demo.mesh", "/api/"}[cb.pick(3)]
		c := &Conn{Destination: netip.MustParseAddrPort(q.dst), ServerName: q.sni}
		if q.peer != nil {
			c.Peer = *q.peer
		} else {
			c.Peer.IP = netip.MustParseAddrPort(q.remote).Addr()
		}
		var got [2]bool
		for i, action := range []rbacconfigv3.RBAC_Action{allow, deny} {
			r := &rbacconfigv3.RBAC{Action: action, Policies: pols}
			n, err := BuildNetwork([]*listenerv3.Filter{netFilter(t, &netrbacv3.RBAC{StatPrefix: "tcp.", Rules: r})}, "filters")
			if err != nil {
				t.Fatalf("generated config rejected: %v", err)
			}
			got[i], _ = n.Allow(c)
			h, err := Build([]*hcmv3.HttpFilter{httpFilter(t, rbacName, &rbacv3.RBAC{Rules: r}), routerFilter(t)}, &okRouter{})
			if err != nil {
				t.Fatal(err)
			}
			if code, _, _ := q.do(t, h); (code == 200) != got[i] {
				t.Fatalf("%v: connection allowed %v, the same request got %d", action, got[i], code)
			}
		}
		if got[0] == got[1] {
			t.Fatalf("ALLOW and DENY over the same policies both decided %v", got[0])
		}

		raw := &listenerv3.Filter{Name: "rbac", ConfigType: &listenerv3.Filter_TypedConfig{
			TypedConfig: &anypb.Any{TypeUrl: typeURL(&netrbacv3.RBAC{}), Value: policyBytes}}}
		if n, err := BuildNetwork([]*listenerv3.Filter{raw}, "filters"); err == nil {
			n.Allow(c)
		}
	})
}
