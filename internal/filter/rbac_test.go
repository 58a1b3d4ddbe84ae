package filter

import (
	"net/http"
	"strings"
	"testing"

	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	exprpb "google.golang.org/genproto/googleapis/api/expr/v1alpha1"
	"google.golang.org/protobuf/types/known/anypb"
)

const (
	allow = rbacconfigv3.RBAC_ALLOW
	deny  = rbacconfigv3.RBAC_DENY
)

// allowIf is an ALLOW filter with one policy made of perm and id.
func allowIf(perm *rbacconfigv3.Permission, id *rbacconfigv3.Principal) *rbacv3.RBAC {
	return &rbacv3.RBAC{Rules: rules(allow, "p", policy([]*rbacconfigv3.Permission{perm}, []*rbacconfigv3.Principal{id}))}
}

func TestRBACPermissions(t *testing.T) {
	tests := []struct {
		name string
		perm *rbacconfigv3.Permission
		req  rreq
		want bool
	}{
		{"any", pAny(), rreq{}, true},
		{"path exact", pPath(smExact("/api/v1")), rreq{target: "/api/v1"}, true},
		{"path exact ignores query", pPath(smExact("/api/v1")), rreq{target: "/api/v1?x=1"}, true},
		{"path exact miss", pPath(smExact("/api/v1")), rreq{target: "/api/v1/"}, false},
		{"path prefix", pPath(smPrefix("/api/")), rreq{target: "/api/x"}, true},
		{"path prefix miss", pPath(smPrefix("/api/")), rreq{target: "/apix"}, false},
		{"path suffix", pPath(smSuffix("/info")), rreq{target: "/a/b/info"}, true},
		{"path contains", pPath(smContains("admin")), rreq{target: "/x/admin/y"}, true},
		{"path regex is anchored", pPath(smRegex("/v[0-9]+")), rreq{target: "/v12/x"}, false},
		{"path regex", pPath(smRegex("/v[0-9]+/.*")), rreq{target: "/v12/x"}, true},
		{"path ignore case", pPath(smFold(smPrefix("/API/"))), rreq{target: "/api/x"}, true},
		{"path case sensitive", pPath(smPrefix("/API/")), rreq{target: "/api/x"}, false},
		{"method", pMethod("POST"), rreq{method: "POST"}, true},
		{"method miss", pMethod("POST"), rreq{method: "GET"}, false},
		{"authority", pHeader(hmString(":authority", smExact("reviews.bookinfo"))), rreq{target: "http://reviews.bookinfo/"}, true},
		{"host alias", pHeader(hmString("host", smSuffix(".bookinfo"))), rreq{target: "http://reviews.bookinfo/"}, true},
		{":path header has the query", pHeader(hmString(":path", smExact("/a?b=c"))), rreq{target: "/a?b=c"}, true},
		{"scheme http", pHeader(hmString(":scheme", smExact("http"))), rreq{}, true},
		{"scheme https", pHeader(hmString(":scheme", smExact("https"))), rreq{sni: "x"}, true},
		{"header exact", pHeader(hmString("X-Token", smExact("admin"))), rreq{hdr: map[string]string{"x-token": "admin"}}, true},
		{"header absent", pHeader(hmString("X-Token", smExact("admin"))), rreq{}, false},
		{"header present", pHeader(hmPresent("x-a", true)), rreq{hdr: map[string]string{"X-A": ""}}, true},
		{"header present false on absent", pHeader(hmPresent("x-a", false)), rreq{}, true},
		{"header present false on present", pHeader(hmPresent("x-a", false)), rreq{hdr: map[string]string{"X-A": "1"}}, false},
		{"header any value", pHeader(&routev3.HeaderMatcher{Name: "x-a"}), rreq{hdr: map[string]string{"X-A": "1"}}, true},
		{"header inverted", pHeader(invert(hmString("x-a", smExact("1")))), rreq{hdr: map[string]string{"X-A": "2"}}, true},
		{"inverted absent header does not match", pHeader(invert(hmString("x-a", smExact("1")))), rreq{}, false},
		{"missing as empty", pHeader(missingEmpty(hmString("x-a", smExact("")))), rreq{}, true},
		{"header range", pHeader(rangeHM("x-n", 10, 20)), rreq{hdr: map[string]string{"X-N": "19"}}, true},
		{"header range end exclusive", pHeader(rangeHM("x-n", 10, 20)), rreq{hdr: map[string]string{"X-N": "20"}}, false},
		{"header range not a number", pHeader(rangeHM("x-n", 10, 20)), rreq{hdr: map[string]string{"X-N": "1x"}}, false},
		{"deprecated exact_match", pHeader(&routev3.HeaderMatcher{Name: "x-a", HeaderMatchSpecifier: &routev3.HeaderMatcher_ExactMatch{ExactMatch: "v"}}), rreq{hdr: map[string]string{"X-A": "v"}}, true},
		{"destination port", pDstPort(9080), rreq{dst: "10.0.0.5:9080"}, true},
		{"destination port miss", pDstPort(9080), rreq{dst: "10.0.0.5:9081"}, false},
		{"destination port unknown", pDstPort(9080), rreq{}, false},
		{"destination ip", pDstIP("10.0.0.0", 8), rreq{dst: "10.0.0.5:9080"}, true},
		{"destination ip mapped v4", pDstIP("10.0.0.0", 8), rreq{dst: "[::ffff:10.0.0.5]:9080"}, true},
		{"destination ip miss", pDstIP("10.0.0.0", 8), rreq{dst: "11.0.0.5:9080"}, false},
		{"sni", pSNI(smExact("reviews.bookinfo.demo.mesh")), rreq{sni: "reviews.bookinfo.demo.mesh"}, true},
		{"sni without tls", pSNI(smExact("reviews.bookinfo.demo.mesh")), rreq{}, false},
		{"and all", pAnd(pMethod("GET"), pPath(smPrefix("/a"))), rreq{target: "/a"}, true},
		{"and one fails", pAnd(pMethod("GET"), pPath(smPrefix("/a"))), rreq{target: "/b"}, false},
		{"or one", pOr(pMethod("POST"), pPath(smPrefix("/a"))), rreq{target: "/a"}, true},
		{"or none", pOr(pMethod("POST"), pPath(smPrefix("/a"))), rreq{target: "/b"}, false},
		{"not", pNot(pMethod("POST")), rreq{}, true},
		{"not not", pNot(pNot(pMethod("POST"))), rreq{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := buildRBACChain(t, allowIf(tc.perm, idAny()))
			code, _, _ := tc.req.do(t, h)
			if got := code == http.StatusOK; got != tc.want {
				t.Fatalf("match = %v (status %d), want %v", got, code, tc.want)
			}
		})
	}
}

