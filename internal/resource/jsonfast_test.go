package resource

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

var jsonSeeds = []string{
	`{}`, `[]`, `null`, `true`, `false`, `0`, `-0`, `1.5e+10`, `-12.0E-3`, `01`, `1.`, `.5`, `1e`, `-`,
	`""`, `"a"`, `"\u0061"`, `"\n"`, `"<&>"`, "\"\u2028\"", "\"\xff\"", "\"é\"", "\"\x7f\"", "\"\x01\"",
	`{"a":1,"a":2}`, `{"b":1,"a":[1,2,{"c":null}]}`, ` { "a" : [ true , false ] } `, `{"a":1}x`, `{"a":1,}`,
	`[1,]`, `{"a"}`, `{"a":}`, `{"a":1 "b":2}`, `{"\u0061":1,"a":2}`, `{"a":{"b":{"c":[[[]]]}}}`,
	`{"a":"b","b":"a"}`, `{"b":"a","a":"b"}`, `{"a":1,"b":2}`, `{"":1}`, `{"a":tru}`, `nul`, `[1 2]`,
	strings.Repeat("[", 64) + strings.Repeat("]", 64), strings.Repeat("[", 65) + strings.Repeat("]", 65),
	strings.Repeat("[", 66) + strings.Repeat("]", 66), "{\"a\":1}\n", "\t[1]",
	`{"actions":["resolve"],"target":"t1.default.demo.mesh"}`,
	`{"ports":[{"name":"http","port":9080}],"exportTo":["*"]}`,
}

// FuzzFastJSON checks that the fast paths agree with the general ones: fastDecodeJSON
// succeeds only with the value decodeJSONTokens gives, appendCanonicalJSON writes what
// json.Marshal writes, and IsCanonicalJSON holds only for JSON that re-encodes to itself.
func FuzzFastJSON(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		slow, serr := decodeJSONTokens("", b)
		fast, ok := fastDecodeJSON(b)
		if ok {
			if serr != nil {
				t.Fatalf("fast path decoded %q, the general path fails: %v", b, serr)
			}
			if !reflect.DeepEqual(fast, slow) {
				t.Fatalf("decode %q: fast %#v, general %#v", b, fast, slow)
			}
		}
		if serr == nil {
			want, err := json.Marshal(slow)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := appendCanonicalJSON(nil, slow)
			if !ok || !bytes.Equal(got, want) {
				t.Fatalf("encode %#v: fast %q (ok %v), json.Marshal %q", slow, got, ok, want)
			}
			if !IsCanonicalJSON(want) && plainValue(slow) {
				t.Fatalf("IsCanonicalJSON(%q) is false", want)
			}
		}
		if IsCanonicalJSON(b) {
			if serr != nil {
				t.Fatalf("IsCanonicalJSON(%q) but it does not decode: %v", b, serr)
			}
			if want, _ := json.Marshal(slow); !bytes.Equal(want, b) {
				t.Fatalf("IsCanonicalJSON(%q) but it encodes to %q", b, want)
			}
			if !ok {
				t.Fatalf("IsCanonicalJSON(%q) but the fast path does not decode it", b)
			}
		}
	})
}

// plainValue reports whether every string of v is one encoding/json writes unescaped.
func plainValue(v any) bool {
	switch v := v.(type) {
	case string:
		return plainString(v)
	case map[string]any:
		for k, e := range v {
			if !plainString(k) || !plainValue(e) {
				return false
			}
		}
	case []any:
		for _, e := range v {
			if !plainValue(e) {
				return false
			}
		}
	}
	return true
}

