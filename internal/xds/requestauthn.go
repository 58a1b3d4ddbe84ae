package xds

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/protobuf/types/known/emptypb"
	security "istio.io/api/security/v1beta1"
)

const (
	// defaultJWKSTimeout is Istio's default timeout for fetching a jwksUri.
	defaultJWKSTimeout = 5 * time.Second
	// Limits of the canton proxy's jwt_authn filter on an inline JWKS.
	maxJWKSSize = 256 << 10
	maxJWKSKeys = 100
)

// jwtFilter translates the RequestAuthentications that apply to the node into one jwt_authn
// filter, with Istio's semantics: every jwtRule is a provider; a request passes when it carries
// no token at all, or when every token it carries verifies with the provider of the token's
// issuer. An invalid token, or a token of an issuer no rule names, gets 401. A request without
// a token is left to AuthorizationPolicy (requestPrincipals). The verified token is published
// for RBAC as the istio_authn metadata (request.auth.principal, audiences, presenter, claims).
// A rule whose keys cannot be used stays a provider whose keys verify no token (fail closed:
// its tokens get 401). It returns nil when no RequestAuthentication applies.
func (g *gen) jwtFilter() *hcmv3.HttpFilter {
	cfg := &jwtv3.JwtAuthentication{Providers: map[string]*jwtv3.JwtProvider{}}
	var reqs []*jwtv3.JwtRequirement
	for _, ra := range g.m.ras {
		s := ra.spec
		if !g.appliesTo(ra.ref, ra.namespace, s.GetSelector(), s.GetTargetRef(), s.GetTargetRefs()) {
			continue
		}
		for i, r := range s.GetJwtRules() {
			path := "jwtRules[" + itoa(i) + "]"
			p := &jwtv3.JwtProvider{
				Issuer:            r.GetIssuer(),
				Audiences:         r.GetAudiences(),
				Forward:           r.GetForwardOriginalToken(),
				PayloadInMetadata: r.GetIssuer(),
			}
			if !g.tokenLocations(ra.ref, path, r, p) {
				continue
			}
			if h := r.GetOutputPayloadToHeader(); h != "" {
				if httpguts.ValidHeaderFieldName(h) {
					p.ForwardPayloadHeader = h
				} else {
					g.skip(ra.ref, path+".outputPayloadToHeader", strconv.Quote(h)+" is not a valid header name; the payload is not output")
				}
			}
			for j, c := range r.GetOutputClaimToHeaders() {
				if !httpguts.ValidHeaderFieldName(c.GetHeader()) {
					g.skip(ra.ref, path+".outputClaimToHeaders["+itoa(j)+"]", strconv.Quote(c.GetHeader())+" is not a valid header name; the claim is not output")
					continue
				}
				p.ClaimToHeaders = append(p.ClaimToHeaders, &jwtv3.JwtClaimToHeader{HeaderName: c.GetHeader(), ClaimName: c.GetClaim()})
			}
			if len(r.GetFromCookies()) > 0 {
				g.skip(ra.ref, path+".fromCookies", "tokens in cookies are not read: such a request counts as without token (AuthorizationPolicy requestPrincipals still require one)")
			}
			if len(r.GetSpaceDelimitedClaims()) > 0 {
				g.skip(ra.ref, path+".spaceDelimitedClaims", "not supported: those claims match as single strings")
			}
			// A rule whose keys cannot be used keeps its issuer and token locations with a key
			// set no token verifies against (as Istio does when it cannot fetch a jwksUri): its
			// tokens are rejected, never ignored.
			unusable := "; the rule keeps its issuer and token locations with a key set that verifies no token, so tokens of issuer " +
				strconv.Quote(r.GetIssuer()) + " are rejected (401)"
			switch {
			case r.GetJwks() != "":
				jwks := r.GetJwks()
				if reason := checkJWKS(jwks); reason != "" {
					g.skip(ra.ref, path+".jwks", reason+unusable)
					jwks = unverifiableJWKS()
				}
				p.JwksSourceSpecifier = &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{
					Specifier: &corev3.DataSource_InlineString{InlineString: jwks}}}
			case r.GetJwksUri() != "":
				timeout := defaultJWKSTimeout
				if d := r.GetTimeout(); d != nil && d.AsDuration() > 0 {
					timeout = d.AsDuration()
				}
				if timeout > time.Minute {
					g.skip(ra.ref, path+".timeout", "capped at 1m")
					timeout = time.Minute
				}
				p.JwksSourceSpecifier = &jwtv3.JwtProvider_RemoteJwks{RemoteJwks: &jwtv3.RemoteJwks{
					HttpUri: &corev3.HttpUri{Uri: r.GetJwksUri(), Timeout: durationOf(timeout),
						HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: jwksCluster(r.GetJwksUri())}}}}
			default:
				g.skip(ra.ref, path, "neither jwks nor jwksUri (OpenID discovery of the issuer's keys is not supported)"+unusable)
				p.JwksSourceSpecifier = &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{
					Specifier: &corev3.DataSource_InlineString{InlineString: unverifiableJWKS()}}}
			}
			name := ra.namespace + "/" + ra.name + "/" + path
			cfg.Providers[name] = p
			reqs = append(reqs, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: name}})
		}
	}
	if len(cfg.Providers) == 0 {
		return nil
	}
	// Last: a request without any token passes; one with a token that no provider verifies does not.
	reqs = append(reqs, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}})
	cfg.Rules = []*jwtv3.RequirementRule{{
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		RequirementType: &jwtv3.RequirementRule_Requires{Requires: &jwtv3.JwtRequirement{
			RequiresType: &jwtv3.JwtRequirement_RequiresAny{RequiresAny: &jwtv3.JwtRequirementOrList{Requirements: reqs}}}},
	}}
	return &hcmv3.HttpFilter{Name: JWTFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(cfg)}}
}