func invert(h *routev3.HeaderMatcher) *routev3.HeaderMatcher { h.InvertMatch = true; return h }
func missingEmpty(h *routev3.HeaderMatcher) *routev3.HeaderMatcher {
	h.TreatMissingHeaderAsEmpty = true
	return h
}
func rangeHM(name string, lo, hi int64) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_RangeMatch{RangeMatch: &typev3.Int64Range{Start: lo, End: hi}}}
}

func TestRBACPrincipals(t *testing.T) {
	const reviews = "bookinfo.demo.mesh/sa/reviews"
	jwt := &JWT{
		Principal: "https://issuer.example/alice", Audiences: []string{"bookinfo"},
		Claims:   map[string]any{"groups": []any{"dev", "ops"}, "role": "admin", "nested": map[string]any{"k": "v"}},
		Payloads: map[string]map[string]any{"issuer.example": {"sub": "alice", "level": float64(3)}},
	}
	tests := []struct {
		name string
		id   *rbacconfigv3.Principal
		req  rreq
		want bool
	}{
		{"any", idAny(), rreq{}, true},
		{"authenticated any with peer", idAuth(nil), rreq{peer: peer(reviews)}, true},
		{"authenticated any plaintext", idAuth(nil), rreq{}, false},
		{"authenticated any peer without principal", idAuth(nil), rreq{peer: peer("")}, false},
		{"principal exact", idAuth(smExact("spiffe://" + reviews)), rreq{peer: peer(reviews)}, true},
		{"principal exact without scheme never matches", idAuth(smExact(reviews)), rreq{peer: peer(reviews)}, false},
		{"principal exact other", idAuth(smExact("spiffe://" + reviews)), rreq{peer: peer("bookinfo.demo.mesh/sa/ratings")}, false},
		{"principal exact longer", idAuth(smExact("spiffe://" + reviews)), rreq{peer: peer(reviews + "x")}, false},
		{"principal prefix within scheme", idAuth(smPrefix("spiffe:")), rreq{peer: peer(reviews)}, true},
		{"principal prefix namespace", idAuth(smPrefix("spiffe://bookinfo.demo.mesh/")), rreq{peer: peer(reviews)}, true},
		{"principal prefix other namespace", idAuth(smPrefix("spiffe://shop.demo.mesh/")), rreq{peer: peer(reviews)}, false},
		{"principal suffix", idAuth(smSuffix("/sa/reviews")), rreq{peer: peer(reviews)}, true},
		{"principal suffix across scheme", idAuth(smSuffix("//" + reviews)), rreq{peer: peer(reviews)}, true},
		{"principal suffix too long", idAuth(smSuffix("xspiffe://" + reviews)), rreq{peer: peer(reviews)}, false},
		{"principal contains straddling", idAuth(smContains("://bookinfo")), rreq{peer: peer(reviews)}, true},
		{"principal contains miss", idAuth(smContains("ratings")), rreq{peer: peer(reviews)}, false},
		{"principal regex", idAuth(smRegex(`spiffe://[^/]+\.demo\.mesh/sa/rev.*`)), rreq{peer: peer(reviews)}, true},
		{"principal regex .+ plaintext", idAuth(smRegex(".+")), rreq{}, false},
		{"principal ignore case", idAuth(smFold(smExact("SPIFFE://" + strings.ToUpper(reviews)))), rreq{peer: peer(reviews)}, true},
		{"not principal plaintext", idNot(idAuth(smExact("spiffe://" + reviews))), rreq{}, true},
		{"not principal same", idNot(idAuth(smExact("spiffe://" + reviews))), rreq{peer: peer(reviews)}, false},
		{"direct remote ip from peer", idDirect("10.1.0.0", 16), rreq{peer: peer(reviews)}, true},
		{"direct remote ip from RemoteAddr", idDirect("192.0.2.0", 24), rreq{}, true},
		{"direct remote ip v6", idDirect("2001:db8::", 32), rreq{remote: "[2001:db8::7]:1234"}, true},
		{"direct remote ip miss", idDirect("192.0.3.0", 24), rreq{}, false},
		{"remote ip ignores x-forwarded-for", idRemote("203.0.113.0", 24), rreq{hdr: map[string]string{"X-Forwarded-For": "203.0.113.9"}}, false},
		{"source ip", idSource("192.0.2.10", 32), rreq{}, true},
		{"cidr /0 matches family", idDirect("0.0.0.0", 0), rreq{}, true},
		{"header", idHeader(hmString("x-user", smExact("bob"))), rreq{hdr: map[string]string{"X-User": "bob"}}, true},
		{"repeated header joined", idHeader(hmString("x-user", smExact("a,b"))), rreq{}.withHeaderValues("X-User", "a", "b"), true},
		{"url path", idPath(smPrefix("/admin")), rreq{target: "/admin/x"}, true},
		{"and ids", idAnd(idAuth(nil), idDirect("10.0.0.0", 8)), rreq{peer: peer(reviews)}, true},
		{"and ids fail", idAnd(idAuth(nil), idDirect("11.0.0.0", 8)), rreq{peer: peer(reviews)}, false},
		{"or ids", idOr(idAuth(smExact("spiffe://x")), idDirect("10.0.0.0", 8)), rreq{peer: peer(reviews)}, true},
		{"request principal", idMeta(istioAuthnNamespace, vmString(smExact("https://issuer.example/alice")), "request.auth.principal"), rreq{jwt: jwt}, true},
		{"request principal without jwt", idMeta(istioAuthnNamespace, vmString(smExact("https://issuer.example/alice")), "request.auth.principal"), rreq{}, false},
		{"request principal any without jwt", idMeta(istioAuthnNamespace, vmString(smRegex(".+")), "request.auth.principal"), rreq{}, false},
		{"istio claim list", idMeta(istioAuthnNamespace, vmList(vmString(smExact("ops"))), "request.auth.claims", "groups"), rreq{jwt: jwt}, true},
		{"istio claim string as list", idMeta(istioAuthnNamespace, vmList(vmString(smExact("admin"))), "request.auth.claims", "role"), rreq{jwt: jwt}, true},
		{"istio nested claim", idMeta(istioAuthnNamespace, vmList(vmString(smExact("v"))), "request.auth.claims", "nested", "k"), rreq{jwt: jwt}, true},
		{"istio claim miss", idMeta(istioAuthnNamespace, vmList(vmString(smExact("qa"))), "request.auth.claims", "groups"), rreq{jwt: jwt}, false},
		{"istio audience", idMeta(istioAuthnNamespace, vmString(smExact("bookinfo")), "request.auth.audiences"), rreq{jwt: jwt}, true},
		{"jwt_authn payload", idMeta(jwtAuthnName, vmString(smExact("alice")), "issuer.example", "sub"), rreq{jwt: jwt}, true},
		{"jwt_authn payload number", idMeta(jwtAuthnName, &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_DoubleMatch{DoubleMatch: &matcherv3.DoubleMatcher{MatchPattern: &matcherv3.DoubleMatcher_Exact{Exact: 3}}}}, "issuer.example", "level"), rreq{jwt: jwt}, true},
		{"jwt_authn missing present false", idMeta(jwtAuthnName, &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_PresentMatch{PresentMatch: false}}, "issuer.example", "nope"), rreq{jwt: jwt}, true},
		{"jwt_authn present", idMeta(jwtAuthnName, &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_PresentMatch{PresentMatch: true}}, "issuer.example", "sub"), rreq{jwt: jwt}, true},
		{"jwt_authn other namespace key", idMeta(jwtAuthnName, vmString(smExact("alice")), "other", "sub"), rreq{jwt: jwt}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := buildRBACChain(t, allowIf(pAny(), tc.id))
			code, _, _ := tc.req.do(t, h)
			if got := code == http.StatusOK; got != tc.want {
				t.Fatalf("match = %v (status %d), want %v", got, code, tc.want)
			}
		})
	}
}

