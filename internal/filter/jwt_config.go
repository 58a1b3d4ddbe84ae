package filter

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
)

// This file decodes the jwt_authn configuration: providers, requirements
// and rule matches.

func parseJWTProvider(name string, pb *jwtv3.JwtProvider, path string) (*jwtProvider, error) {
	if pb == nil {
		return nil, fmt.Errorf("%s: empty provider", path)
	}
	if err := onlyFields(pb, path, "issuer", "audiences", "require_expiration", "local_jwks", "remote_jwks", "forward",
		"from_headers", "from_params", "forward_payload_header", "pad_forward_payload_header", "payload_in_metadata",
		"clock_skew_seconds", "claim_to_headers"); err != nil {
		return nil, err
	}
	p := &jwtProvider{
		name: name, issuer: pb.GetIssuer(), audiences: pb.GetAudiences(), requireExp: pb.GetRequireExpiration(),
		forward: pb.GetForward(), padPayload: pb.GetPadForwardPayloadHeader(), payloadInMetadata: pb.GetPayloadInMetadata(),
		skew: 60 * time.Second,
	}
	if s := pb.GetClockSkewSeconds(); s > 0 {
		p.skew = time.Duration(s) * time.Second
	}
	if h := pb.GetForwardPayloadHeader(); h != "" {
		if !validHeaderName(h) {
			return nil, fmt.Errorf("%s.forward_payload_header: %q is not a valid header name", path, h)
		}
		p.payloadHeader = http.CanonicalHeaderKey(h)
	}
	for i, ch := range pb.GetClaimToHeaders() {
		cp := fmt.Sprintf("%s.claim_to_headers[%d]", path, i)
		if err := onlyFields(ch, cp, "header_name", "claim_name"); err != nil {
			return nil, err
		}
		if !validHeaderName(ch.GetHeaderName()) {
			return nil, fmt.Errorf("%s.header_name: %q is not a valid header name", cp, ch.GetHeaderName())
		}
		if ch.GetClaimName() == "" {
			return nil, fmt.Errorf("%s.claim_name: required", cp)
		}
		p.claimHeaders = append(p.claimHeaders, claimHeader{header: http.CanonicalHeaderKey(ch.GetHeaderName()), claim: strings.Split(ch.GetClaimName(), ".")})
	}
	for i, h := range pb.GetFromHeaders() {
		hp := fmt.Sprintf("%s.from_headers[%d]", path, i)
		if err := onlyFields(h, hp, "name", "value_prefix"); err != nil {
			return nil, err
		}
		if !validHeaderName(h.GetName()) {
			return nil, fmt.Errorf("%s.name: %q is not a valid header name", hp, h.GetName())
		}
		p.locations = append(p.locations, &jwtLocation{header: http.CanonicalHeaderKey(h.GetName()), prefix: h.GetValuePrefix()})
	}
	for i, q := range pb.GetFromParams() {
		if q == "" {
			return nil, fmt.Errorf("%s.from_params[%d]: empty", path, i)
		}
		p.locations = append(p.locations, &jwtLocation{param: q})
	}
	if len(p.locations) == 0 {
		p.locations = []*jwtLocation{{header: "Authorization", prefix: "Bearer "}, {param: "access_token"}}
	}
	switch src := pb.GetJwksSourceSpecifier().(type) {
	case *jwtv3.JwtProvider_LocalJwks:
		lp := path + ".local_jwks"
		if err := onlyFields(src.LocalJwks, lp, "inline_string", "inline_bytes"); err != nil {
			return nil, err
		}
		data := src.LocalJwks.GetInlineBytes()
		if s := src.LocalJwks.GetInlineString(); s != "" {
			data = []byte(s)
		}
		keys, err := parseJWKS(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", lp, err)
		}
		p.local = keys
	case *jwtv3.JwtProvider_RemoteJwks:
		rj, err := parseRemoteJWKS(src.RemoteJwks, path+".remote_jwks")
		if err != nil {
			return nil, err
		}
		p.remote = rj
	default:
		return nil, fmt.Errorf("%s: one of local_jwks or remote_jwks is required", path)
	}
	return p, nil
}

