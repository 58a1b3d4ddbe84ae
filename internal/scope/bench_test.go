package scope

import (
	"encoding/json"
	"fmt"
	"testing"

	"canton.dev/canton/internal/resource"
)

// BenchmarkApplyPut measures one accepted single-Service put (validation, UID, lineage).
func BenchmarkApplyPut(b *testing.B) {
	s := newState(b)
	data := make([][]byte, 64)
	for i := range data {
		data[i] = encode(b, put(svc(bk, fmt.Sprintf("s%d", i), 1+i)))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := s.Apply(uint64(i+2), data[i%len(data)]).(Result); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
}

// BenchmarkSnapshot measures Snapshot of a scope with 1000 services and their lineage.
func BenchmarkSnapshot(b *testing.B) {
	s := newState(b)
	for i := 0; i < 1000; i++ {
		s.Apply(uint64(i+2), encode(b, put(svc(bk, fmt.Sprintf("s%d", i), 80))))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Snapshot(); err != nil {
			b.Fatal(err)
		}
	}
}

// aliasPut is the mutation bench/consensus commits: one Alias, stamped as an anchor
// stamps it (time, rules).
func aliasPut(i int) Mutation {
	m := put(resource.Object{Kind: "Alias", Namespace: "default." + testDomain, Name: fmt.Sprintf("a%d", i%512),
		Spec: json.RawMessage(fmt.Sprintf(`{"target":"t%d.default.%s","actions":["resolve"]}`, i, testDomain))})
	m.Time = "2026-12-07T17:28:00.000Z"
	m.Rules = CurrentRules
	return m
}

// BenchmarkApplyAlias measures one accepted Alias put as bench/consensus commits it, on
// one replica: decoding, normalising, the lineage record and its hash.
func BenchmarkApplyAlias(b *testing.B) {
	s := newState(b)
	data := make([][]byte, 1024)
	for i := range data {
		data[i] = encode(b, aliasPut(i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := s.Apply(uint64(i+2), data[i%len(data)]).(Result); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
}

// BenchmarkEncodeAlias measures what the proposing anchor spends encoding that mutation.
func BenchmarkEncodeAlias(b *testing.B) {
	m := aliasPut(1)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Encode(m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeAlias measures decoding that mutation (Apply's first step).
func BenchmarkDecodeAlias(b *testing.B) {
	data, err := Encode(aliasPut(1))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}
