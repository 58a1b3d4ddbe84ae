package replica

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

// walBatchFor builds the group write the writer builds for one append of entries
// [from, to] at term 1, with the hard state committing up to commit.
func walBatchFor(g GroupID, dl *diskLog, from, to, commit uint64) []*groupWrite {
	gw := &groupWrite{id: g, dl: dl}
	for i := from; i <= to; i++ {
		gw.entries = append(gw.entries, &raftpb.Entry{Index: new(i), Term: new(uint64(1)), Data: []byte(fmt.Sprintf("e%d", i))})
	}
	hs := &groupWrite{id: g, dl: dl, hs: &raftpb.HardState{Term: new(uint64(1)), Commit: new(commit)}}
	return []*groupWrite{gw, hs}
}

func loadedRange(t *testing.T, s *store, g GroupID) (first, last, commit uint64) {
	t.Helper()
	p, _, err := s.load(g)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.entries) > 0 {
		first, last = p.entries[0].GetIndex(), p.entries[len(p.entries)-1].GetIndex()
		for i, e := range p.entries {
			if want := fmt.Sprintf("e%d", first+uint64(i)); string(e.GetData()) != want {
				t.Fatalf("entry %d holds %q, want %q", e.GetIndex(), e.GetData(), want)
			}
		}
	}
	return first, last, p.hs.GetCommit()
}

func TestWALRecoversWhatWasNotCheckpointed(t *testing.T) {
	dir := t.TempDir()
	s, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	var dl diskLog
	if err := s.commit([]*groupWrite{{id: "g", dl: &dl, create: true}}); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 10; i++ {
		if err := s.commit(walBatchFor("g", &dl, i*10-9, i*10, i*10-1)); err != nil {
			t.Fatal(err)
		}
		if i == 4 {
			if err := s.wal.flush(); err != nil { // a checkpoint in between
				t.Fatal(err)
			}
		}
	}
	s.crash()
	s, err = openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if first, last, commit := loadedRange(t, s, "g"); first != 1 || last != 100 || commit != 99 {
		t.Fatalf("recovered entries %d..%d, commit %d; want 1..100, commit 99", first, last, commit)
	}
	if fi, err := os.Stat(filepath.Join(dir, "raft.wal")); err != nil || fi.Size() != 0 {
		t.Fatalf("the WAL is not empty after recovery: %v, %v", fi.Size(), err)
	}
}

