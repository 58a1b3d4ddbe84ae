package scope

import (
	"bytes"
	"encoding/json"
	"sort"
	"strconv"
	"unicode/utf8"

	"canton.dev/canton/internal/resource"
)

// decodeFast decodes what Encode writes for the common mutations (put, delete, rename, noop)
// without encoding/json's reflection and second pass. It understands a subset of what
// Decode's json.Decoder accepts: each known field at most once, spelled exactly as Encode
// spells it; strings without escapes, in valid UTF-8; integers without fraction or
// exponent; no null. For anything else (another op's fields, a duplicate or unknown key, a
// syntax error, ...) ok is false and Decode takes the general path, which decides and words
// the error. When ok is true, m is what the json.Decoder gives (FuzzDecodeFast checks it).
func decodeFast(b []byte) (m Mutation, ok bool) {
	p := mparser{b: b}
	if !p.object(func(key []byte) bool {
		switch string(key) {
		case "op":
			s, ok := p.str()
			m.Op = Op(s)
			return ok
		case "proposer":
			m.Proposer, ok = p.str()
			return ok
		case "time":
			m.Time, ok = p.str()
			return ok
		case "rules":
			n, ok := p.int()
			m.Rules = int(n)
			return ok
		case "objects":
			return p.array(func() bool {
				o, ok := p.resourceObject()
				m.Objects = append(m.Objects, o)
				return ok
			}) && len(m.Objects) > 0
		case "ifVersions":
			return p.array(func() bool {
				if p.literal("null") {
					m.IfVersions = append(m.IfVersions, nil)
					return true
				}
				n, ok := p.uint()
				m.IfVersions = append(m.IfVersions, &n)
				return ok
			}) && len(m.IfVersions) > 0
		case "kind":
			m.Kind, ok = p.str()
			return ok
		case "namespace":
			m.Namespace, ok = p.str()
			return ok
		case "name":
			m.Name, ok = p.str()
			return ok
		case "ifVersion":
			n, ok := p.uint()
			m.IfVersion = &n
			return ok
		case "newName":
			m.NewName, ok = p.str()
			return ok
		}
		return false
	}) {
		return Mutation{}, false
	}
	p.space()
	return m, p.i == len(p.b)
}

// DecodeObjects decodes a JSON array of one or more objects, as the anchor API carries
// them, without encoding/json: it takes what decodeFast takes of a mutation's objects (each
// known field at most once and spelled exactly, strings without escapes, ...), and the array
// alone, white space around it. ok is false for anything else — an empty array, null, an
// unknown or misspelt field, trailing data — and the caller decodes with a json.Decoder
// (unknown fields disallowed), which decides and words the error; when ok is true, objs is
// what that decoder gives (FuzzDecodeObjects checks it).
func DecodeObjects(b []byte) (objs []resource.Object, ok bool) {
	p := mparser{b: b}
	if !p.array(func() bool {
		o, ok := p.resourceObject()
		objs = append(objs, o)
		return ok
	}) || len(objs) == 0 {
		return nil, false
	}
	p.space()
	return objs, p.i == len(p.b)
}

// EncodeObjects writes objs as json.Marshal does, as the anchor API returns them, when
// every string needs no escaping and every spec is canonical JSON (as stored objects'
// are); ok is false for anything else, and for no objects, and the caller takes
// json.Marshal. FuzzEncodeObjects checks that both agree.
func EncodeObjects(objs []resource.Object) (b []byte, ok bool) {
	if len(objs) == 0 {
		return nil, false
	}
	size := 2
	for _, o := range objs {
		size += 160 + len(o.Spec)
	}
	w := jwriter{b: make([]byte, 0, size), ok: true}
	w.raw("[")
	for i, o := range objs {
		if i > 0 {
			w.raw(",")
		}
		w.object(o)
	}
	w.raw("]")
	return w.b, w.ok
}

// mparser is decodeFast's reader. Its methods skip white space before what they read.
type mparser struct {
	b    []byte
	i    int
	keys [][]byte // keys of the objects being read, to refuse duplicates
}

func (p *mparser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *mparser) peek(c byte) bool {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *mparser) literal(lit string) bool {
	p.space()
	if bytes.HasPrefix(p.b[p.i:], []byte(lit)) {
		p.i += len(lit)
		return true
	}
	return false
}

