package scope

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"canton.dev/canton/internal/resource"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update if intended):\n got:\n%s\nwant:\n%s", path, got, want)
	}
}

// fixedLog is a fixed sequence of mutations, applied from index 1.
func fixedLog() []Mutation {
	vs := resource.Object{Kind: "vs", Namespace: bk, Name: "reviews", Labels: map[string]string{"app": "reviews"},
		Spec: json.RawMessage(`{ "http": [{"route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 50},
			{"destination": {"host": "reviews", "subset": "v3"}, "weight": 50}]}], "hosts": ["reviews"] }`)}
	return []Mutation{
		genesis(),
		put(svc(bk, "reviews", 9080), svc(bk, "ratings", 9080)),
		put(vs),
		{Op: OpGrantLease, Proposer: "anchor/a1", Lease: &Lease{TTLSeconds: 15}},
		put(workload(bk, "reviews-v1-a", 4)),
		{Op: OpPut, Proposer: admin, Objects: []resource.Object{svc(bk, "reviews", 9090)}, IfVersion: u64(2)},
		put(delegation("demo.mesh", "shop", "shop.demo.mesh")),
		{Op: OpExpireLeases, Proposer: "anchor/a1", LeaseIDs: []uint64{4}},
		{Op: OpDelete, Proposer: admin, Kind: "dr", Namespace: bk, Name: "none"}, // rejected: not in lineage
		{Op: OpDelete, Proposer: admin, Kind: "svc", Namespace: bk, Name: "ratings", IfVersion: u64(2)},
		{Op: OpSetGovernance, Proposer: admin, Governance: &Governance{Anchors: []AnchorRef{{ID: "a1", NodeID: 1, Voter: true}, {ID: "a2", NodeID: 2, Voter: true}, {ID: "a3", NodeID: 3, Voter: true}}}},
		{Op: OpNoop, Proposer: "anchor/a1"},
		{Op: OpRename, Proposer: admin, Kind: "svc", Namespace: bk, Name: "reviews", NewName: "critiques", IfVersion: u64(6)},
		// From here on the proposers stamped their mutations with a time, as an anchor does
		// since lineage records carry one; the entries above are what an existing data
		// directory holds from before (untimedLogLen of them).
		{Op: OpGrantLease, Proposer: "anchor/a2", Time: "2026-03-14T09:26:53.589Z", Lease: &Lease{TTLSeconds: 30}},
		{Op: OpPut, Proposer: admin, Time: "2026-03-14T09:26:54.000Z", Objects: []resource.Object{workload(bk, "critiques-v1", 14)}},
		// A leader whose clock is behind the last proposer's: recorded as claimed.
		{Op: OpExpireLeases, Proposer: "anchor/a3", Time: "2026-03-14T09:26:50.120Z", LeaseIDs: []uint64{14}},
		{Op: OpNoop, Proposer: "anchor/a3", Time: "2026-03-14T09:27:00.000Z"},
	}
}

// untimedLogLen is how many mutations at the start of fixedLog carry no time.
const untimedLogLen = 13

func applyLog(t testing.TB, s *State, log [][]byte, from uint64) {
	t.Helper()
	for i, b := range log {
		s.Apply(from+uint64(i), b)
	}
}

func encodeLog(t testing.TB, ms []Mutation) [][]byte {
	out := make([][]byte, len(ms))
	for i, m := range ms {
		out[i] = encode(t, m)
	}
	return out
}

// TestGoldenMutations pins the canonical encoding of mutations.
func TestGoldenMutations(t *testing.T) {
	var buf bytes.Buffer
	for _, m := range fixedLog() {
		b := encode(t, m)
		buf.Write(b)
		buf.WriteByte('\n')
		back, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(Encode(%s)): %v", m.Op, err)
		}
		if again := encode(t, back); !bytes.Equal(again, b) {
			t.Errorf("Encode(Decode(x)) != x:\n%s\n%s", again, b)
		}
	}
	checkGolden(t, "mutations.golden", buf.Bytes())
}