// withHeaderValues sets several values of one header (set after build).
func (q rreq) withHeaderValues(k string, vs ...string) rreq {
	if q.hdr == nil {
		q.hdr = map[string]string{}
	}
	q.hdr[k] = strings.Join(vs, "\x00") // split again by build
	return q
}

// TestRBACPlaintextPeer pins the ISTIO-SECURITY-2021-004 lesson: a peer
// without an authenticated principal (a plaintext connection accepted in
// PERMISSIVE mode) never matches a rule naming principals, so an ALLOW
// policy on principals refuses it, and a not_id over principals does match
// it, so a DENY policy with notPrincipals refuses it as well.
func TestRBACPlaintextPeer(t *testing.T) {
	const productpage = "bookinfo.demo.mesh/sa/productpage"
	allowPrincipals := &rbacv3.RBAC{Rules: rules(allow, "ns[bookinfo]-policy[allow-pp]-rule[0]",
		policy([]*rbacconfigv3.Permission{pAny()}, []*rbacconfigv3.Principal{idOr(idAuth(smExact("spiffe://" + productpage)))}))}
	allowAnyPrincipal := &rbacv3.RBAC{Rules: rules(allow, "any-authn",
		policy([]*rbacconfigv3.Permission{pAny()}, []*rbacconfigv3.Principal{idAuth(smRegex(".+"))}))}
	denyNotPrincipals := &rbacv3.RBAC{Rules: rules(deny, "ns[bookinfo]-policy[deny-others]-rule[0]",
		policy([]*rbacconfigv3.Permission{pAny()}, []*rbacconfigv3.Principal{idNot(idOr(idAuth(smExact("spiffe://" + productpage))))}))}
	denyNotNamespaces := &rbacv3.RBAC{Rules: rules(deny, "deny-not-ns",
		policy([]*rbacconfigv3.Permission{pAny()}, []*rbacconfigv3.Principal{idNot(idAuth(smPrefix("spiffe://bookinfo.demo.mesh/")))}))}
	plaintext := rreq{}
	plaintextWithIP := rreq{peer: &Peer{IP: peer("").IP}} // PERMISSIVE: IP known, no principal
	pp := rreq{peer: peer(productpage)}
	other := rreq{peer: peer("shop.demo.mesh/sa/cart")}
	tests := []struct {
		name string
		cfg  *rbacv3.RBAC
		req  rreq
		want int
	}{
		{"allow principals: plaintext refused", allowPrincipals, plaintext, 403},
		{"allow principals: plaintext with ip refused", allowPrincipals, plaintextWithIP, 403},
		{"allow principals: named peer allowed", allowPrincipals, pp, 200},
		{"allow principals: other peer refused", allowPrincipals, other, 403},
		{"allow any principal: plaintext refused", allowAnyPrincipal, plaintextWithIP, 403},
		{"allow any principal: mTLS peer allowed", allowAnyPrincipal, other, 200},
		{"deny notPrincipals: plaintext refused", denyNotPrincipals, plaintext, 403},
		{"deny notPrincipals: plaintext with ip refused", denyNotPrincipals, plaintextWithIP, 403},
		{"deny notPrincipals: named peer allowed", denyNotPrincipals, pp, 200},
		{"deny notPrincipals: other peer refused", denyNotPrincipals, other, 403},
		{"deny notNamespaces: plaintext refused", denyNotNamespaces, plaintextWithIP, 403},
		{"deny notNamespaces: same namespace allowed", denyNotNamespaces, pp, 200},
		{"deny notNamespaces: other namespace refused", denyNotNamespaces, other, 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := buildRBACChain(t, tc.cfg)
			if code, _, _ := tc.req.do(t, h); code != tc.want {
				t.Fatalf("status %d, want %d", code, tc.want)
			}
		})
	}
}

