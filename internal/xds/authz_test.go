package xds

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	security "istio.io/api/security/v1beta1"

	"canton.dev/canton/internal/filter"
	"canton.dev/canton/internal/resource"
)

// reviewsNode is the reviews-v1 sidecar of bookinfo, its application on port 9080.
func reviewsNode() Node {
	n := defaultNode()
	n.ID, n.Service, n.Labels, n.AppAddress = "reviews-v1-1", "reviews", map[string]string{"app": "reviews", "version": "v1"}, "127.0.0.1:9080"
	return n
}

// inboundChain generates the node's resources for the bookinfo services plus policies and
// builds the inbound listener's HTTP filters with the proxy's own filter package, ending in a
// handler that answers 200.
func inboundChain(t testing.TB, policies string, node Node) (filter.Handler, Resources) {
	t.Helper()
	base := loadInput(t, "testdata/authz-allow-nothing") // bookinfo services (+ a policy dropped below)
	var objs []resource.Object
	for _, o := range base.Objects {
		if o.Kind != "AuthorizationPolicy" {
			objs = append(objs, o)
		}
	}
	if policies != "" {
		extra, err := resource.Parse("policies.yaml", []byte(policies), testMesh, "bookinfo")
		if err != nil {
			t.Fatal(err)
		}
		for i := range extra {
			extra[i].Created = uint64(len(objs) + i + 1)
		}
		objs = append(objs, extra...)
	}
	base.Objects = objs
	res, err := Generate(base, node)
	if err != nil {
		t.Fatal(err)
	}
	h, err := filter.Build(inboundFilters(t, res), filter.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusOK)
		return nil
	}))
	if err != nil {
		t.Fatalf("the proxy's filter package rejects the generated filters: %v", err)
	}
	return h, res
}

func inboundFilters(t testing.TB, res Resources) []*hcmv3.HttpFilter {
	t.Helper()
	return listenerFilters(t, res, InboundListenerName)
}

// listenerFilters returns the HTTP filters of the first filter chain of listener name.
func listenerFilters(t testing.TB, res Resources, name string) []*hcmv3.HttpFilter {
	t.Helper()
	l, ok := res.Listeners[name].(*listenerv3.Listener)
	if !ok {
		t.Fatalf("no listener %s", name)
	}
	var h hcmv3.HttpConnectionManager
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&h); err != nil {
		t.Fatal(err)
	}
	return h.GetHttpFilters()
}

// req describes one request: the peer's principal ("" for a plaintext peer), its IP, method,
// path, headers, the verified JWT (nil: none) and the address it was sent to (zero: none).
type req struct {
	peer, ip, method, path string
	headers                map[string]string
	jwt                    *filter.JWT
	dst                    netip.AddrPort
}

func serve(h filter.Handler, q req) int {
	r := httptest.NewRequest(q.method, "http://reviews.bookinfo.demo.mesh:9080"+q.path, nil)
	for k, v := range q.headers {
		r.Header.Set(k, v)
	}
	ip := q.ip
	if ip == "" {
		ip = "127.0.0.1"
	}
	r.RemoteAddr = ip + ":40000"
	p := filter.Peer{IP: netip.MustParseAddr(ip)}
	if q.peer != "" {
		p.Principal = q.peer
		p.Namespace, _, _ = strings.Cut(q.peer, "/")
	}
	ctx := filter.WithPeer(context.Background(), p)
	if q.jwt != nil {
		ctx = filter.WithJWT(ctx, q.jwt)
	}
	if q.dst.IsValid() {
		ctx = filter.WithDestination(ctx, q.dst)
	}
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r.WithContext(ctx)); err != nil {
		return 500
	}
	return w.Code
}

// inboundAddr is the inbound listener's address of reviewsNode: the local address of the
// connections it accepts without transparent capture.
var inboundAddr = netip.MustParseAddrPort("127.0.0.1:15006")

const (
	pp      = "bookinfo.demo.mesh/sa/productpage"
	ratings = "bookinfo.demo.mesh/sa/ratings"
	evil    = "other.demo.mesh/sa/evil"
)

