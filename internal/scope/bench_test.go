package scope

import (
	"fmt"
	"testing"
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
