package filter

import "context"

// The metadata namespaces RBAC metadata matchers may name.
const (
	// jwtAuthnName is Envoy's jwt_authn filter name, also its metadata
	// namespace: path [payload_in_metadata, claim, nested claim...].
	jwtAuthnName = "envoy.filters.http.jwt_authn"
	// istioAuthnNamespace is the namespace Istio's generated RBAC policies
	// use for requestPrincipals and request.auth.* conditions.
	istioAuthnNamespace = "istio_authn"
)

var metadataNamespaces = map[string]struct{}{jwtAuthnName: {}, istioAuthnNamespace: {}, rbacMetadataNamespace: {}}

// JWT is what envoy.filters.http.jwt_authn learned from the verified tokens
// of a request. The filter stores it in the request context (WithJWT) for
// the filters after it and the router; RBAC reads it (JWTFrom) for its
// metadata matchers:
//
//   - filter "envoy.filters.http.jwt_authn", path [name, claim, ...]: the
//     payload of the token verified by a provider whose payload_in_metadata
//     is name, walked claim by claim (Envoy's layout).
//   - filter "istio_authn", path ["request.auth.principal"]: Principal;
//     ["request.auth.audiences"]: the first audience; ["request.auth.presenter"]:
//     the azp claim; ["request.auth.claims", claim, ...]: the claims of
//     Claims, where a string value is seen as a one-element list (Istio's
//     layout, matched with list_match; this wrapping allocates).
//
// Values are JSON as encoding/json decodes it: numbers are float64.
type JWT struct {
	// Principal is Istio's request principal of the first verified token,
	// "<iss>/<sub>", which AuthorizationPolicy requestPrincipals match.
	Principal string
	// Issuer and Subject are that token's iss and sub claims.
	Issuer, Subject string
	// Audiences is that token's aud claim (a single string becomes one
	// element); nil if absent.
	Audiences []string
	// Presenter is that token's azp claim, "" if absent.
	Presenter string
	// Claims is that token's whole payload.
	Claims map[string]any
	// Payloads maps the payload_in_metadata name of each provider that
	// verified a token (and has one configured) to the token's payload.
	Payloads map[string]map[string]any
}

type jwtKey struct{}

// WithJWT returns a context carrying the verified JWT information j.
func WithJWT(ctx context.Context, j *JWT) context.Context {
	return context.WithValue(ctx, jwtKey{}, j)
}

// JWTFrom returns the JWT information stored by WithJWT; false when the
// request carried no verified token.
func JWTFrom(ctx context.Context) (*JWT, bool) {
	j, ok := ctx.Value(jwtKey{}).(*JWT)
	return j, ok && j != nil
}

// metadataValue looks path up in the namespace filter of the request's
// metadata; ok is false when the value is missing.
func (j *JWT) metadataValue(filter string, path []string) (v any, ok bool) {
	if j == nil || len(path) == 0 {
		return nil, false
	}
	switch filter {
	case jwtAuthnName:
		p, found := j.Payloads[path[0]]
		if !found {
			return nil, false
		}
		return walkClaims(p, path[1:])
	case istioAuthnNamespace:
		if len(path) == 1 {
			switch path[0] {
			case "request.auth.principal":
				return j.Principal, j.Principal != ""
			case "request.auth.audiences":
				if len(j.Audiences) == 0 {
					return nil, false
				}
				return j.Audiences[0], true
			case "request.auth.presenter":
				return j.Presenter, j.Presenter != ""
			}
			return nil, false
		}
		if path[0] != "request.auth.claims" {
			return nil, false
		}
		v, ok := walkClaims(j.Claims, path[1:])
		if s, isStr := v.(string); ok && isStr {
			return []any{s}, true
		}
		return v, ok
	}
	return nil, false
}

// walkClaims follows keys through nested JSON objects.
func walkClaims(m map[string]any, keys []string) (any, bool) {
	var v any = m
	for _, k := range keys {
		obj, isObj := v.(map[string]any)
		if !isObj {
			return nil, false
		}
		var found bool
		if v, found = obj[k]; !found {
			return nil, false
		}
	}
	return v, true
}
