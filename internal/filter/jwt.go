package filter

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// jwtAuthn is envoy.filters.http.jwt_authn: it verifies the JSON Web Tokens
// a request's matching rule (or route) requires, answers 401 (403 for a
// disallowed audience) with Envoy's message when they fail, and otherwise
// passes the request on with the verified claims in its context (WithJWT),
// where RBAC metadata matchers find them.
//
// Supported JwtAuthentication fields: providers, rules, requirement_map,
// bypass_cors_preflight, strip_failure_response, stat_prefix (unused).
// Rejected: filter_state_rules.
//
// Supported JwtProvider fields: issuer, audiences, require_expiration,
// local_jwks (inline_string or inline_bytes), remote_jwks (http_uri with
// uri, cluster and timeout; cache_duration, default 10 minutes), forward,
// from_headers, from_params (without either: "Authorization: Bearer" and the
// access_token parameter), forward_payload_header,
// pad_forward_payload_header, payload_in_metadata, clock_skew_seconds
// (default 60), claim_to_headers (claim_name with "." for nesting).
// Rejected: subjects, max_lifetime, from_cookies,
// normalize_payload_in_metadata, header_in_metadata,
// failed_status_in_metadata, jwt_cache_config, clear_route_cache, and in
// remote_jwks async_fetch and retry_policy.
//
// Requirements: provider_name, provider_and_audiences, requires_any,
// requires_all, allow_missing, allow_missing_or_failed and the empty
// requirement (no verification). Every token found for a provider must
// verify. Differences from Envoy, all fail-closed: allow_missing fails on any
// invalid token (Envoy only looks at the last one), and allow_missing or
// allow_missing_or_failed outside a requires_any looks for tokens of every
// provider (Envoy of none). Rules match with prefix, path, safe_regex or
// path_separated_prefix on the escaped path, case_sensitive, and headers; the
// first matching rule applies, no match means no verification.
// PerRouteConfig (disabled, requirement_name) overrides the rules per route.
//
// Signatures: RS/PS/ES 256/384/512, EdDSA and HS256/384/512 (oct keys)
// through go-jose; "none" and every other algorithm are refused, and a key
// is only used for the algorithm family of its type (and the alg it pins),
// so RSA public keys never serve as HMAC secrets. Remote JWKS: see
// remoteJWKS and JWKSFetcher.
type jwtAuthn struct {
	spec
	providers    map[string]*jwtProvider
	all          []*jwtProvider // sorted by name
	allExtractor *jwtExtractor
	rules        []jwtRule
	reqMap       map[string]*jwtRequirement
	bypassCORS   bool
	stripBody    bool
	sanitize     []string // output headers clients may not send (canonical)
}

// jwtProvider is a decoded JwtProvider.
type jwtProvider struct {
	name              string
	issuer            string
	audiences         []string
	requireExp        bool
	forward           bool
	locations         []*jwtLocation
	payloadHeader     string
	padPayload        bool
	payloadInMetadata string
	skew              time.Duration
	claimHeaders      []claimHeader
	local             []jwk
	remote            *remoteJWKS
}

type claimHeader struct {
	header string
	claim  []string
}

// jwtRule is a decoded RequirementRule.
type jwtRule struct {
	match routeMatch
	req   *jwtRequirement
}

// routeMatch is the subset of RouteMatch the rules support.
type routeMatch struct {
	kind    uint8 // 0 prefix, 1 path, 2 regex, 3 path_separated_prefix
	s       string
	re      *regexp.Regexp
	fold    bool
	headers []*hdrMatcher
}

type reqKind uint8

const (
	reqNone reqKind = iota
	reqProvider
	reqAny
	reqAll
	reqAllowMissing
	reqAllowFailed
)

// jwtRequirement is a decoded JwtRequirement.
type jwtRequirement struct {
	kind reqKind
	prov *jwtProvider
	aud  []string // provider_and_audiences; nil: the provider's
	subs []*jwtRequirement
	ext  *jwtExtractor
}