// TestGoldenLineage pins the lineage (canonical accepted mutations and hashes) of fixedLog.
func TestGoldenLineage(t *testing.T) {
	s := New(testDomain)
	applyLog(t, s, encodeLog(t, fixedLog()), 1)
	recs := s.Lineage(0, 0)
	if err := VerifyLineage(recs); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 14 { // 17 mutations, minus one rejected delete and two noops
		t.Errorf("%d lineage records, want 14", len(recs))
	}
	var buf bytes.Buffer
	for _, r := range recs {
		// An untimed record's line reads as it did before records had a time.
		tm := ""
		if r.Time != "" {
			tm = " " + r.Time
		}
		fmt.Fprintf(&buf, "%d %s %s %s%s\n  %s\n", r.Index, r.Prev, r.Hash, r.Proposer, tm, r.Mutation)
	}
	checkGolden(t, "lineage.golden", buf.Bytes())
	idx, head := s.LineageHead()
	if idx != 16 || head != recs[len(recs)-1].Hash {
		t.Errorf("LineageHead = %d %s", idx, head)
	}
	if got := s.Lineage(5, 2); len(got) != 2 || got[0].Index != 5 || got[1].Index != 6 {
		t.Errorf("Lineage(5, 2) = %+v", got)
	}
	if got := s.Lineage(9, 0); len(got) != 6 || got[0].Index != 10 || got[2].Index != 13 {
		t.Errorf("Lineage(9, 0) starts at %d with %d records", got[0].Index, len(got))
	}
	for i, r := range recs {
		if timed := r.Index > untimedLogLen; timed != (r.Time != "") {
			t.Errorf("record %d at index %d: time %q", i, r.Index, r.Time)
		}
	}
	if last := recs[len(recs)-1]; last.Time != "2026-03-14T09:26:50.120Z" || last.Proposer != "anchor/a3" {
		t.Errorf("the expiry is recorded at %q by %s, want the time its proposer claimed", last.Time, last.Proposer)
	}
}

// TestSnapshotBeforeTime restores testdata/snapshot-before-time.json, a snapshot written
// by the state machine before mutations carried a time (what an existing data directory
// holds; a fixture, never rewritten by -update). It must restore and verify, replaying the
// same entries today must give the same bytes, and the chain goes on with timed records.
func TestSnapshotBeforeTime(t *testing.T) {
	old, err := os.ReadFile(filepath.Join("testdata", "snapshot-before-time.json"))
	if err != nil {
		t.Fatal(err)
	}
	old = bytes.TrimSuffix(old, []byte("\n"))
	s := New(testDomain)
	if err := s.Restore(old); err != nil {
		t.Fatalf("a snapshot from before lineage times does not restore: %v", err)
	}
	replay := New(testDomain)
	applyLog(t, replay, encodeLog(t, fixedLog()[:untimedLogLen]), 1)
	if now, _ := replay.Snapshot(); !bytes.Equal(now, old) {
		t.Fatalf("replaying the untimed entries gives different bytes than before:\n got: %s\nwant: %s", now, old)
	}
	applyLog(t, s, encodeLog(t, fixedLog()[untimedLogLen:]), untimedLogLen+1)
	recs := s.Lineage(0, 0)
	if err := VerifyLineage(recs); err != nil {
		t.Fatalf("old and new records do not verify as one chain: %v", err)
	}
	fresh := New(testDomain)
	applyLog(t, fresh, encodeLog(t, fixedLog()), 1)
	_, want := fresh.LineageHead()
	if _, got := s.LineageHead(); got != want {
		t.Errorf("head after restoring the old snapshot %s, after applying the whole log %s", got, want)
	}
}

