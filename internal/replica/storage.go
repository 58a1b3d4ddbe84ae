package replica

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Storage layout (one bbolt file, Dir/raft.db):
//
//	groups/                 top-level bucket
//	  <group id>/           one nested bucket per group
//	    hs    -> raftpb.HardState
//	    snapshot/
//	      snap -> raftpb.Snapshot (metadata with ConfState, and the state machine bytes)
//	    log/  -> big-endian uint64 index -> raftpb.Entry
//	meta/
//	  walseq -> big-endian uint64: the last WAL record in bbolt (see wal.go)
//
// The snapshot has a bucket of its own so that it shares no page with the hard state and
// the log bucket's root: bbolt rewrites every page of a node it changes, and a snapshot
// stored beside them (as "snap" directly in the group bucket, where older versions kept it
// and load still finds it) was rewritten, megabytes of it, by every write of entries.
//
// The log bucket holds a contiguous range of entries. A snapshot at index S
// supersedes all entries <= S; entries <= S may linger until compaction deletes them
// and are skipped when loading.

var (
	bucketGroups = []byte("groups")
	bucketLog    = []byte("log")
	keyHardState = []byte("hs")
	keySnapshot  = []byte("snap")
	bucketSnap   = []byte("snapshot")
)

type store struct {
	db  *bolt.DB
	wal *wal // entries and hard states reach bbolt through it (see wal.go)
}

func openStore(dir string) (*store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("replica: create data dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, "raft.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         time.Second,
		NoFreelistSync:  true,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: 64 << 20, // fewer remaps (each blocks the writer) as the file grows
	})
	if err != nil {
		return nil, fmt.Errorf("replica: open %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketGroups)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("replica: init %s: %w", path, err)
	}
	w, err := openWAL(filepath.Join(dir, "raft.wal"), db)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &store{db: db, wal: w}, nil
}

// close checkpoints what the WAL holds into bbolt and closes both.
func (s *store) close() error {
	return errors.Join(s.wal.close(true), s.db.Close())
}

// crash closes the files as a killed process leaves them: what only the WAL holds stays
// there (for tests).
func (s *store) crash() {
	s.wal.close(false)
	s.db.Close()
}

func (s *store) groups() ([]GroupID, error) {
	if err := s.wal.flush(); err != nil {
		return nil, err
	}
	var out []GroupID
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGroups).ForEachBucket(func(k []byte) error {
			out = append(out, GroupID(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("replica: list groups: %w", err)
	}
	return out, nil
}

// persisted is what the disk holds for one group.
type persisted struct {
	hs      *raftpb.HardState
	snap    *raftpb.Snapshot
	entries []*raftpb.Entry
	exists  bool
}

// diskLog tracks the index range present in a group's log bucket (first == 0: empty).
type diskLog struct{ first, last uint64 }

func (s *store) load(id GroupID) (persisted, diskLog, error) {
	var p persisted
	var dl diskLog
	if err := s.wal.flush(); err != nil {
		return p, dl, err
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		gb := tx.Bucket(bucketGroups).Bucket([]byte(id))
		if gb == nil {
			return nil
		}
		p.exists = true
		if v := gb.Get(keyHardState); v != nil {
			p.hs = new(raftpb.HardState)
			if err := proto.Unmarshal(v, p.hs); err != nil {
				return fmt.Errorf("hardstate: %w", err)
			}
		}
		v := gb.Get(keySnapshot) // older layout
		if sb := gb.Bucket(bucketSnap); sb != nil {
			v = sb.Get(keySnapshot)
		}
		if v != nil {
			p.snap = new(raftpb.Snapshot)
			if err := proto.Unmarshal(v, p.snap); err != nil {
				return fmt.Errorf("snapshot: %w", err)
			}
		}
		snapIndex := p.snap.GetMetadata().GetIndex()
		lb := gb.Bucket(bucketLog)
		if lb == nil {
			return nil
		}
		c := lb.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			idx := binary.BigEndian.Uint64(k)
			if dl.first == 0 {
				dl.first = idx
			}
			if dl.last != 0 && idx != dl.last+1 {
				return fmt.Errorf("log gap after index %d (next %d)", dl.last, idx)
			}
			dl.last = idx
			if idx <= snapIndex {
				continue
			}
			e := new(raftpb.Entry)
			if err := proto.Unmarshal(v, e); err != nil {
				return fmt.Errorf("entry %d: %w", idx, err)
			}
			p.entries = append(p.entries, e)
		}
		return nil
	})
	if err != nil {
		return p, dl, fmt.Errorf("replica: load group %s: %w", id, err)
	}
	if len(p.entries) > 0 && p.snap != nil && p.entries[0].GetIndex() != p.snap.GetMetadata().GetIndex()+1 {
		return p, dl, fmt.Errorf("replica: load group %s: log starts at %d after snapshot %d", id, p.entries[0].GetIndex(), p.snap.GetMetadata().GetIndex())
	}
	return p, dl, nil
}

// groupWrite is everything one group persists in one batch transaction.
type groupWrite struct {
	id   GroupID
	dl   *diskLog // updated in place when the transaction is built
	hs   *raftpb.HardState
	snap *raftpb.Snapshot
	// clearLog removes the whole log (a snapshot received from the leader replaces it).
	clearLog bool
	// compactTo deletes log entries with index <= compactTo.
	compactTo uint64
	entries   []*raftpb.Entry
	create    bool // create the group bucket

	// The marshaled entries and hard state, once marshal ran (the WAL and bbolt share them).
	entryData [][]byte
	hsData    []byte
}