// TestAuthorizationSemantics evaluates the generated RBAC filters with the proxy's filter
// implementation, request by request, for Istio's policy shapes.
func TestAuthorizationSemantics(t *testing.T) {
	get := func(peer, path string) req { return req{peer: peer, method: "GET", path: path} }
	cases := []struct {
		name, policies string
		reqs           []req
		want           []int
	}{
		{"no policy allows all", "", []req{get("", "/"), get(evil, "/x")}, []int{200, 200}},
		{"allow-nothing", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {}\n",
			[]req{get(pp, "/")}, []int{403}},
		{"allow-all rules [{}]", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {rules: [{}]}\n",
			[]req{get("", "/"), get(evil, "/")}, []int{200, 200}},
		{"istio principal form maps to canton's", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a}
spec:
  rules: [{from: [{source: {principals: ["cluster.local/ns/bookinfo/sa/productpage"]}}]}]
`, []req{get(pp, "/"), get(ratings, "/"), get("", "/")}, []int{200, 403, 403}},
		{"deny wins over allow; audit never denies", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow}
spec: {rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny}
spec:
  action: DENY
  rules: [{to: [{operation: {methods: ["DELETE"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit}
spec:
  action: AUDIT
  rules: [{}]
`, []req{get(pp, "/"), {peer: pp, method: "DELETE", path: "/"}}, []int{200, 403}},
		{"plaintext peer matches notNamespaces and notPrincipals, never namespaces", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny}
spec:
  action: DENY
  rules:
  - from: [{source: {notNamespaces: ["bookinfo"]}}]
    to: [{operation: {paths: ["/ns"]}}]
  - from: [{source: {notPrincipals: ["bookinfo.demo.mesh/sa/productpage"]}}]
    to: [{operation: {paths: ["/p"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow}
spec:
  rules:
  - from: [{source: {namespaces: ["bookinfo"]}}]
`, []req{get("", "/ns"), get("", "/p"), get("", "/other"), get(pp, "/ns"), get(pp, "/p"), get(ratings, "/p"), get(evil, "/other")},
			[]int{403, 403, 403, 200, 200, 403, 403}},
		{"mesh root namespace policy applies to every workload", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-evil, namespace: demo.mesh}
spec:
  action: DENY
  rules: [{from: [{source: {namespaces: ["other"]}}]}]
`, []req{get(evil, "/"), get(pp, "/")}, []int{403, 200}},
		{"selector for another workload does not apply", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings-only}
spec:
  selector: {matchLabels: {app: ratings}}
`, []req{get(evil, "/")}, []int{200}},
		{"policy of another namespace does not apply", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: other-ns, namespace: other}
spec: {}
`, []req{get(evil, "/")}, []int{200}},
		{"targetRefs Service", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: t}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
`, []req{get(pp, "/")}, []int{403}},
		{"operations: paths, methods, hosts, ports, not-variants", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ops}
spec:
  rules:
  - to:
    - operation:
        paths: ["/api/*", "*.png", "/exact"]
        notPaths: ["/api/private*"]
        methods: ["GET"]
        hosts: ["REVIEWS.bookinfo.demo.mesh"]
        ports: ["9080"]
  - to: [{operation: {ports: ["1234"]}}]
`, []req{get(pp, "/api/x"), get(pp, "/img/a.png"), get(pp, "/exact"), get(pp, "/exact/no"), get(pp, "/api/private/1"),
			{peer: pp, method: "POST", path: "/api/x"}},
			[]int{200, 200, 200, 403, 403, 403}},
		{"conditions: headers, source.ip, request.auth", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: when}
spec:
  rules:
  - when:
    - {key: "request.headers[x-tenant]", values: ["acme", "beta*"], notValues: ["beta-blocked"]}
    - {key: source.ip, values: ["127.0.0.0/8"]}
    - {key: "request.auth.claims[groups]", values: ["admins"]}
    - {key: request.auth.principal, values: ["https://issuer.example/*"]}
`, []req{
			{peer: pp, method: "GET", path: "/", headers: map[string]string{"X-Tenant": "acme"}, jwt: &filter.JWT{Principal: "https://issuer.example/bob", Claims: map[string]any{"groups": []any{"dev", "admins"}}}},
			{peer: pp, method: "GET", path: "/", headers: map[string]string{"X-Tenant": "beta-2"}, jwt: &filter.JWT{Principal: "https://issuer.example/bob", Claims: map[string]any{"groups": "admins"}}},
			{peer: pp, method: "GET", path: "/", headers: map[string]string{"X-Tenant": "beta-blocked"}, jwt: &filter.JWT{Principal: "https://issuer.example/bob", Claims: map[string]any{"groups": "admins"}}},
			{peer: pp, method: "GET", path: "/", headers: map[string]string{"X-Tenant": "acme"}, jwt: &filter.JWT{Principal: "https://issuer.example/bob", Claims: map[string]any{"groups": "dev"}}},
			{peer: pp, method: "GET", path: "/", headers: map[string]string{"X-Tenant": "acme"}},
			{peer: pp, ip: "10.1.2.3", method: "GET", path: "/", headers: map[string]string{"X-Tenant": "acme"}, jwt: &filter.JWT{Principal: "https://issuer.example/bob", Claims: map[string]any{"groups": "admins"}}},
		}, []int{200, 200, 403, 403, 403, 403}},
		{"requestPrincipals without a token never match", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: jwt}
spec:
  rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-no-jwt}
spec:
  action: DENY
  rules: [{from: [{source: {notRequestPrincipals: ["*"]}}], to: [{operation: {paths: ["/strict"]}}]}]
`, []req{get(pp, "/"), {peer: pp, method: "GET", path: "/", jwt: &filter.JWT{Principal: "i/s"}}, get(pp, "/strict")},
			[]int{403, 200, 403}},
		{"unsupported: DENY rule ignores the field, ALLOW rule is dropped", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny}