var jwtRoutes = &routeCache[*jwtPerRoute]{
	typeURL: typeURL(&jwtv3.PerRouteConfig{}),
	parse:   parseJWTPerRouteAny,
}

// jwtPerRoute is a decoded PerRouteConfig.
type jwtPerRoute struct {
	disabled bool
	name     string
}

func parseJWTPerRouteAny(a *anypb.Any, path string) (*jwtPerRoute, error) {
	var pb jwtv3.PerRouteConfig
	if err := unmarshalAny(a, &pb, path); err != nil {
		return nil, err
	}
	switch s := pb.GetRequirementSpecifier().(type) {
	case *jwtv3.PerRouteConfig_Disabled:
		if !s.Disabled {
			return nil, fmt.Errorf("%s.disabled: must be true when set", path)
		}
		return &jwtPerRoute{disabled: true}, nil
	case *jwtv3.PerRouteConfig_RequirementName:
		if s.RequirementName == "" {
			return nil, fmt.Errorf("%s.requirement_name: empty", path)
		}
		return &jwtPerRoute{name: s.RequirementName}, nil
	}
	return nil, fmt.Errorf("%s: one of disabled or requirement_name is required", path)
}

func checkJWTPerRoute(cfg *anypb.Any, path string) error {
	_, err := parseJWTPerRouteAny(cfg, path)
	return err
}

func buildJWTAuthn(s spec, cfg *anypb.Any, path string) (Filter, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%s: envoy.filters.http.jwt_authn requires a JwtAuthentication config", path)
	}
	var pb jwtv3.JwtAuthentication
	if err := unmarshalAny(cfg, &pb, path); err != nil {
		return nil, err
	}
	if err := onlyFields(&pb, path, "providers", "rules", "requirement_map", "bypass_cors_preflight", "strip_failure_response", "stat_prefix"); err != nil {
		return nil, err
	}
	f := &jwtAuthn{
		spec: s, providers: map[string]*jwtProvider{}, reqMap: map[string]*jwtRequirement{},
		bypassCORS: pb.GetBypassCorsPreflight(), stripBody: pb.GetStripFailureResponse(),
	}
	names := make([]string, 0, len(pb.GetProviders()))
	for n := range pb.GetProviders() {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		p, err := parseJWTProvider(n, pb.GetProviders()[n], fmt.Sprintf("%s.providers[%q]", path, n))
		if err != nil {
			return nil, err
		}
		f.providers[n] = p
		f.all = append(f.all, p)
		if p.payloadHeader != "" {
			f.sanitize = append(f.sanitize, p.payloadHeader)
		}
		for _, ch := range p.claimHeaders {
			f.sanitize = append(f.sanitize, ch.header)
		}
	}
	f.allExtractor = newExtractor(f.all)
	keys := make([]string, 0, len(pb.GetRequirementMap()))
	for k := range pb.GetRequirementMap() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		r, err := f.parseRequirement(pb.GetRequirementMap()[k], fmt.Sprintf("%s.requirement_map[%q]", path, k), nil, 0)
		if err != nil {
			return nil, err
		}
		f.reqMap[k] = r
	}
	for i, rr := range pb.GetRules() {
		p := fmt.Sprintf("%s.rules[%d]", path, i)
		if err := onlyFields(rr, p, "match", "requires", "requirement_name"); err != nil {
			return nil, err
		}
		m, err := parseRouteMatch(rr.GetMatch(), p+".match")
		if err != nil {
			return nil, err
		}
		rule := jwtRule{match: m}
		switch spec := rr.GetRequirementType().(type) {
		case *jwtv3.RequirementRule_Requires:
			if rule.req, err = f.parseRequirement(spec.Requires, p+".requires", nil, 0); err != nil {
				return nil, err
			}
		case *jwtv3.RequirementRule_RequirementName:
			if rule.req = f.reqMap[spec.RequirementName]; rule.req == nil {
				return nil, fmt.Errorf("%s.requirement_name: %q is not in requirement_map", p, spec.RequirementName)
			}
		default:
			rule.req = nil // Envoy: a rule without requirement verifies nothing
		}
		f.rules = append(f.rules, rule)
	}
	return f, nil
}

