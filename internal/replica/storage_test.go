package replica

import (
	"testing"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func ents(term uint64, from, to uint64) []*raftpb.Entry {
	var out []*raftpb.Entry
	for i := from; i <= to; i++ {
		out = append(out, &raftpb.Entry{Index: new(i), Term: new(term), Data: []byte{byte(i)}})
	}
	return out
}

func indexes(es []*raftpb.Entry) (first, last uint64, terms []uint64) {
	for i, e := range es {
		if i == 0 {
			first = e.GetIndex()
		}
		last = e.GetIndex()
		terms = append(terms, e.GetTerm())
	}
	return
}

func TestStorageAppendTruncateCompactReload(t *testing.T) {
	dir := t.TempDir()
	s, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	var dl diskLog
	hs := &raftpb.HardState{Term: new(uint64(2)), Commit: new(uint64(3))}
	steps := [][]*groupWrite{
		{{id: "g", dl: &dl, entries: ents(1, 1, 10), hs: hs}},
		// A new leader overwrites 6..10 with 6..8 of term 2.
		{{id: "g", dl: &dl, entries: ents(2, 6, 8)}},
		// A local snapshot at 5 compacts up to 4.
		{{id: "g", dl: &dl, snap: &raftpb.Snapshot{Data: []byte("s5"), Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(5)), Term: new(uint64(1)), ConfState: &raftpb.ConfState{Voters: []uint64{1}}}}, compactTo: 4}},
	}
	for i, ws := range steps {
		if err := s.commit(ws); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if dl != (diskLog{first: 5, last: 8}) {
		t.Fatalf("disk log = %+v, want 5..8", dl)
	}
	s.close()

	s, err = openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	p, dl2, err := s.load("g")
	if err != nil {
		t.Fatal(err)
	}
	first, last, terms := indexes(p.entries)
	if dl2 != dl || first != 6 || last != 8 || terms[0] != 2 || string(p.snap.GetData()) != "s5" || p.hs.GetCommit() != 3 {
		t.Fatalf("reloaded: dl=%+v entries %d..%d terms %v snap %q hs %v", dl2, first, last, terms, p.snap.GetData(), p.hs)
	}
	ms, err := newMemoryStorage(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := ms.FirstIndex(); fi != 6 {
		t.Errorf("cache first index = %d, want 6", fi)
	}
	if li, _ := ms.LastIndex(); li != 8 {
		t.Errorf("cache last index = %d, want 8", li)
	}

	// A snapshot received from the leader replaces the whole log.
	if err := s.commit([]*groupWrite{{id: "g", dl: &dl2, clearLog: true, snap: &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(20)), Term: new(uint64(3))}}, entries: ents(3, 21, 22)}}); err != nil {
		t.Fatal(err)
	}
	p, dl3, err := s.load("g")
	if err != nil {
		t.Fatal(err)
	}
	if first, last, _ := indexes(p.entries); dl3 != (diskLog{21, 22}) || first != 21 || last != 22 {
		t.Fatalf("after received snapshot: dl=%+v entries %d..%d", dl3, first, last)
	}
	ids, err := s.groups()
	if err != nil || len(ids) != 1 || ids[0] != "g" {
		t.Fatalf("groups = %v, %v", ids, err)
	}
}

// TestStorageReadsOlderSnapshotLayout: a snapshot stored the way older versions stored it
// ("snap" directly in the group bucket) loads, and the next one replaces it.
func TestStorageReadsOlderSnapshotLayout(t *testing.T) {
	dir := t.TempDir()
	s, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	old := &raftpb.Snapshot{Data: []byte("old"), Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(5)), Term: new(uint64(1))}}
	b, _ := proto.Marshal(old)
	if err := s.db.Update(func(tx *bolt.Tx) error {
		gb, err := tx.Bucket(bucketGroups).CreateBucket([]byte("g"))
		if err != nil {
			return err
		}
		return gb.Put(keySnapshot, b)
	}); err != nil {
		t.Fatal(err)
	}
	p, _, err := s.load("g")
	if err != nil || string(p.snap.GetData()) != "old" {
		t.Fatalf("load: snapshot %q, %v; want the old one", p.snap.GetData(), err)
	}
	dl := diskLog{}
	next := &raftpb.Snapshot{Data: []byte("new"), Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(9)), Term: new(uint64(1))}}
	if err := s.commit([]*groupWrite{{id: "g", dl: &dl, snap: next}}); err != nil {
		t.Fatal(err)
	}
	if p, _, err = s.load("g"); err != nil || string(p.snap.GetData()) != "new" {
		t.Fatalf("load: snapshot %q, %v; want the new one", p.snap.GetData(), err)
	}
	s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketGroups).Bucket([]byte("g")).Get(keySnapshot) != nil {
			t.Error("the snapshot in the older layout is still there")
		}
		return nil
	})
	s.close()
}