func TestWALIgnoresTornTail(t *testing.T) {
	for _, cut := range []int64{1, 8, walHeader, walHeader + 5} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			dir := t.TempDir()
			s, err := openStore(dir)
			if err != nil {
				t.Fatal(err)
			}
			var dl diskLog
			for i := uint64(1); i <= 3; i++ {
				if err := s.commit(walBatchFor("g", &dl, i*10-9, i*10, i*10)); err != nil {
					t.Fatal(err)
				}
			}
			size := s.wal.size
			s.crash()
			// The third append was interrupted: only part of it reached the disk.
			path := filepath.Join(dir, "raft.wal")
			b, err := os.ReadFile(path)
			if err != nil || int64(len(b)) != size {
				t.Fatalf("wal: %d bytes, %v; want %d", len(b), err, size)
			}
			third := int64(len(b)) - recordLen(t, b, 2)
			if err := os.WriteFile(path, b[:third+cut], 0o600); err != nil {
				t.Fatal(err)
			}
			s, err = openStore(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer s.close()
			if first, last, commit := loadedRange(t, s, "g"); first != 1 || last != 20 || commit != 20 {
				t.Fatalf("recovered entries %d..%d, commit %d; want 1..20, commit 20", first, last, commit)
			}
			// Appends go on after the torn record, with the next seq.
			if err := s.commit(walBatchFor("g", &dl, 21, 25, 25)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// recordLen returns the length of the record after skip records in b.
func recordLen(t *testing.T, b []byte, skip int) int64 {
	t.Helper()
	off := int64(0)
	for range skip {
		off += walHeader + int64(uint32(b[off])|uint32(b[off+1])<<8|uint32(b[off+2])<<16|uint32(b[off+3])<<24)
	}
	return int64(len(b)) - off
}

func TestWALCorruptRecordStopsRecovery(t *testing.T) {
	dir := t.TempDir()
	s, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	var dl diskLog
	for i := uint64(1); i <= 3; i++ {
		if err := s.commit(walBatchFor("g", &dl, i*10-9, i*10, i*10)); err != nil {
			t.Fatal(err)
		}
	}
	s.crash()
	path := filepath.Join(dir, "raft.wal")
	b, _ := os.ReadFile(path)
	b[int64(len(b))-recordLen(t, b, 1)+walHeader+2] ^= 0xff // inside the second record
	os.WriteFile(path, b, 0o600)
	s, err = openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if first, last, _ := loadedRange(t, s, "g"); first != 1 || last != 10 {
		t.Fatalf("recovered entries %d..%d; want 1..10 (the records after a bad one are not applied)", first, last)
	}
}

func TestWALTruncatesAfterCheckpoint(t *testing.T) {
	dir := t.TempDir()
	s, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.wal.limit = 1024
	var dl diskLog
	for i := uint64(1); i <= 50; i++ {
		if err := s.commit(walBatchFor("g", &dl, i*10-9, i*10, i*10)); err != nil {
			t.Fatal(err)
		}
		if s.wal.size > 2*1024 {
			t.Fatalf("the WAL grew to %d bytes, past its limit of 1024", s.wal.size)
		}
	}
	if s.wal.checkpoints.Load() == 0 {
		t.Fatal("no checkpoint")
	}
	s.crash()
	s, err = openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if first, last, commit := loadedRange(t, s, "g"); first != 1 || last != 500 || commit != 500 {
		t.Fatalf("recovered entries %d..%d, commit %d; want 1..500, commit 500", first, last, commit)
	}
}

// TestWALStaleRecordsAfterTruncation: a truncation the crash undid leaves records that bbolt
// already holds; they are skipped, and the ones logged after it are not mistaken for them.
func TestWALStaleRecordsAfterTruncation(t *testing.T) {
	dir := t.TempDir()
	s, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	var dl diskLog
	for i := uint64(1); i <= 3; i++ {
		if err := s.commit(walBatchFor("g", &dl, i*10-9, i*10, i*10)); err != nil {
			t.Fatal(err)
		}
	}
	old, _ := os.ReadFile(filepath.Join(dir, "raft.wal"))
	if err := s.wal.flush(); err != nil {
		t.Fatal(err)
	}
	s.crash()
	// The old records are back (the truncation did not survive) and nothing new was logged.
	os.WriteFile(filepath.Join(dir, "raft.wal"), old, 0o600)
	s, err = openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if first, last, _ := loadedRange(t, s, "g"); first != 1 || last != 30 {
		t.Fatalf("recovered entries %d..%d; want 1..30", first, last)
	}
	dl = diskLog{1, 30}
	if err := s.commit(walBatchFor("g", &dl, 31, 40, 40)); err != nil {
		t.Fatal(err)
	}
	s.crash()
	// The new record overwrote the start of the old ones.
	b, _ := os.ReadFile(filepath.Join(dir, "raft.wal"))
	if len(b) < len(old) {
		b = append(b, old[len(b):]...)
	}
	os.WriteFile(filepath.Join(dir, "raft.wal"), b, 0o600)
	s, err = openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if first, last, commit := loadedRange(t, s, "g"); first != 1 || last != 40 || commit != 40 {
		t.Fatalf("recovered entries %d..%d, commit %d; want 1..40, commit 40", first, last, commit)
	}
}

// FuzzDecodeWALRecord: a record that passed its CRC but is malformed is an error, never a
// panic; a well-formed one decodes to what was written.
func FuzzDecodeWALRecord(f *testing.F) {
	ws := walBatchFor("g", nil, 1, 3, 2)
	ws = append(ws, &groupWrite{id: "h", hs: &raftpb.HardState{}})
	var b []byte
	b = binary.AppendUvarint(b, uint64(len(ws)))
	for _, gw := range ws {
		if err := gw.marshal(); err != nil {
			f.Fatal(err)
		}
		b = binary.AppendUvarint(b, uint64(len(gw.id)))
		b = append(b, gw.id...)
		if gw.hs == nil {
			b = binary.AppendUvarint(b, 0)
		} else {
			b = binary.AppendUvarint(b, 1+uint64(len(gw.hsData)))
			b = append(b, gw.hsData...)
		}
		b = binary.AppendUvarint(b, uint64(len(gw.entryData)))
		for _, e := range gw.entryData {
			b = binary.AppendUvarint(b, uint64(len(e)))
			b = append(b, e...)
		}
	}
	got, err := decodeWALRecord(b)
	if err != nil || len(got) != 3 || len(got[0].entries) != 3 || got[1].hs.GetCommit() != 2 || got[2].hs == nil {
		f.Fatalf("decode: %v, %+v", err, got)
	}
	f.Add(b)
	f.Add([]byte{1, 1, 'g', 0, 0})
	f.Add([]byte{1, 1, 'g', 5, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeWALRecord(b)
	})
}

// TestWALDeferredSnapshot writes a snapshot taken locally as the writer does, behind the
// logged batches (deferWrite), and checks what a restart finds: after a crash before the
// checkpoint, the whole log and no snapshot; after the checkpoint, the snapshot with the
// log compacted and the commit index at least the snapshot's; and a snapshot received from
// the leader later (written to bbolt directly) is not overwritten by the deferred one.
func TestWALDeferredSnapshot(t *testing.T) {
	snapAt := func(i uint64, data string) *raftpb.Snapshot {
		return &raftpb.Snapshot{Data: []byte(data), Metadata: &raftpb.SnapshotMetadata{Index: new(i), Term: new(uint64(1)), ConfState: &raftpb.ConfState{Voters: []uint64{1}}}}
	}
	setup := func(t *testing.T) (string, *store, *diskLog) {
		dir := t.TempDir()
		s, err := openStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		dl := new(diskLog)
		if err := s.commit([]*groupWrite{{id: "g", dl: dl, create: true}}); err != nil {
			t.Fatal(err)
		}
		if err := s.commit(walBatchFor("g", dl, 1, 10, 10)); err != nil {
			t.Fatal(err)
		}
		s.wal.deferWrite([]*groupWrite{{id: "g", dl: dl, snap: snapAt(8, "local"), compactTo: 5,
			hs: &raftpb.HardState{Term: new(uint64(1)), Commit: new(uint64(10))}}})
		// Logged after the snapshot: must survive its compaction.
		if err := s.commit(walBatchFor("g", dl, 11, 12, 11)); err != nil {
			t.Fatal(err)
		}
		return dir, s, dl
	}
	reopen := func(t *testing.T, dir string) (*store, persisted) {
		s, err := openStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.close() })
		p, _, err := s.load("g")
		if err != nil {
			t.Fatal(err)
		}
		return s, p
	}

	t.Run("crash before the checkpoint", func(t *testing.T) {
		dir, s, _ := setup(t)
		s.wal.mu.Lock()
		written := s.wal.written
		s.wal.mu.Unlock()
		s.crash()
		s2, p := reopen(t, dir)
		if written != 0 {
			t.Skip("the checkpointer ran before the crash")
		}
		if first, last, commit := loadedRange(t, s2, "g"); p.snap != nil || first != 1 || last != 12 || commit != 11 {
			t.Fatalf("after a crash before the checkpoint: snapshot %v, entries %d..%d, commit %d; want none, 1..12, 11", p.snap.GetMetadata().GetIndex(), first, last, commit)
		}
	})
	t.Run("checkpointed", func(t *testing.T) {
		dir, s, _ := setup(t)
		if err := s.wal.flush(); err != nil {
			t.Fatal(err)
		}
		s.crash()
		s2, p := reopen(t, dir)
		first, last, commit := loadedRange(t, s2, "g")
		_, dl, _ := s2.load("g")
		if string(p.snap.GetData()) != "local" || first != 9 || last != 12 || commit != 11 || dl != (diskLog{first: 6, last: 12}) {
			t.Fatalf("snapshot %q, entries %d..%d (on disk %+v), commit %d; want the local one at 8, 9..12 (6..12), commit 11", p.snap.GetData(), first, last, dl, commit)
		}
	})
	t.Run("a received snapshot after it", func(t *testing.T) {
		dir, s, dl := setup(t)
		if err := s.wal.flush(); err != nil {
			t.Fatal(err)
		}
		// The last thing queued: a flush before the next direct write must wait for it.
		s.wal.deferWrite([]*groupWrite{{id: "g", dl: dl, snap: snapAt(12, "local again"), compactTo: 10,
			hs: &raftpb.HardState{Term: new(uint64(1)), Commit: new(uint64(12))}}})
		// The leader's snapshot at 20 replaces the log (the writer's clearLog write).
		if err := s.commit([]*groupWrite{{id: "g", dl: dl, snap: snapAt(20, "received"), clearLog: true,
			hs: &raftpb.HardState{Term: new(uint64(1)), Commit: new(uint64(20))}}}); err != nil {
			t.Fatal(err)
		}
		s.close()
		_, p := reopen(t, dir)
		if string(p.snap.GetData()) != "received" || len(p.entries) != 0 || p.hs.GetCommit() != 20 {
			t.Fatalf("snapshot %q, %d entries, commit %d; want the received one, none, 20", p.snap.GetData(), len(p.entries), p.hs.GetCommit())
		}
	})
}