func TestVerifyLineageTamper(t *testing.T) {
	s := New(testDomain)
	applyLog(t, s, encodeLog(t, fixedLog()), 1)
	recs := s.Lineage(0, 0)
	short := func(h string) string { return h[:12] + ".." }
	tests := []struct {
		name   string
		tamper func(r []Record)
		want   string
	}{
		{"mutation changed", func(r []Record) {
			r[2].Mutation = json.RawMessage(strings.Replace(string(r[2].Mutation), `"weight":50`, `"weight":49`, 1))
		}, ""},
		{"proposer changed", func(r []Record) {
			r[3].Proposer = "anchor/evil"
		}, `lineage record at index 4: proposer "anchor/evil" does not match the mutation's proposer "anchor/a1"`},
		{"proposer changed in both places", func(r []Record) {
			r[3].Proposer = "anchor/a2"
			r[3].Mutation = json.RawMessage(strings.Replace(string(r[3].Mutation), "anchor/a1", "anchor/a2", 1))
		}, ""},
		{"hash rewritten", func(r []Record) {
			r[5].Hash = strings.Repeat("ab", 32)
		}, ""},
		{"prev broken", func(r []Record) { r[6].Prev = r[4].Hash }, ""},
		{"index changed", func(r []Record) { r[7].Index++ }, ""},
		{"record dropped", func(r []Record) { copy(r[4:], r[5:]) }, ""},
		{"garbage mutation", func(r []Record) { r[1].Mutation = json.RawMessage(`{"op":"put"`) }, ""},
		{"time changed", func(r []Record) {
			r[12].Time = "2026-03-14T09:26:59.000Z"
		}, `lineage record at index 15: time "2026-03-14T09:26:59.000Z" does not match the mutation's time "2026-03-14T09:26:54.000Z"`},
		{"time changed in both places", func(r []Record) {
			r[12].Time = "2026-03-14T09:26:59.000Z"
			r[12].Mutation = json.RawMessage(strings.Replace(string(r[12].Mutation), "09:26:54.000Z", "09:26:59.000Z", 1))
		}, "lineage record at index 15: hash mismatch"},
		{"time removed in both places", func(r []Record) {
			r[12].Time = ""
			r[12].Mutation = json.RawMessage(strings.Replace(string(r[12].Mutation), `,"time":"2026-03-14T09:26:54.000Z"`, "", 1))
		}, "lineage record at index 15: hash mismatch"},
		{"time added to an untimed record in both places", func(r []Record) {
			r[3].Time = "2026-03-14T09:00:00.000Z"
			r[3].Mutation = json.RawMessage(strings.Replace(string(r[3].Mutation), `"proposer":"anchor/a1"`, `"proposer":"anchor/a1","time":"2026-03-14T09:00:00.000Z"`, 1))
		}, "lineage record at index 4: hash mismatch"},
		{"time respelled", func(r []Record) {
			r[12].Time = "2026-03-14T09:26:54Z"
			r[12].Mutation = json.RawMessage(strings.Replace(string(r[12].Mutation), "09:26:54.000Z", "09:26:54Z", 1))
		}, "lineage record at index 15: decode mutation: time: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := make([]Record, len(recs))
			copy(c, recs)
			tt.tamper(c)
			err := VerifyLineage(c)
			if err == nil {
				t.Fatal("VerifyLineage accepted a tampered lineage")
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error:\n got: %s\nwant: %s", err, tt.want)
			}
			t.Log(err)
		})
	}
	// The exact message for a changed mutation names the record and both hashes.
	c := append([]Record(nil), recs...)
	c[2].Mutation = json.RawMessage(strings.Replace(string(c[2].Mutation), `"weight":50`, `"weight":49`, 1))
	p, _ := parseHash(c[2].Prev)
	re := chainHash(p, c[2].Mutation, c[2].Proposer, c[2].Index)
	want := fmt.Sprintf("lineage record at index 3: hash mismatch: stored %s recomputed %s", short(c[2].Hash), short(fmt.Sprintf("%x", re)))
	if err := VerifyLineage(c); err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	// The chain link: rewriting a record's hash breaks the next record's prev.
	c = append([]Record(nil), recs...)
	c[5].Mutation = json.RawMessage(strings.Replace(string(c[5].Mutation), "9090", "9091", 1))
	p, _ = parseHash(c[5].Prev)
	sum := chainHash(p, c[5].Mutation, c[5].Proposer, c[5].Index)
	c[5].Hash = fmt.Sprintf("%x", sum)
	want = fmt.Sprintf("lineage record at index %d: prev %s does not match the hash %s of the record at index %d", c[6].Index, short(c[6].Prev), short(c[5].Hash), c[5].Index)
	if err := VerifyLineage(c); err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	if err := VerifyLineage(recs); err != nil {
		t.Errorf("the untouched lineage does not verify: %v", err)
	}
}

// randomLog builds a long, deterministic mix of mutations, many of them rejected.
func randomLog(t testing.TB, n int, seed uint64) [][]byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	nss := []string{"demo.mesh", bk, "shop.demo.mesh", "a.shop.demo.mesh", "other.mesh", "x.y.demo.mesh"}
	ms := []Mutation{genesis()}
	for i := 0; len(ms) < n; i++ {
		ns := nss[rng.IntN(len(nss))]
		name := fmt.Sprintf("o%d", rng.IntN(12))
		switch rng.IntN(10) {
		case 0, 1:
			var objs []resource.Object
			for j := rng.IntN(4); j >= 0; j-- {
				objs = append(objs, svc(ns, fmt.Sprintf("s%d", rng.IntN(12)), 1+rng.IntN(70000)))
			}
			ms = append(ms, put(objs...))
		case 2:
			ms = append(ms, put(workload(ns, name, uint64(rng.IntN(len(ms)+1)))))
		case 3:
			ms = append(ms, Mutation{Op: OpGrantLease, Proposer: "anchor/a1", Lease: &Lease{TTLSeconds: int64(1 + rng.IntN(60))}})
		case 4:
			ms = append(ms, Mutation{Op: OpExpireLeases, Proposer: "anchor/a1", LeaseIDs: []uint64{uint64(rng.IntN(len(ms) + 1)), uint64(rng.IntN(len(ms) + 1))}})
		case 5:
			ms = append(ms, del("Service", ns, fmt.Sprintf("s%d", rng.IntN(12))))
		case 6:
			ms = append(ms, put(delegation("demo.mesh", "shop", "shop.demo.mesh")))
		case 7:
			ms = append(ms, del("Delegation", "demo.mesh", "shop"))
		case 8:
			o := svc(ns, "v", 80)
			o.Labels = map[string]string{"k" + name: "v", "a": "b", "z": name}
			ms = append(ms, Mutation{Op: OpPut, Proposer: admin, Objects: []resource.Object{o}, IfVersion: u64(uint64(rng.IntN(3)))})
		case 9:
			from := fmt.Sprintf("s%d", rng.IntN(12))
			if rng.IntN(4) == 0 {
				from = "web" // the Service the random Workloads name
			}
			ms = append(ms, Mutation{Op: OpRename, Proposer: admin, Namespace: ns, Name: from, NewName: fmt.Sprintf("s%d", rng.IntN(12))})
		}
		if rng.IntN(2) == 0 { // half of them timed, at random (not increasing) times
			ms[len(ms)-1].Time = FormatTime(time.UnixMilli(rng.Int64N(1 << 42)))
		}
	}
	return encodeLog(t, ms)
}

