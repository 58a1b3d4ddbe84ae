package filter

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// This file holds the leaf matchers shared by the RBAC and JWT filters:
// Envoy's StringMatcher, HeaderMatcher and MetadataMatcher (with its
// ValueMatcher), decoded once into plain structs whose match methods do not
// allocate.

// strKind is the kind of a compiled StringMatcher.
type strKind uint8

const (
	strExact strKind = iota
	strPrefix
	strSuffix
	strContains
	strRegex
)

// strMatcher is a compiled envoy.type.matcher.v3.StringMatcher. With fold
// set, s is lower-cased and the comparison is ASCII case-insensitive, as
// Envoy's ignore_case is (it does not apply to regexes).
type strMatcher struct {
	kind strKind
	fold bool
	s    string
	re   *regexp.Regexp
}

func parseStringMatcher(m *matcherv3.StringMatcher, path string) (strMatcher, error) {
	if m == nil {
		return strMatcher{}, fmt.Errorf("%s: required", path)
	}
	if err := onlyFields(m, path, "exact", "prefix", "suffix", "safe_regex", "contains", "ignore_case"); err != nil {
		return strMatcher{}, err
	}
	sm := strMatcher{fold: m.GetIgnoreCase()}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		sm.kind, sm.s = strExact, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		if p.Prefix == "" {
			return strMatcher{}, fmt.Errorf("%s.prefix: must not be empty", path)
		}
		sm.kind, sm.s = strPrefix, p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		if p.Suffix == "" {
			return strMatcher{}, fmt.Errorf("%s.suffix: must not be empty", path)
		}
		sm.kind, sm.s = strSuffix, p.Suffix
	case *matcherv3.StringMatcher_Contains:
		if p.Contains == "" {
			return strMatcher{}, fmt.Errorf("%s.contains: must not be empty", path)
		}
		sm.kind, sm.s = strContains, p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := parseRegex(p.SafeRegex, path+".safe_regex")
		if err != nil {
			return strMatcher{}, err
		}
		sm.kind, sm.re, sm.fold = strRegex, re, false
	default:
		return strMatcher{}, fmt.Errorf("%s: one of exact, prefix, suffix, contains or safe_regex is required", path)
	}
	if sm.fold {
		sm.s = asciiLower(sm.s)
	}
	return sm, nil
}

// maxRegexLen bounds the regexes a config may carry; RE2 (and Go's regexp)
// match in linear time, but compiling huge programs is still costly.
const maxRegexLen = 4096

// parseRegex compiles a RegexMatcher. Envoy's safe_regex must match the
// whole value, so the expression is anchored at both ends.
func parseRegex(m *matcherv3.RegexMatcher, path string) (*regexp.Regexp, error) {
	if m == nil {
		return nil, fmt.Errorf("%s: required", path)
	}
	if err := onlyFields(m, path, "regex", "google_re2"); err != nil {
		return nil, err
	}
	if g := m.GetGoogleRe2(); g != nil {
		if err := onlyFields(g, path+".google_re2", "max_program_size"); err != nil {
			return nil, err
		}
	}
	if len(m.GetRegex()) > maxRegexLen {
		return nil, fmt.Errorf("%s.regex: longer than %d bytes", path, maxRegexLen)
	}
	re, err := regexp.Compile(`^(?:` + m.GetRegex() + `)$`)
	if err != nil {
		return nil, fmt.Errorf("%s.regex: %w", path, err)
	}
	return re, nil
}

func (m *strMatcher) match(v string) bool {
	switch m.kind {
	case strExact:
		return len(v) == len(m.s) && eqBytes(v, m.s, m.fold)
	case strPrefix:
		return len(v) >= len(m.s) && eqBytes(v[:len(m.s)], m.s, m.fold)
	case strSuffix:
		return len(v) >= len(m.s) && eqBytes(v[len(v)-len(m.s):], m.s, m.fold)
	case strContains:
		return indexFold(v, m.s, m.fold) >= 0
	case strRegex:
		return m.re.MatchString(v)
	}
	return false
}

