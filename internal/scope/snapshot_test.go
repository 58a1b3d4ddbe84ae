package scope

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"canton.dev/canton/internal/resource"
)

// referenceSnapshot encodes s as Snapshot did before it reused the lineage: one
// encoding/json Marshal of the whole snapshot.
func referenceSnapshot(t testing.TB, s *State) []byte {
	t.Helper()
	s.mu.RLock()
	snap := snapshot{
		Format: snapshotFormat, Domain: s.domain, Incarnation: s.incarnation, Parent: s.parent, Revision: s.revision,
		Objects: []resource.Object{}, Leases: []Lease{}, Governance: cloneGovernance(s.governance),
		Lineage: append([]Record(nil), s.lineage...),
	}
	for _, o := range s.objects {
		snap.Objects = append(snap.Objects, o)
	}
	for _, l := range s.leases {
		snap.Leases = append(snap.Leases, l)
	}
	s.mu.RUnlock()
	sort.Slice(snap.Objects, func(i, j int) bool { return keyOf(snap.Objects[i]).less(keyOf(snap.Objects[j])) })
	sort.Slice(snap.Leases, func(i, j int) bool { return snap.Leases[i].ID < snap.Leases[j].ID })
	if snap.Governance.Anchors == nil {
		snap.Governance.Anchors = []AnchorRef{}
	}
	b, err := marshalSnapshot(snap)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkSnapshot(t *testing.T, s *State, what string) []byte {
	t.Helper()
	got, err := s.Snapshot()
	if err != nil {
		t.Fatalf("%s: Snapshot: %v", what, err)
	}
	if want := referenceSnapshot(t, s); !bytes.Equal(got, want) {
		t.Fatalf("%s: snapshot differs from encoding/json's:\n got %s\nwant %s", what, got, want)
	}
	return got
}

// TestSnapshotReusesLineageAndMatchesMarshal takes snapshots while the lineage grows, after a
// restore, after the caller modified the bytes of the last one, and of a state whose records
// need escaping, and checks each against encoding/json's encoding of the whole snapshot.
func TestSnapshotReusesLineageAndMatchesMarshal(t *testing.T) {
	s := newState(t)
	checkSnapshot(t, s, "genesis only")
	idx := uint64(2)
	apply := func(n int) {
		for range n {
			m := aliasPut(int(idx))
			if idx%3 == 0 {
				// Annotations with characters Marshal escapes and spaces inside strings.
				o := m.Objects[0]
				o.Annotations = map[string]string{"note": "a <b> & \"c\" \u2028 é\t"}
				m.Objects = []resource.Object{o}
			}
			if idx%5 == 0 {
				m.Time = "" // records without a time omit the field
			}
			if r := s.Apply(idx, encode(t, m)).(Result); r.Err != nil {
				t.Fatalf("apply %d: %v", idx, r.Err)
			}
			idx++
		}
	}
	for round := range 4 {
		apply(7 + round)
		checkSnapshot(t, s, fmt.Sprintf("round %d", round))
		if s.reuse.n != len(s.lineage) {
			t.Fatalf("round %d: the next snapshot would reuse %d of %d records", round, s.reuse.n, len(s.lineage))
		}
	}

	// A caller that modifies the bytes it got must not spoil the next snapshot.
	b := checkSnapshot(t, s, "again, nothing new")
	for i := range b {
		if b[i] == 'a' {
			b[i] = 'b'
		}
	}
	apply(2)
	checkSnapshot(t, s, "after the caller modified the last snapshot")

	// A restored state (its lineage a new slice) and one restored from another state's
	// snapshot encode as the original.
	data := checkSnapshot(t, s, "before restore")
	r := New(testDomain)
	if err := r.Restore(bytes.Clone(data)); err != nil {
		t.Fatal(err)
	}
	if got := checkSnapshot(t, r, "restored"); !bytes.Equal(got, data) {
		t.Fatal("a restored state's snapshot differs from the one it was restored from")
	}
	if err := s.Restore(bytes.Clone(data)); err != nil {
		t.Fatal(err)
	}
	apply(3)
	checkSnapshot(t, s, "restored, then grown")

	// A lineage replaced by a shorter one (Restore of an older snapshot) is not reused.
	old := newState(t)
	if err := s.Restore(referenceSnapshot(t, old)); err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, s, "restored to an older state")
}

// TestSnapshotConcurrentWithApply encodes captured snapshots on other goroutines while
// Apply goes on, as the replica host does; run with -race.
func TestSnapshotConcurrentWithApply(t *testing.T) {
	s := newState(t)
	done := make(chan []byte)
	for i := range 200 {
		if r := s.Apply(uint64(i+2), encode(t, aliasPut(i))).(Result); r.Err != nil {
			t.Fatal(r.Err)
		}
		if i%20 == 0 {
			encodeIt := s.CaptureSnapshot()
			want := referenceSnapshot(t, s)
			go func() {
				b, err := encodeIt()
				if err != nil || !bytes.Equal(b, want) {
					done <- nil
					return
				}
				done <- b
			}()
			defer func() {
				if b := <-done; b == nil {
					t.Error("a snapshot encoded concurrently differs from encoding/json's")
				}
			}()
		}
	}
}

// FuzzAppendRecord checks appendRecord against encoding/json for any record whose mutation
// is valid JSON (Apply and Restore only keep such records).
func FuzzAppendRecord(f *testing.F) {
	f.Add(uint64(2), "00ab", "cd", []byte(`{"op":"noop","proposer":"p"}`), "anchor/a1", "2026-12-07T17:28:00.000Z")
	f.Add(uint64(0), "", "", []byte(`{"a":"<b> & c","d":[1, 2]}`), "spiffe://x/<y>", "")
	f.Add(uint64(1<<63), "\u2028", "\x7f", []byte(" {\"x\":\"é\\\"\"} "), "a\"b\\c", "\x00")
	f.Add(uint64(7), "h", "h", []byte(`null`), "", "t")
	f.Fuzz(func(t *testing.T, index uint64, prev, hash string, mutation []byte, proposer, at string) {
		if !json.Valid(mutation) {
			return
		}
		r := Record{Index: index, Prev: prev, Hash: hash, Mutation: mutation, Proposer: proposer, Time: at}
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendRecord([]byte("x"), r)
		if err != nil || !bytes.Equal(got[1:], want) || got[0] != 'x' {
			t.Fatalf("appendRecord = %s (%v), encoding/json = %s", got, err, want)
		}
	})
}

// FuzzParseHash checks parseHash against its former definition (decode, then re-encode and
// compare, so that only lower-case hex is accepted).
func FuzzParseHash(f *testing.F) {
	f.Add(zeroHash)
	f.Add(strings.Repeat("aB", 32))
	f.Add(strings.Repeat("0g", 32))
	f.Add("00")
	f.Fuzz(func(t *testing.T, s string) {
		var want [sha256.Size]byte
		wantOK := len(s) == 2*sha256.Size
		if wantOK {
			if _, err := hex.Decode(want[:], []byte(s)); err != nil {
				wantOK = false
			} else if hex.EncodeToString(want[:]) != s {
				wantOK = false
			}
		}
		got, ok := parseHash(s)
		if ok != wantOK || got != want {
			t.Fatalf("parseHash(%q) = %x, %v; want %x, %v", s, got, ok, want, wantOK)
		}
	})
}
