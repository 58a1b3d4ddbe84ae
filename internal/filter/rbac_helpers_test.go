package filter

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const rbacName = "envoy.filters.http.rbac"

// String matchers.
func smExact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}
func smPrefix(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s}}
}
func smSuffix(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: s}}
}
func smContains(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: s}}
}
func smRegex(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: s}}}
}
func smFold(m *matcherv3.StringMatcher) *matcherv3.StringMatcher { m.IgnoreCase = true; return m }

// Header matchers.
func hmString(name string, sm *matcherv3.StringMatcher) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm}}
}
func hmPresent(name string, present bool) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: present}}
}

func cidr(addr string, n uint32) *corev3.CidrRange {
	return &corev3.CidrRange{AddressPrefix: addr, PrefixLen: wrapperspb.UInt32(n)}
}

// Permissions.
func pAny() *rbacconfigv3.Permission {
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_Any{Any: true}}
}
func pAnd(ps ...*rbacconfigv3.Permission) *rbacconfigv3.Permission {
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_AndRules{AndRules: &rbacconfigv3.Permission_Set{Rules: ps}}}
}
func pOr(ps ...*rbacconfigv3.Permission) *rbacconfigv3.Permission {
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_OrRules{OrRules: &rbacconfigv3.Permission_Set{Rules: ps}}}
}
func pNot(p *rbacconfigv3.Permission) *rbacconfigv3.Permission {
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_NotRule{NotRule: p}}
}
func pHeader(h *routev3.HeaderMatcher) *rbacconfigv3.Permission {
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_Header{Header: h}}
}
func pPath(sm *matcherv3.StringMatcher) *rbacconfigv3.Permission {
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{Path: sm}}}}
}
func pMethod(m string) *rbacconfigv3.Permission { return pHeader(hmString(":method", smExact(m))) }
func pDstIP(addr string, n uint32) *rbacconfigv3.Permission {
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_DestinationIp{DestinationIp: cidr(addr, n)}}
}
func pDstPort(p uint32) *rbacconfigv3.Permission {
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_DestinationPort{DestinationPort: p}}
}
func pSNI(sm *matcherv3.StringMatcher) *rbacconfigv3.Permission {
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_RequestedServerName{RequestedServerName: sm}}
}

// Principals.
func idAny() *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_Any{Any: true}}
}
func idAnd(ps ...*rbacconfigv3.Principal) *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_AndIds{AndIds: &rbacconfigv3.Principal_Set{Ids: ps}}}
}
func idOr(ps ...*rbacconfigv3.Principal) *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_OrIds{OrIds: &rbacconfigv3.Principal_Set{Ids: ps}}}
}
func idNot(p *rbacconfigv3.Principal) *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_NotId{NotId: p}}
}

// idAuth is authenticated with principal_name sm (nil: any authenticated).
func idAuth(sm *matcherv3.StringMatcher) *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_Authenticated_{Authenticated: &rbacconfigv3.Principal_Authenticated{PrincipalName: sm}}}
}
func idDirect(addr string, n uint32) *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_DirectRemoteIp{DirectRemoteIp: cidr(addr, n)}}
}
func idRemote(addr string, n uint32) *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_RemoteIp{RemoteIp: cidr(addr, n)}}
}
func idSource(addr string, n uint32) *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_SourceIp{SourceIp: cidr(addr, n)}}
}
func idHeader(h *routev3.HeaderMatcher) *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_Header{Header: h}}
}
func idPath(sm *matcherv3.StringMatcher) *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_UrlPath{UrlPath: &matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{Path: sm}}}}
}
func idMeta(filter string, vm *matcherv3.ValueMatcher, keys ...string) *rbacconfigv3.Principal {
	mm := &matcherv3.MetadataMatcher{Filter: filter, Value: vm}
	for _, k := range keys {
		mm.Path = append(mm.Path, &matcherv3.MetadataMatcher_PathSegment{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: k}})
	}
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_Metadata{Metadata: mm}}
}
func vmString(sm *matcherv3.StringMatcher) *matcherv3.ValueMatcher {
	return &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: sm}}
}
func vmList(one *matcherv3.ValueMatcher) *matcherv3.ValueMatcher {
	return &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_ListMatch{ListMatch: &matcherv3.ListMatcher{MatchPattern: &matcherv3.ListMatcher_OneOf{OneOf: one}}}}
}

func policy(perms []*rbacconfigv3.Permission, ids []*rbacconfigv3.Principal) *rbacconfigv3.Policy {
	return &rbacconfigv3.Policy{Permissions: perms, Principals: ids}
}

// rules builds RBAC rules with one policy per name/policy pair.
func rules(action rbacconfigv3.RBAC_Action, kv ...any) *rbacconfigv3.RBAC {
	r := &rbacconfigv3.RBAC{Action: action, Policies: map[string]*rbacconfigv3.Policy{}}
	for i := 0; i < len(kv); i += 2 {
		r.Policies[kv[i].(string)] = kv[i+1].(*rbacconfigv3.Policy)
	}
	return r
}

func buildRBACChain(t testing.TB, cfg *rbacv3.RBAC) (Handler, *rbac) {
	t.Helper()
	return buildRBACChainTo(t, cfg, &okRouter{})
}

func buildRBACChainTo(t testing.TB, cfg *rbacv3.RBAC, router Handler) (Handler, *rbac) {
	t.Helper()
	h, err := Build([]*hcmv3.HttpFilter{httpFilter(t, rbacName, cfg), routerFilter(t)}, router)
	if err != nil {
		t.Fatal(err)
	}
	return h, h.(*link).f.(*rbac)
}

// rreq describes a request as the proxy would hand it to the chain.
type rreq struct {
	method, target string
	hdr            map[string]string
	peer           *Peer  // nil: no peer recorded (plaintext)
	remote         string // RemoteAddr; default 192.0.2.10:40000
	dst            string // WithDestination; "" for none
	sni            string // r.TLS.ServerName; "" for no TLS
	jwt            *JWT
	route          map[string]*anypb.Any
}

func (q rreq) build() *http.Request {
	if q.method == "" {
		q.method = "GET"
	}
	if q.target == "" {
		q.target = "/"
	}
	r := httptest.NewRequest(q.method, q.target, nil)
	for k, v := range q.hdr {
		for _, part := range strings.Split(v, "\x00") {
			r.Header.Add(k, part)
		}
	}
	r.RemoteAddr = "192.0.2.10:40000"
	if q.remote != "" {
		r.RemoteAddr = q.remote
	}
	if q.sni != "" {
		r.TLS = &tls.ConnectionState{ServerName: q.sni}
	}
	ctx := WithRequest(r.Context(), q.route, q.peer, nil)
	if q.dst != "" {
		ctx = WithDestination(ctx, netip.MustParseAddrPort(q.dst))
	}
	if q.jwt != nil {
		ctx = WithJWT(ctx, q.jwt)
	}
	return r.WithContext(ctx)
}

// do runs q through h and returns the status code and body.
func (q rreq) do(t testing.TB, h Handler) (int, string, http.Header) {
	t.Helper()
	rec := httptest.NewRecorder()
	if err := h.ServeHTTP(rec, q.build()); err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
	return rec.Code, rec.Body.String(), rec.Header()
}

func peer(principal string) *Peer {
	return &Peer{Principal: principal, IP: netip.MustParseAddr("10.1.2.3")}
}