// object reads a JSON object, calling field with each key positioned at its value. A
// duplicate key, or field returning false, fails it.
func (p *mparser) object(field func(key []byte) bool) bool {
	if !p.peek('{') {
		return false
	}
	base := len(p.keys)
	defer func() { p.keys = p.keys[:base] }()
	if p.peek('}') {
		return true
	}
	for {
		k, ok := p.rawStr()
		if !ok || !p.peek(':') {
			return false
		}
		for _, seen := range p.keys[base:] {
			if bytes.Equal(seen, k) {
				return false
			}
		}
		p.keys = append(p.keys, k)
		if !field(k) {
			return false
		}
		if p.peek(',') {
			continue
		}
		return p.peek('}')
	}
}

// array reads a JSON array, calling elem positioned at each element.
func (p *mparser) array(elem func() bool) bool {
	if !p.peek('[') {
		return false
	}
	if p.peek(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if p.peek(',') {
			continue
		}
		return p.peek(']')
	}
}

// rawStr reads a string without escapes or control characters, in valid UTF-8 (which
// encoding/json decodes to its bytes unchanged), and returns its bytes.
func (p *mparser) rawStr() ([]byte, bool) {
	p.space()
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return nil, false
	}
	start, ascii := p.i+1, true
	for j := start; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			s := p.b[start:j]
			if !ascii && !utf8.Valid(s) {
				return nil, false
			}
			p.i = j + 1
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

func (p *mparser) str() (string, bool) {
	s, ok := p.rawStr()
	return string(s), ok
}

// digits reads an integer as JSON spells it (-?(0|[1-9][0-9]*)) when no fraction or
// exponent follows.
func (p *mparser) digits() ([]byte, bool) {
	p.space()
	start := p.i
	if p.i < len(p.b) && p.b[p.i] == '-' {
		p.i++
	}
	d := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	if p.i == d || p.b[d] == '0' && p.i > d+1 {
		return nil, false
	}
	if p.i < len(p.b) {
		switch p.b[p.i] {
		case '.', 'e', 'E':
			return nil, false
		}
	}
	return p.b[start:p.i], true
}

func (p *mparser) uint() (uint64, bool) {
	d, ok := p.digits()
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(string(d), 10, 64)
	return n, err == nil
}

func (p *mparser) int() (int64, bool) {
	d, ok := p.digits()
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(string(d), 10, 64)
	return n, err == nil
}

// stringMap reads an object of strings into a new map (encoding/json makes one even for {}).
func (p *mparser) stringMap() (map[string]string, bool) {
	m := map[string]string{}
	return m, p.object(func(k []byte) bool {
		v, ok := p.str()
		m[string(k)] = v
		return ok
	})
}

// rawValue reads any JSON value but null and returns its bytes, as a json.RawMessage
// receives them. It finds where the value ends, then json.Valid checks it; values nested
// deeper than maxRawDepth are left to the general path (encoding/json limits the nesting of
// the whole mutation, not of the value alone).
func (p *mparser) rawValue() ([]byte, bool) {
	const maxRawDepth = 1000
	p.space()
	start := p.i
	depth := 0
scan:
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch c {
		case '"':
			p.i++
			for p.i < len(p.b) && p.b[p.i] != '"' {
				if p.b[p.i] == '\\' {
					p.i++
				}
				p.i++
			}
			if p.i >= len(p.b) {
				return nil, false
			}
			p.i++
		case '{', '[':
			if depth++; depth > maxRawDepth {
				return nil, false
			}
			p.i++
		case '}', ']':
			if depth == 0 {
				break scan
			}
			depth--
			p.i++
		case ',', ':', ' ', '\t', '\n', '\r':
			if depth == 0 {
				break scan
			}
			p.i++
		default:
			p.i++
		}
		if depth == 0 && (c == '"' || c == '}' || c == ']') {
			break // a whole string, object or list
		}
	}
	v := p.b[start:p.i]
	// A canonical value (what Encode writes) is valid JSON, and checking that it is costs
	// less than json.Valid.
	if len(v) == 0 || bytes.Equal(v, []byte("null")) || !resource.IsCanonicalJSON(v) && !json.Valid(v) {
		return nil, false
	}
	return v, true
}

// resourceObject reads a resource.Object.
func (p *mparser) resourceObject() (resource.Object, bool) {
	var o resource.Object
	ok := p.object(func(k []byte) bool {
		var ok bool
		switch string(k) {
		case "kind":
			o.Kind, ok = p.str()
		case "namespace":
			o.Namespace, ok = p.str()
		case "name":
			o.Name, ok = p.str()
		case "labels":
			o.Labels, ok = p.stringMap()
		case "annotations":
			o.Annotations, ok = p.stringMap()
		case "spec":
			var v []byte
			v, ok = p.rawValue()
			o.Spec = append(json.RawMessage(nil), v...)
		case "uid":
			o.UID, ok = p.str()
		case "version":
			o.Version, ok = p.uint()
		case "created":
			o.Created, ok = p.uint()
		case "vips":
			ok = p.array(func() bool {
				s, ok := p.str()
				o.VIPs = append(o.VIPs, s)
				return ok
			}) && len(o.VIPs) > 0
		}
		return ok
	})
	return o, ok
}