func parseRemoteJWKS(pb *jwtv3.RemoteJwks, path string) (*remoteJWKS, error) {
	if err := onlyFields(pb, path, "http_uri", "cache_duration"); err != nil {
		return nil, err
	}
	hu := pb.GetHttpUri()
	if hu == nil {
		return nil, fmt.Errorf("%s.http_uri: required", path)
	}
	if err := onlyFields(hu, path+".http_uri", "uri", "cluster", "timeout"); err != nil {
		return nil, err
	}
	u, err := url.Parse(hu.GetUri())
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s.http_uri.uri: %q is not an absolute http(s) URL", path, hu.GetUri())
	}
	timeout := hu.GetTimeout().AsDuration()
	if hu.GetTimeout() == nil || timeout <= 0 || timeout > time.Minute {
		return nil, fmt.Errorf("%s.http_uri.timeout: must be in (0, 1m]", path)
	}
	rj := &remoteJWKS{uri: hu.GetUri(), cluster: hu.GetCluster(), timeout: timeout, ttl: defaultJWKSCache}
	if cd := pb.GetCacheDuration(); cd != nil {
		if rj.ttl = cd.AsDuration(); rj.ttl <= 0 {
			return nil, fmt.Errorf("%s.cache_duration: must be positive", path)
		}
	}
	return rj, nil
}

// parseRequirement decodes a JwtRequirement. siblings are the providers
// named directly by the enclosing requires_any, whose locations an
// allow_missing(_or_failed) inside it searches; nil means every provider.
func (f *jwtAuthn) parseRequirement(pb *jwtv3.JwtRequirement, path string, siblings []*jwtProvider, depth int) (*jwtRequirement, error) {
	if pb == nil {
		return &jwtRequirement{kind: reqNone}, nil
	}
	if depth > maxMatcherDepth {
		return nil, fmt.Errorf("%s: nested deeper than %d", path, maxMatcherDepth)
	}
	provider := func(name, p string) (*jwtProvider, error) {
		prov := f.providers[name]
		if prov == nil {
			return nil, fmt.Errorf("%s: provider %q is not configured", p, name)
		}
		return prov, nil
	}
	bypassExtractor := func() *jwtExtractor {
		if siblings == nil {
			return f.allExtractor
		}
		return newExtractor(siblings)
	}
	switch r := pb.GetRequiresType().(type) {
	case nil:
		return &jwtRequirement{kind: reqNone}, nil
	case *jwtv3.JwtRequirement_ProviderName:
		prov, err := provider(r.ProviderName, path+".provider_name")
		if err != nil {
			return nil, err
		}
		return &jwtRequirement{kind: reqProvider, prov: prov, ext: newExtractor([]*jwtProvider{prov})}, nil
	case *jwtv3.JwtRequirement_ProviderAndAudiences:
		pa := r.ProviderAndAudiences
		prov, err := provider(pa.GetProviderName(), path+".provider_and_audiences.provider_name")
		if err != nil {
			return nil, err
		}
		aud := pa.GetAudiences()
		if aud == nil {
			aud = []string{}
		}
		return &jwtRequirement{kind: reqProvider, prov: prov, aud: aud, ext: newExtractor([]*jwtProvider{prov})}, nil
	case *jwtv3.JwtRequirement_RequiresAny:
		list := r.RequiresAny.GetRequirements()
		if len(list) < 2 {
			return nil, fmt.Errorf("%s.requires_any.requirements: at least 2 required", path)
		}
		var direct []*jwtProvider
		for _, sub := range list {
			switch s := sub.GetRequiresType().(type) {
			case *jwtv3.JwtRequirement_ProviderName:
				if p := f.providers[s.ProviderName]; p != nil {
					direct = append(direct, p)
				}
			case *jwtv3.JwtRequirement_ProviderAndAudiences:
				if p := f.providers[s.ProviderAndAudiences.GetProviderName()]; p != nil {
					direct = append(direct, p)
				}
			}
		}
		if direct == nil {
			direct = []*jwtProvider{}
		}
		req := &jwtRequirement{kind: reqAny}
		var bypass *jwtRequirement
		for i, sub := range list {
			s, err := f.parseRequirement(sub, fmt.Sprintf("%s.requires_any.requirements[%d]", path, i), direct, depth+1)
			if err != nil {
				return nil, err
			}
			switch {
			case s.kind == reqAllowFailed:
				bypass = s // allow_missing_or_failed wins over allow_missing
			case s.kind == reqAllowMissing:
				if bypass == nil {
					bypass = s
				}
			default:
				req.subs = append(req.subs, s)
			}
		}
		if bypass != nil {
			req.subs = append(req.subs, bypass) // Envoy evaluates the bypass last
		}
		return req, nil
	case *jwtv3.JwtRequirement_RequiresAll:
		list := r.RequiresAll.GetRequirements()
		if len(list) < 2 {
			return nil, fmt.Errorf("%s.requires_all.requirements: at least 2 required", path)
		}
		req := &jwtRequirement{kind: reqAll}
		for i, sub := range list {
			s, err := f.parseRequirement(sub, fmt.Sprintf("%s.requires_all.requirements[%d]", path, i), nil, depth+1)
			if err != nil {
				return nil, err
			}
			req.subs = append(req.subs, s)
		}
		return req, nil
	case *jwtv3.JwtRequirement_AllowMissing:
		return &jwtRequirement{kind: reqAllowMissing, ext: bypassExtractor()}, nil
	case *jwtv3.JwtRequirement_AllowMissingOrFailed:
		return &jwtRequirement{kind: reqAllowFailed, ext: bypassExtractor()}, nil
	}
	return nil, fmt.Errorf("%s: requirement %s is not supported by canton", path, oneofName(pb))
}

