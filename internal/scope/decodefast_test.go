package scope

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"canton.dev/canton/internal/resource"
)

// FuzzDecodeFast checks that decodeFast decodes only what the general path decodes, to the
// same Mutation.
func FuzzDecodeFast(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "mutations.golden")); err == nil {
		for _, line := range bytes.Split(b, []byte("\n")) {
			if len(line) > 0 {
				f.Add(line)
			}
		}
	}
	for _, s := range []string{
		`{"op":"put","proposer":"x","objects":[{"kind":"Alias","namespace":"a.demo.mesh","name":"a","spec":{"target":"t","actions":["resolve"]}}]}`,
		`{"op":"put","proposer":"x","time":"2026-12-07T17:28:00.000Z","rules":1,"objects":[{"kind":"Service","namespace":"a","name":"a","labels":{"a":"b"},"annotations":{},"spec":{"ports":[{"name":"h","port":1}]},"uid":"u","version":3,"created":2,"vips":["240.0.0.1"]}],"ifVersions":[null,0,7]}`,
		`{"op":"put","proposer":"x","objects":[{"kind":"a","spec":{"a":1,"a":2}}],"ifVersion":3}`,
		`{"op":"put","proposer":"x","objects":[{"kind":"a","spec":[1, {"b" : "\"}"}] }]}`,
		`{"op":"put","proposer":"x","objects":[{"kind":"a","spec":"x"},{"spec":12.5e3}]}`,
		`{"op":"put","proposer":"x","objects":[{"kind":"a","spec":null}]}`,
		`{"op":"put","proposer":"x","objects":[{"kind":"a","spec":{}}],"objects":[]}`,
		`{"op":"put","Proposer":"x"}`, `{"op":"put","proposer":"x","rules":-0}`, `{"op":"put","rules":1.0}`,
		`{"op":"put","rules":01}`, `{"op":"delete","ifVersion":18446744073709551615}`,
		`{"op":"delete","ifVersion":18446744073709551616}`, `{"op":"rename","newName":"\u0061"}`,
		`{"op":"noop","proposer":"p"} `, `{"op":"noop","proposer":"p"}{}`, ` {"op":"noop"}`,
		"{\"op\":\"noop\",\"proposer\":\"\xff\"}", `{"op":"grant-lease","proposer":"p","lease":{"ttlSeconds":5}}`,
		`{"op":"put","proposer":"x","objects":[{"spec":` + strings.Repeat("[", 999) + strings.Repeat("]", 999) + `}]}`,
		`{"op":"put","proposer":"x","objects":[{"spec":` + strings.Repeat("[", 9997) + strings.Repeat("]", 9997) + `}]}`,
		`{"op":"put","proposer":"x","objects":[{"spec":{"a":"b\\"}}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := decodeFast(data)
		if !ok {
			return
		}
		slow, err := decodeJSON(data)
		if err != nil {
			t.Fatalf("decodeFast decoded %q, the general path fails: %v", data, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("decode %q:\nfast    %#v\ngeneral %#v", data, fast, slow)
		}
	})
}

// TestDecodeFastTakesEncoded checks that the fast path takes what anchors propose: every
// put, delete and rename of the golden mutations, once encoded.
func TestDecodeFastTakesEncoded(t *testing.T) {
	for i := 0; i < 4; i++ {
		data := encode(t, aliasPut(i))
		if _, ok := decodeFast(data); !ok {
			t.Fatalf("decodeFast refused %s", data)
		}
	}
	for _, m := range []Mutation{put(svc(bk, "s", 80), workload(bk, "w", 2)), del("Service", bk, "s"), {Op: OpRename, Proposer: admin, Kind: "Service", Namespace: bk, Name: "a", NewName: "b", IfVersion: u64(3)}} {
		data := encode(t, m)
		if _, ok := decodeFast(data); !ok {
			t.Fatalf("decodeFast refused %s", data)
		}
	}
}

// FuzzEncodeFast checks that encodeFast writes what json.Marshal writes, for every mutation
// Decode accepts (and for the same mutation with its specs made canonical).
func FuzzEncodeFast(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "mutations.golden")); err == nil {
		for _, line := range bytes.Split(b, []byte("\n")) {
			if len(line) > 0 {
				f.Add(line)
			}
		}
	}
	for _, s := range []string{
		`{"op":"put","proposer":"x","time":"2026-12-07T17:28:00.000Z","rules":1,"objects":[{"kind":"Service","namespace":"a","name":"a","labels":{"b":"c","a":"<"},"annotations":{},"spec":{"ports":[{"name":"h","port":1}]},"uid":"u","version":3,"created":2,"vips":["240.0.0.1"]}],"ifVersions":[null,0,7]}`,
		`{"op":"put","proposer":"x\u2028","objects":[{"kind":"a","spec":{"b":1, "a":"&"}}],"ifVersion":3}`,
		`{"op":"put","proposer":"é","objects":[{"kind":"a"}]}`,
		`{"op":"rename","proposer":"p","kind":"Service","namespace":"n","name":"a","newName":"b","ifVersion":0}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			return
		}
		for _, m := range []Mutation{m, canonicalSpecs(m)} {
			got, ok := encodeFast(m)
			if !ok {
				continue
			}
			want, err := json.Marshal(m)
			if err != nil {
				t.Fatalf("encodeFast wrote %q, json.Marshal fails: %v", got, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encodeFast:\n%s\njson.Marshal:\n%s", got, want)
			}
		}
	})
}