// TestDeterminism applies the same log to independent States (each iterating its maps in
// its own random order) and requires byte-identical snapshots, and checks that
// Restore(Snapshot()) continues identically.
func TestDeterminism(t *testing.T) {
	log := randomLog(t, 600, 42)
	a, b := New(testDomain), New(testDomain)
	applyLog(t, a, log[:300], 1)
	applyLog(t, b, log[:300], 1)
	sa, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sb, _ := b.Snapshot()
	if !bytes.Equal(sa, sb) {
		t.Fatal("two States applying the same log have different snapshots")
	}
	if len(a.List("", "")) == 0 || len(a.Lineage(0, 0)) < 50 {
		t.Fatalf("the log exercises too little: %d objects, %d records", len(a.List("", "")), len(a.Lineage(0, 0)))
	}
	c := New(testDomain)
	if err := c.Restore(sa); err != nil {
		t.Fatal(err)
	}
	sc, _ := c.Snapshot()
	if !bytes.Equal(sa, sc) {
		t.Fatal("Snapshot after Restore differs")
	}
	applyLog(t, a, log[300:], 301)
	applyLog(t, c, log[300:], 301)
	sa, _ = a.Snapshot()
	sc, _ = c.Snapshot()
	if !bytes.Equal(sa, sc) {
		t.Fatal("a restored State diverges from the original on the same log")
	}
	if err := VerifyLineage(c.Lineage(0, 0)); err != nil {
		t.Fatal(err)
	}
	// Restore replaces everything, including a State that had different content.
	d := newState(t)
	d.Apply(2, encode(t, put(svc(bk, "zzz", 1))))
	if err := d.Restore(sa); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Get("Service", bk, "zzz"); ok {
		t.Error("Restore kept an object that is not in the snapshot")
	}
	sd, _ := d.Snapshot()
	if !bytes.Equal(sa, sd) {
		t.Error("Restore over a non-empty State differs")
	}
}

func TestRestoreRejects(t *testing.T) {
	s := newState(t)
	s.Apply(2, encode(t, put(svc(bk, "a", 1))))
	snap, _ := s.Snapshot()
	before, _ := s.Snapshot()
	tests := []struct {
		name string
		data string
		want string
	}{
		{"garbage", "{", "restore scope demo.mesh: decode snapshot: unexpected EOF"},
		{"other domain", strings.Replace(string(snap), `"domain":"demo.mesh"`, `"domain":"shop.demo.mesh"`, 1), `restore scope demo.mesh: snapshot is of scope "shop.demo.mesh"`},
		{"unknown field", strings.Replace(string(snap), `{"format":1,`, `{"format":1,"x":1,`, 1), `restore scope demo.mesh: decode snapshot: json: unknown field "x"`},
		{"format", strings.Replace(string(snap), `"format":1`, `"format":2`, 1), "restore scope demo.mesh: snapshot format 2, want 1"},
		{"tampered lineage", tamperLast(string(snap), `"port":1`, `"port":2`), "restore scope demo.mesh: lineage record at index 2: hash mismatch: stored "},
	}
	for _, tt := range tests {
		err := s.Restore([]byte(tt.data))
		if err == nil {
			t.Errorf("%s: Restore succeeded", tt.name)
			continue
		}
		if !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %s", tt.name, err, tt.want)
		}
		after, _ := s.Snapshot()
		if !bytes.Equal(before, after) {
			t.Errorf("%s: failed Restore changed the state", tt.name)
		}
	}
}

// tamperLast replaces the last occurrence of old in s (in a snapshot: inside the lineage).
func tamperLast(s, old, new string) string {
	i := strings.LastIndex(s, old)
	if i < 0 {
		return s
	}
	return s[:i] + new + s[i+len(old):]
}