// marshal fills entryData and hsData.
func (w *groupWrite) marshal() error {
	if w.entryData != nil || w.hsData != nil {
		return nil
	}
	if len(w.entries) > 0 {
		w.entryData = make([][]byte, len(w.entries))
		for i, e := range w.entries {
			b, err := proto.Marshal(e)
			if err != nil {
				return err
			}
			w.entryData[i] = b
		}
	}
	if w.hs != nil {
		b, err := proto.Marshal(w.hs)
		if err != nil {
			return err
		}
		w.hsData = b
	}
	return nil
}

func idxKey(i uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], i)
	return k[:]
}

// commit makes all groups' changes durable with one fsync: appended to the WAL, from which
// the checkpointer writes them to bbolt later. Snapshots and new groups are written to
// bbolt directly (one transaction, two fsyncs), after everything logged before them.
func (s *store) commit(ws []*groupWrite) error {
	if walEligible(ws) {
		return s.wal.append(ws)
	}
	if err := s.wal.flush(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketGroups)
		for _, w := range ws {
			if err := writeGroup(root, w); err != nil {
				return fmt.Errorf("replica: persist group %s: %w", w.id, err)
			}
		}
		return nil
	})
}

func writeGroup(root *bolt.Bucket, w *groupWrite) error {
	gb, err := root.CreateBucketIfNotExists([]byte(w.id))
	if err != nil {
		return err
	}
	lb, err := gb.CreateBucketIfNotExists(bucketLog)
	if err != nil {
		return err
	}
	dl := w.dl
	if w.snap != nil {
		b, err := proto.Marshal(w.snap)
		if err != nil {
			return err
		}
		sb, err := gb.CreateBucketIfNotExists(bucketSnap)
		if err != nil {
			return err
		}
		if err := sb.Put(keySnapshot, b); err != nil {
			return err
		}
		if gb.Get(keySnapshot) != nil {
			if err := gb.Delete(keySnapshot); err != nil {
				return err
			}
		}
	}
	if w.clearLog && dl.first != 0 {
		if err := gb.DeleteBucket(bucketLog); err != nil {
			return err
		}
		if lb, err = gb.CreateBucket(bucketLog); err != nil {
			return err
		}
		*dl = diskLog{}
	}
	if w.compactTo != 0 && dl.first != 0 && dl.first <= w.compactTo {
		end := min(w.compactTo, dl.last)
		for i := dl.first; i <= end; i++ {
			if err := lb.Delete(idxKey(i)); err != nil {
				return err
			}
		}
		if end == dl.last {
			*dl = diskLog{}
		} else {
			dl.first = end + 1
		}
	}
	if len(w.entries) > 0 {
		first := w.entries[0].GetIndex()
		if dl.first != 0 && first <= dl.last {
			// Entries at and after first conflict with the new ones: discard them.
			for i := max(first, dl.first); i <= dl.last; i++ {
				if err := lb.Delete(idxKey(i)); err != nil {
					return err
				}
			}
			if first <= dl.first {
				*dl = diskLog{}
			} else {
				dl.last = first - 1
			}
		}
		if dl.first != 0 && first != dl.last+1 {
			// Not contiguous with what is on disk (after a snapshot): drop the old range.
			if err := gb.DeleteBucket(bucketLog); err != nil {
				return err
			}
			if lb, err = gb.CreateBucket(bucketLog); err != nil {
				return err
			}
			*dl = diskLog{}
		}
		if err := w.marshal(); err != nil {
			return err
		}
		for i, e := range w.entries {
			if err := lb.Put(idxKey(e.GetIndex()), w.entryData[i]); err != nil {
				return err
			}
		}
		if dl.first == 0 {
			dl.first = first
		}
		dl.last = w.entries[len(w.entries)-1].GetIndex()
	}
	if w.hs != nil {
		if err := w.marshal(); err != nil {
			return err
		}
		if err := gb.Put(keyHardState, w.hsData); err != nil {
			return err
		}
	}
	return nil
}

// newMemoryStorage rebuilds the in-memory raft log cache from what is on disk.
func newMemoryStorage(p persisted) (*raft.MemoryStorage, error) {
	ms := raft.NewMemoryStorage()
	if p.snap != nil && !raft.IsEmptySnap(p.snap) {
		if err := ms.ApplySnapshot(p.snap); err != nil {
			return nil, err
		}
	}
	if p.hs != nil {
		if err := ms.SetHardState(p.hs); err != nil {
			return nil, err
		}
	}
	if err := ms.Append(p.entries); err != nil {
		return nil, err
	}
	return ms, nil
}

// logCache is the raft.Storage of one group: the in-memory copy of what is on
// disk. Its Snapshot refuses to hand out a snapshot older than the latest
// configuration change, because a member added by that change would ignore it (it
// is not in its ConfState); it asks the apply goroutine for a fresh snapshot and
// raft retries.
type logCache struct {
	*raft.MemoryStorage
	g *Group
}

func (c logCache) Snapshot() (*raftpb.Snapshot, error) {
	snap, err := c.MemoryStorage.Snapshot()
	if err != nil {
		return nil, err
	}
	if snap.GetMetadata().GetIndex() < c.g.confIndex {
		c.g.requestSnapshot()
		return nil, raft.ErrSnapshotTemporarilyUnavailable
	}
	return snap, nil
}

func (s *store) deleteGroup(id GroupID) error {
	if err := s.wal.flush(); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketGroups).DeleteBucket([]byte(id))
		if errors.Is(err, bolterrors.ErrBucketNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("replica: delete group %s: %w", id, err)
	}
	return nil
}