func (f *jwtAuthn) ServeHTTP(w http.ResponseWriter, r *http.Request, next Handler) error {
	ctx := r.Context()
	pr, ok, err := resolve(routeLookup{infoFrom(ctx)}, jwtRoutes, f.name, f.disabled, nil)
	if err != nil {
		return err
	}
	if !ok {
		return next.ServeHTTP(w, r)
	}
	var req *jwtRequirement
	switch {
	case pr != nil && pr.disabled:
		return next.ServeHTTP(w, r)
	case pr != nil:
		if req = f.reqMap[pr.name]; req == nil {
			f.reply(w, r, http.StatusForbidden, "Failed JWT authentication: requirement_name "+strconv.Quote(pr.name)+" is not in requirement_map", false)
			return nil
		}
	default:
		for i := range f.rules {
			if f.rules[i].match.match(r) {
				req = f.rules[i].req
				break
			}
		}
	}
	if req == nil || f.bypassCORS && isCORSPreflight(r) {
		return next.ServeHTTP(w, r)
	}
	for _, h := range f.sanitize {
		r.Header.Del(h)
	}
	acc := &jwtAcc{}
	if st := f.eval(ctx, req, r, acc); st != jwtOK {
		f.reply(w, r, st.httpCode(), st.String(), st != jwtMissing)
		return nil
	}
	for i, o := range acc.outputs {
		if slices.ContainsFunc(acc.outputs[:i], func(e jwtOutput) bool { return e.p == o.p && e.loc.sameAs(o.loc) }) {
			continue // the same token verified twice (requires_all)
		}
		o.p.output(r, o.t)
	}
	for _, o := range acc.outputs {
		if !o.p.forward {
			o.loc.remove(r)
		}
	}
	if acc.jwt != nil {
		r = r.WithContext(WithJWT(ctx, acc.jwt))
	}
	return next.ServeHTTP(w, r)
}

func isCORSPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != ""
}

// reply answers a failed verification as Envoy does, with a
// WWW-Authenticate challenge naming the request URI on a 401.
func (f *jwtAuthn) reply(w http.ResponseWriter, r *http.Request, code int, msg string, invalid bool) {
	if code == http.StatusUnauthorized && !f.stripBody {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		uri := scheme + "://" + r.Host + requestPath(r)
		if len(uri) > 256 {
			uri = uri[:256]
		}
		v := `Bearer realm="` + strings.ReplaceAll(uri, `"`, "%22") + `"`
		if invalid {
			v += `, error="invalid_token"`
		}
		w.Header().Set("Www-Authenticate", v)
	}
	if f.stripBody {
		msg = ""
	}
	localReply(w, r, code, -1, msg)
}

// jwtAcc accumulates what the verified tokens of a request yield. Their
// effects on the request are applied once the whole requirement passed, so
// a token removed by one provider is still there for the next.
type jwtAcc struct {
	jwt     *JWT
	outputs []jwtOutput
}

type jwtOutput struct {
	p   *jwtProvider
	t   *parsedJWT
	loc *jwtLocation
}

func (a *jwtAcc) add(p *jwtProvider, t *parsedJWT, loc *jwtLocation) {
	a.outputs = append(a.outputs, jwtOutput{p, t, loc})
	if a.jwt == nil {
		a.jwt = &JWT{
			Issuer: t.iss, Subject: t.sub, Audiences: t.aud, Presenter: t.azp, Claims: t.claims,
			Principal: t.iss + "/" + t.sub,
		}
	}
	if p.payloadInMetadata != "" {
		if a.jwt.Payloads == nil {
			a.jwt.Payloads = map[string]map[string]any{}
		}
		a.jwt.Payloads[p.payloadInMetadata] = t.claims
	}
}