spec:
  action: DENY
  rules: [{to: [{operation: {methods: ["POST"]}}], when: [{key: "source.unknownThing", values: ["x"]}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow}
spec:
  rules:
  - when: [{key: "source.unknownThing", values: ["x"]}]
  - to: [{operation: {paths: ["/ok"]}}]
`, []req{{peer: pp, method: "POST", path: "/ok"}, get(pp, "/ok"), get(pp, "/other")}, []int{403, 200, 403}},
		{"CUSTOM with an unknown provider is enforced as DENY (fail closed)", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext}
spec:
  action: CUSTOM
  provider: {name: opa}
  rules: [{to: [{operation: {paths: ["/ext*"]}}]}]
`, []req{get(pp, "/ext/a"), get(pp, "/")}, []int{403, 200}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := inboundChain(t, tc.policies, reviewsNode())
			for i, q := range tc.reqs {
				if !q.dst.IsValid() {
					q.dst = inboundAddr // the connection's local address on the inbound listener
				}
				if got := serve(h, q); got != tc.want[i] {
					t.Errorf("request %d (%s %s from %q): got %d, want %d", i, q.method, q.path, q.peer, got, tc.want[i])
				}
			}
		})
	}
}

// TestSkipsAreReported checks that what is not enforced as written is listed in Skipped.
func TestSkipsAreReported(t *testing.T) {
	_, res := inboundChain(t, `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext}
spec:
  action: CUSTOM
  provider: {name: opa}
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow}
spec:
  targetRefs: [{kind: ServiceEntry, name: x}]
  rules: [{from: [{source: {trustDomains: ["td"]}}]}]
`, reviewsNode())
	var all []string
	for _, s := range res.Skipped {
		all = append(all, s.String())
	}
	joined := strings.Join(all, "\n")
	for _, want := range []string{
		"AuthorizationPolicy bookinfo.demo.mesh/ext: action: CUSTOM",
		"AuthorizationPolicy bookinfo.demo.mesh/allow: targetRefs[0]: target kind ServiceEntry is not supported",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("skipped lacks %q:\n%s", want, joined)
		}
	}
}

