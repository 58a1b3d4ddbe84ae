package resource

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// checkProto walks a generic JSON value against a message descriptor before protojson sees
// it, so that errors carry a field path: unknown fields, wrong JSON types, unknown enum
// values, out-of-range numbers, two members of one oneof. It also rewrites
// google.protobuf.Duration values written the Go/Istio way ("5m", "100ms") into the
// seconds form protojson accepts ("300s", "0.1s"), since Istio users write them so.
// It returns the (possibly rewritten) value.
func checkProto(path string, v any, md protoreflect.MessageDescriptor) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch md.FullName() {
	case "google.protobuf.Duration":
		return normalizeDuration(path, v)
	case "google.protobuf.Timestamp", "google.protobuf.FieldMask":
		if _, ok := v.(string); !ok {
			return nil, errorf(path, "must be a string, not %s", jsonType(v))
		}
		return v, nil
	case "google.protobuf.Struct":
		if _, ok := v.(map[string]any); !ok {
			return nil, errorf(path, "must be an object, not %s", jsonType(v))
		}
		return v, nil
	case "google.protobuf.ListValue":
		if _, ok := v.([]any); !ok {
			return nil, errorf(path, "must be a list, not %s", jsonType(v))
		}
		return v, nil
	case "google.protobuf.Value", "google.protobuf.Any":
		return v, nil
	case "google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue",
		"google.protobuf.Int32Value", "google.protobuf.UInt32Value", "google.protobuf.Int64Value",
		"google.protobuf.UInt64Value", "google.protobuf.FloatValue", "google.protobuf.DoubleValue":
		return checkScalar(path, v, md.Fields().ByName("value"))
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, errorf(path, "must be an object, not %s", jsonType(v))
	}
	fields := md.Fields()
	out := make(map[string]any, len(obj))
	seenField := map[protoreflect.FieldNumber]string{}
	seenOneof := map[protoreflect.FullName]string{}
	for _, k := range sortedKeys(obj) {
		p := field(path, k)
		fd := fields.ByJSONName(k)
		if fd == nil {
			fd = fields.ByName(protoreflect.Name(k))
		}
		if fd == nil {
			return nil, errorf(p, "unknown field %q%s", k, suggestField(k, fields))
		}
		if other, dup := seenField[fd.Number()]; dup {
			return nil, errorf(p, "duplicate field (also given as %q)", other)
		}
		seenField[fd.Number()] = k
		val := obj[k]
		if val == nil && fd.Message() != nil && fd.Message().FullName() == "google.protobuf.Value" && !fd.IsList() && !fd.IsMap() {
			out[k] = nil
			continue
		}
		if val == nil {
			continue // null means "not set" in protojson
		}
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			if other, dup := seenOneof[od.FullName()]; dup {
				return nil, errorf(p, "cannot be set together with %q (only one of them may be set)", other)
			}
			seenOneof[od.FullName()] = k
		}
		nv, err := checkField(p, val, fd)
		if err != nil {
			return nil, err
		}
		out[k] = nv
	}
	return out, nil
}

func checkField(path string, v any, fd protoreflect.FieldDescriptor) (any, error) {
	switch {
	case fd.IsList():
		l, ok := v.([]any)
		if !ok {
			return nil, errorf(path, "must be a list, not %s", jsonType(v))
		}
		out := make([]any, len(l))
		for i, e := range l {
			p := index(path, i)
			if e == nil {
				return nil, errorf(p, "null is not allowed in a list")
			}
			ne, err := checkSingular(p, e, fd)
			if err != nil {
				return nil, err
			}
			out[i] = ne
		}
		return out, nil
	case fd.IsMap():
		m, ok := v.(map[string]any)
		if !ok {
			return nil, errorf(path, "must be an object (a map), not %s", jsonType(v))
		}
		out := make(map[string]any, len(m))
		for _, k := range sortedKeys(m) {
			p := key(path, k)
			if err := checkMapKey(p, k, fd.MapKey()); err != nil {
				return nil, err
			}
			if m[k] == nil {
				return nil, errorf(p, "null is not allowed as a map value")
			}
			nv, err := checkSingular(p, m[k], fd.MapValue())
			if err != nil {
				return nil, err
			}
			out[k] = nv
		}
		return out, nil
	}
	return checkSingular(path, v, fd)
}

func checkSingular(path string, v any, fd protoreflect.FieldDescriptor) (any, error) {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return checkProto(path, v, fd.Message())
	case protoreflect.EnumKind:
		return checkEnum(path, v, fd.Enum())
	}
	return checkScalar(path, v, fd)
}

func checkEnum(path string, v any, ed protoreflect.EnumDescriptor) (any, error) {
	values := ed.Values()
	switch t := v.(type) {
	case string:
		if values.ByName(protoreflect.Name(t)) != nil {
			return t, nil
		}
	case json.Number:
		if n, err := strconv.ParseInt(string(t), 10, 32); err == nil && values.ByNumber(protoreflect.EnumNumber(n)) != nil {
			return t, nil
		}
	default:
		return nil, errorf(path, "must be a string, not %s", jsonType(v))
	}
	names := make([]string, 0, values.Len())
	for i := 0; i < values.Len(); i++ {
		names = append(names, string(values.Get(i).Name()))
	}
	return nil, errorf(path, "unknown value %v (want one of %s)", quoteValue(v), strings.Join(names, ", "))
}

func quoteValue(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return jsonString(v)
}