// TestRBACIstioPolicies runs policies shaped the way Istio translates
// AuthorizationPolicy resources.
func TestRBACIstioPolicies(t *testing.T) {
	const pp = "bookinfo.demo.mesh/sa/productpage"
	// ALLOW from principals [productpage] to methods [GET] paths
	// ["/api/*", "*/info", "/health"].
	allowPaths := &rbacv3.RBAC{Rules: rules(allow, "ns[bookinfo]-policy[reviews]-rule[0]", policy(
		[]*rbacconfigv3.Permission{pAnd(
			pOr(pMethod("GET")),
			pOr(pPath(smPrefix("/api/")), pPath(smSuffix("/info")), pPath(smExact("/health"))),
		)},
		[]*rbacconfigv3.Principal{idAnd(idOr(idAuth(smExact("spiffe://" + pp))))},
	))}
	// ALLOW-nothing: an ALLOW policy with no rules.
	allowNothing := &rbacv3.RBAC{Rules: rules(allow)}
	// DENY when request.headers[x-debug] in ["1"].
	denyHeader := &rbacv3.RBAC{Rules: rules(deny, "deny-debug", policy(
		[]*rbacconfigv3.Permission{pAny()},
		[]*rbacconfigv3.Principal{idAnd(idOr(idHeader(hmString("x-debug", smExact("1")))))},
	))}
	// DENY from ipBlocks ["198.51.100.0/24"] and notIpBlocks ["198.51.100.7"].
	denyIPs := &rbacv3.RBAC{Rules: rules(deny, "deny-ips", policy(
		[]*rbacconfigv3.Permission{pAny()},
		[]*rbacconfigv3.Principal{idAnd(idOr(idDirect("198.51.100.0", 24)), idNot(idOr(idDirect("198.51.100.7", 32))))},
	))}
	// ALLOW requestPrincipals ["https://issuer.example/*"] when
	// request.auth.claims[groups] in ["admins"].
	allowJWT := &rbacv3.RBAC{Rules: rules(allow, "jwt", policy(
		[]*rbacconfigv3.Permission{pAny()},
		[]*rbacconfigv3.Principal{idAnd(
			idOr(idMeta(istioAuthnNamespace, vmString(smPrefix("https://issuer.example/")), "request.auth.principal")),
			idOr(idMeta(istioAuthnNamespace, vmList(vmString(smExact("admins"))), "request.auth.claims", "groups")),
		)},
	))}
	admin := &JWT{Principal: "https://issuer.example/alice", Claims: map[string]any{"groups": []any{"admins"}}}
	user := &JWT{Principal: "https://issuer.example/bob", Claims: map[string]any{"groups": []any{"users"}}}
	foreign := &JWT{Principal: "https://evil.example/alice", Claims: map[string]any{"groups": []any{"admins"}}}
	tests := []struct {
		name string
		cfg  *rbacv3.RBAC
		req  rreq
		want int
	}{
		{"paths prefix wildcard", allowPaths, rreq{target: "/api/v1/reviews", peer: peer(pp)}, 200},
		{"paths suffix wildcard", allowPaths, rreq{target: "/x/info", peer: peer(pp)}, 200},
		{"paths exact", allowPaths, rreq{target: "/health", peer: peer(pp)}, 200},
		{"paths other path", allowPaths, rreq{target: "/admin", peer: peer(pp)}, 403},
		{"paths prefix needs the slash", allowPaths, rreq{target: "/api", peer: peer(pp)}, 403},
		{"paths wrong method", allowPaths, rreq{method: "DELETE", target: "/health", peer: peer(pp)}, 403},
		{"paths wrong principal", allowPaths, rreq{target: "/health", peer: peer("bookinfo.demo.mesh/sa/ratings")}, 403},
		{"paths plaintext", allowPaths, rreq{target: "/health"}, 403},
		{"allow nothing", allowNothing, rreq{peer: peer(pp)}, 403},
		{"deny header hit", denyHeader, rreq{hdr: map[string]string{"X-Debug": "1"}}, 403},
		{"deny header miss", denyHeader, rreq{hdr: map[string]string{"X-Debug": "0"}}, 200},
		{"deny header absent", denyHeader, rreq{}, 200},
		{"deny ip block", denyIPs, rreq{remote: "198.51.100.9:5000"}, 403},
		{"deny ip not block exception", denyIPs, rreq{remote: "198.51.100.7:5000"}, 200},
		{"deny ip outside", denyIPs, rreq{remote: "192.0.2.1:5000"}, 200},
		{"deny ip mapped v6", denyIPs, rreq{remote: "[::ffff:198.51.100.9]:5000"}, 403},
		{"jwt admin", allowJWT, rreq{jwt: admin}, 200},
		{"jwt not in group", allowJWT, rreq{jwt: user}, 403},
		{"jwt other issuer", allowJWT, rreq{jwt: foreign}, 403},
		{"jwt none", allowJWT, rreq{}, 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := buildRBACChain(t, tc.cfg)
			code, body, _ := tc.req.do(t, h)
			if code != tc.want {
				t.Fatalf("status %d, want %d", code, tc.want)
			}
			if code == 403 && body != rbacDeniedBody {
				t.Fatalf("body %q, want %q", body, rbacDeniedBody)
			}
		})
	}
}