// matchJoined matches the string pre+v without building it: the proxy keeps
// principals without their "spiffe://" scheme but Envoy matches the full URI
// SAN. Only a regex needs the joined string, and allocates it.
func (m *strMatcher) matchJoined(pre, v string) bool {
	n := len(pre) + len(v)
	s := m.s
	switch m.kind {
	case strExact:
		return n == len(s) && eqBytes(s[:len(pre)], pre, m.fold) && eqBytes(s[len(pre):], v, m.fold)
	case strPrefix:
		if len(s) <= len(pre) {
			return eqBytes(pre[:len(s)], s, m.fold)
		}
		return len(s) <= n && eqBytes(s[:len(pre)], pre, m.fold) && eqBytes(v[:len(s)-len(pre)], s[len(pre):], m.fold)
	case strSuffix:
		if len(s) <= len(v) {
			return eqBytes(v[len(v)-len(s):], s, m.fold)
		}
		k := len(s) - len(v) // bytes of s that fall into pre
		return len(s) <= n && eqBytes(s[k:], v, m.fold) && eqBytes(pre[len(pre)-k:], s[:k], m.fold)
	case strContains:
		if indexFold(pre, s, m.fold) >= 0 || indexFold(v, s, m.fold) >= 0 {
			return true
		}
		// An occurrence straddling the two parts: s[:k] ends pre, s[k:] starts v.
		for k := 1; k < len(s); k++ {
			if k <= len(pre) && len(s)-k <= len(v) &&
				eqBytes(pre[len(pre)-k:], s[:k], m.fold) && eqBytes(v[:len(s)-k], s[k:], m.fold) {
				return true
			}
		}
		return false
	case strRegex:
		return m.re.MatchString(pre + v)
	}
	return false
}

// eqBytes compares a and b (of equal length); with fold, b is lower-case
// and a is compared ASCII case-insensitively.
func eqBytes(a, b string, fold bool) bool {
	if !fold {
		return a == b
	}
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != b[i] {
			return false
		}
	}
	return true
}

// indexFold is strings.Index with optional ASCII case folding (sub is
// lower-case when fold is set).
func indexFold(s, sub string, fold bool) int {
	if !fold {
		return strings.Index(s, sub)
	}
	for i := 0; i+len(sub) <= len(s); i++ {
		if eqBytes(s[i:i+len(sub)], sub, true) {
			return i
		}
	}
	return -1
}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// pseudo identifies the HTTP/2 pseudo-headers (and "host") a HeaderMatcher
// may name; Go's http.Request keeps them outside r.Header.
type pseudo uint8

const (
	pseudoNone pseudo = iota
	pseudoMethod
	pseudoAuthority
	pseudoPath
	pseudoScheme
)

type hdrKind uint8

const (
	hdrAny     hdrKind = iota // no match specifier: the header must be present
	hdrPresent                // present_match
	hdrString                 // string_match and the deprecated *_match forms
	hdrRange                  // range_match
)

// hdrMatcher is a compiled envoy.config.route.v3.HeaderMatcher.
type hdrMatcher struct {
	key          string // canonical key in http.Header
	pseudo       pseudo
	kind         hdrKind
	present      bool
	str          strMatcher
	lo, hi       int64 // range_match: [lo, hi)
	invert       bool
	missingEmpty bool
}