func jsonString(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "?"
	}
	return string(b)
}

func checkMapKey(path, k string, fd protoreflect.FieldDescriptor) error {
	var err error
	switch fd.Kind() {
	case protoreflect.StringKind:
		return nil
	case protoreflect.BoolKind:
		if k != "true" && k != "false" {
			return errorf(path, "map key must be true or false")
		}
		return nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		_, err = strconv.ParseInt(k, 10, 32)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		_, err = strconv.ParseInt(k, 10, 64)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		_, err = strconv.ParseUint(k, 10, 32)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		_, err = strconv.ParseUint(k, 10, 64)
	}
	if err != nil {
		return errorf(path, "map key must be an integer of type %s", fd.Kind())
	}
	return nil
}

// checkScalar checks a scalar field value and returns it in the form protojson accepts.
func checkScalar(path string, v any, fd protoreflect.FieldDescriptor) (any, error) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		if _, ok := v.(string); !ok {
			return nil, errorf(path, "must be a string, not %s", jsonType(v))
		}
	case protoreflect.BytesKind:
		s, ok := v.(string)
		if !ok {
			return nil, errorf(path, "must be a base64 string, not %s", jsonType(v))
		}
		if _, err := base64.StdEncoding.DecodeString(s); err != nil {
			if _, err2 := base64.URLEncoding.DecodeString(s); err2 != nil {
				if _, err3 := base64.RawStdEncoding.DecodeString(s); err3 != nil {
					if _, err4 := base64.RawURLEncoding.DecodeString(s); err4 != nil {
						return nil, errorf(path, "must be base64")
					}
				}
			}
		}
	case protoreflect.BoolKind:
		if _, ok := v.(bool); !ok {
			return nil, errorf(path, "must be true or false, not %s", jsonType(v))
		}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return checkInt(path, v, math.MinInt32, math.MaxInt32)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return checkInt(path, v, math.MinInt64, math.MaxInt64)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return checkUint(path, v, math.MaxUint32)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return checkUint(path, v, math.MaxUint64)
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		switch t := v.(type) {
		case json.Number:
			if _, err := strconv.ParseFloat(string(t), 64); err != nil {
				return nil, errorf(path, "number %s is out of range", t)
			}
		case string:
			if t != "NaN" && t != "Infinity" && t != "-Infinity" {
				if _, err := strconv.ParseFloat(t, 64); err != nil {
					return nil, errorf(path, "must be a number, not %q", t)
				}
			}
		default:
			return nil, errorf(path, "must be a number, not %s", jsonType(v))
		}
	}
	return v, nil
}

// numberText returns the text of a number given as a JSON number or a quoted number.
func numberText(path string, v any) (string, error) {
	switch t := v.(type) {
	case json.Number:
		return string(t), nil
	case string:
		return strings.TrimSpace(t), nil
	}
	return "", errorf(path, "must be an integer, not %s", jsonType(v))
}

func checkInt(path string, v any, lo, hi int64) (any, error) {
	s, err := numberText(path, v)
	if err != nil {
		return nil, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return nil, errorf(path, "must be an integer in %d..%d, not %s", lo, hi, s)
	}
	if n < lo || n > hi {
		return nil, errorf(path, "%d is out of range %d..%d", n, lo, hi)
	}
	return json.Number(strconv.FormatInt(n, 10)), nil
}

func checkUint(path string, v any, hi uint64) (any, error) {
	s, err := numberText(path, v)
	if err != nil {
		return nil, err
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return nil, errorf(path, "must be an integer in 0..%d, not %s", hi, s)
	}
	if n > hi {
		return nil, errorf(path, "%d is out of range 0..%d", n, hi)
	}
	if hi == math.MaxUint64 {
		return strconv.FormatUint(n, 10), nil // protojson's form for 64-bit integers
	}
	return json.Number(strconv.FormatUint(n, 10)), nil
}

// normalizeDuration accepts a Go duration string ("1h30m", "100ms", "5s", "-2s") and returns
// it as protojson wants it: seconds with up to nine fractional digits and an "s" suffix.
func normalizeDuration(path string, v any) (any, error) {
	s, ok := v.(string)
	if !ok {
		return nil, errorf(path, "must be a duration string such as \"5s\" or \"100ms\", not %s", jsonType(v))
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return nil, errorf(path, "invalid duration %q: use a number with a unit, such as \"5s\", \"100ms\" or \"1m\"", s)
	}
	return formatDuration(d), nil
}

func formatDuration(d time.Duration) string {
	sign := ""
	u := uint64(d)
	if d < 0 {
		sign = "-"
		u = uint64(-d) // d = MinInt64 wraps to itself, which as uint64 is the right magnitude
	}
	sec, nsec := u/1e9, u%1e9
	if nsec == 0 {
		return sign + strconv.FormatUint(sec, 10) + "s"
	}
	frac := strings.TrimRight(strconv.FormatUint(nsec+1e9, 10)[1:], "0")
	return sign + strconv.FormatUint(sec, 10) + "." + frac + "s"
}

// suggestField returns ` (did you mean "x"?)` when a field differs from k only in case or in
// '_' vs camelCase, else "".
func suggestField(k string, fields protoreflect.FieldDescriptors) string {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "")) }
	for i := 0; i < fields.Len(); i++ {
		if norm(fields.Get(i).JSONName()) == norm(k) {
			return ` (did you mean "` + fields.Get(i).JSONName() + `"?)`
		}
	}
	return ""
}
