package proxy

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"canton.dev/canton/internal/identity"
)

// The security regression corpus: testdata/security/*.case, one attack (or its control) per file,
// run against real proxies built by the generator (internal/xds) from the policies in
// testdata/security/policies. A case is a list of "key: value" lines ('#' starts a comment):
//
//	policy: deny-admin       the policy file (without .yaml); "none" when absent
//	normalization: BASE      every node's Node.PathNormalization; empty: Canton's default
//	via: inbound             inbound: straight to the reviews proxy's inbound listener (the
//	                         default); outbound: to the outbound listener of the caller proxy
//	                         named by peer, which forwards to reviews over mTLS
//	peer: productpage        who connects: productpage, ratings (bookinfo.demo.mesh), evil
//	                         (other.demo.mesh), foreign (a certificate from an untrusted root),
//	                         expired (an expired certificate from the mesh CA), nocert (TLS
//	                         without a client certificate) or plaintext
//	request: "GET / ..."     Go-quoted raw bytes; several request lines are concatenated
//	expect: 403              the status of the first response, or "close": no response at all
//	app-requests: 1          how many requests the reviews application saw
//	app-path: /admin         the request target the application saw first
//	app-header: K: V         a header the application saw on its first request; V "<absent>"
//	                         means not there
//
// Request strings and app-header values may use {{token:NAME}} (a JWT, see corpusTokens) and
// {{xfcc:PEER}} (the x-forwarded-client-cert the reviews proxy sets for that peer).

type corpusCase struct {
	name, file    string
	policy        string
	normalization string
	via, peer     string
	request       string
	expect        string
	appRequests   int // -1: not checked
	appPath       string
	appHeaders    [][2]string
}

func parseCorpusCase(path string) (corpusCase, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return corpusCase{}, err
	}
	c := corpusCase{name: strings.TrimSuffix(filepath.Base(path), ".case"), file: path, policy: "none", via: "inbound",
		appRequests: -1}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fail := func(format string, args ...any) (corpusCase, error) {
			return corpusCase{}, fmt.Errorf("%s:%d: %s", path, i+1, fmt.Sprintf(format, args...))
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return fail("want key: value")
		}
		v = strings.TrimSpace(v)
		switch k {
		case "policy":
			c.policy = v
		case "normalization":
			c.normalization = v
		case "via":
			if v != "inbound" && v != "outbound" {
				return fail("via %q: want inbound or outbound", v)
			}
			c.via = v
		case "peer":
			c.peer = v
		case "request":
			s, err := strconv.Unquote(v)
			if err != nil {
				return fail("request: %v", err)
			}
			c.request += s
		case "expect":
			c.expect = v
		case "app-requests":
			n, err := strconv.Atoi(v)
			if err != nil {
				return fail("app-requests: %v", err)
			}
			c.appRequests = n
		case "app-path":
			c.appPath = v
		case "app-header":
			name, val, ok := strings.Cut(v, ":")
			if !ok {
				return fail("app-header: want Name: value")
			}
			c.appHeaders = append(c.appHeaders, [2]string{http.CanonicalHeaderKey(strings.TrimSpace(name)), strings.TrimSpace(val)})
		default:
			return fail("unknown key %q", k)
		}
	}
	switch {
	case c.peer == "":
		return corpusCase{}, fmt.Errorf("%s: peer is required", path)
	case c.request == "":
		return corpusCase{}, fmt.Errorf("%s: request is required", path)
	case c.expect == "":
		return corpusCase{}, fmt.Errorf("%s: expect is required", path)
	case c.via == "outbound" && !slices.Contains([]string{"productpage", "ratings", "evil"}, c.peer):
		return corpusCase{}, fmt.Errorf("%s: via outbound needs a caller proxy as peer, not %q", path, c.peer)
	}
	return c, nil
}

// corpusApp is the reviews application of the corpus: it records what reaches it.
type corpusApp struct {
	mu   sync.Mutex
	seen []*http.Request
}

func (a *corpusApp) serve(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	a.mu.Lock()
	a.seen = append(a.seen, r)
	a.mu.Unlock()
	fmt.Fprint(w, "reviews ok")
}

func (a *corpusApp) take() []*http.Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.seen
	a.seen = nil
	return s
}

var corpusPeers = map[string]caller{
	"productpage": {secNamespace, "productpage"},
	"ratings":     {secNamespace, "ratings"},
	"evil":        {"other.demo.mesh", "evil"},
}

func TestSecurityCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/security/*.case")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 40 {
		t.Fatalf("the corpus has %d cases, want at least 40", len(files))
	}
	groups := map[[2]string][]corpusCase{}
	var keys [][2]string
	for _, f := range files {
		c, err := parseCorpusCase(f)
		if err != nil {
			t.Fatal(err)
		}
		k := [2]string{c.policy, c.normalization}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], c)
	}
	p := testPKI(t)
	ex := corpusExtras(t, p)
	for _, k := range keys {
		t.Run(k[0]+"/"+k[1], func(t *testing.T) {
			policy, err := os.ReadFile(filepath.Join("testdata/security/policies", k[0]+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			yaml := strings.NewReplacer("{{ISSUER}}", jwtIssuer, "{{JWKS}}", ex.jwks).Replace(string(policy))
			app := &corpusApp{}
			mesh := startSecMesh(t, secMeshOptions{policies: yaml, app: app.serve, pathNorm: k[1]},
				corpusPeers["productpage"], corpusPeers["ratings"], corpusPeers["evil"])
			for _, c := range groups[k] {
				t.Run(c.name, func(t *testing.T) {
					app.take()
					runCorpusCase(t, mesh, app, ex, c)
				})
			}
		})
	}
}

func runCorpusCase(t *testing.T, mesh *secCase, app *corpusApp, ex *corpusExtra, c corpusCase) {
	req := ex.expand(t, c.request)
	var conn net.Conn
	var err error
	switch {
	case c.via == "outbound":
		p := corpusPeers[c.peer]
		conn, err = net.DialTimeout("tcp", mesh.callers[p.namespace+"/"+p.account], 5*time.Second)
	case c.peer == "plaintext":
		conn, err = net.DialTimeout("tcp", mesh.inbound, 5*time.Second)
	default:
		cfg, cerr := ex.clientTLS(t, c.peer)
		if cerr != nil {
			t.Fatal(cerr)
		}
		d := &net.Dialer{Timeout: 5 * time.Second}
		conn, err = tls.DialWithDialer(d, "tcp", mesh.inbound, cfg)
	}
	status := "close"
	if err == nil {
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, werr := io.WriteString(conn, req); werr == nil {
			if resp, rerr := http.ReadResponse(bufio.NewReader(conn), nil); rerr == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				status = strconv.Itoa(resp.StatusCode)
			}
		}
	}
	if status != c.expect {
		t.Errorf("%s: got %s, want %s", c.file, status, c.expect)
	}
	seen := app.take()
	if c.appRequests >= 0 && len(seen) != c.appRequests {
		t.Errorf("%s: the application saw %d requests, want %d", c.file, len(seen), c.appRequests)
	}
	if c.appPath == "" && len(c.appHeaders) == 0 {
		return
	}
	if len(seen) == 0 {
		t.Errorf("%s: the application saw no request, want one to check", c.file)
		return
	}
	first := seen[0]
	if c.appPath != "" && first.RequestURI != c.appPath {
		t.Errorf("%s: the application saw %q, want %q", c.file, first.RequestURI, c.appPath)
	}
	for _, h := range c.appHeaders {
		want := ex.expand(t, h[1])
		vals, ok := first.Header[h[0]]
		switch {
		case want == "<absent>" && ok:
			t.Errorf("%s: the application got %s: %q, want none", c.file, h[0], vals)
		case want != "<absent>" && (len(vals) != 1 || vals[0] != want):
			t.Errorf("%s: the application got %s: %q, want %q", c.file, h[0], vals, want)
		}
	}
}

// corpusExtra is what the corpus needs besides the shared test PKI: an RSA JWT key, certificates
// the mesh must refuse, and the tokens and XFCC values cases refer to.
type corpusExtra struct {
	p       *secPKI
	rsaKey  *rsa.PrivateKey
	jwks    string
	foreign tls.Certificate
	expired tls.Certificate
	tokens  map[string]string
}

var (
	corpusOnce  sync.Once
	corpusState *corpusExtra
	corpusErr   error
)

func corpusExtras(t testing.TB, p *secPKI) *corpusExtra {
	t.Helper()
	corpusOnce.Do(func() { corpusState, corpusErr = newCorpusExtra(p) })
	if corpusErr != nil {
		t.Fatal(corpusErr)
	}
	return corpusState
}

func newCorpusExtra(p *secPKI) (*corpusExtra, error) {
	ex := &corpusExtra{p: p}
	var err error
	if ex.rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	// The JWKS pins ES256 to k1 and RS256 to k2.
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &p.jwtKey.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"},
		{Key: &ex.rsaKey.PublicKey, KeyID: "k2", Algorithm: "RS256", Use: "sig"},
	}})
	if err != nil {
		return nil, err
	}
	ex.jwks = string(b)

	// A workload certificate for productpage's identity from a root the mesh does not trust.
	now := time.Now()
	other, err := identity.NewRootCA(secMesh, now)
	if err != nil {
		return nil, err
	}
	cr, err := other.NewCredentials(identity.WorkloadID(secNamespace, "productpage"), time.Hour, now, nil, nil)
	if err != nil {
		return nil, err
	}
	ex.foreign = tls.Certificate{PrivateKey: cr.Key, Leaf: cr.Chain[0]}
	for _, c := range cr.Chain {
		ex.foreign.Certificate = append(ex.foreign.Certificate, c.Raw)
	}
	// An expired certificate for productpage's identity, signed by the bookinfo scope CA.
	key, err := identity.GenerateKey()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(4242), NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(-time.Hour),
		URIs: []*url.URL{identity.WorkloadID(secNamespace, "productpage").URL()}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.scope.Cert, key.Public(), p.scope.Key)
	if err != nil {
		return nil, err
	}
	ex.expired = tls.Certificate{Certificate: [][]byte{der, p.scope.Cert.Raw}, PrivateKey: key}

	claims := func(extra map[string]any) map[string]any { return claimsFor("alice", extra) }
	hs256 := func(secret []byte, kid string, c map[string]any) string {
		h, _ := json.Marshal(map[string]any{"alg": "HS256", "typ": "JWT", "kid": kid})
		body, _ := json.Marshal(c)
		in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(body)
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(in))
		return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	rs256 := func(kid string, c map[string]any) (string, error) {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: ex.rsaKey}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
		if err != nil {
			return "", err
		}
		body, _ := json.Marshal(c)
		jws, err := s.Sign(body)
		if err != nil {
			return "", err
		}
		return jws.CompactSerialize()
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&ex.rsaKey.PublicKey)
	if err != nil {
		return nil, err
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	noneHdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	noneBody, _ := json.Marshal(claims(nil))
	ex.tokens = map[string]string{
		"alg-none":          noneHdr + "." + base64.RawURLEncoding.EncodeToString(noneBody) + ".",
		"hs256-rsa-pem":     hs256(pubPEM, "k2", claims(nil)),
		"hs256-rsa-der":     hs256(pubDER, "k2", claims(nil)),
		"hs256-rsa-modulus": hs256(ex.rsaKey.N.Bytes(), "k2", claims(nil)),
	}
	sign := map[string]map[string]any{
		"valid":       claims(nil),
		"expired":     claims(map[string]any{"exp": now.Add(-time.Hour).Unix()}),
		"not-yet":     claims(map[string]any{"nbf": now.Add(time.Hour).Unix()}),
		"wrong-aud":   claims(map[string]any{"aud": "ratings"}),
		"unknown-iss": claims(map[string]any{"iss": "https://evil.example"}),
	}
	for name, c := range sign {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: p.jwtKey}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
		if err != nil {
			return nil, err
		}
		body, _ := json.Marshal(c)
		jws, err := s.Sign(body)
		if err != nil {
			return nil, err
		}
		if ex.tokens[name], err = jws.CompactSerialize(); err != nil {
			return nil, err
		}
	}
	if ex.tokens["rs256-valid"], err = rs256("k2", claims(nil)); err != nil {
		return nil, err
	}
	// RS256 under the kid of the ES256 key: the key's pinned algorithm must win.
	if ex.tokens["rs256-under-es-kid"], err = rs256("k1", claims(nil)); err != nil {
		return nil, err
	}
	return ex, nil
}

// clientTLS is the TLS configuration of a peer dialing the reviews proxy directly.
func (ex *corpusExtra) clientTLS(t testing.TB, peer string) (*tls.Config, error) {
	cfg := &tls.Config{InsecureSkipVerify: true} // the peer's side of server verification is not under test
	switch peer {
	case "foreign":
		cfg.Certificates = []tls.Certificate{ex.foreign}
	case "expired":
		cfg.Certificates = []tls.Certificate{ex.expired}
	case "nocert":
	default:
		p, ok := corpusPeers[peer]
		if !ok {
			return nil, fmt.Errorf("unknown peer %q", peer)
		}
		chain, key := ex.p.svid(t, p.namespace, p.account)
		c, err := tls.X509KeyPair(chain, key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg, nil
}

var placeholder = regexp.MustCompile(`\{\{(token|xfcc):([a-z0-9-]+)\}\}`)

// expand replaces the placeholders of s.
func (ex *corpusExtra) expand(t testing.TB, s string) string {
	t.Helper()
	return placeholder.ReplaceAllStringFunc(s, func(m string) string {
		sub := placeholder.FindStringSubmatch(m)
		if sub[1] == "token" {
			tok, ok := ex.tokens[sub[2]]
			if !ok {
				t.Fatalf("unknown token %q", sub[2])
			}
			return tok
		}
		p, ok := corpusPeers[sub[2]]
		if !ok {
			t.Fatalf("unknown peer %q", sub[2])
		}
		chain, _ := ex.p.svid(t, p.namespace, p.account)
		blk, _ := pem.Decode(chain)
		sum := sha256.Sum256(blk.Bytes)
		return "By=" + identity.WorkloadID(secNamespace, "reviews").String() + ";Hash=" + hex.EncodeToString(sum[:]) +
			";URI=" + identity.WorkloadID(p.namespace, p.account).String()
	})
}