func canonicalSpecs(m Mutation) Mutation {
	objs := make([]resource.Object, len(m.Objects))
	for i, o := range m.Objects {
		if s, err := sortJSON(o.Spec); err == nil {
			o.Spec = s
		}
		objs[i] = o
	}
	m.Objects = objs
	return m
}

// FuzzSortJSON checks sortJSON's fast path (resource.ReencodeJSON) against encoding/json.
func FuzzSortJSON(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":[true,null,"x"]}`, `{"a":1,"a":2}`, `{"a":"\u003c"}`, ` [1.5e3] `, `{}x`, `"é"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := resource.ReencodeJSON(b)
		if !ok {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("ReencodeJSON(%q) = %q, encoding/json fails: %v", b, got, err)
		}
		if _, err := dec.Token(); err == nil {
			t.Fatalf("ReencodeJSON(%q) = %q, but data follows the value", b, got)
		}
		want, err := json.Marshal(v)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("ReencodeJSON(%q) = %q, encoding/json gives %q (%v)", b, got, want, err)
		}
	})
}

// FuzzParseTimeFast checks parseTimeFast against time.Parse and FormatTime (ParseTime's
// general path): whatever it accepts, the general path accepts as the same instant.
func FuzzParseTimeFast(f *testing.F) {
	for _, s := range []string{"2026-12-07T17:28:00.000Z", "0000-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z",
		"2024-02-29T12:00:00.500Z", "2023-02-29T12:00:00.500Z", "2026-04-31T00:00:00.000Z", "2026-12-07T24:00:00.000Z",
		"2026-12-07T23:60:00.000Z", "2026-12-07T23:59:60.000Z", "2026-12-07 17:28:00.000Z", "2026-12-07T17:28:00.000+00:00",
		"+026-12-07T17:28:00.000Z", "2026-1a-07T17:28:00.000Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseTimeFast(s)
		want, err := time.Parse(TimeLayout, s)
		general := err == nil && FormatTime(want) == s
		if ok && (!general || !got.Equal(want) || got != want.UTC()) {
			t.Fatalf("%q: fast %v, general %v (accepted %v)", s, got, want, general)
		}
		if general && !ok {
			t.Fatalf("%q: the general path accepts it, the fast path does not", s)
		}
	})
}

// FuzzDecodeObjects checks DecodeObjects against the anchor API's general path, a
// json.Decoder with unknown fields disallowed: whatever it decodes, that decoder decodes
// to the same objects.
func FuzzDecodeObjects(f *testing.F) {
	for _, s := range []string{
		`[{"kind":"Alias","namespace":"default.demo.mesh","name":"a1","spec":{"actions":["resolve"],"target":"t1.default.demo.mesh"}}]`,
		`[{"kind":"Service","namespace":"a","name":"a","labels":{"a":"b"},"annotations":{},"spec":{"ports":[{"name":"h","port":1}]},"uid":"u","version":3,"created":2,"vips":["240.0.0.1"]},{"kind":"x"}]`,
		` [ {"kind":"a","spec":[1, {"b" : "\"}"}] } ] `, `[{"kind":"a","spec":null}]`, `[{"kind":"a","kind":"b"}]`,
		`[]`, `null`, `[{"Kind":"a"}]`, `[{"kind":"a"}]{}`, `[{"kind":"a"}] x`, `[{"kind":"\u0061"}]`, `[{"version":-1}]`,
		"[{\"kind\":\"\xff\"}]", `[{"labels":{"a":null}}]`, `[{"vips":[]}]`, `[{},{}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := DecodeObjects(data)
		if !ok {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		var slow []resource.Object
		if err := dec.Decode(&slow); err != nil {
			t.Fatalf("DecodeObjects decoded %q, the general path fails: %v", data, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("decode %q:\nfast    %#v\ngeneral %#v", data, fast, slow)
		}
	})
}

// FuzzEncodeObjects checks EncodeObjects against json.Marshal, for objects as decoded from
// JSON and with their specs made canonical (as a scope stores them).
func FuzzEncodeObjects(f *testing.F) {
	for _, s := range []string{
		`[{"kind":"Alias","namespace":"default.demo.mesh","name":"a1","spec":{"actions":["resolve"],"target":"t1"},"uid":"u","version":7,"created":3}]`,
		`[{"kind":"Service","namespace":"a","name":"a","labels":{"b":"c","a":"<"},"annotations":{},"spec":{"ports":[{"name":"h","port":1}]},"vips":["240.0.0.1"]},{"kind":"x","spec":null}]`,
		`[{"kind":"é","spec":{"b":1, "a":"&"}}]`, `[{"kind":"a","labels":{"\u2028":"x"}}]`, `[]`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var objs []resource.Object
		if json.Unmarshal(data, &objs) != nil {
			return
		}
		canon := make([]resource.Object, len(objs))
		for i, o := range objs {
			if c, err := sortJSON(o.Spec); err == nil && len(o.Spec) > 0 {
				o.Spec = c
			}
			canon[i] = o
		}
		for _, objs := range [][]resource.Object{objs, canon} {
			got, ok := EncodeObjects(objs)
			if !ok {
				continue
			}
			want, err := json.Marshal(objs)
			if err != nil {
				t.Fatalf("EncodeObjects wrote %q, json.Marshal fails: %v", got, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("EncodeObjects:\n got %s\nwant %s", got, want)
			}
		}
	})
}