func TestRBACActions(t *testing.T) {
	getOnly := func(a rbacconfigv3.RBAC_Action) *rbacv3.RBAC {
		return &rbacv3.RBAC{Rules: rules(a, "get", policy([]*rbacconfigv3.Permission{pMethod("GET")}, []*rbacconfigv3.Principal{idAny()}))}
	}
	tests := []struct {
		name   string
		cfg    *rbacv3.RBAC
		method string
		want   int
	}{
		{"allow match", getOnly(allow), "GET", 200},
		{"allow no match", getOnly(allow), "POST", 403},
		{"deny match", getOnly(deny), "GET", 403},
		{"deny no match", getOnly(deny), "POST", 200},
		{"log match", getOnly(rbacconfigv3.RBAC_LOG), "GET", 200},
		{"log no match", getOnly(rbacconfigv3.RBAC_LOG), "POST", 200},
		{"no rules enforce nothing", &rbacv3.RBAC{}, "POST", 200},
		{"deny with no policies allows", &rbacv3.RBAC{Rules: rules(deny)}, "POST", 200},
		{"shadow deny does not enforce", &rbacv3.RBAC{ShadowRules: rules(allow)}, "POST", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := buildRBACChain(t, tc.cfg)
			if code, _, _ := (rreq{method: tc.method}).do(t, h); code != tc.want {
				t.Fatalf("status %d, want %d", code, tc.want)
			}
		})
	}
}

