package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/proto"

	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/resource"
	"canton.dev/canton/internal/xds"
)

// These tests run the control plane's translation (internal/xds, fed the scope's Istio security
// resources) into real proxies over the in-test xDS server: a "reviews" proxy in front of an
// application, and caller proxies holding SPIFFE certificates minted by internal/identity. Every
// request crosses a real mTLS connection between two proxies (or a plaintext one, for the
// PERMISSIVE cases) and is authorized by the RBAC and jwt_authn filters the generator produced.

const (
	secMesh      = "demo.mesh"
	secNamespace = "bookinfo.demo.mesh"
	reviewsHost  = "reviews.bookinfo.demo.mesh"
	jwtIssuer    = "https://issuer.example"
)

// secPKI is the mesh root CA, the bookinfo scope CA under it, and the JWT signing key of the
// tests, created once: key generation dominates the cost of a case otherwise.
type secPKI struct {
	root, scope *identity.CA
	bundle      []byte
	jwtKey      *ecdsa.PrivateKey
	otherKey    *ecdsa.PrivateKey
	mu          sync.Mutex
	creds       map[string][2][]byte // SPIFFE ID -> chain PEM, key PEM
}

var (
	pkiOnce sync.Once
	pki     *secPKI
	pkiErr  error
)

func testPKI(t testing.TB) *secPKI {
	t.Helper()
	pkiOnce.Do(func() {
		now := time.Now()
		p := &secPKI{creds: map[string][2][]byte{}}
		if p.root, pkiErr = identity.NewRootCA(secMesh, now); pkiErr != nil {
			return
		}
		if p.scope, pkiErr = p.root.NewIntermediate(secNamespace, time.Hour, now); pkiErr != nil {
			return
		}
		p.bundle = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.root.Cert.Raw})
		if p.jwtKey, pkiErr = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); pkiErr != nil {
			return
		}
		p.otherKey, pkiErr = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		pki = p
	})
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
	return pki
}