// FuzzNormalizeFastPaths checks that Normalize gives what it gave before the fast paths
// (decodeJSONTokens, checkGo and the struct decoded from the re-encoded generic value): the
// same canonical spec or the same error.
func FuzzNormalizeFastPaths(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add("Alias", []byte(s))
	}
	for _, s := range []string{
		`{"target":"x","actions":["resolve","invoke"]}`, `{"Target":"x","actions":["resolve"]}`,
		`{"target":"x","actions":["resolve"],"target":"y"}`, `{"target":null,"actions":["admin"]}`,
		`{"target":"x","actions":[null]}`, `{"target":"\u0078","actions":["resolve"]}`,
	} {
		f.Add("Alias", []byte(s))
	}
	for _, s := range []string{
		`{"ports":[{"name":"http","port":9080,"protocol":"HTTP"}],"exportTo":["*"]}`,
		`{"ports":[{"name":"http","port":90800}]}`, `{"ports":[{"name":"http","port":1.0}]}`,
		`{"ports":[{"name":"http","port":"80"}]}`, `{"ports":null}`, `{"ports":[{"Name":"http","port":80}]}`,
	} {
		f.Add("Service", []byte(s))
	}
	for _, s := range []string{
		`{"service":"web","address":"10.0.0.1","port":80,"lease":7,"labels":{"a":"b"}}`,
		`{"service":"web","address":"10.0.0.1","port":80,"lease":7,"labels":{"a":null}}`,
		`{"service":"web","address":"10.0.0.1","port":80,"lease":-1}`,
	} {
		f.Add("Workload", []byte(s))
	}
	f.Add("Delegation", []byte(`{"domain":"a.demo.mesh","anchors":["a1"],"caCert":""}`))
	f.Add("Anchor", []byte(`{"address":"127.0.0.1:1","nodeId":18446744073709551615}`))
	f.Add("VirtualService", []byte(`{"hosts":["reviews"],"http":[{"route":[{"destination":{"host":"reviews"}}],"timeout":"2s"}]}`))
	f.Fuzz(func(t *testing.T, kind string, spec []byte) {
		k, ok := Lookup(kind)
		if !ok {
			return
		}
		o := Object{Kind: kind, Namespace: testNS, Name: "x", Spec: spec}
		got, gerr := Normalize(o)
		wantSpec, werr := slowNormalizeSpec(k, spec)
		if (gerr == nil) != (werr == nil) {
			// Normalize also runs the kind's semantic checks; only a decode error must agree.
			if werr != nil {
				t.Fatalf("%s %q: Normalize accepts it, the general path fails: %v", kind, spec, werr)
			}
			return
		}
		if werr != nil {
			if _, err := Canonical(kind, spec); err == nil || err.Error() != werr.Error() {
				t.Fatalf("%s %q: error %v, the general path's %v", kind, spec, err, werr)
			}
			return
		}
		if !bytes.Equal(got.Spec, wantSpec) {
			t.Fatalf("%s %q: spec %q, the general path gives %q", kind, spec, got.Spec, wantSpec)
		}
	})
}

// slowNormalizeSpec is decodeSpec without the fast paths, as it was before them.
func slowNormalizeSpec(k Kind, spec []byte) (json.RawMessage, error) {
	var generic any = map[string]any{}
	if t := bytes.TrimSpace(spec); len(t) > 0 && !bytes.Equal(t, []byte("null")) {
		v, err := decodeJSONTokens(specPath, t)
		if err != nil {
			return nil, err
		}
		if _, ok := v.(map[string]any); !ok {
			return nil, errorf(specPath, "must be an object, not %s", jsonType(v))
		}
		generic = v
	}
	slowNormalize := func(b []byte) (json.RawMessage, error) {
		v, err := decodeJSONTokens("", b)
		if err != nil {
			return nil, err
		}
		return json.Marshal(v)
	}
	if !k.Native {
		_, canon, err := decodeProtoSpec(k, generic)
		return canon, err
	}
	spec2 := k.newNative()
	if err := checkGo(specPath, generic, reflect.TypeOf(spec2).Elem()); err != nil {
		return nil, err
	}
	in, err := json.Marshal(generic)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.DisallowUnknownFields()
	if err := dec.Decode(spec2); err != nil {
		return nil, errorf(specPath, "%v", err)
	}
	out, err := json.Marshal(spec2)
	if err != nil {
		return nil, err
	}
	return slowNormalize(out)
}

// FuzzCanonicalIsValid checks that IsCanonicalJSON accepts only valid JSON (callers skip
// json.Valid for what it accepts).
func FuzzCanonicalIsValid(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"a":[1,-0.5e+3,true,null,"x"],"b":{}}`))
	f.Add([]byte(`01`))
	f.Add([]byte("\"\x7f\""))
	f.Fuzz(func(t *testing.T, b []byte) {
		if IsCanonicalJSON(b) && !json.Valid(b) {
			t.Fatalf("IsCanonicalJSON accepts %q, which is not valid JSON", b)
		}
	})
}
