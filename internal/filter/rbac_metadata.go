package filter

import (
	"fmt"
	"math"

	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// valKind is the kind of a compiled ValueMatcher.
type valKind uint8

const (
	valNull valKind = iota
	valDouble
	valString
	valBool
	valPresent
	valList
	valOr
)

// valMatcher is a compiled envoy.type.matcher.v3.ValueMatcher. It matches
// JSON values as encoding/json decodes them into any (nil, float64, string,
// bool, []any, map[string]any), which is how JWT claims are stored; the
// missing value is represented by missing=true.
type valMatcher struct {
	kind        valKind
	str         strMatcher
	exact       float64
	lo, hi      float64
	isRange     bool
	b           bool
	sub         []valMatcher // list_match (one element) and or_match
	presentWant bool
}

func parseValueMatcher(m *matcherv3.ValueMatcher, path string, depth int) (valMatcher, error) {
	if m == nil {
		return valMatcher{}, fmt.Errorf("%s: required", path)
	}
	if depth > maxMatcherDepth {
		return valMatcher{}, fmt.Errorf("%s: nested deeper than %d", path, maxMatcherDepth)
	}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.ValueMatcher_NullMatch_:
		return valMatcher{kind: valNull}, nil
	case *matcherv3.ValueMatcher_DoubleMatch:
		dm, dp := p.DoubleMatch, path+".double_match"
		if err := onlyFields(dm, dp, "range", "exact"); err != nil {
			return valMatcher{}, err
		}
		if rg := dm.GetRange(); rg != nil {
			if rg.GetStart() >= rg.GetEnd() {
				return valMatcher{}, fmt.Errorf("%s.range: start must be below end", dp)
			}
			return valMatcher{kind: valDouble, isRange: true, lo: rg.GetStart(), hi: rg.GetEnd()}, nil
		}
		if _, ok := dm.GetMatchPattern().(*matcherv3.DoubleMatcher_Exact); !ok {
			return valMatcher{}, fmt.Errorf("%s: one of range or exact is required", dp)
		}
		return valMatcher{kind: valDouble, exact: dm.GetExact()}, nil
	case *matcherv3.ValueMatcher_StringMatch:
		sm, err := parseStringMatcher(p.StringMatch, path+".string_match")
		return valMatcher{kind: valString, str: sm}, err
	case *matcherv3.ValueMatcher_BoolMatch:
		return valMatcher{kind: valBool, b: p.BoolMatch}, nil
	case *matcherv3.ValueMatcher_PresentMatch:
		return valMatcher{kind: valPresent, presentWant: p.PresentMatch}, nil
	case *matcherv3.ValueMatcher_ListMatch:
		lp := path + ".list_match"
		if err := onlyFields(p.ListMatch, lp, "one_of"); err != nil {
			return valMatcher{}, err
		}
		sub, err := parseValueMatcher(p.ListMatch.GetOneOf(), lp+".one_of", depth+1)
		return valMatcher{kind: valList, sub: []valMatcher{sub}}, err
	case *matcherv3.ValueMatcher_OrMatch:
		op := path + ".or_match"
		vms := p.OrMatch.GetValueMatchers()
		if len(vms) < 2 {
			return valMatcher{}, fmt.Errorf("%s.value_matchers: at least 2 required", op)
		}
		v := valMatcher{kind: valOr, sub: make([]valMatcher, len(vms))}
		for i, vm := range vms {
			var err error
			if v.sub[i], err = parseValueMatcher(vm, fmt.Sprintf("%s.value_matchers[%d]", op, i), depth+1); err != nil {
				return valMatcher{}, err
			}
		}
		return v, nil
	}
	return valMatcher{}, fmt.Errorf("%s: a match pattern is required", path)
}

func (m *valMatcher) match(v any, missing bool) bool {
	if missing {
		switch m.kind {
		case valPresent:
			return !m.presentWant
		case valOr:
			for i := range m.sub {
				if m.sub[i].match(nil, true) {
					return true
				}
			}
		}
		return false
	}
	switch m.kind {
	case valNull:
		return v == nil
	case valDouble:
		f, ok := v.(float64)
		if !ok || math.IsNaN(f) {
			return false
		}
		if m.isRange {
			return f >= m.lo && f < m.hi
		}
		return f == m.exact
	case valString:
		s, ok := v.(string)
		return ok && m.str.match(s)
	case valBool:
		b, ok := v.(bool)
		return ok && b == m.b
	case valPresent:
		return m.presentWant
	case valList:
		l, ok := v.([]any)
		if !ok {
			return false
		}
		for _, e := range l {
			if m.sub[0].match(e, false) {
				return true
			}
		}
		return false
	case valOr:
		for i := range m.sub {
			if m.sub[i].match(v, false) {
				return true
			}
		}
	}
	return false
}

// metaMatcher is a compiled envoy.type.matcher.v3.MetadataMatcher over the
// metadata namespaces canton's filters publish (see requestMetadata).
type metaMatcher struct {
	filter string
	path   []string
	value  valMatcher
	invert bool
}

func parseMetadataMatcher(m *matcherv3.MetadataMatcher, path string) (*metaMatcher, error) {
	if m == nil {
		return nil, fmt.Errorf("%s: required", path)
	}
	if err := onlyFields(m, path, "filter", "path", "value", "invert"); err != nil {
		return nil, err
	}
	if m.GetFilter() == "" {
		return nil, fmt.Errorf("%s.filter: required", path)
	}
	if _, ok := metadataNamespaces[m.GetFilter()]; !ok {
		return nil, fmt.Errorf("%s.filter: metadata namespace %q is not supported by canton (supported: %s, %s, %s)",
			path, m.GetFilter(), jwtAuthnName, istioAuthnNamespace, rbacMetadataNamespace)
	}
	if len(m.GetPath()) == 0 {
		return nil, fmt.Errorf("%s.path: at least one segment required", path)
	}
	mm := &metaMatcher{filter: m.GetFilter(), invert: m.GetInvert()}
	for i, seg := range m.GetPath() {
		if seg.GetKey() == "" {
			return nil, fmt.Errorf("%s.path[%d].key: required", path, i)
		}
		mm.path = append(mm.path, seg.GetKey())
	}
	var err error
	mm.value, err = parseValueMatcher(m.GetValue(), path+".value", 0)
	if err != nil {
		return nil, err
	}
	return mm, nil
}

// match looks the path up in the request's dynamic metadata and applies the
// value matcher, then invert.
func (m *metaMatcher) match(md requestMetadata) bool {
	v, ok := md.value(m.filter, m.path)
	return m.value.match(v, !ok) != m.invert
}