// TestPeerAuthenticationPrecedence checks the mode the inbound listener gets.
func TestPeerAuthenticationPrecedence(t *testing.T) {
	pa := func(name, ns, sel, mode, ports string) string {
		s := "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec:\n"
		if sel != "" {
			s += "  selector: {matchLabels: {app: " + sel + "}}\n"
		}
		if mode != "" {
			s += "  mtls: {mode: " + mode + "}\n"
		}
		if ports != "" {
			s += "  portLevelMtls: {" + ports + "}\n"
		}
		return s + "---\n"
	}
	cases := []struct {
		name, yaml string
		want       security.PeerAuthentication_MutualTLS_Mode
	}{
		{"none: strict", "", security.PeerAuthentication_MutualTLS_STRICT},
		{"mesh", pa("default", "demo.mesh", "", "PERMISSIVE", ""), security.PeerAuthentication_MutualTLS_PERMISSIVE},
		{"namespace over mesh", pa("default", "demo.mesh", "", "PERMISSIVE", "") + pa("default", "bookinfo", "", "DISABLE", ""), security.PeerAuthentication_MutualTLS_DISABLE},
		{"workload over namespace", pa("default", "bookinfo", "", "DISABLE", "") + pa("w", "bookinfo", "reviews", "STRICT", ""), security.PeerAuthentication_MutualTLS_STRICT},
		{"unset workload inherits namespace", pa("default", "bookinfo", "", "PERMISSIVE", "") + pa("w", "bookinfo", "reviews", "UNSET", ""), security.PeerAuthentication_MutualTLS_PERMISSIVE},
		{"other workload's selector ignored", pa("w", "bookinfo", "ratings", "DISABLE", ""), security.PeerAuthentication_MutualTLS_STRICT},
		{"port level on the service port", pa("w", "bookinfo", "reviews", "STRICT", "9080: {mode: DISABLE}"), security.PeerAuthentication_MutualTLS_DISABLE},
		{"port level on another port", pa("w", "bookinfo", "reviews", "PERMISSIVE", "9999: {mode: STRICT}"), security.PeerAuthentication_MutualTLS_PERMISSIVE},
		{"port level unset inherits", pa("default", "bookinfo", "", "DISABLE", "") + pa("w", "bookinfo", "reviews", "", "9080: {mode: UNSET}"), security.PeerAuthentication_MutualTLS_DISABLE},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{Mesh: testMesh, Scope: testMesh}
			if tc.yaml != "" {
				objs, err := resource.Parse("pa.yaml", []byte(tc.yaml+bookinfoReviews), testMesh, "bookinfo")
				if err != nil {
					t.Fatal(err)
				}
				in.Objects = objs
			} else {
				objs, _ := resource.Parse("pa.yaml", []byte(bookinfoReviews), testMesh, "bookinfo")
				in.Objects = objs
			}
			s, err := NewSnapshot(in)
			if err != nil {
				t.Fatal(err)
			}
			g := &gen{in: in, node: reviewsNode(), m: s.m, skipped: map[Skip]bool{}}
			if err := g.checkNode(); err != nil {
				t.Fatal(err)
			}
			if got := g.peerAuthenticationMode(); got != tc.want {
				t.Errorf("mode %v, want %v", got, tc.want)
			}
		})
	}
}

const bookinfoReviews = `
apiVersion: canton.dev/v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec:
  ports: [{name: http, port: 9080}]
`

// FuzzSecurityPolicies feeds AuthorizationPolicies, RequestAuthentications and
// PeerAuthentications that resource.Parse accepts to the translation for the reviews sidecar:
// it must not fail, and the proxy's filter package must accept the inbound filters it emits
// (a rejected filter would make the proxy NACK the whole inbound listener). The same objects
// are translated for a sidecar with reviews' labels in front of a TCP service, whose inbound
// TCP chains' network RBAC filters the filter package must accept too.
func FuzzSecurityPolicies(f *testing.F) {
	for _, dir := range []string{"authz-allow-productpage", "authz-deny-not-principals", "authz-allow-nothing",
		"authz-jwt-request-principals", "peer-auth-port-strict", "authz-conditions", "authz-custom-unsupported", "authz-custom-scoped", "peer-auth-permissive", "authz-foreign-trust-domain", "peer-auth-auto-mtls"} {
		b, err := os.ReadFile(filepath.Join("testdata", dir, "input.yaml"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r}\nspec:\n  jwtRules: [{issuer: i, jwks: '{\"keys\":[{\"kty\":\"EC\"}]}'}]\n"))
	f.Add([]byte("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec:\n  rules: [{when: [{key: \"request.auth.claims[]\", values: [\"*\"]}], to: [{operation: {hosts: [\"*a*\"], paths: [\"*\"]}}]}]\n"))
	base, err := os.ReadFile("testdata/bookinfo.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := resource.Parse("fuzz.yaml", append(append(append([]byte(nil), base...), "\n---\n"...), data...), testMesh, "bookinfo")
		if err != nil {
			return
		}
		res, err := Generate(Input{Mesh: testMesh, Scope: testMesh, Objects: objs}, reviewsNode())
		if err != nil {
			t.Fatal(err)
		}
		validateAll(t, res)
		if _, err := filter.Build(inboundFilters(t, res), filter.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })); err != nil {
			t.Fatalf("the proxy would reject the inbound filters: %v", err)
		}
		tcpObjs, err := resource.Parse("db.yaml", []byte(dbService), testMesh, "bookinfo")
		if err != nil {
			t.Fatal(err)
		}
		n := dbNode()
		n.Labels = reviewsNode().Labels
		res, err = Generate(Input{Mesh: testMesh, Scope: testMesh, Objects: append(objs, tcpObjs...)}, n)
		if err != nil {
			t.Fatal(err)
		}
		validateAll(t, res)
		for _, c := range res.Listeners[InboundListenerName].(*listenerv3.Listener).GetFilterChains() {
			if fs := c.GetFilters(); len(fs) > 1 {
				if _, err := filter.BuildNetwork(fs[:len(fs)-1], c.GetName()+".filters"); err != nil {
					t.Fatalf("the proxy would reject the inbound TCP chain's network filters: %v", err)
				}
			}
		}
	})
}