func TestRBACStats(t *testing.T) {
	cfg := &rbacv3.RBAC{
		Rules:       rules(allow, "get", policy([]*rbacconfigv3.Permission{pMethod("GET")}, []*rbacconfigv3.Principal{idAny()})),
		ShadowRules: rules(deny, "post", policy([]*rbacconfigv3.Permission{pMethod("POST")}, []*rbacconfigv3.Principal{idAny()})),
	}
	h, f := buildRBACChain(t, cfg)
	for _, m := range []string{"GET", "GET", "POST"} {
		(rreq{method: m}).do(t, h)
	}
	s := &f.stats
	got := [4]uint64{s.allowed.Load(), s.denied.Load(), s.shadowAllowed.Load(), s.shadowDenied.Load()}
	if want := [4]uint64{2, 1, 2, 1}; got != want {
		t.Fatalf("allowed, denied, shadow allowed, shadow denied = %v, want %v", got, want)
	}

	logCfg := &rbacv3.RBAC{Rules: rules(rbacconfigv3.RBAC_LOG, "get", policy([]*rbacconfigv3.Permission{pMethod("GET")}, []*rbacconfigv3.Principal{idAny()}))}
	h, f = buildRBACChain(t, logCfg)
	for _, m := range []string{"GET", "POST", "GET"} {
		(rreq{method: m}).do(t, h)
	}
	if l, a := f.stats.logged.Load(), f.stats.allowed.Load(); l != 2 || a != 3 {
		t.Fatalf("LOG action: logged %d allowed %d, want 2 and 3", l, a)
	}
}

