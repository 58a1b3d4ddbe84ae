package scope

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func FuzzDecodeMutation(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "mutations.golden")); err == nil {
		for _, line := range bytes.Split(b, []byte("\n")) {
			if len(line) > 0 {
				f.Add(line)
			}
		}
	}
	f.Add([]byte(`{"op":"put","proposer":"x","objects":[{"kind":"svc","namespace":"a.demo.mesh","name":"a","spec":{"ports":[{"name":"h","port":1}]}}],"ifVersions":[null]}`))
	f.Add([]byte(`{"op":"expire-leases","proposer":"p","leaseIds":[2,2]}`))
	f.Add([]byte(`{"op":"delete","proposer":"p","kind":"Delegation","namespace":"demo.mesh","name":"shop","ifVersion":0}`))
	f.Add([]byte(`{"op":"noop","proposer":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			return
		}
		enc, err := Encode(m)
		if err != nil {
			return // e.g. an object spec that is not JSON; Apply rejects such entries
		}
		m2, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(m)) failed: %v\n%s", err, enc)
		}
		enc2, err := Encode(m2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("Encode is not stable:\n%s\n%s (%v)", enc, enc2, err)
		}
		// Applying it must not panic, must be deterministic, and must keep the lineage valid.
		a, b := newState(t), newState(t)
		ra := a.Apply(2, data).(Result)
		rb := b.Apply(2, data).(Result)
		if (ra.Err == nil) != (rb.Err == nil) || (ra.Err != nil && ra.Err.Error() != rb.Err.Error()) {
			t.Fatalf("different results: %v / %v", ra.Err, rb.Err)
		}
		sa, _ := a.Snapshot()
		sb, _ := b.Snapshot()
		if !bytes.Equal(sa, sb) {
			t.Fatal("different snapshots")
		}
		if err := VerifyLineage(a.Lineage(0, 0)); err != nil {
			t.Fatal(err)
		}
	})
}