// BenchmarkGeneratedAuthzChain measures one request through the RBAC filters generated for the
// authz-conditions golden case (the most complex rule) plus a DENY and an AUDIT policy.
func BenchmarkGeneratedAuthzChain(b *testing.B) {
	pol, err := os.ReadFile("testdata/authz-conditions/input.yaml")
	if err != nil {
		b.Fatal(err)
	}
	h, _ := inboundChain(b, string(pol)+`
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny}
spec:
  action: DENY
  rules: [{from: [{source: {notNamespaces: ["bookinfo", "other"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit}
spec: {action: AUDIT, rules: [{}]}
`, reviewsNode())
	q := req{peer: pp, method: "GET", path: "/api/x", headers: map[string]string{"X-Tenant": "acme"},
		jwt: &filter.JWT{Principal: "i/s", Presenter: "web", Claims: map[string]any{"realm": map[string]any{"role": "editor"}}}}
	b.ReportAllocs()
	for b.Loop() {
		serve(h, q)
	}
}

// TestForeignTrustDomainPrincipals: a principal whose trust domain is neither cluster.local nor
// the mesh's is matched as written (a peer of that trust domain), and, where that makes the rule
// stricter, also as the mesh's workload of that namespace and account (in case the trust domain
// is an alias of the mesh): a DENY rule then still denies the mesh's workload, an ALLOW rule does
// not grant it. Every such principal is reported.
func TestForeignTrustDomainPrincipals(t *testing.T) {
	const (
		foreignEvil = "other.org/ns/bookinfo/sa/evil"
		foreignPP   = "other.org/ns/bookinfo/sa/productpage"
		meshEvil    = "bookinfo.demo.mesh/sa/evil"
	)
	get := func(peer string) req { return req{peer: peer, method: "GET", path: "/"} }
	cases := []struct {
		name, policies string
		reqs           []req
		want           []int
	}{
		{"DENY principals", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p}
spec:
  action: DENY
  rules: [{from: [{source: {principals: ["` + foreignEvil + `"]}}]}]
`, []req{get(foreignEvil), get(meshEvil), get(pp)}, []int{403, 403, 200}},
		{"DENY source.principal condition", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p}
spec:
  action: DENY
  rules: [{when: [{key: source.principal, values: ["spiffe://` + foreignEvil + `"]}]}]
`, []req{get(foreignEvil), get(meshEvil), get(pp)}, []int{403, 403, 200}},
		{"DENY notPrincipals", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p}
spec:
  action: DENY
  rules: [{from: [{source: {notPrincipals: ["` + foreignPP + `"]}}]}]
`, []req{get(foreignPP), get(pp)}, []int{200, 403}},
		{"ALLOW principals", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p}
spec:
  rules: [{from: [{source: {principals: ["` + foreignPP + `"]}}]}]
`, []req{get(foreignPP), get(pp)}, []int{200, 403}},
		{"ALLOW notPrincipals", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p}
spec:
  rules: [{from: [{source: {notPrincipals: ["` + foreignEvil + `"]}}]}]
