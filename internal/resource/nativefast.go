package resource

import (
	"encoding"
	"encoding/json"
	"reflect"
	"sort"
	"strconv"
	"sync"
	"unicode/utf8"
)

// A fast path for the spec structs of the native kinds: decodeNativeSpec decodes the spec
// with encoding/json (a second parse of the JSON) and gets its canonical bytes by encoding
// the struct and normalising that (a third parse, and a re-encoding). Once goMatches has
// passed, the generic value already decoded has every field by its exact name and of a
// type the struct accepts, so the struct can be filled from it directly, and its canonical
// encoding written from the struct with the fields in name order. Both give up (ok false)
// on anything whose encoding/json behaviour they do not reproduce — a type with its own
// JSON or text methods, floats, interfaces, byte slices, embedded structs, the ",string"
// option, a number out of range or not an integer, invalid UTF-8 — and decodeNativeSpec
// then takes the general path, which decides and words any error. FuzzNativeFastPath checks
// both against encoding/json.

// nativeType describes how the fast path handles one Go type; nil: it does not.
type nativeType struct {
	kind   reflect.Kind
	elem   *nativeType   // slices, maps, pointers
	fields []nativeField // structs, sorted by JSON name
	byName map[string]int
}

type nativeField struct {
	name      string
	index     int
	omitEmpty bool
	t         *nativeType
}

var nativeTypes sync.Map // reflect.Type -> *nativeType (nil: not handled)