func TestRBACGRPCDenied(t *testing.T) {
	h, _ := buildRBACChain(t, &rbacv3.RBAC{Rules: rules(allow)})
	code, _, hdr := (rreq{method: "POST", hdr: map[string]string{"Content-Type": "application/grpc"}}).do(t, h)
	if code != 200 || hdr.Get("Grpc-Status") != "7" || hdr.Get("Grpc-Message") != rbacDeniedBody {
		t.Fatalf("status %d grpc-status %q grpc-message %q, want 200, 7, %q", code, hdr.Get("Grpc-Status"), hdr.Get("Grpc-Message"), rbacDeniedBody)
	}
}

func TestRBACPerRoute(t *testing.T) {
	denyAll := &rbacv3.RBAC{Rules: rules(allow)}
	allowAll := &rbacv3.RBAC{Rules: rules(allow, "all", policy([]*rbacconfigv3.Permission{pAny()}, []*rbacconfigv3.Principal{idAny()}))}
	h, _ := buildRBACChain(t, denyAll)
	tests := []struct {
		name  string
		route map[string]*anypb.Any
		want  int
	}{
		{"listener config", nil, 403},
		{"override allows", map[string]*anypb.Any{rbacName: mustAny(t, &rbacv3.RBACPerRoute{Rbac: allowAll})}, 200},
		{"empty per-route disables", map[string]*anypb.Any{rbacName: mustAny(t, &rbacv3.RBACPerRoute{})}, 200},
		{"override for another filter name", map[string]*anypb.Any{"other": mustAny(t, &rbacv3.RBACPerRoute{})}, 403},
		{"filter config disabled", map[string]*anypb.Any{rbacName: mustAny(t, &routev3.FilterConfig{Disabled: true})}, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if code, _, _ := (rreq{route: tc.route}).do(t, h); code != tc.want {
				t.Fatalf("status %d, want %d", code, tc.want)
			}
			if err := CheckRouteConfig(tc.route); err != nil {
				t.Fatalf("CheckRouteConfig: %v", err)
			}
		})
	}
}

