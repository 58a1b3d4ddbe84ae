package resource

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// nativeSlow is decodeNativeSpec's general path for a generic value goMatches accepted:
// encoding/json decodes the value's JSON into the struct, which is encoded and normalised.
func nativeSlow(k Kind, generic any) (any, json.RawMessage, error) {
	spec := k.newNative()
	in, err := encodeJSON(generic)
	if err != nil {
		return nil, nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.DisallowUnknownFields()
	if err := dec.Decode(spec); err != nil {
		return nil, nil, err
	}
	out, err := json.Marshal(spec)
	if err != nil {
		return nil, nil, err
	}
	canon, err := normalizeJSON(out)
	return spec, canon, err
}

// FuzzNativeFastPath checks decodeNativeFast against encoding/json: whenever it takes a
// spec, encoding/json decodes the same struct from it and the struct normalises to the
// same bytes.
func FuzzNativeFastPath(f *testing.F) {
	for _, s := range []string{
		`{"target":"x","actions":["resolve","invoke"]}`, `{"target":"a<b>&\u2028é","actions":[]}`,
		`{"target":null,"actions":null}`, `{"actions":[null,"admin"]}`, `{}`,
		`{"ports":[{"name":"http","port":9080,"protocol":"HTTP"}],"exportTo":["*"]}`,
		`{"ports":[{"name":"http","port":90800}]}`, `{"ports":[{"name":"http","port":1.0}]}`, `{"ports":[{"port":-0}]}`,
		`{"ports":[{"name":"http","port":"80"}]}`, `{"ports":null}`, `{"ports":[null]}`,
		`{"service":"web","address":"10.0.0.1","port":80,"lease":7,"labels":{"a":"b","":"c"},"gateway":false,"proxy":""}`,
		`{"service":"web","labels":{"a":null},"lease":18446744073709551615,"gateway":true}`, `{"lease":-1}`, `{"lease":1e3}`,
		`{"domain":"a.demo.mesh","anchors":["a1"],"caCert":""}`, `{"address":"127.0.0.1:1","nodeId":18446744073709551615}`,
		`{"service":"reviews","port":"http"}`, `{"service":"reviews","port":9080}`,
	} {
		for _, k := range kinds {
			if k.Native {
				f.Add(k.Name, []byte(s))
			}
		}
	}
	f.Fuzz(func(t *testing.T, kind string, spec []byte) {
		k, ok := Lookup(kind)
		if !ok || !k.Native {
			return
		}
		generic, err := decodeJSON(specPath, spec)
		if err != nil {
			return
		}
		if !goMatches(generic, reflect.TypeOf(k.newNative()).Elem()) {
			return
		}
		got, gotCanon, ok := decodeNativeFast(k, generic)
		if !ok {
			return
		}
		want, wantCanon, err := nativeSlow(k, generic)
		if err != nil {
			t.Fatalf("%s %s: the fast path takes it, encoding/json fails: %v", kind, spec, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s %s: struct %#v, encoding/json gives %#v", kind, spec, got, want)
		}
		if !bytes.Equal(gotCanon, wantCanon) {
			t.Fatalf("%s %s: canonical %s, encoding/json gives %s", kind, spec, gotCanon, wantCanon)
		}
	})
}

// TestNativeFastPathCoversTheBenchmarkKinds keeps the fast path in use for the kinds the
// benchmarks write: a change that makes it give up on them would pass every other test.
func TestNativeFastPathCoversTheBenchmarkKinds(t *testing.T) {
	for kind, spec := range map[string]string{
		"Alias":    `{"target":"t1.default.demo.mesh","actions":["resolve"]}`,
		"Service":  `{"ports":[{"name":"http","port":9080}]}`,
		"Workload": `{"service":"web","address":"10.0.0.1","port":80,"lease":7,"labels":{"version":"v1"}}`,
	} {
		k, _ := Lookup(kind)
		generic, err := decodeJSON(specPath, []byte(spec))
		if err != nil {
			t.Fatal(err)
		}
		if _, canon, ok := decodeNativeFast(k, generic); !ok {
			t.Errorf("%s: the fast path gives up", kind)
		} else if _, want, _ := nativeSlow(k, generic); !bytes.Equal(canon, want) {
			t.Errorf("%s: canonical %s, want %s", kind, canon, want)
		}
	}
}
