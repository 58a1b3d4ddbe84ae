package filter

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// jwtStatus is the outcome of verifying a request's tokens. The messages
// are the ones Envoy answers with.
type jwtStatus uint8

const (
	jwtOK jwtStatus = iota
	jwtMissing
	jwtBadFormat
	jwtPayloadInvalid
	jwtExpired
	jwtNoExpiration
	jwtNotYetValid
	jwtUnknownIssuer
	jwtAudienceNotAllowed
	jwtVerificationFail
	jwksKidAlgMismatch
	jwksFetchFail
)

var jwtMessages = [...]string{
	jwtOK:                 "OK",
	jwtMissing:            "Jwt is missing",
	jwtBadFormat:          "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
	jwtPayloadInvalid:     "Jwt payload is an invalid JSON",
	jwtExpired:            "Jwt is expired",
	jwtNoExpiration:       "Jwt doesn't have an expiration time",
	jwtNotYetValid:        "Jwt not yet valid",
	jwtUnknownIssuer:      "Jwt issuer is not configured",
	jwtAudienceNotAllowed: "Audiences in Jwt are not allowed",
	jwtVerificationFail:   "Jwt verification fails",
	jwksKidAlgMismatch:    "Jwks doesn't have key to match kid or alg from Jwt",
	jwksFetchFail:         "Jwks remote fetch is failed",
}

func (s jwtStatus) String() string { return jwtMessages[s] }

// httpCode is Envoy's status for a failed verification.
func (s jwtStatus) httpCode() int {
	if s == jwtAudienceNotAllowed {
		return http.StatusForbidden
	}
	return http.StatusUnauthorized
}

// maxTokenSize bounds the tokens the filter parses.
const maxTokenSize = 64 << 10

// jwtAlgs are the signature algorithms accepted. "none" is not one of them,
// and go-jose refuses any algorithm outside the list.
var jwtAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
	jose.HS256, jose.HS384, jose.HS512,
}

// parsedJWT is a token whose structure and claims were decoded; its
// signature is not verified yet.
type parsedJWT struct {
	jws        *jose.JSONWebSignature
	alg, kid   string
	payloadB64 string
	claims     map[string]any
	iss, sub   string
	aud        []string
	azp        string
	exp, nbf   float64
	hasExp     bool
	hasNbf     bool
}

// parseJWT decodes a compact JWS carrying a JSON claims object.
func parseJWT(token string) (*parsedJWT, jwtStatus) {
	if len(token) > maxTokenSize || strings.Count(token, ".") != 2 {
		return nil, jwtBadFormat
	}
	parts := strings.SplitN(token, ".", 3)
	hdr, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || !json.Valid(hdr) {
		return nil, jwtBadFormat
	}
	jws, err := jose.ParseSignedCompact(token, jwtAlgs)
	if err != nil || len(jws.Signatures) != 1 {
		// An algorithm outside jwtAlgs ("none", "HS1", ...) lands here too.
		return nil, jwtVerificationFail
	}
	p := &parsedJWT{
		jws:        jws,
		alg:        jws.Signatures[0].Protected.Algorithm,
		kid:        jws.Signatures[0].Protected.KeyID,
		payloadB64: parts[1],
	}
	dec := json.NewDecoder(bytes.NewReader(jws.UnsafePayloadWithoutVerification()))
	if err := dec.Decode(&p.claims); err != nil || p.claims == nil || dec.More() {
		return nil, jwtPayloadInvalid
	}
	var ok bool
	if p.iss, ok = optString(p.claims, "iss"); !ok {
		return nil, jwtPayloadInvalid
	}
	if p.sub, ok = optString(p.claims, "sub"); !ok {
		return nil, jwtPayloadInvalid
	}
	if p.azp, ok = optString(p.claims, "azp"); !ok {
		return nil, jwtPayloadInvalid
	}
	switch a := p.claims["aud"].(type) {
	case nil:
	case string:
		p.aud = []string{a}
	case []any:
		for _, e := range a {
			s, isStr := e.(string)
			if !isStr {
				return nil, jwtPayloadInvalid
			}
			p.aud = append(p.aud, s)
		}
	default:
		return nil, jwtPayloadInvalid
	}
	if p.exp, p.hasExp, ok = optNumber(p.claims, "exp"); !ok {
		return nil, jwtPayloadInvalid
	}
	if p.nbf, p.hasNbf, ok = optNumber(p.claims, "nbf"); !ok {
		return nil, jwtPayloadInvalid
	}
	return p, jwtOK
}

func optString(m map[string]any, k string) (string, bool) {
	v, found := m[k]
	if !found {
		return "", true
	}
	s, ok := v.(string)
	return s, ok
}

func optNumber(m map[string]any, k string) (f float64, present, ok bool) {
	v, found := m[k]
	if !found {
		return 0, false, true
	}
	f, ok = v.(float64)
	if !ok || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return 0, false, false
	}
	return f, true, true
}

