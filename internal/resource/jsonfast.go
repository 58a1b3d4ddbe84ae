package resource

import (
	"bytes"
	"encoding/json"
	"sort"
	"unicode/utf8"
)

// Fast paths for the JSON work every replica does on every applied object (decoding a
// spec into generic form, re-encoding it canonically). They handle the common case and
// say so; anything else (an escape in a string, invalid UTF-8, a syntax error, a duplicate
// key, nesting deeper than maxJSONDepth, a type they do not know) makes them give up, and
// the callers then take the general path (decodeValue, json.Marshal), which decides and
// words the error. So they change no result and no message, only the cost; the fuzz
// targets in jsonfast_test.go check that they agree with the general path.

// fastDecodeJSON decodes data as decodeJSON does, if it can: ok is true only when
// decodeJSON would succeed with the same value.
func fastDecodeJSON(data []byte) (v any, ok bool) {
	p := fastParser{b: data}
	p.space()
	if v, ok = p.value(0); !ok {
		return nil, false
	}
	p.space()
	return v, p.i == len(p.b)
}

type fastParser struct {
	b []byte
	i int
}

func (p *fastParser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// next skips white space and returns the next byte (0 at the end).
func (p *fastParser) next() byte {
	p.space()
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *fastParser) value(depth int) (any, bool) {
	if depth > maxJSONDepth || p.i >= len(p.b) {
		return nil, false
	}
	switch c := p.b[p.i]; c {
	case '{':
		p.i++
		m := map[string]any{}
		if p.next() == '}' {
			p.i++
			return m, true
		}
		for {
			p.space()
			k, ok := p.str()
			if !ok {
				return nil, false
			}
			if p.next() != ':' {
				return nil, false
			}
			p.i++
			p.space()
			if _, dup := m[k]; dup {
				return nil, false
			}
			v, ok := p.value(depth + 1)
			if !ok {
				return nil, false
			}
			m[k] = v
			switch p.next() {
			case ',':
				p.i++
			case '}':
				p.i++
				return m, true
			default:
				return nil, false
			}
		}
	case '[':
		p.i++
		l := []any{}
		if p.next() == ']' {
			p.i++
			return l, true
		}
		for {
			p.space()
			v, ok := p.value(depth + 1)
			if !ok {
				return nil, false
			}
			l = append(l, v)
			switch p.next() {
			case ',':
				p.i++
			case ']':
				p.i++
				return l, true
			default:
				return nil, false
			}
		}
	case '"':
		return p.str()
	case 't':
		return true, p.literal("true")
	case 'f':
		return false, p.literal("false")
	case 'n':
		return nil, p.literal("null")
	default:
		n := scanNumber(p.b[p.i:])
		if n == 0 {
			return nil, false
		}
		v := json.Number(p.b[p.i : p.i+n])
		p.i += n
		return v, true
	}
}

func (p *fastParser) literal(lit string) bool {
	if !bytes.HasPrefix(p.b[p.i:], []byte(lit)) {
		return false
	}
	p.i += len(lit)
	return true
}

// str reads a string without escapes in valid UTF-8 (which encoding/json decodes to its
// bytes, unchanged); any other string is left to the general path.
func (p *fastParser) str() (string, bool) {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return "", false
	}
	start, ascii := p.i+1, true
	for j := start; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			s := p.b[start:j]
			if !ascii && !utf8.Valid(s) {
				return "", false
			}
			p.i = j + 1
			return string(s), true
		case c == '\\' || c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", false
}

// scanNumber returns the length of the JSON number at the start of b, 0 if there is none:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func scanNumber(b []byte) int {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return 0
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return 0
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return 0
		}
	}
	return i
}

// appendCanonicalJSON appends v as encodeJSON (json.Marshal) writes it, if it can: ok is
// false for values of other types than decodeJSON produces and for invalid numbers.
func appendCanonicalJSON(b []byte, v any) ([]byte, bool) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), true
	case bool:
		if v {
			return append(b, "true"...), true
		}
		return append(b, "false"...), true
	case string:
		return appendJSONString(b, v), true
	case json.Number:
		if n := len(v); n == 0 || scanNumber([]byte(v)) != n {
			return b, false
		}
		return append(b, v...), true
	case map[string]any:
		if v == nil {
			return append(b, "null"...), true
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		return appendSortedObject(b, keys, func(b []byte, k string) ([]byte, bool) { return appendCanonicalJSON(b, v[k]) })
	case []any:
		if v == nil {
			return append(b, "null"...), true
		}
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = appendCanonicalJSON(b, e); !ok {
				return b, false
			}
		}
		return append(b, ']'), true
	}
	return b, false
}