`, []req{get(foreignEvil), get(meshEvil), get(pp)}, []int{403, 403, 200}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, res := inboundChain(t, tc.policies, reviewsNode())
			for i, q := range tc.reqs {
				q.dst = inboundAddr
				if got := serve(h, q); got != tc.want[i] {
					t.Errorf("request %d from %q: got %d, want %d", i, q.peer, got, tc.want[i])
				}
			}
			if want := "trust domain other.org is neither cluster.local nor in the mesh"; !strings.Contains(skippedText(res), want) {
				t.Errorf("skipped lacks %q:\n%s", want, skippedText(res))
			}
		})
	}
}

// TestInboundPortsAreWorkloadPorts: on the inbound listener, ports and destination.port are
// the workload's ports, matched at run time against the connection's destination: a connection
// to the listener's own port is for the application's port (9080), a captured one for the port
// it was sent to. A port of the Service that is not the application's (9090) is not the
// destination of any request the listener forwards, so ALLOW ports: [9090] does not allow
// requests to 9080; a DENY naming it, which cannot tell its requests from the others on the
// listener's port, denies them all (fail closed).
func TestInboundPortsAreWorkloadPorts(t *testing.T) {
	service := `
apiVersion: canton.dev/v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec:
  ports: [{name: http, port: 9080}, {name: http-admin, port: 9090}]
---
`
	captured := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr("10.1.0.7"), port) }
	cases := []struct {
		name, policies string
		dsts           []netip.AddrPort
		want           []int
		skip           string
	}{
		{"ALLOW ports [9090]", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p}
spec:
  rules: [{to: [{operation: {ports: ["9090"]}}]}]
`, []netip.AddrPort{inboundAddr, captured(9080), captured(9090)}, []int{403, 403, 200},
			"port 9090 is a port of Service reviews, not of the workload"},
		{"ALLOW ports [9080]", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p}
spec:
  rules: [{to: [{operation: {ports: ["9080"]}}]}]
`, []netip.AddrPort{inboundAddr, captured(9080), captured(9090)}, []int{200, 200, 403}, ""},
		{"ALLOW ports [the listener's port]", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p}
spec:
  rules: [{to: [{operation: {ports: ["15006"]}}]}]
`, []netip.AddrPort{inboundAddr, captured(15006)}, []int{403, 403}, ""},
		{"DENY destination.port [9080]", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p}
spec:
  action: DENY
  rules: [{when: [{key: destination.port, values: ["9080"]}]}]
`, []netip.AddrPort{inboundAddr, captured(9080), captured(9090)}, []int{403, 403, 200}, ""},
		{"DENY ports [9090], a service port: fail closed", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p}
spec:
  action: DENY
  rules: [{to: [{operation: {ports: ["9090"]}}]}]
`, []netip.AddrPort{inboundAddr, captured(9080), captured(9090)}, []int{403, 200, 403},
			"this rule matches every connection to the inbound listener's own port (fail closed)"},
		{"ALLOW notPorts [9090], a service port: fail closed", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p}
spec:
  rules: [{to: [{operation: {notPorts: ["9090"]}}]}]
`, []netip.AddrPort{inboundAddr, captured(9080), captured(9090)}, []int{403, 200, 403},
			"this rule matches every connection to the inbound listener's own port (fail closed)"},
		{"ALLOW notPorts [9080]", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p}
spec:
  rules: [{to: [{operation: {notPorts: ["9080"]}}]}]
`, []netip.AddrPort{inboundAddr, captured(9090)}, []int{403, 200}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := resource.Parse("in.yaml", []byte(service+tc.policies), testMesh, "bookinfo")
			if err != nil {
				t.Fatal(err)
			}
			for i := range objs {
				objs[i].Created = uint64(i + 1)
			}
			res, err := Generate(Input{Mesh: testMesh, Scope: testMesh, Objects: objs}, reviewsNode())
			if err != nil {
				t.Fatal(err)
			}
			validateAll(t, res)
			h, err := filter.Build(inboundFilters(t, res), filter.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				w.WriteHeader(http.StatusOK)
				return nil
			}))
			if err != nil {
				t.Fatal(err)
			}
			for i, dst := range tc.dsts {
				if got := serve(h, req{peer: pp, method: "GET", path: "/", dst: dst}); got != tc.want[i] {
					t.Errorf("request to %s: got %d, want %d", dst, got, tc.want[i])
				}
			}
			if tc.skip != "" && !strings.Contains(skippedText(res), tc.skip) {
				t.Errorf("skipped lacks %q:\n%s", tc.skip, skippedText(res))
			}
		})
	}
}