// tokenLocations sets where provider p looks for the rule's token: its fromHeaders and
// fromParams, or (neither given) Envoy's default, the Authorization header with prefix
// "Bearer " and the access_token query parameter. A header name that is not a valid HTTP
// field name, or an empty parameter name, can carry no token: that location is left out
// (reported). It returns false when the rule named locations but none is usable: no request
// can carry its token, so the rule is left out (taking Envoy's default locations instead would
// read tokens the rule does not ask for).
func (g *gen) tokenLocations(ref, path string, r *security.JWTRule, p *jwtv3.JwtProvider) bool {
	for j, h := range r.GetFromHeaders() {
		if !httpguts.ValidHeaderFieldName(h.GetName()) {
			g.skip(ref, path+".fromHeaders["+itoa(j)+"].name", strconv.Quote(h.GetName())+" is not a valid header name: no request carries a token there")
			continue
		}
		p.FromHeaders = append(p.FromHeaders, &jwtv3.JwtHeader{Name: h.GetName(), ValuePrefix: h.GetPrefix()})
	}
	for j, q := range r.GetFromParams() {
		if q == "" {
			g.skip(ref, path+".fromParams["+itoa(j)+"]", "empty parameter name: no request carries a token there")
			continue
		}
		p.FromParams = append(p.FromParams, q)
	}
	named := len(r.GetFromHeaders()) + len(r.GetFromParams())
	if named > 0 && len(p.FromHeaders)+len(p.FromParams) == 0 {
		g.skip(ref, path, "none of its token locations is usable: the rule is left out")
		return false
	}
	return true
}

// unverifiableJWKS returns a JSON Web Key Set whose only key verifies no token anyone can
// sign: an ES256 (P-256) public key whose x coordinate is a SHA-256 hash of a fixed text (the
// first counter value giving a point on the curve), so nobody knows its private key. Like
// Istio's placeholder for a jwksUri it cannot fetch, it keeps a rule whose keys cannot be used
// in force: every token of its issuer fails verification (401).
var unverifiableJWKS = sync.OnceValue(func() string {
	params := elliptic.P256().Params()
	p := params.P
	for i := 0; ; i++ {
		sum := sha256.Sum256([]byte("canton: no private key for this public key " + itoa(i)))
		x := new(big.Int).Mod(new(big.Int).SetBytes(sum[:]), p)
		// y² = x³ - 3x + b (mod p)
		rhs := new(big.Int).Exp(x, big.NewInt(3), p)
		rhs.Sub(rhs, new(big.Int).Mul(x, big.NewInt(3)))
		rhs.Add(rhs, params.B)
		rhs.Mod(rhs, p)
		y := new(big.Int).ModSqrt(rhs, p)
		if y == nil {
			continue
		}
		enc := func(n *big.Int) string { return base64.RawURLEncoding.EncodeToString(n.FillBytes(make([]byte, 32))) }
		return `{"keys":[{"kty":"EC","crv":"P-256","kid":"canton-unverifiable","alg":"ES256","use":"sig","x":"` +
			enc(x) + `","y":"` + enc(y) + `"}]}`
	}
})

// checkJWKS returns why an inline JWKS cannot be used ("" if it can): it must be a JSON Web
// Key Set of at most 256 KiB with a key usable for verifying signatures (an RSA, EC or OKP
// public key, or a non-empty symmetric key, with use "sig" or none), the test the canton proxy
// applies. A proxy rejects the whole listener for a JWKS without such a key, so such a rule
// gets unverifiableJWKS instead.
func checkJWKS(s string) string {
	if len(s) > maxJWKSSize {
		return "the JSON Web Key Set is larger than 256 KiB"
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal([]byte(s), &doc); err != nil {
		return "not a JSON Web Key Set: " + err.Error()
	}
	if len(doc.Keys) > maxJWKSKeys {
		return "the JSON Web Key Set has more than " + itoa(maxJWKSKeys) + " keys"
	}
	for _, raw := range doc.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil || (k.Use != "" && k.Use != "sig") {
			continue
		}
		switch key := k.Key.(type) {
		case []byte:
			if len(key) > 0 {
				return ""
			}
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey, *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
			if k.Valid() {
				return ""
			}
		}
	}
	return "the JSON Web Key Set has no usable signature verification key"
}

// jwksCluster names the cluster a jwksUri is fetched through, Istio's outbound cluster name of
// its host and port. The canton proxy fetches the URI directly; Envoy needs that cluster.
func jwksCluster(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return "outbound|443||unknown"
	}
	port := u.Port()
	if port == "" {
		port = "443"
		if u.Scheme == "http" {
			port = "80"
		}
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	}
	return "outbound|" + port + "||" + host
}