// appendJSONString appends s quoted as encoding/json quotes it (HTML characters escaped).
// Strings that need no escaping are copied; the others are left to encoding/json.
func appendJSONString(b []byte, s string) []byte {
	if plainString(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	q, _ := json.Marshal(s) // a string always encodes
	return append(b, q...)
}

// plainString reports whether encoding/json writes s between quotes unchanged: printable
// ASCII but for '"', '\\' and the HTML characters '<', '>' and '&', and valid UTF-8 but for
// U+2028 and U+2029.
func plainString[S string | []byte](s S) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				return false
			}
			i++
			continue
		}
		var r rune
		var size int
		switch t := any(s).(type) {
		case string:
			r, size = utf8.DecodeRuneInString(t[i:])
		case []byte:
			r, size = utf8.DecodeRune(t[i:])
		}
		if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
			return false
		}
		i += size
	}
	return true
}

// IsCanonicalJSONString reports whether json.Marshal writes s as s between quotes: printable
// ASCII but for '"', '\\' and the HTML characters '<', '>' and '&', and valid UTF-8 but for
// U+2028 and U+2029.
func IsCanonicalJSONString(s string) bool { return plainString(s) }

// IsCanonicalJSON reports whether b is already in the canonical form that Canonical and
// the scope's mutation encoding give JSON: one value, compact, object keys sorted and
// unique, strings spelled as encoding/json spells them (no escapes, valid UTF-8), nesting
// at most maxJSONDepth levels. When it is true, re-encoding b that way gives b unchanged,
// so callers can skip it; when false they re-encode (which may still give b). It allocates
// nothing.
func IsCanonicalJSON(b []byte) bool {
	s := canonScanner{b: b}
	return s.value(0) && s.i == len(b)
}

type canonScanner struct {
	b []byte
	i int
}

func (s *canonScanner) value(depth int) bool {
	if depth > maxJSONDepth || s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '{':
		s.i++
		if s.i < len(s.b) && s.b[s.i] == '}' {
			s.i++
			return true
		}
		var prev []byte
		for {
			k, ok := s.str()
			if !ok || prev != nil && bytes.Compare(prev, k) >= 0 {
				return false
			}
			prev = k
			if s.i >= len(s.b) || s.b[s.i] != ':' {
				return false
			}
			s.i++
			if !s.value(depth + 1) {
				return false
			}
			if s.i >= len(s.b) {
				return false
			}
			switch s.b[s.i] {
			case ',':
				s.i++
			case '}':
				s.i++
				return true
			default:
				return false
			}
		}
	case '[':
		s.i++
		if s.i < len(s.b) && s.b[s.i] == ']' {
			s.i++
			return true
		}
		for {
			if !s.value(depth + 1) {
				return false
			}
			if s.i >= len(s.b) {
				return false
			}
			switch s.b[s.i] {
			case ',':
				s.i++
			case ']':
				s.i++
				return true
			default:
				return false
			}
		}
	case '"':
		_, ok := s.str()
		return ok
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	}
	n := scanNumber(s.b[s.i:])
	s.i += n
	return n > 0
}

func (s *canonScanner) literal(lit string) bool {
	if !bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		return false
	}
	s.i += len(lit)
	return true
}

// str reads a string that encoding/json would write unchanged and returns its contents.
func (s *canonScanner) str() ([]byte, bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false
	}
	start := s.i + 1
	end := bytes.IndexByte(s.b[start:], '"')
	if end < 0 {
		return nil, false
	}
	c := s.b[start : start+end]
	if !plainString(c) {
		return nil, false
	}
	s.i = start + end + 1
	return c, true
}

// ReencodeJSON returns what json.Marshal writes for the generic value a json.Decoder with
// UseNumber decodes from b (keys sorted, compact, numbers as written), if the fast paths
// can tell: ok is false for JSON they leave to encoding/json (escapes, invalid UTF-8,
// duplicate keys, deep nesting) and for anything that is not one JSON value.
func ReencodeJSON(b []byte) (out []byte, ok bool) {
	v, ok := fastDecodeJSON(b)
	if !ok {
		return nil, false
	}
	return appendCanonicalJSON(make([]byte, 0, len(b)), v)
}

// appendSortedObject appends the JSON object of keys, sorted here, each with the value value
// appends; false if a value cannot be appended.
func appendSortedObject(b []byte, keys []string, value func(b []byte, key string) ([]byte, bool)) ([]byte, bool) {
	sort.Strings(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		var ok bool
		if b, ok = value(b, k); !ok {
			return b, false
		}
	}
	return append(b, '}'), true
}