// encodeFast writes m as json.Marshal does, for the mutations decodeFast reads, when every
// string needs no escaping and every spec is canonical JSON (resource.IsCanonicalJSON:
// json.Marshal's compaction of a json.RawMessage leaves it unchanged). ok is false for
// anything else, and Encode takes json.Marshal. FuzzEncodeFast checks that both agree.
func encodeFast(m Mutation) (b []byte, ok bool) {
	if m.Lease != nil || len(m.LeaseIDs) > 0 || m.Genesis != nil || m.Governance != nil {
		return nil, false
	}
	size := 128 + len(m.Proposer)
	for _, o := range m.Objects {
		size += 128 + len(o.Spec)
	}
	w := jwriter{b: make([]byte, 0, size), ok: true}
	w.raw(`{"op":`)
	w.str(string(m.Op))
	w.raw(`,"proposer":`)
	w.str(m.Proposer)
	if m.Time != "" {
		w.raw(`,"time":`)
		w.str(m.Time)
	}
	if m.Rules != 0 {
		w.raw(`,"rules":`)
		w.b = strconv.AppendInt(w.b, int64(m.Rules), 10)
	}
	if len(m.Objects) > 0 {
		w.raw(`,"objects":[`)
		for i, o := range m.Objects {
			if i > 0 {
				w.raw(",")
			}
			w.object(o)
		}
		w.raw("]")
	}
	if len(m.IfVersions) > 0 {
		w.raw(`,"ifVersions":[`)
		for i, v := range m.IfVersions {
			if i > 0 {
				w.raw(",")
			}
			if v == nil {
				w.raw("null")
			} else {
				w.b = strconv.AppendUint(w.b, *v, 10)
			}
		}
		w.raw("]")
	}
	w.optStr(`,"kind":`, m.Kind)
	w.optStr(`,"namespace":`, m.Namespace)
	w.optStr(`,"name":`, m.Name)
	if m.IfVersion != nil {
		w.raw(`,"ifVersion":`)
		w.b = strconv.AppendUint(w.b, *m.IfVersion, 10)
	}
	w.optStr(`,"newName":`, m.NewName)
	w.raw("}")
	return w.b, w.ok
}

type jwriter struct {
	b  []byte
	ok bool // false once something needed json.Marshal
}

func (w *jwriter) raw(s string) { w.b = append(w.b, s...) }

func (w *jwriter) str(s string) {
	if !resource.IsCanonicalJSONString(s) {
		w.ok = false
		return
	}
	w.b = append(w.b, '"')
	w.b = append(w.b, s...)
	w.b = append(w.b, '"')
}

func (w *jwriter) optStr(key, s string) {
	if s != "" {
		w.raw(key)
		w.str(s)
	}
}

func (w *jwriter) strings(m map[string]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	w.raw("{")
	for i, k := range keys {
		if i > 0 {
			w.raw(",")
		}
		w.str(k)
		w.raw(":")
		w.str(m[k])
	}
	w.raw("}")
}

func (w *jwriter) object(o resource.Object) {
	w.raw(`{"kind":`)
	w.str(o.Kind)
	w.raw(`,"namespace":`)
	w.str(o.Namespace)
	w.raw(`,"name":`)
	w.str(o.Name)
	if len(o.Labels) > 0 {
		w.raw(`,"labels":`)
		w.strings(o.Labels)
	}
	if len(o.Annotations) > 0 {
		w.raw(`,"annotations":`)
		w.strings(o.Annotations)
	}
	w.raw(`,"spec":`)
	switch {
	case o.Spec == nil:
		w.raw("null")
	case resource.IsCanonicalJSON(o.Spec):
		w.b = append(w.b, o.Spec...)
	default:
		w.ok = false
	}
	w.optStr(`,"uid":`, o.UID)
	if o.Version != 0 {
		w.raw(`,"version":`)
		w.b = strconv.AppendUint(w.b, o.Version, 10)
	}
	if o.Created != 0 {
		w.raw(`,"created":`)
		w.b = strconv.AppendUint(w.b, o.Created, 10)
	}
	if len(o.VIPs) > 0 {
		w.raw(`,"vips":[`)
		for i, v := range o.VIPs {
			if i > 0 {
				w.raw(",")
			}
			w.str(v)
		}
		w.raw("]")
	}
	w.raw("}")
}