// checkClaims applies a provider's time and audience rules; aud overrides
// the provider's audiences when non-nil (provider_and_audiences).
func (p *jwtProvider) checkClaims(t *parsedJWT, now time.Time, aud []string) jwtStatus {
	sec := float64(now.Unix())
	skew := p.skew.Seconds()
	switch {
	case t.hasExp && sec > t.exp+skew:
		return jwtExpired
	case !t.hasExp && p.requireExp:
		return jwtNoExpiration
	case t.hasNbf && sec+skew < t.nbf:
		return jwtNotYetValid
	}
	if aud == nil {
		aud = p.audiences
	}
	if len(aud) > 0 && !audienceAllowed(aud, t.aud) {
		return jwtAudienceNotAllowed
	}
	return jwtOK
}

// audienceAllowed compares audiences the way Envoy does: an "http://" or
// "https://" scheme and a trailing "/" are ignored.
func audienceAllowed(allowed, got []string) bool {
	for _, g := range got {
		for _, a := range allowed {
			if normAudience(g) == normAudience(a) {
				return true
			}
		}
	}
	return false
}

func normAudience(s string) string {
	s = strings.TrimPrefix(s, "http://")
	s = strings.TrimPrefix(s, "https://")
	return strings.TrimSuffix(s, "/")
}

// verifySignature checks the token's signature with the provider's keys.
// A key is a candidate when its kid (if both sides have one) and pinned alg
// (if any) agree with the token, and its type fits the algorithm.
func (p *jwtProvider) verifySignature(ctx context.Context, t *parsedJWT, now func() time.Time) jwtStatus {
	keys := p.local
	if p.remote != nil {
		var err error
		if keys, err = p.remote.get(ctx, now); err != nil {
			return jwksFetchFail
		}
	}
	candidates := 0
	for i := range keys {
		k := &keys[i]
		if t.kid != "" && k.kid != "" && k.kid != t.kid {
			continue
		}
		if k.alg != "" && k.alg != t.alg {
			continue
		}
		if !algFitsKey(t.alg, k.key) {
			continue
		}
		candidates++
		if _, err := t.jws.Verify(k.key); err == nil {
			return jwtOK
		}
	}
	if candidates == 0 {
		return jwksKidAlgMismatch
	}
	return jwtVerificationFail
}

// tokenAt is a token found in a request and where it was found.
type tokenAt struct {
	token string
	loc   *jwtLocation
}

// jwtLocation is a header (with its value prefix) or a query parameter
// where tokens are looked for, with the issuers whose providers use it.
type jwtLocation struct {
	header   string // canonical header key; "" for a parameter
	prefix   string
	param    string
	allowAll bool // a provider without issuer uses it
	issuers  []string
}

func (l *jwtLocation) sameAs(o *jwtLocation) bool {
	return l.header == o.header && l.prefix == o.prefix && l.param == o.param
}

func (l *jwtLocation) allows(iss string) bool {
	if l.allowAll {
		return true
	}
	for _, i := range l.issuers {
		if i == iss {
			return true
		}
	}
	return false
}

// jwtExtractor finds tokens in the locations of a set of providers.
type jwtExtractor struct {
	locs []*jwtLocation
}

func newExtractor(providers []*jwtProvider) *jwtExtractor {
	e := &jwtExtractor{}
	for _, p := range providers {
		for _, l := range p.locations {
			var same *jwtLocation
			for _, have := range e.locs {
				if have.sameAs(l) {
					same = have
				}
			}
			if same == nil {
				same = &jwtLocation{header: l.header, prefix: l.prefix, param: l.param}
				e.locs = append(e.locs, same)
			}
			if p.issuer == "" {
				same.allowAll = true
			} else {
				same.issuers = append(same.issuers, p.issuer)
			}
		}
	}
	return e
}

// extract returns every token of the request at the extractor's locations:
// headers first (each value of a repeated header), then query parameters
// (the first value of each).
func (e *jwtExtractor) extract(r *http.Request) []tokenAt {
	var out []tokenAt
	var query url.Values
	for _, l := range e.locs {
		if l.header != "" {
			for _, v := range r.Header[l.header] {
				if l.prefix != "" {
					i := strings.Index(v, l.prefix)
					if i < 0 {
						continue
					}
					v = skipToToken(v[i+len(l.prefix):])
				}
				out = append(out, tokenAt{token: v, loc: l})
			}
			continue
		}
		if query == nil {
			query, _ = url.ParseQuery(r.URL.RawQuery)
		}
		if vs := query[l.param]; len(vs) > 0 {
			out = append(out, tokenAt{token: vs[0], loc: l})
		}
	}
	return out
}

// skipToToken drops what precedes the first base64url or '.' character,
// as Envoy does after a header value prefix; a value with none is kept.
func skipToToken(v string) string {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' {
			return v[i:]
		}
	}
	return v
}

// remove takes the token's location out of the request (forward: false):
// the whole header, or the parameter from the query.
func (l *jwtLocation) remove(r *http.Request) {
	if l.header != "" {
		r.Header.Del(l.header)
		return
	}
	parts := strings.Split(r.URL.RawQuery, "&")
	kept := parts[:0]
	for _, kv := range parts {
		k, _, _ := strings.Cut(kv, "=")
		if uk, err := url.QueryUnescape(k); err == nil && uk == l.param {
			continue
		}
		kept = append(kept, kv)
	}
	r.URL.RawQuery = strings.Join(kept, "&")
	if r.RequestURI != "" {
		r.RequestURI = r.URL.RequestURI()
	}
}