func parseRouteMatch(pb *routev3.RouteMatch, path string) (routeMatch, error) {
	if pb == nil {
		return routeMatch{}, fmt.Errorf("%s: required", path)
	}
	if err := onlyFields(pb, path, "prefix", "path", "safe_regex", "path_separated_prefix", "case_sensitive", "headers"); err != nil {
		return routeMatch{}, err
	}
	m := routeMatch{fold: pb.GetCaseSensitive() != nil && !pb.GetCaseSensitive().GetValue()}
	switch ps := pb.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		m.kind, m.s = 0, ps.Prefix
	case *routev3.RouteMatch_Path:
		m.kind, m.s = 1, ps.Path
	case *routev3.RouteMatch_SafeRegex:
		re, err := parseRegex(ps.SafeRegex, path+".safe_regex")
		if err != nil {
			return routeMatch{}, err
		}
		m.kind, m.re = 2, re
	case *routev3.RouteMatch_PathSeparatedPrefix:
		p := ps.PathSeparatedPrefix
		if !strings.HasPrefix(p, "/") || (len(p) > 1 && strings.HasSuffix(p, "/")) || strings.ContainsAny(p, "?#") {
			return routeMatch{}, fmt.Errorf("%s.path_separated_prefix: %q must start with / and not end with /", path, p)
		}
		m.kind, m.s = 3, p
	default:
		return routeMatch{}, fmt.Errorf("%s: one of prefix, path, safe_regex or path_separated_prefix is required", path)
	}
	if m.fold {
		m.s = asciiLower(m.s)
	}
	for i, h := range pb.GetHeaders() {
		hm, err := parseHeaderMatcher(h, fmt.Sprintf("%s.headers[%d]", path, i))
		if err != nil {
			return routeMatch{}, err
		}
		m.headers = append(m.headers, hm)
	}
	return m, nil
}

func (m *routeMatch) match(r *http.Request) bool {
	p := requestPath(r)
	ok := false
	switch m.kind {
	case 0:
		ok = len(p) >= len(m.s) && eqBytes(p[:len(m.s)], m.s, m.fold)
	case 1:
		ok = len(p) == len(m.s) && eqBytes(p, m.s, m.fold)
	case 2:
		ok = m.re.MatchString(p)
	case 3:
		ok = len(p) >= len(m.s) && eqBytes(p[:len(m.s)], m.s, m.fold) && (len(p) == len(m.s) || p[len(m.s)] == '/')
	}
	if !ok {
		return false
	}
	for _, h := range m.headers {
		if !h.match(r) {
			return false
		}
	}
	return true
}

func validHeaderName(s string) bool {
	if s == "" || strings.HasPrefix(s, ":") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}