func TestRBACConfigErrors(t *testing.T) {
	one := func(p *rbacconfigv3.Permission, id *rbacconfigv3.Principal) *rbacv3.RBAC { return allowIf(p, id) }
	tests := []struct {
		name    string
		cfg     *rbacv3.RBAC
		wantErr string
	}{
		{"track_per_rule_stats", &rbacv3.RBAC{TrackPerRuleStats: true}, ".track_per_rule_stats: not supported"},
		{"audit logging", &rbacv3.RBAC{Rules: &rbacconfigv3.RBAC{AuditLoggingOptions: &rbacconfigv3.RBAC_AuditLoggingOptions{}}}, "rules.audit_logging_options: not supported"},
		{"condition", &rbacv3.RBAC{Rules: rules(allow, "c", &rbacconfigv3.Policy{Permissions: []*rbacconfigv3.Permission{pAny()}, Principals: []*rbacconfigv3.Principal{idAny()}, Condition: &exprpb.Expr{}})}, `policies["c"].condition: not supported`},
		{"no permissions", &rbacv3.RBAC{Rules: rules(allow, "p", policy(nil, []*rbacconfigv3.Principal{idAny()}))}, `policies["p"].permissions: at least one`},
		{"no principals", &rbacv3.RBAC{Rules: rules(allow, "p", policy([]*rbacconfigv3.Permission{pAny()}, nil))}, `policies["p"].principals: at least one`},
		{"permission metadata", one(&rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_Metadata{Metadata: &matcherv3.MetadataMatcher{}}}, idAny()), "permissions[0]: permission metadata is not supported"},
		{"principal filter_state", one(pAny(), &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_FilterState{FilterState: &matcherv3.FilterStateMatcher{}}}), "principals[0]: principal filter_state is not supported"},
		{"empty and", one(pAnd(), idAny()), "and_rules.rules: at least one"},
		{"bad regex", one(pPath(smRegex("(")), idAny()), "url_path.path.safe_regex.regex"},
		{"empty prefix", one(pPath(smPrefix("")), idAny()), "url_path.path.prefix: must not be empty"},
		{"bad cidr", one(pAny(), idDirect("10.0.0.300", 8)), "direct_remote_ip.address_prefix"},
		{"cidr too long", one(pAny(), idDirect("10.0.0.0", 33)), "direct_remote_ip.prefix_len: 33 above 32"},
		{"unknown metadata namespace", one(pAny(), idMeta("envoy.filters.http.ext_authz", vmString(smExact("x")), "k")), `metadata.filter: metadata namespace "envoy.filters.http.ext_authz" is not supported`},
		{"unsupported pseudo header", one(pHeader(hmString(":protocol", smExact("x"))), idAny()), `header.name: pseudo-header ":protocol"`},
		{"any false", one(&rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_Any{Any: false}}, idAny()), "permissions[0].any: must be true"},
		{"port above 65535", one(pDstPort(70000), idAny()), "destination_port: 70000 above 65535"},
		{"too deep", one(deepNot(maxMatcherDepth+2), idAny()), "nested deeper than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build([]*hcmv3.HttpFilter{httpFilter(t, rbacName, tc.cfg), routerFilter(t)}, &okRouter{})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), "http_filters[0](envoy.filters.http.rbac).typed_config") {
				t.Fatalf("error %q does not name the filter", err)
			}
		})
	}
}

func deepNot(n int) *rbacconfigv3.Permission {
	p := pAny()
	for range n {
		p = pNot(p)
	}
	return p
}
