package filter

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
)

const (
	jwtName   = "envoy.filters.http.jwt_authn"
	testIss   = "https://issuer.example"
	otherIss  = "https://other.example"
	testAud   = "bookinfo"
	testNow   = 1_700_000_000 // newFakeClock's time
	testLater = testNow + 3600
)

// testKeys are the signing keys of the tests, generated once.
type testKeys struct {
	rsa, rsa2 *rsa.PrivateKey
	ec        *ecdsa.PrivateKey
}

var (
	keysOnce sync.Once
	keys     testKeys
)

func testKeySet(t testing.TB) *testKeys {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if keys.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if keys.rsa2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if keys.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
	})
	return &keys
}

// jwksJSON is the JWKS with the public RSA key (kid rsa1, RS256) and EC
// key (kid ec1, ES256).
func (k *testKeys) jwksJSON(t testing.TB) string {
	t.Helper()
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &k.rsa.PublicKey, KeyID: "rsa1", Algorithm: "RS256", Use: "sig"},
		{Key: &k.ec.PublicKey, KeyID: "ec1", Algorithm: "ES256", Use: "sig"},
	}}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// claims returns valid claims for testIss/testAud, with extra merged in
// (a nil value deletes the claim).
func claims(extra map[string]any) map[string]any {
	c := map[string]any{"iss": testIss, "sub": "alice", "aud": testAud, "exp": testLater, "iat": testNow, "groups": []any{"dev"}}
	maps.Copy(c, extra)
	for k, v := range c {
		if v == nil {
			delete(c, k)
		}
	}
	return c
}

// sign makes a compact JWS of c with key under alg, with kid when non-empty.
func sign(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, c map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// rawToken assembles a token from a header and claims and a signature
// given as is (for unsigned and forged tokens).
func rawToken(t testing.TB, header map[string]any, c map[string]any, sig string) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	p, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p) + "." + sig
}

func localProvider(t testing.TB, jwks string) *jwtv3.JwtProvider {
	return &jwtv3.JwtProvider{
		Issuer: testIss, Audiences: []string{testAud},
		JwksSourceSpecifier: &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: jwks}}},
	}
}

func reqProviderName(name string) *jwtv3.JwtRequirement {
	return &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: name}}
}

func reqAnyOf(rs ...*jwtv3.JwtRequirement) *jwtv3.JwtRequirement {
	return &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAny{RequiresAny: &jwtv3.JwtRequirementOrList{Requirements: rs}}}
}

func reqAllOf(rs ...*jwtv3.JwtRequirement) *jwtv3.JwtRequirement {
	return &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAll{RequiresAll: &jwtv3.JwtRequirementAndList{Requirements: rs}}}
}

func needAllowMissing() *jwtv3.JwtRequirement {
	return &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}}
}

func needAllowFailed() *jwtv3.JwtRequirement {
	return &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_AllowMissingOrFailed{AllowMissingOrFailed: &emptypb.Empty{}}}
}

func prefixRule(prefix string, req *jwtv3.JwtRequirement) *jwtv3.RequirementRule {
	return &jwtv3.RequirementRule{
		Match:           &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}},
		RequirementType: &jwtv3.RequirementRule_Requires{Requires: req},
	}
}

// jwtConfig is one provider "p" applied to every path with req.
func jwtConfig(p *jwtv3.JwtProvider, req *jwtv3.JwtRequirement) *jwtv3.JwtAuthentication {
	return &jwtv3.JwtAuthentication{
		Providers: map[string]*jwtv3.JwtProvider{"p": p},
		Rules:     []*jwtv3.RequirementRule{prefixRule("/", req)},
	}
}

// buildJWTChain builds jwt_authn (then more filters) and the router, with
// clock as the chain's clock.
func buildJWTChain(t testing.TB, cfg *jwtv3.JwtAuthentication, clock *fakeClock, more ...*hcmv3.HttpFilter) (Handler, *okRouter) {
	t.Helper()
	filters := append([]*hcmv3.HttpFilter{httpFilter(t, jwtName, cfg)}, more...)
	filters = append(filters, routerFilter(t))
	rt := &okRouter{}
	h, err := BuildWithOptions(filters, rt, Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return h, rt
}

// bearer is a request with Authorization: Bearer tok (none when tok is "").
func bearer(tok string) *http.Request {
	r := httptest.NewRequest("GET", "http://reviews.bookinfo/api/x", nil)
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	return r
}

func serveJWT(t testing.TB, h Handler, r *http.Request, route map[string]*anypb.Any) *httptest.ResponseRecorder {
	t.Helper()
	rec, _, err := serve(t, h, r, route)
	if err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
	return rec
}

func cloneProto[T proto.Message](m T) T { return proto.Clone(m).(T) }
