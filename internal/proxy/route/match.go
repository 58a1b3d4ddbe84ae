package route

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
)

// Request is what matching looks at. The proxy fills it once per request, from the normalized path.
type Request struct {
	Method string
	// Host is the :authority (Host header), as received.
	Host string
	// Path is the normalized, still escaped, path without the query.
	Path string
	// Query is the raw query string without '?'.
	Query string
	// Scheme is "http" or "https".
	Scheme string
	Header http.Header
}

type pathKind uint8

const (
	pathPrefix pathKind = iota
	pathExact
	pathRegex
	pathSeparated
)

type matcher struct {
	kind       pathKind
	value      string
	ignoreCase bool
	re         *regexp.Regexp
	headers    []headerMatcher
	queries    []queryMatcher
	grpc       bool
	// perMillion < 1e6 means the route matches only that share of requests (runtime_fraction).
	perMillion uint32
}

func compileMatch(m *routev3.RouteMatch, field string) (matcher, error) {
	mt := matcher{ignoreCase: m.GetCaseSensitive() != nil && !m.GetCaseSensitive().GetValue(), perMillion: 1e6}
	switch p := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		mt.kind, mt.value = pathPrefix, p.Prefix
	case *routev3.RouteMatch_Path:
		mt.kind, mt.value = pathExact, p.Path
	case *routev3.RouteMatch_SafeRegex:
		re, err := compileRegex(p.SafeRegex.GetRegex(), mt.ignoreCase)
		if err != nil {
			return mt, fmt.Errorf("%s.safe_regex: %w", field, err)
		}
		mt.kind, mt.re = pathRegex, re
	case *routev3.RouteMatch_PathSeparatedPrefix:
		v := p.PathSeparatedPrefix
		if !strings.HasPrefix(v, "/") || strings.HasSuffix(v, "/") || strings.ContainsAny(v, "?#") {
			return mt, fmt.Errorf("%s.path_separated_prefix: %q must start and not end with '/' and hold no '?' or '#'", field, v)
		}
		mt.kind, mt.value = pathSeparated, v
	default:
		return mt, fmt.Errorf("%s: unsupported path specifier %T", field, p)
	}
	for i, h := range m.GetHeaders() {
		hm, err := compileHeaderMatcher(h, fmt.Sprintf("%s.headers[%d]", field, i))
		if err != nil {
			return mt, err
		}
		mt.headers = append(mt.headers, hm)
	}
	for i, q := range m.GetQueryParameters() {
		f := fmt.Sprintf("%s.query_parameters[%d]", field, i)
		qm := queryMatcher{name: q.GetName()}
		if qm.name == "" {
			return mt, fmt.Errorf("%s.name: empty", f)
		}
		switch s := q.GetQueryParameterMatchSpecifier().(type) {
		case *routev3.QueryParameterMatcher_StringMatch:
			sm, err := CompileStringMatcher(s.StringMatch, f+".string_match")
			if err != nil {
				return mt, err
			}
			qm.str = &sm
		case *routev3.QueryParameterMatcher_PresentMatch:
			qm.present = s.PresentMatch
		default:
			qm.present = true
		}
		mt.queries = append(mt.queries, qm)
	}
	if m.GetGrpc() != nil {
		mt.grpc = true
	}
	if rf := m.GetRuntimeFraction(); rf != nil {
		mt.perMillion = perMillion(rf.GetDefaultValue())
	}
	return mt, nil
}

// perMillion converts a FractionalPercent to parts per million, capped at one million.
func perMillion(f *typev3.FractionalPercent) uint32 {
	n := uint64(f.GetNumerator())
	switch f.GetDenominator() {
	case typev3.FractionalPercent_HUNDRED:
		n *= 10000
	case typev3.FractionalPercent_TEN_THOUSAND:
		n *= 100
	}
	return uint32(min(n, 1e6))
}

// Hit reports whether a random draw falls within perMillion parts per million.
func Hit(perMillion uint32) bool {
	return perMillion >= 1e6 || rand.Uint32N(1e6) < perMillion
}

func (m *matcher) match(r *Request) bool {
	p := r.Path
	switch m.kind {
	case pathPrefix:
		if len(p) < len(m.value) || !eq(p[:len(m.value)], m.value, m.ignoreCase) {
			return false
		}
	case pathExact:
		if !eq(p, m.value, m.ignoreCase) {
			return false
		}
	case pathRegex:
		if !m.re.MatchString(p) {
			return false
		}
	case pathSeparated:
		if len(p) < len(m.value) || !eq(p[:len(m.value)], m.value, m.ignoreCase) {
			return false
		}
		if len(p) > len(m.value) && p[len(m.value)] != '/' {
			return false
		}
	}
	if m.grpc && !IsGRPC(r.Header) {
		return false
	}
	for i := range m.headers {
		if !m.headers[i].match(r) {
			return false
		}
	}
	for i := range m.queries {
		if !m.queries[i].match(r.Query) {
			return false
		}
	}
	return Hit(m.perMillion)
}

