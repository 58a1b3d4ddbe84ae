package xds

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"net"
	"net/url"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/types/known/emptypb"
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
// It returns nil when no RequestAuthentication applies.
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
				Issuer:               r.GetIssuer(),
				Audiences:            r.GetAudiences(),
				Forward:              r.GetForwardOriginalToken(),
				ForwardPayloadHeader: r.GetOutputPayloadToHeader(),
				PayloadInMetadata:    r.GetIssuer(),
				FromParams:           r.GetFromParams(),
			}
			for _, h := range r.GetFromHeaders() {
				p.FromHeaders = append(p.FromHeaders, &jwtv3.JwtHeader{Name: h.GetName(), ValuePrefix: h.GetPrefix()})
			}
			for _, c := range r.GetOutputClaimToHeaders() {
				p.ClaimToHeaders = append(p.ClaimToHeaders, &jwtv3.JwtClaimToHeader{HeaderName: c.GetHeader(), ClaimName: c.GetClaim()})
			}
			if len(r.GetFromCookies()) > 0 {
				g.skip(ra.ref, path+".fromCookies", "tokens in cookies are not read: such a request counts as without token (AuthorizationPolicy requestPrincipals still require one)")
			}
			if len(r.GetSpaceDelimitedClaims()) > 0 {
				g.skip(ra.ref, path+".spaceDelimitedClaims", "not supported: those claims match as single strings")
			}
			switch {
			case r.GetJwks() != "":
				if reason := checkJWKS(r.GetJwks()); reason != "" {
					g.skip(ra.ref, path+".jwks", reason+"; the rule is left out, so tokens of issuer "+strconv.Quote(r.GetIssuer())+" are rejected (401)")
					continue
				}
				p.JwksSourceSpecifier = &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{
					Specifier: &corev3.DataSource_InlineString{InlineString: r.GetJwks()}}}
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
				g.skip(ra.ref, path, "neither jwks nor jwksUri; the rule is left out")
				continue
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

// checkJWKS returns why an inline JWKS cannot be used ("" if it can): it must be a JSON Web
// Key Set of at most 256 KiB with a key usable for verifying signatures (an RSA, EC or OKP
// public key, or a non-empty symmetric key, with use "sig" or none), the test the canton proxy
// applies. A proxy rejects the whole listener for a JWKS without such a key, so a rule with
// one is left out here instead.
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