// eval applies a requirement to the request.
func (f *jwtAuthn) eval(ctx context.Context, q *jwtRequirement, r *http.Request, acc *jwtAcc) jwtStatus {
	switch q.kind {
	case reqNone:
		return jwtOK
	case reqProvider:
		return f.authenticate(ctx, r, q.ext.extract(r), q.prov, q.aud, false, false, acc)
	case reqAllowMissing:
		return f.authenticate(ctx, r, q.ext.extract(r), nil, nil, false, true, acc)
	case reqAllowFailed:
		return f.authenticate(ctx, r, q.ext.extract(r), nil, nil, true, false, acc)
	case reqAny:
		last := jwtMissing
		for _, s := range q.subs {
			if last = f.eval(ctx, s, r, acc); last == jwtOK {
				return jwtOK
			}
		}
		return last
	case reqAll:
		for _, s := range q.subs {
			if st := f.eval(ctx, s, r, acc); st != jwtOK {
				return st
			}
		}
		return jwtOK
	}
	return jwtVerificationFail
}

// authenticate verifies every token found. prov nil means "the provider
// whose issuer the token names" (the allow_missing* verifiers).
func (f *jwtAuthn) authenticate(ctx context.Context, r *http.Request, tokens []tokenAt, prov *jwtProvider, aud []string, allowFailed, allowMissing bool, acc *jwtAcc) jwtStatus {
	if len(tokens) == 0 {
		if allowFailed || allowMissing {
			return jwtOK
		}
		return jwtMissing
	}
	for _, tk := range tokens {
		st := f.verifyToken(ctx, r, tk, prov, aud, acc)
		if st != jwtOK && !allowFailed {
			return st
		}
	}
	return jwtOK
}

func (f *jwtAuthn) verifyToken(ctx context.Context, r *http.Request, tk tokenAt, prov *jwtProvider, aud []string, acc *jwtAcc) jwtStatus {
	t, st := parseJWT(tk.token)
	if st != jwtOK {
		return st
	}
	if !tk.loc.allows(t.iss) {
		return jwtUnknownIssuer
	}
	p := prov
	if p == nil {
		p = f.providerFor(t.iss)
		if p == nil {
			return jwtUnknownIssuer
		}
	}
	if st := p.checkClaims(t, f.now(), aud); st != jwtOK {
		return st
	}
	if st := p.verifySignature(ctx, t, f.now); st != jwtOK {
		return st
	}
	acc.add(p, t, tk.loc)
	return jwtOK
}

// providerFor finds the provider for an issuer: the first (by name) whose
// issuer it is, else the first without issuer.
func (f *jwtAuthn) providerFor(iss string) *jwtProvider {
	var fallback *jwtProvider
	for _, p := range f.all {
		if p.issuer == iss {
			return p
		}
		if p.issuer == "" && fallback == nil {
			fallback = p
		}
	}
	return fallback
}

// output adds a verified token's payload and claim headers to the request.
func (p *jwtProvider) output(r *http.Request, t *parsedJWT) {
	if p.payloadHeader != "" {
		v := t.payloadB64
		if p.padPayload {
			if b, err := base64.RawURLEncoding.DecodeString(v); err == nil {
				v = base64.URLEncoding.EncodeToString(b)
			}
		}
		r.Header.Add(p.payloadHeader, v)
	}
	for _, ch := range p.claimHeaders {
		v, ok := walkClaims(t.claims, ch.claim)
		if !ok {
			continue
		}
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case bool:
			s = strconv.FormatBool(x)
		case float64:
			s = strconv.FormatFloat(x, 'f', -1, 64)
		}
		if s != "" && validHeaderValue(s) {
			r.Header.Add(ch.header, s)
		}
	}
}

func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