// IsGRPC reports whether the request's content-type is application/grpc or application/grpc+suffix.
func IsGRPC(h http.Header) bool {
	v := h["Content-Type"]
	if len(v) == 0 {
		return false
	}
	ct := v[0]
	const g = "application/grpc"
	return len(ct) >= len(g) && strings.EqualFold(ct[:len(g)], g) && (len(ct) == len(g) || ct[len(g)] == '+' || ct[len(g)] == ';')
}

type headerKind uint8

const (
	hdrString headerKind = iota
	hdrPresent
	hdrRange
)

type headerMatcher struct {
	key          string // canonical key, or a pseudo-header name
	kind         headerKind
	str          StringMatcher
	present      bool
	lo, hi       int64
	invert       bool
	missingEmpty bool
}

func compileHeaderMatcher(h *routev3.HeaderMatcher, field string) (headerMatcher, error) {
	name := h.GetName()
	if name == "" {
		return headerMatcher{}, fmt.Errorf("%s.name: empty", field)
	}
	hm := headerMatcher{invert: h.GetInvertMatch(), missingEmpty: h.GetTreatMissingHeaderAsEmpty()}
	if strings.HasPrefix(name, ":") {
		switch name {
		case ":authority", ":method", ":path", ":scheme":
			hm.key = name
		default:
			return hm, fmt.Errorf("%s.name: unsupported pseudo-header %q", field, name)
		}
	} else {
		hm.key = http.CanonicalHeaderKey(name)
	}
	var err error
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_StringMatch:
		hm.str, err = CompileStringMatcher(s.StringMatch, field+".string_match")
	case *routev3.HeaderMatcher_ExactMatch:
		hm.str = StringMatcher{kind: strExact, value: s.ExactMatch}
	case *routev3.HeaderMatcher_PrefixMatch:
		hm.str = StringMatcher{kind: strPrefix, value: s.PrefixMatch}
	case *routev3.HeaderMatcher_SuffixMatch:
		hm.str = StringMatcher{kind: strSuffix, value: s.SuffixMatch}
	case *routev3.HeaderMatcher_ContainsMatch:
		hm.str = StringMatcher{kind: strContains, value: s.ContainsMatch}
	case *routev3.HeaderMatcher_SafeRegexMatch:
		var re *regexp.Regexp
		re, err = compileRegex(s.SafeRegexMatch.GetRegex(), false)
		if err != nil {
			err = fmt.Errorf("%s.safe_regex_match: %w", field, err)
		}
		hm.str = StringMatcher{kind: strRegex, re: re}
	case *routev3.HeaderMatcher_PresentMatch:
		hm.kind, hm.present = hdrPresent, s.PresentMatch
	case *routev3.HeaderMatcher_RangeMatch:
		hm.kind, hm.lo, hm.hi = hdrRange, s.RangeMatch.GetStart(), s.RangeMatch.GetEnd()
		if hm.lo >= hm.hi {
			err = fmt.Errorf("%s.range_match: start %d must be below end %d", field, hm.lo, hm.hi)
		}
	default:
		// No specifier: Envoy treats it as "present".
		hm.kind, hm.present = hdrPresent, true
	}
	return hm, err
}

// value returns the header value Envoy would match: absent, one value, or the values joined by ",".
func (h *headerMatcher) value(r *Request) (string, bool) {
	switch h.key {
	case ":authority":
		return r.Host, true
	case ":method":
		return r.Method, true
	case ":path":
		if r.Query != "" {
			return r.Path + "?" + r.Query, true
		}
		return r.Path, true
	case ":scheme":
		return r.Scheme, true
	}
	vs, ok := r.Header[h.key]
	switch {
	case !ok || len(vs) == 0:
		return "", false
	case len(vs) == 1:
		return vs[0], true
	}
	return strings.Join(vs, ","), true
}

func (h *headerMatcher) match(r *Request) bool {
	v, ok := h.value(r)
	if !ok && h.missingEmpty {
		v, ok = "", true
	}
	var res bool
	switch h.kind {
	case hdrPresent:
		// present_match: true matches a present header; false matches an absent one.
		res = ok == h.present
	case hdrRange:
		if ok {
			n, err := strconv.ParseInt(v, 10, 64)
			res = err == nil && n >= h.lo && n < h.hi
		}
	default:
		res = ok && h.str.Match(v)
	}
	if h.invert {
		// Envoy: an absent header does not match an inverted string matcher either.
		if !ok && h.kind != hdrPresent {
			return false
		}
		return !res
	}
	return res
}

type queryMatcher struct {
	name    string
	str     *StringMatcher
	present bool
}

func (q *queryMatcher) match(raw string) bool {
	v, ok := QueryValue(raw, q.name)
	if q.str == nil {
		return ok == q.present
	}
	return ok && q.str.Match(v)
}

// QueryValue returns the decoded value of the first query parameter named name in raw. It does not
// allocate unless the key or value is escaped.
func QueryValue(raw, name string) (string, bool) {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(kv, "=")
		if strings.ContainsAny(k, "%+") {
			dk, err := url.QueryUnescape(k)
			if err != nil {
				continue
			}
			k = dk
		}
		if k != name {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			dv, err := url.QueryUnescape(v)
			if err != nil {
				return "", false
			}
			v = dv
		}
		return v, true
	}
	return "", false
}
