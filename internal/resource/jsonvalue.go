package resource

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// maxJSONDepth bounds nesting of decoded documents, so hostile input cannot exhaust the stack.
const maxJSONDepth = 64

// decodeJSON decodes exactly one JSON value into generic form: map[string]any, []any,
// string, json.Number, bool or nil. Duplicate object keys, trailing data and nesting deeper
// than maxJSONDepth are errors (path names where). Unlike encoding/json, nothing is
// silently merged.
func decodeJSON(path string, data []byte) (any, error) {
	if v, ok := fastDecodeJSON(data); ok {
		return v, nil
	}
	return decodeJSONTokens(path, data)
}

// decodeJSONTokens is decodeJSON's general path: it decides every input and words the errors.
func decodeJSONTokens(path string, data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec, path, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errorf(path, "unexpected data after the JSON value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder, path string, depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, errorf(path, "nested deeper than %d levels", maxJSONDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, syntaxError(path, err)
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			m := map[string]any{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, syntaxError(path, err)
				}
				k, ok := kt.(string)
				if !ok {
					return nil, errorf(path, "invalid JSON object key")
				}
				if _, dup := m[k]; dup {
					return nil, errorf(field(path, k), "duplicate field")
				}
				v, err := decodeValue(dec, field(path, k), depth+1)
				if err != nil {
					return nil, err
				}
				m[k] = v
			}
			if _, err := dec.Token(); err != nil { // '}'
				return nil, syntaxError(path, err)
			}
			return m, nil
		case '[':
			l := []any{}
			for i := 0; dec.More(); i++ {
				v, err := decodeValue(dec, index(path, i), depth+1)
				if err != nil {
					return nil, err
				}
				l = append(l, v)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, syntaxError(path, err)
			}
			return l, nil
		default:
			return nil, errorf(path, "unexpected %q", rune(t))
		}
	default:
		return t, nil // string, json.Number, bool, nil
	}
}

func syntaxError(path string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errorf(path, "unexpected end of JSON input")
	}
	return errorf(path, "invalid JSON: %v", err)
}

// encodeJSON writes a generic value as compact JSON with sorted object keys (encoding/json
// sorts map keys) and HTML characters escaped, which makes the bytes stable under a
// json.RawMessage round trip through encoding/json.
func encodeJSON(v any) ([]byte, error) {
	if b, ok := appendCanonicalJSON(nil, v); ok {
		return b, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode json: %w", err)
	}
	return b, nil
}

// jsonType names the JSON type of a generic value, for messages.
func jsonType(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}
