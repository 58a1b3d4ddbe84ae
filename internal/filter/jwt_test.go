package filter

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestJWTVerification(t *testing.T) {
	k := testKeySet(t)
	jwks := k.jwksJSON(t)
	good := sign(t, jose.RS256, k.rsa, "rsa1", claims(nil))
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"`+testIss+`","sub":"mallory","aud":"bookinfo","exp":1700003600}`)) + "." + parts[2]
	// HS256 "signed" with the RSA public key as the HMAC secret: the
	// classic key confusion.
	pubDER, err := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	unsignedHS := rawToken(t, map[string]any{"alg": "HS256", "kid": "rsa1"}, claims(nil), "")
	mac := hmac.New(sha256.New, pubDER)
	mac.Write([]byte(unsignedHS[:len(unsignedHS)-1]))
	confused := unsignedHS + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))

	tests := []struct {
		name     string
		token    string
		req      *jwtv3.JwtRequirement
		wantCode int
		wantBody string
	}{
		{"valid RS256", good, nil, 200, "upstream"},
		{"valid ES256", sign(t, jose.ES256, k.ec, "ec1", claims(nil)), nil, 200, "upstream"},
		{"valid without kid", sign(t, jose.RS256, k.rsa, "", claims(nil)), nil, 200, "upstream"},
		{"audience list", sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"aud": []any{"x", "https://bookinfo/"}})), nil, 200, "upstream"},
		{"expired", sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"exp": testNow - 61})), nil, 401, "Jwt is expired"},
		{"expired within skew", sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"exp": testNow - 59})), nil, 200, "upstream"},
		{"not yet valid", sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"nbf": testNow + 61})), nil, 401, "Jwt not yet valid"},
		{"nbf within skew", sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"nbf": testNow + 59})), nil, 200, "upstream"},
		{"exp not a number", sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"exp": "tomorrow"})), nil, 401, "Jwt payload is an invalid JSON"},
		{"wrong issuer", sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"iss": otherIss})), nil, 401, "Jwt issuer is not configured"},
		{"no issuer", sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"iss": nil})), nil, 401, "Jwt issuer is not configured"},
		{"wrong audience", sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"aud": "other"})), nil, 403, "Audiences in Jwt are not allowed"},
		{"no audience", sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"aud": nil})), nil, 403, "Audiences in Jwt are not allowed"},
		{"alg none", rawToken(t, map[string]any{"alg": "none"}, claims(nil), ""), nil, 401, "Jwt verification fails"},
		{"alg none with kid", rawToken(t, map[string]any{"alg": "none", "kid": "rsa1"}, claims(nil), "e30"), nil, 401, "Jwt verification fails"},
		{"HS256 with RSA public key", confused, nil, 401, "Jwks doesn't have key to match kid or alg from Jwt"},
		{"tampered payload", tampered, nil, 401, "Jwt verification fails"},
		{"signed by another key", sign(t, jose.RS256, k.rsa2, "rsa1", claims(nil)), nil, 401, "Jwt verification fails"},
		{"unknown kid", sign(t, jose.RS256, k.rsa, "nope", claims(nil)), nil, 401, "Jwks doesn't have key to match kid or alg from Jwt"},
		{"alg mismatch with pinned jwk alg", sign(t, jose.RS384, k.rsa, "rsa1", claims(nil)), nil, 401, "Jwks doesn't have key to match kid or alg from Jwt"},
		{"not a jwt", "abc.def", nil, 401, "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"},
		{"garbage header", "%%%.e30.x", nil, 401, "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"},
		{"payload not an object", rawToken(t, map[string]any{"alg": "RS256"}, nil, "AAAA"), nil, 401, "Jwt payload is an invalid JSON"},
		{"missing", "", nil, 401, "Jwt is missing"},
		{"missing allowed", "", reqAnyOf(reqProviderName("p"), needAllowMissing()), 200, "upstream"},
		{"invalid with allow_missing", tampered, reqAnyOf(reqProviderName("p"), needAllowMissing()), 401, "Jwt verification fails"},
		{"valid with allow_missing", good, reqAnyOf(reqProviderName("p"), needAllowMissing()), 200, "upstream"},
		{"unknown issuer with allow_missing is invalid", sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"iss": otherIss})), reqAnyOf(reqProviderName("p"), needAllowMissing()), 401, "Jwt issuer is not configured"},
		{"invalid with allow_missing_or_failed", tampered, needAllowFailed(), 200, "upstream"},
		{"missing with allow_missing_or_failed", "", needAllowFailed(), 200, "upstream"},
		{"empty requirement", "", &jwtv3.JwtRequirement{}, 200, "upstream"},
		{"requires_all both", good, reqAllOf(reqProviderName("p"), reqProviderName("p")), 200, "upstream"},
		{"provider audiences override", good, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_ProviderAndAudiences{ProviderAndAudiences: &jwtv3.ProviderWithAudiences{ProviderName: "p", Audiences: []string{"other"}}}}, 403, "Audiences in Jwt are not allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req
			if req == nil {
				req = reqProviderName("p")
			}
			h, rt := buildJWTChain(t, jwtConfig(localProvider(t, jwks), req), newFakeClock())
			rec := serveJWT(t, h, bearer(tc.token), nil)
			if rec.Code != tc.wantCode || rec.Body.String() != tc.wantBody {
				t.Fatalf("got %d %q, want %d %q", rec.Code, rec.Body.String(), tc.wantCode, tc.wantBody)
			}
			if tc.wantCode != 200 && rt.count() != 0 {
				t.Fatal("a refused request reached the router")
			}
			if tc.wantCode == 401 {
				want := `Bearer realm="http://reviews.bookinfo/api/x"`
				if tc.wantBody != "Jwt is missing" {
					want += `, error="invalid_token"`
				}
				if got := rec.Header().Get("Www-Authenticate"); got != want {
					t.Fatalf("WWW-Authenticate %q, want %q", got, want)
				}
			}
		})
	}
}

// TestJWTNeverAcceptsUnsigned runs every unsigned or self-keyed form
// against providers with and without kids and algs.
func TestJWTNeverAcceptsUnsigned(t *testing.T) {
	k := testKeySet(t)
	h, _ := buildJWTChain(t, jwtConfig(localProvider(t, k.jwksJSON(t)), reqProviderName("p")), newFakeClock())
	for _, alg := range []string{"none", "None", "NONE", "nOnE", ""} {
		for _, sig := range []string{"", "e30", "AAAA"} {
			tok := rawToken(t, map[string]any{"alg": alg}, claims(nil), sig)
			if rec := serveJWT(t, h, bearer(tok), nil); rec.Code == 200 {
				t.Fatalf("alg %q sig %q accepted", alg, sig)
			}
		}
	}
	// A key embedded in the token header is never trusted.
	jwkHdr := map[string]any{"alg": "RS256", "jwk": map[string]any{"kty": "RSA", "n": "AQAB", "e": "AQAB"}}
	if rec := serveJWT(t, h, bearer(rawToken(t, jwkHdr, claims(nil), "AAAA")), nil); rec.Code == 200 {
		t.Fatal("token with embedded jwk accepted")
	}
}

func TestJWTOutputs(t *testing.T) {
	k := testKeySet(t)
	p := localProvider(t, k.jwksJSON(t))
	p.ForwardPayloadHeader = "x-jwt-payload"
	p.PayloadInMetadata = "issuer.example"
	p.ClaimToHeaders = []*jwtv3.JwtClaimToHeader{{HeaderName: "x-sub", ClaimName: "sub"}, {HeaderName: "x-level", ClaimName: "org.level"}}
	h, rt := buildJWTChain(t, jwtConfig(p, reqProviderName("p")), newFakeClock())
	tok := sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"org": map[string]any{"level": 3}}))
	r := bearer(tok)
	r.Header.Set("X-Jwt-Payload", "forged")
	r.Header.Set("X-Sub", "root")
	if rec := serveJWT(t, h, r, nil); rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	got := rt.last
	if v := got.Header.Values("X-Jwt-Payload"); len(v) != 1 || v[0] != strings.Split(tok, ".")[1] {
		t.Fatalf("x-jwt-payload %q, want the token's payload only", v)
	}
	if v := got.Header.Values("X-Sub"); len(v) != 1 || v[0] != "alice" {
		t.Fatalf("x-sub %q, want [alice]", v)
	}
	if v := got.Header.Get("X-Level"); v != "3" {
		t.Fatalf("x-level %q, want 3", v)
	}
	if got.Header.Get("Authorization") != "" {
		t.Fatal("token forwarded although forward is false")
	}
	j, ok := JWTFrom(got.Context())
	if !ok {
		t.Fatal("no JWT in the upstream request context")
	}
	if j.Principal != testIss+"/alice" || j.Issuer != testIss || j.Subject != "alice" || len(j.Audiences) != 1 || j.Audiences[0] != testAud {
		t.Fatalf("JWT %+v", j)
	}
	if j.Payloads["issuer.example"]["sub"] != "alice" {
		t.Fatalf("payload_in_metadata not stored: %v", j.Payloads)
	}
}

func TestJWTLocations(t *testing.T) {
	k := testKeySet(t)
	tok := sign(t, jose.RS256, k.rsa, "rsa1", claims(nil))
	custom := localProvider(t, k.jwksJSON(t))
	custom.FromHeaders = []*jwtv3.JwtHeader{{Name: "x-token", ValuePrefix: "Token "}}
	custom.FromParams = []string{"jwt"}
	forwarding := localProvider(t, k.jwksJSON(t))
	forwarding.Forward = true
	tests := []struct {
		name      string
		p         *jwtv3.JwtProvider
		r         *http.Request
		wantCode  int
		wantQuery string
		wantAuth  string
	}{
		{"default header", localProvider(t, k.jwksJSON(t)), bearer(tok), 200, "", ""},
		{"default param removed", localProvider(t, k.jwksJSON(t)), httptest.NewRequest("GET", "/x?a=1&access_token="+tok+"&b=2", nil), 200, "a=1&b=2", ""},
		{"bearer case differs", localProvider(t, k.jwksJSON(t)), withHeader(bearer(""), "Authorization", "bearer "+tok), 401, "", ""},
		{"custom header", custom, withHeader(bearer(""), "X-Token", "Token "+tok), 200, "", ""},
		{"custom header ignores authorization", custom, bearer(tok), 401, "", ""},
		{"custom param", custom, httptest.NewRequest("GET", "/x?jwt="+tok, nil), 200, "", ""},
		{"forward keeps the token", forwarding, bearer(tok), 200, "", "Bearer " + tok},
		{"two tokens one bad", localProvider(t, k.jwksJSON(t)), withHeader(bearer(tok), "Authorization", "Bearer "+tok+"x"), 401, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, rt := buildJWTChain(t, jwtConfig(tc.p, reqProviderName("p")), newFakeClock())
			rec := serveJWT(t, h, tc.r, nil)
			if rec.Code != tc.wantCode {
				t.Fatalf("status %d (%s), want %d", rec.Code, rec.Body, tc.wantCode)
			}
			if tc.wantCode != 200 {
				return
			}
			if q := rt.last.URL.RawQuery; q != tc.wantQuery {
				t.Fatalf("query %q, want %q", q, tc.wantQuery)
			}
			if a := rt.last.Header.Get("Authorization"); a != tc.wantAuth {
				t.Fatalf("authorization %q, want %q", a, tc.wantAuth)
			}
		})
	}
}

func withHeader(r *http.Request, k, v string) *http.Request {
	r.Header.Add(k, v)
	return r
}

func TestJWTRulesAndPerRoute(t *testing.T) {
	k := testKeySet(t)
	cfg := &jwtv3.JwtAuthentication{
		Providers:      map[string]*jwtv3.JwtProvider{"p": localProvider(t, k.jwksJSON(t))},
		Rules:          []*jwtv3.RequirementRule{prefixRule("/public", nil), prefixRule("/api/", reqProviderName("p"))},
		RequirementMap: map[string]*jwtv3.JwtRequirement{"strict": reqProviderName("p")},
	}
	h, _ := buildJWTChain(t, cfg, newFakeClock())
	perRoute := func(pr *jwtv3.PerRouteConfig) map[string]*anypb.Any {
		return map[string]*anypb.Any{jwtName: mustAny(t, pr)}
	}
	tests := []struct {
		name  string
		path  string
		route map[string]*anypb.Any
		want  int
	}{
		{"rule requires", "/api/x", nil, 401},
		{"rule without requirement", "/public/x", nil, 200},
		{"no rule matches", "/other", nil, 200},
		{"per-route disabled", "/api/x", perRoute(&jwtv3.PerRouteConfig{RequirementSpecifier: &jwtv3.PerRouteConfig_Disabled{Disabled: true}}), 200},
		{"per-route requirement", "/other", perRoute(&jwtv3.PerRouteConfig{RequirementSpecifier: &jwtv3.PerRouteConfig_RequirementName{RequirementName: "strict"}}), 401},
		{"per-route unknown requirement", "/other", perRoute(&jwtv3.PerRouteConfig{RequirementSpecifier: &jwtv3.PerRouteConfig_RequirementName{RequirementName: "nope"}}), 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckRouteConfig(tc.route); err != nil {
				t.Fatal(err)
			}
			rec := serveJWT(t, h, httptest.NewRequest("GET", tc.path, nil), tc.route)
			if rec.Code != tc.want {
				t.Fatalf("status %d (%s), want %d", rec.Code, rec.Body, tc.want)
			}
		})
	}
}

// TestJWTWithRBAC runs jwt_authn then RBAC with Istio's requestPrincipals
// translation: only a verified token's principal is allowed.
func TestJWTWithRBAC(t *testing.T) {
	k := testKeySet(t)
	authz := &rbacv3.RBAC{Rules: rules(allow, "ns[bookinfo]-policy[require-jwt]-rule[0]", policy(
		[]*rbacconfigv3.Permission{pAny()},
		[]*rbacconfigv3.Principal{idAnd(idOr(idMeta(istioAuthnNamespace, vmString(smExact(testIss+"/alice")), "request.auth.principal")))},
	))}
	h, _ := buildJWTChain(t, jwtConfig(localProvider(t, k.jwksJSON(t)), reqAnyOf(reqProviderName("p"), needAllowMissing())), newFakeClock(),
		httpFilter(t, rbacName, authz))
	tests := []struct {
		name string
		tok  string
		want int
	}{
		{"alice", sign(t, jose.RS256, k.rsa, "rsa1", claims(nil)), 200},
		{"bob", sign(t, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"sub": "bob"})), 403},
		{"no token passes authn, fails authz", "", 403},
		{"forged token", rawToken(t, map[string]any{"alg": "none"}, claims(nil), ""), 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if rec := serveJWT(t, h, bearer(tc.tok), nil); rec.Code != tc.want {
				t.Fatalf("status %d (%s), want %d", rec.Code, rec.Body, tc.want)
			}
		})
	}
}

func TestJWTConfigErrors(t *testing.T) {
	k := testKeySet(t)
	good := func() *jwtv3.JwtProvider { return localProvider(t, k.jwksJSON(t)) }
	withP := func(f func(p *jwtv3.JwtProvider)) *jwtv3.JwtAuthentication {
		p := good()
		f(p)
		return jwtConfig(p, reqProviderName("p"))
	}
	tests := []struct {
		name    string
		cfg     *jwtv3.JwtAuthentication
		wantErr string
	}{
		{"unknown provider", jwtConfig(good(), reqProviderName("q")), `provider "q" is not configured`},
		{"cookies", withP(func(p *jwtv3.JwtProvider) { p.FromCookies = []string{"c"} }), `providers["p"].from_cookies: not supported`},
		{"no jwks", withP(func(p *jwtv3.JwtProvider) { p.JwksSourceSpecifier = nil }), "one of local_jwks or remote_jwks is required"},
		{"bad jwks", withP(func(p *jwtv3.JwtProvider) {
			p.JwksSourceSpecifier = &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: `{"keys":[{"kty":"XX"}]}`}}}
		}), "local_jwks: jwks: no usable signature verification key"},
		{"jwks file", withP(func(p *jwtv3.JwtProvider) {
			p.JwksSourceSpecifier = &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/etc/jwks"}}}
		}), "local_jwks.filename: not supported"},
		{"remote without timeout", withP(func(p *jwtv3.JwtProvider) {
			p.JwksSourceSpecifier = &jwtv3.JwtProvider_RemoteJwks{RemoteJwks: &jwtv3.RemoteJwks{HttpUri: &corev3.HttpUri{Uri: "http://127.0.0.1/jwks", HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: "c"}}}}
		}), "http_uri.timeout: must be in (0, 1m]"},
		{"remote relative uri", withP(func(p *jwtv3.JwtProvider) {
			p.JwksSourceSpecifier = &jwtv3.JwtProvider_RemoteJwks{RemoteJwks: &jwtv3.RemoteJwks{HttpUri: &corev3.HttpUri{Uri: "/jwks", Timeout: durationpb.New(1e9)}}}
		}), "is not an absolute http(s) URL"},
		{"requires_any with one", jwtConfig(good(), reqAnyOf(reqProviderName("p"))), "requires_any.requirements: at least 2"},
		{"bad payload header", withP(func(p *jwtv3.JwtProvider) { p.ForwardPayloadHeader = "bad header" }), "forward_payload_header"},
		{"filter_state_rules", &jwtv3.JwtAuthentication{FilterStateRules: &jwtv3.FilterStateRule{Name: "x"}}, ".filter_state_rules: not supported"},
		{"unknown requirement_name", &jwtv3.JwtAuthentication{Rules: []*jwtv3.RequirementRule{{
			Match: prefixRule("/", nil).Match, RequirementType: &jwtv3.RequirementRule_RequirementName{RequirementName: "x"}}}}, `"x" is not in requirement_map`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build([]*hcmv3.HttpFilter{httpFilter(t, jwtName, tc.cfg), routerFilter(t)}, &okRouter{})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), "http_filters[0](envoy.filters.http.jwt_authn).typed_config") {
				t.Fatalf("error %q does not name the filter", err)
			}
		})
	}
	if _, err := Build([]*hcmv3.HttpFilter{{Name: jwtName}, routerFilter(t)}, &okRouter{}); err == nil {
		t.Fatal("jwt_authn without config accepted")
	}
}

func TestJWTHMACAndDuplicateOutputs(t *testing.T) {
	secret, err := base64.RawURLEncoding.DecodeString(fuzzSecret)
	if err != nil {
		t.Fatal(err)
	}
	k := testKeySet(t)
	p := localProvider(t, `{"keys":[{"kty":"oct","kid":"hs1","alg":"HS256","k":"`+fuzzSecret+`"}]}`)
	p.ForwardPayloadHeader = "x-jwt-payload"
	h, rt := buildJWTChain(t, jwtConfig(p, reqAllOf(reqProviderName("p"), reqProviderName("p"))), newFakeClock())
	if rec := serveJWT(t, h, bearer(sign(t, jose.HS256, secret, "hs1", claims(nil))), nil); rec.Code != 200 {
		t.Fatalf("HS256 with its oct key: status %d (%s)", rec.Code, rec.Body)
	}
	if v := rt.last.Header.Values("X-Jwt-Payload"); len(v) != 1 {
		t.Fatalf("payload header %d times, want once", len(v))
	}
	if rec := serveJWT(t, h, bearer(sign(t, jose.RS256, k.rsa, "hs1", claims(nil))), nil); rec.Code != 401 {
		t.Fatalf("RS256 against an oct key: status %d, want 401", rec.Code)
	}
	if rec := serveJWT(t, h, bearer(sign(t, jose.HS384, append(secret, secret...), "hs1", claims(nil))), nil); rec.Code != 401 {
		t.Fatalf("HS384 against a key pinned to HS256: status %d, want 401", rec.Code)
	}
}