// svid returns the PEM chain and key of a workload identity: bookinfo identities come from the
// bookinfo scope CA, others straight from the mesh root.
func (p *secPKI) svid(t testing.TB, namespace, account string) (chainPEM, keyPEM []byte) {
	t.Helper()
	id := identity.WorkloadID(namespace, account)
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.creds[id.String()]; ok {
		return c[0], c[1]
	}
	ca := p.root
	if namespace == secNamespace {
		ca = p.scope
	}
	cr, err := ca.NewCredentials(id, time.Hour, time.Now(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cr.Chain {
		chainPEM = append(chainPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	der, err := x509.MarshalPKCS8PrivateKey(cr.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	p.creds[id.String()] = [2][]byte{chainPEM, keyPEM}
	return chainPEM, keyPEM
}

// jwks is the inline JWKS of the RequestAuthentication: the test key, pinned to ES256.
func (p *secPKI) jwks(t testing.TB) string {
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p.jwtKey.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// token signs claims with key (ES256, kid k1).
func token(t testing.TB, key *ecdsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// claimsFor returns valid claims of the test issuer for audience reviews, with extra merged in.
func claimsFor(sub string, extra map[string]any) map[string]any {
	c := map[string]any{"iss": jwtIssuer, "sub": sub, "aud": "reviews", "exp": time.Now().Add(time.Hour).Unix(),
		"iat": time.Now().Add(-time.Minute).Unix()}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

// secMeshBase is the scope content every case shares: the services, in Canton's form.
const secMeshBase = `
apiVersion: canton.dev/v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec:
  ports: [{name: http, port: 9080}]
---
apiVersion: canton.dev/v1
kind: Service
metadata: {name: productpage, namespace: bookinfo}
spec:
  ports: [{name: http, port: 9080}]
`

// secCase is one running mesh: the reviews proxy, its application, and caller proxies.
type secCase struct {
	t        testing.TB
	pathNorm string
	pki      *secPKI
	objects  []resource.Object
	app      *upstream
	inbound  string // address of the reviews proxy's inbound listener
	callers  map[string]string
}

// caller is a proxy of the mesh identified as spiffe://<namespace>/sa/<account>, with an
// outbound listener.
type caller struct{ namespace, account string }

// startSecCase starts the reviews proxy under the policies (Istio YAML, namespace bookinfo by
// default), registers its workload, and starts one outbound proxy per caller.
func startSecCase(t *testing.T, policies string, callers ...caller) *secCase {
	t.Helper()
	return startSecMesh(t, secMeshOptions{policies: policies}, callers...)
}

// secMeshOptions vary the mesh of startSecMesh.
type secMeshOptions struct {
	policies string           // Istio YAML, namespace bookinfo by default
	app      http.HandlerFunc // the reviews application; nil: it echoes path, payload and token presence
	pathNorm string           // every node's PathNormalization
}

func startSecMesh(t testing.TB, o secMeshOptions, callers ...caller) *secCase {
	t.Helper()
	c := &secCase{t: t, pki: testPKI(t), callers: map[string]string{}, pathNorm: o.pathNorm}
	c.objects = parseObjects(t, secMeshBase+"\n---\n"+o.policies)
	if o.app == nil {
		o.app = func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "reviews %s payload=%t token=%t", r.URL.Path, r.Header.Get("X-Jwt-Payload") != "", r.Header.Get("Authorization") != "")
		}
	}
	c.app = startUpstream(t, "reviews", o.app)

	chain, key := c.pki.svid(t, secNamespace, "reviews")
	e := startEnv(t, func(o *Options) { o.NodeID = "reviews-v1-1" })
	node := xds.Node{ID: "reviews-v1-1", Service: "reviews", Namespace: secNamespace, Labels: map[string]string{"app": "reviews", "version": "v1"},
		InboundPort: 15006, InboundAddress: "127.0.0.1", AppAddress: c.app.Addr(), CertificateChain: chain, PrivateKey: key,
		PathNormalization: o.pathNorm}
	c.push(e, node)
	c.inbound = e.listenerAddr(xds.InboundListenerName)

	_, port, _ := net.SplitHostPort(c.inbound)
	c.objects = append(c.objects, parseObjects(t, fmt.Sprintf(`
apiVersion: canton.dev/v1
kind: Workload
metadata: {name: reviews-v1-1, namespace: bookinfo}
spec: {service: reviews, address: 127.0.0.1, port: %s, labels: {app: reviews, version: v1}, lease: 1}
`, port))...)
	for _, cl := range callers {
		chain, key := c.pki.svid(t, cl.namespace, cl.account)
		id := cl.account + "-caller"
		ce := startEnv(t, func(o *Options) { o.NodeID = id })
		c.push(ce, xds.Node{ID: id, Service: cl.account, Namespace: cl.namespace, Labels: map[string]string{"app": cl.account},
			OutboundPort: 15001, CertificateChain: chain, PrivateKey: key, PathNormalization: o.pathNorm})
		c.callers[cl.namespace+"/"+cl.account] = ce.listenerAddr(xds.OutboundListenerName)
	}
	return c
}

func parseObjects(t testing.TB, yaml string) []resource.Object {
	t.Helper()
	objs, err := resource.Parse("case.yaml", []byte(yaml), secMesh, "bookinfo")
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// push generates the node's resources from the current objects and serves them to e, with
// every listener bound to port 0 (the test reads the bound address back), then waits until the
// proxy has accepted them.
func (c *secCase) push(e *env, node xds.Node) {
	c.t.Helper()
	objs := make([]resource.Object, len(c.objects))
	copy(objs, c.objects)
	for i := range objs {
		objs[i].Created = uint64(i + 1)
	}
	res, err := xds.Generate(xds.Input{Mesh: secMesh, Scope: secMesh, Objects: objs, Revision: 1, TrustBundle: c.pki.bundle}, node)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, typ := range xds.Types {
		var msgs []proto.Message
		for _, name := range slices.Sorted(maps.Keys(res.ByType(typ))) {
			m := res.ByType(typ)[name]
			if l, ok := m.(*listenerv3.Listener); ok {
				l = proto.Clone(l).(*listenerv3.Listener)
				l.GetAddress().GetSocketAddress().PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: 0}
				m = l
			}
			msgs = append(msgs, m)
		}
		e.set(typ, res.Version(typ), msgs...)
	}
	// Every type the node gets, endpoints included: a request sent before the EDS update is applied
	// finds its cluster without endpoints ("no healthy upstream").
	for _, typ := range xds.Types {
		if len(res.ByType(typ)) > 0 {
			e.waitACK(typ, res.Version(typ))
		}
	}
}

// call sends a request from a caller's outbound listener to reviews, with header pairs kv.
func (c *secCase) call(from, method, path string, kv ...string) (int, string) {
	c.t.Helper()
	addr, ok := c.callers[from]
	if !ok {
		c.t.Fatalf("no caller %s", from)
	}
	return do(c.t, addr, reviewsHost, method, path, kv...)
}

// plain sends a plaintext request straight to the reviews proxy's inbound listener (a peer
// without a certificate). err is non-nil when the connection is refused or closed.
func (c *secCase) plain(method, path string) (int, string, error) {
	req, err := http.NewRequest(method, "http://"+c.inbound+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Host = reviewsHost
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func do(t testing.TB, addr, host, method, path string, kv ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s%s via %s: %v", method, host, path, addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type secReq struct {
	from         string // caller "namespace/account"; "" for a plaintext peer
	method, path string
	headers      []string
	want         int    // 0: the connection must be refused
	body         string // a substring the response body must contain; for 403 RBAC's by default
}

func (c *secCase) check(reqs []secReq) {
	c.t.Helper()
	for _, r := range reqs {
		name := r.from
		if name == "" {
			name = "plaintext"
		}
		if r.from == "" {
			code, body, err := c.plain(r.method, r.path)
			switch {
			case r.want == 0 && err == nil:
				c.t.Errorf("%s %s %s: got %d %q, want the connection refused", name, r.method, r.path, code, body)
			case r.want != 0 && err != nil:
				c.t.Errorf("%s %s %s: %v, want %d", name, r.method, r.path, err, r.want)
			case r.want != 0 && code != r.want:
				c.t.Errorf("%s %s %s: got %d %q, want %d", name, r.method, r.path, code, body, r.want)
			}
			continue
		}
		code, body := c.call(r.from, r.method, r.path, r.headers...)
		if code != r.want {
			c.t.Errorf("%s %s %s %v: got %d %q, want %d", name, r.method, r.path, r.headers, code, body, r.want)
		}
		want := r.body
		if want == "" && code == http.StatusForbidden {
			want = "RBAC: access denied"
		}
		if !strings.Contains(body, want) {
			c.t.Errorf("%s %s %s: body %q, want it to contain %q", name, r.method, r.path, body, want)
		}
	}
}

const (
	productpage = secNamespace + "/productpage"
	ratings     = secNamespace + "/ratings"
	outsider    = "other.demo.mesh/evil"
)

var secCallers = []caller{{secNamespace, "productpage"}, {secNamespace, "ratings"}, {"other.demo.mesh", "evil"}}

// TestSecurityAllowByCallerIdentityOverMTLS: STRICT mTLS between proxies and an ALLOW policy
// naming productpage (in Istio's principal form): productpage's GETs pass, everyone else, and
// productpage's other methods, get 403; a plaintext client cannot even connect.
func TestSecurityAllowByCallerIdentityOverMTLS(t *testing.T) {
	c := startSecCase(t, `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-viewer, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/bookinfo/sa/productpage"]}}]
    to: [{operation: {methods: ["GET"]}}]
`, secCallers...)
	c.check([]secReq{
		{from: productpage, method: "GET", path: "/reviews/1", want: 200},
		{from: productpage, method: "POST", path: "/reviews/1", want: 403},
		{from: ratings, method: "GET", path: "/reviews/1", want: 403},
		{from: outsider, method: "GET", path: "/reviews/1", want: 403},
		{from: "", method: "GET", path: "/reviews/1", want: 0},
	})
	if n := c.app.count.Load(); n != 1 {
		t.Errorf("application saw %d requests, want 1 (only the allowed one)", n)
	}
}

// TestSecurityNoPolicyAllowsMeshCallers: without AuthorizationPolicy every authenticated caller
// passes (default allow), and STRICT (Canton's default) still refuses plaintext.
func TestSecurityNoPolicyAllowsMeshCallers(t *testing.T) {
	c := startSecCase(t, "", secCallers...)
	c.check([]secReq{
		{from: productpage, method: "GET", path: "/", want: 200},
		{from: outsider, method: "DELETE", path: "/x", want: 200},
		{from: "", method: "GET", path: "/", want: 0},
	})
}

// TestSecurityAllowNothingAndDenyPrecedence: allow-nothing denies all; a DENY beats an ALLOW
// that matches the same request.
func TestSecurityAllowNothingAndDenyPrecedence(t *testing.T) {
	t.Run("allow-nothing", func(t *testing.T) {
		c := startSecCase(t, `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: bookinfo}
spec: {}
`, secCallers[0])
		c.check([]secReq{{from: productpage, method: "GET", path: "/", want: 403}})
	})
	t.Run("deny-before-allow", func(t *testing.T) {
		c := startSecCase(t, `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-all, namespace: bookinfo}
spec:
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: demo.mesh}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
`, secCallers[0])
		c.check([]secReq{
			{from: productpage, method: "GET", path: "/page", want: 200},
			{from: productpage, method: "GET", path: "/admin/users", want: 403},
			// The proxy normalizes the path before RBAC sees it (and forwards the normalized one).
			{from: productpage, method: "GET", path: "/public/../admin/users", want: 403},
		})
	})
}

// TestSecurityPermissivePlaintextPeer is the ISTIO-SECURITY-2021-004 lesson, end to end: under
// PERMISSIVE the proxy accepts plaintext and mTLS on one port (TLS detected per connection),
// and a plaintext peer, which has no principal and no namespace, never matches an ALLOW rule
// naming principals or namespaces and always matches a DENY rule with notPrincipals or
// notNamespaces.
func TestSecurityPermissivePlaintextPeer(t *testing.T) {
	permissive := `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: bookinfo}
spec: {mtls: {mode: PERMISSIVE}}
---
`
	t.Run("no-policy", func(t *testing.T) {
		c := startSecCase(t, permissive, secCallers[0])
		c.check([]secReq{
			{from: "", method: "GET", path: "/", want: 200},
			{from: productpage, method: "GET", path: "/", want: 200},
		})
	})
	t.Run("deny-notNamespaces", func(t *testing.T) {
		c := startSecCase(t, permissive+`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-bookinfo, namespace: bookinfo}
spec:
  action: DENY
  rules: [{from: [{source: {notNamespaces: ["bookinfo"]}}]}]
`, secCallers...)
		c.check([]secReq{
			{from: "", method: "GET", path: "/", want: 403},
			{from: productpage, method: "GET", path: "/", want: 200},
			{from: ratings, method: "GET", path: "/", want: 200},
			{from: outsider, method: "GET", path: "/", want: 403},
		})
	})
	t.Run("deny-notPrincipals", func(t *testing.T) {
		c := startSecCase(t, permissive+`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-productpage, namespace: bookinfo}
spec:
  action: DENY
  rules: [{from: [{source: {notPrincipals: ["bookinfo.demo.mesh/sa/productpage"]}}]}]
`, secCallers...)
		c.check([]secReq{
			{from: "", method: "GET", path: "/", want: 403},
			{from: productpage, method: "GET", path: "/", want: 200},
			{from: ratings, method: "GET", path: "/", want: 403},
		})
	})
	t.Run("allow-principals-and-namespaces", func(t *testing.T) {
		c := startSecCase(t, permissive+`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-callers, namespace: bookinfo}
spec:
  rules:
  - from: [{source: {principals: ["*"]}}]
    to: [{operation: {paths: ["/any-principal"]}}]
  - from: [{source: {namespaces: ["bookinfo"]}}]
    to: [{operation: {paths: ["/bookinfo"]}}]
  - to: [{operation: {paths: ["/open"]}}]
`, secCallers...)
		c.check([]secReq{
			{from: "", method: "GET", path: "/any-principal", want: 403},
			{from: "", method: "GET", path: "/bookinfo", want: 403},
			{from: "", method: "GET", path: "/open", want: 200},
			{from: outsider, method: "GET", path: "/any-principal", want: 200},
			{from: outsider, method: "GET", path: "/bookinfo", want: 403},
			{from: ratings, method: "GET", path: "/bookinfo", want: 200},
		})
	})
}

// TestSecurityPortLevelMTLS: port-level modes of the workload's PeerAuthentication override its
// workload-wide mode for the port the inbound listener serves (the Service port 9080).
func TestSecurityPortLevelMTLS(t *testing.T) {
	t.Run("strict-port-in-permissive-namespace", func(t *testing.T) {
		c := startSecCase(t, `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: bookinfo}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  mtls: {mode: DISABLE}
  portLevelMtls: {9080: {mode: STRICT}}
`, secCallers[0])
		c.check([]secReq{
			{from: "", method: "GET", path: "/", want: 0},
			{from: productpage, method: "GET", path: "/", want: 200},
		})
	})
	t.Run("permissive-port-in-strict-workload", func(t *testing.T) {
		c := startSecCase(t, `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  mtls: {mode: STRICT}
  portLevelMtls: {9080: {mode: PERMISSIVE}}
`, secCallers[0])
		c.check([]secReq{
			{from: "", method: "GET", path: "/", want: 200},
			{from: productpage, method: "GET", path: "/", want: 200},
		})
	})
}

// TestSecurityJWTMatrix: RequestAuthentication with an inline JWKS on reviews, and an ALLOW
// policy requiring a request principal except on /public. Valid tokens pass, invalid ones get
// 401 from jwt_authn whatever the path, missing tokens are left to RBAC.
func TestSecurityJWTMatrix(t *testing.T) {
	p := testPKI(t)
	c := startSecCase(t, fmt.Sprintf(`
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  jwtRules:
  - issuer: %s
    audiences: [reviews]
    jwks: '%s'
    outputPayloadToHeader: x-jwt-payload
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-jwt, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - from: [{source: {requestPrincipals: ["%s/*"], principals: ["bookinfo.demo.mesh/sa/productpage"]}}]
  - from: [{source: {requestPrincipals: ["*"]}}]
    to: [{operation: {paths: ["/admin"]}}]
    when: [{key: "request.auth.claims[groups]", values: ["admins"]}]
  - to: [{operation: {paths: ["/public"]}}]
`, jwtIssuer, p.jwks(t), jwtIssuer), secCallers...)

	bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }
	valid := token(t, p.jwtKey, claimsFor("alice", nil))
	admin := token(t, p.jwtKey, claimsFor("bob", map[string]any{"groups": []string{"dev", "admins"}}))
	expired := token(t, p.jwtKey, claimsFor("alice", map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}))
	wrongAud := token(t, p.jwtKey, claimsFor("alice", map[string]any{"aud": "ratings"}))
	unknownIss := token(t, p.jwtKey, claimsFor("alice", map[string]any{"iss": "https://evil.example"}))
	wrongKey := token(t, p.otherKey, claimsFor("alice", nil))
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	body, _ := json.Marshal(claimsFor("alice", nil))
	algNone := hdr + "." + base64.RawURLEncoding.EncodeToString(body) + "."
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(body), "alice", "admin", 1))) + "." + parts[2]

	c.check([]secReq{
		{from: productpage, method: "GET", path: "/data", headers: bearer(valid), want: 200},
		{from: productpage, method: "GET", path: "/data", want: 403},                     // missing token: RBAC
		{from: productpage, method: "GET", path: "/public", want: 200},                   // missing token, open path
		{from: ratings, method: "GET", path: "/data", headers: bearer(valid), want: 403}, // token, wrong peer
		{from: ratings, method: "GET", path: "/admin", headers: bearer(admin), want: 200},
		{from: ratings, method: "GET", path: "/admin", headers: bearer(valid), want: 403}, // no admins claim
		{from: outsider, method: "GET", path: "/admin", want: 403},
		{from: productpage, method: "GET", path: "/data", headers: bearer(expired), want: 401, body: "Jwt is expired"},
		{from: productpage, method: "GET", path: "/public", headers: bearer(expired), want: 401},
		{from: productpage, method: "GET", path: "/data", headers: bearer(wrongAud), want: 403, body: "Audiences in Jwt are not allowed"}, // Envoy's code
		{from: productpage, method: "GET", path: "/data", headers: bearer(unknownIss), want: 401},
		{from: productpage, method: "GET", path: "/public", headers: bearer(unknownIss), want: 401},
		{from: productpage, method: "GET", path: "/data", headers: bearer(wrongKey), want: 401},
		{from: productpage, method: "GET", path: "/data", headers: bearer(algNone), want: 401},
		{from: productpage, method: "GET", path: "/data", headers: bearer(tampered), want: 401},
		{from: productpage, method: "GET", path: "/data", headers: bearer("not.a.jwt"), want: 401},
	})
	// The verified payload reaches the application (outputPayloadToHeader); the token is removed
	// (forwardOriginalToken unset).
	code, got := c.call(productpage, "GET", "/data", bearer(valid)...)
	if code != 200 || !strings.Contains(got, "payload=true") || !strings.Contains(got, "token=false") {
		t.Errorf("valid token: got %d %q, want 200 with payload=true token=false", code, got)
	}
	// A client cannot forge the payload header without a token.
	code, got = c.call(productpage, "GET", "/public", "X-Jwt-Payload", "eyJzdWIiOiJhZG1pbiJ9")
	if code != 200 || !strings.Contains(got, "payload=false") {
		t.Errorf("forged payload header: got %d %q, want 200 with payload=false", code, got)
	}
}