var (
	jsonMarshalerType   = reflect.TypeFor[json.Marshaler]()
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textMarshalerType   = reflect.TypeFor[encoding.TextMarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func nativeTypeOf(t reflect.Type) *nativeType {
	if v, ok := nativeTypes.Load(t); ok {
		return v.(*nativeType)
	}
	nt := buildNativeType(t, 0)
	nativeTypes.Store(t, nt)
	return nt
}

func buildNativeType(t reflect.Type, depth int) *nativeType {
	if depth > 16 { // also ends recursive types
		return nil
	}
	for _, i := range []reflect.Type{jsonMarshalerType, jsonUnmarshalerType, textMarshalerType, textUnmarshalerType} {
		if t.Implements(i) || reflect.PointerTo(t).Implements(i) {
			return nil
		}
	}
	nt := &nativeType{kind: t.Kind()}
	switch t.Kind() {
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return nil // []byte is base64 in JSON
		}
		if nt.elem = buildNativeType(t.Elem(), depth+1); nt.elem == nil {
			return nil
		}
	case reflect.Pointer:
		if nt.elem = buildNativeType(t.Elem(), depth+1); nt.elem == nil {
			return nil
		}
	case reflect.Map:
		if t.Key().Kind() != reflect.String || buildNativeType(t.Key(), depth+1) == nil {
			return nil
		}
		if nt.elem = buildNativeType(t.Elem(), depth+1); nt.elem == nil {
			return nil
		}
	case reflect.Struct:
		nt.byName = map[string]int{}
		for i := range t.NumField() {
			sf := t.Field(i)
			if sf.Anonymous {
				return nil
			}
			if !sf.IsExported() {
				continue
			}
			tag := sf.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := cutComma(tag)
			if name == "" {
				name = sf.Name
			}
			f := nativeField{name: name, index: i}
			for opts != "" {
				var o string
				o, opts, _ = cutComma(opts)
				switch o {
				case "omitempty":
					f.omitEmpty = true
				default:
					return nil // ",string", ",omitzero", ...
				}
			}
			if !plainString(name) {
				return nil
			}
			if _, dup := nt.byName[name]; dup {
				return nil
			}
			if f.t = buildNativeType(sf.Type, depth+1); f.t == nil {
				return nil
			}
			nt.byName[name] = len(nt.fields)
			nt.fields = append(nt.fields, f)
		}
		sort.Slice(nt.fields, func(i, j int) bool { return nt.fields[i].name < nt.fields[j].name })
		for i, f := range nt.fields {
			nt.byName[f.name] = i
		}
	default:
		return nil
	}
	return nt
}

func cutComma(s string) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// fillNative sets v, a zero value of nt's type, to what encoding/json decodes from the
// JSON of the generic value g (which goMatches accepted for the type); false: it cannot
// tell, and v may be partly set.
func fillNative(v reflect.Value, g any, nt *nativeType) bool {
	if g == nil {
		return true // null leaves a value as it is (zero), and sets pointers, slices and maps to nil
	}
	switch nt.kind {
	case reflect.String:
		s, ok := g.(string)
		if !ok || !utf8.ValidString(s) {
			return false
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := g.(bool)
		if !ok {
			return false
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := g.(json.Number)
		if !ok {
			return false
		}
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil || v.OverflowInt(i) {
			return false
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := g.(json.Number)
		if !ok {
			return false
		}
		u, err := strconv.ParseUint(string(n), 10, 64)
		if err != nil || v.OverflowUint(u) {
			return false
		}
		v.SetUint(u)
	case reflect.Slice:
		l, ok := g.([]any)
		if !ok {
			return false
		}
		s := reflect.MakeSlice(v.Type(), len(l), len(l))
		for i, e := range l {
			if !fillNative(s.Index(i), e, nt.elem) {
				return false
			}
		}
		v.Set(s)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		if !fillNative(p.Elem(), g, nt.elem) {
			return false
		}
		v.Set(p)
	case reflect.Map:
		m, ok := g.(map[string]any)
		if !ok {
			return false
		}
		t := v.Type()
		out := reflect.MakeMapWithSize(t, len(m))
		for k, e := range m {
			if !utf8.ValidString(k) {
				return false
			}
			ev := reflect.New(t.Elem()).Elem()
			if !fillNative(ev, e, nt.elem) {
				return false
			}
			out.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), ev)
		}
		v.Set(out)
	case reflect.Struct:
		m, ok := g.(map[string]any)
		if !ok {
			return false
		}
		for k, e := range m {
			i, ok := nt.byName[k]
			if !ok {
				return false
			}
			f := nt.fields[i]
			if !fillNative(v.Field(f.index), e, f.t) {
				return false
			}
		}
	default:
		return false
	}
	return true
}

// appendNativeCanonical appends the canonical JSON of v — what normalizeJSON gives for
// encoding/json's encoding of v; false: it cannot tell.
func appendNativeCanonical(b []byte, v reflect.Value, nt *nativeType, depth int) ([]byte, bool) {
	if depth > maxJSONDepth {
		return b, false
	}
	switch nt.kind {
	case reflect.String:
		s := v.String()
		if !utf8.ValidString(s) {
			return b, false // encoding/json would replace the bad bytes
		}
		return appendJSONString(b, s), true
	case reflect.Bool:
		return strconv.AppendBool(b, v.Bool()), true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.AppendInt(b, v.Int(), 10), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.AppendUint(b, v.Uint(), 10), true
	case reflect.Slice:
		if v.IsNil() {
			return append(b, "null"...), true
		}
		b = append(b, '[')
		for i := range v.Len() {
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = appendNativeCanonical(b, v.Index(i), nt.elem, depth+1); !ok {
				return b, false
			}
		}
		return append(b, ']'), true
	case reflect.Pointer:
		if v.IsNil() {
			return append(b, "null"...), true
		}
		return appendNativeCanonical(b, v.Elem(), nt.elem, depth)
	case reflect.Map:
		if v.IsNil() {
			return append(b, "null"...), true
		}
		keys := make([]string, 0, v.Len())
		for it := v.MapRange(); it.Next(); {
			k := it.Key().String()
			if !utf8.ValidString(k) {
				return b, false
			}
			keys = append(keys, k)
		}
		return appendSortedObject(b, keys, func(b []byte, k string) ([]byte, bool) {
			return appendNativeCanonical(b, v.MapIndex(reflect.ValueOf(k).Convert(v.Type().Key())), nt.elem, depth+1)
		})
	case reflect.Struct:
		b = append(b, '{')
		first := true
		for _, f := range nt.fields {
			fv := v.Field(f.index)
			if f.omitEmpty && emptyJSONValue(fv) {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendJSONString(b, f.name)
			b = append(b, ':')
			var ok bool
			if b, ok = appendNativeCanonical(b, fv, f.t, depth+1); !ok {
				return b, false
			}
		}
		return append(b, '}'), true
	}
	return b, false
}

// emptyJSONValue is encoding/json's test for omitempty.
func emptyJSONValue(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool:
		return !v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return v.Uint() == 0
	case reflect.Float32, reflect.Float64:
		return v.Float() == 0
	case reflect.Interface, reflect.Pointer:
		return v.IsNil()
	}
	return false
}

// decodeNativeFast is decodeNativeSpec's fast path for a spec whose generic form goMatches
// accepted: the struct and its canonical JSON, or ok false.
func decodeNativeFast(k Kind, generic any) (any, json.RawMessage, bool) {
	spec := k.newNative()
	v := reflect.ValueOf(spec).Elem()
	nt := nativeTypeOf(v.Type())
	if nt == nil || !fillNative(v, generic, nt) {
		return nil, nil, false
	}
	canon, ok := appendNativeCanonical(nil, v, nt, 0)
	if !ok {
		return nil, nil, false
	}
	return spec, canon, true
}
