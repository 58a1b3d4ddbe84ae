package route

import (
	"fmt"
	"regexp"
	"strings"

	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// StringMatcher is a compiled envoy.type.matcher.v3.StringMatcher.
type StringMatcher struct {
	kind       strKind
	value      string
	ignoreCase bool
	re         *regexp.Regexp
}

type strKind uint8

const (
	strExact strKind = iota
	strPrefix
	strSuffix
	strContains
	strRegex
)

// CompileStringMatcher compiles m; field names m in errors.
func CompileStringMatcher(m *matcherv3.StringMatcher, field string) (StringMatcher, error) {
	s := StringMatcher{ignoreCase: m.GetIgnoreCase()}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		s.kind, s.value = strExact, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		s.kind, s.value = strPrefix, p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		s.kind, s.value = strSuffix, p.Suffix
	case *matcherv3.StringMatcher_Contains:
		s.kind, s.value = strContains, p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := compileRegex(p.SafeRegex.GetRegex(), s.ignoreCase)
		if err != nil {
			return s, fmt.Errorf("%s.safe_regex: %w", field, err)
		}
		s.kind, s.re = strRegex, re
	default:
		return s, fmt.Errorf("%s: no match pattern", field)
	}
	if s.ignoreCase && s.kind == strContains {
		s.value = strings.ToLower(s.value)
	}
	return s, nil
}

// compileRegex compiles an RE2 expression that must match the whole input, as Envoy's safe_regex does.
func compileRegex(expr string, ignoreCase bool) (*regexp.Regexp, error) {
	if ignoreCase {
		expr = "(?i)" + expr
	}
	return regexp.Compile("^(?:" + expr + ")$")
}

// Match reports whether v matches.
func (s *StringMatcher) Match(v string) bool {
	switch s.kind {
	case strExact:
		if s.ignoreCase {
			return strings.EqualFold(v, s.value)
		}
		return v == s.value
	case strPrefix:
		return len(v) >= len(s.value) && eq(v[:len(s.value)], s.value, s.ignoreCase)
	case strSuffix:
		return len(v) >= len(s.value) && eq(v[len(v)-len(s.value):], s.value, s.ignoreCase)
	case strContains:
		if s.ignoreCase {
			return containsFold(v, s.value)
		}
		return strings.Contains(v, s.value)
	case strRegex:
		return s.re.MatchString(v)
	}
	return false
}

func eq(a, b string, fold bool) bool {
	if fold {
		return strings.EqualFold(a, b)
	}
	return a == b
}

// containsFold reports whether lower (already lower-case) occurs in v, ignoring ASCII case.
func containsFold(v, lower string) bool {
	for i := 0; i+len(lower) <= len(v); i++ {
		if strings.EqualFold(v[i:i+len(lower)], lower) {
			return true
		}
	}
	return false
}