func parseHeaderMatcher(m *routev3.HeaderMatcher, path string) (*hdrMatcher, error) {
	if m == nil {
		return nil, fmt.Errorf("%s: required", path)
	}
	if err := onlyFields(m, path, "name", "exact_match", "safe_regex_match", "range_match", "present_match",
		"prefix_match", "suffix_match", "contains_match", "string_match", "invert_match", "treat_missing_header_as_empty"); err != nil {
		return nil, err
	}
	name := strings.ToLower(m.GetName())
	h := &hdrMatcher{invert: m.GetInvertMatch(), missingEmpty: m.GetTreatMissingHeaderAsEmpty()}
	switch name {
	case "":
		return nil, fmt.Errorf("%s.name: required", path)
	case ":method":
		h.pseudo = pseudoMethod
	case ":authority", "host":
		h.pseudo = pseudoAuthority
	case ":path":
		h.pseudo = pseudoPath
	case ":scheme":
		h.pseudo = pseudoScheme
	default:
		if strings.HasPrefix(name, ":") {
			return nil, fmt.Errorf("%s.name: pseudo-header %q is not supported by canton", path, name)
		}
		h.key = http.CanonicalHeaderKey(name)
	}
	var err error
	str := func(kind strKind, s, field string) {
		if s == "" && kind != strExact {
			err = fmt.Errorf("%s.%s: must not be empty", path, field)
		}
		h.kind, h.str = hdrString, strMatcher{kind: kind, s: s}
	}
	switch p := m.GetHeaderMatchSpecifier().(type) {
	case nil:
		h.kind = hdrAny
	case *routev3.HeaderMatcher_PresentMatch:
		h.kind, h.present = hdrPresent, p.PresentMatch
	case *routev3.HeaderMatcher_ExactMatch:
		str(strExact, p.ExactMatch, "exact_match")
	case *routev3.HeaderMatcher_PrefixMatch:
		str(strPrefix, p.PrefixMatch, "prefix_match")
	case *routev3.HeaderMatcher_SuffixMatch:
		str(strSuffix, p.SuffixMatch, "suffix_match")
	case *routev3.HeaderMatcher_ContainsMatch:
		str(strContains, p.ContainsMatch, "contains_match")
	case *routev3.HeaderMatcher_SafeRegexMatch:
		var re *regexp.Regexp
		re, err = parseRegex(p.SafeRegexMatch, path+".safe_regex_match")
		h.kind, h.str = hdrString, strMatcher{kind: strRegex, re: re}
	case *routev3.HeaderMatcher_StringMatch:
		h.kind = hdrString
		h.str, err = parseStringMatcher(p.StringMatch, path+".string_match")
	case *routev3.HeaderMatcher_RangeMatch:
		if err = onlyFields(p.RangeMatch, path+".range_match", "start", "end"); err == nil && p.RangeMatch.GetStart() >= p.RangeMatch.GetEnd() {
			err = fmt.Errorf("%s.range_match: start must be below end", path)
		}
		h.kind, h.lo, h.hi = hdrRange, p.RangeMatch.GetStart(), p.RangeMatch.GetEnd()
	default:
		err = fmt.Errorf("%s: unsupported header match specifier %T", path, p)
	}
	if err != nil {
		return nil, err
	}
	return h, nil
}

// value returns the header's value as Envoy sees it: several values of one
// header are joined with "," (the only case that allocates).
func (h *hdrMatcher) value(r *http.Request) (string, bool) {
	switch h.pseudo {
	case pseudoMethod:
		return r.Method, true
	case pseudoAuthority:
		return r.Host, true
	case pseudoPath:
		if r.URL.RawQuery == "" {
			return requestPath(r), true
		}
		return requestPath(r) + "?" + r.URL.RawQuery, true
	case pseudoScheme:
		if r.TLS != nil {
			return "https", true
		}
		return "http", true
	}
	vs := r.Header[h.key]
	switch len(vs) {
	case 0:
		return "", false
	case 1:
		return vs[0], true
	}
	return strings.Join(vs, ","), true
}

// match follows Envoy's HeaderUtility::matchHeaders, including its handling
// of an absent header: only present_match (and treat_missing_header_as_empty)
// can match it, and invert_match does not turn an absent header into a match
// of the other specifiers.
func (h *hdrMatcher) match(r *http.Request) bool {
	v, ok := h.value(r)
	if !ok && !h.missingEmpty {
		if h.invert {
			return h.kind == hdrPresent && h.present
		}
		return h.kind == hdrPresent && !h.present
	}
	var m bool
	switch h.kind {
	case hdrAny:
		m = true
	case hdrPresent:
		m = h.present
	case hdrString:
		m = h.str.match(v)
	case hdrRange:
		n, err := strconv.ParseInt(v, 10, 64)
		m = err == nil && n >= h.lo && n < h.hi
	}
	return m != h.invert
}
