package replica

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// The write-ahead log (Dir/raft.wal) puts one fsync on the commit path instead of bbolt's
// two (bbolt syncs its pages, then its meta page). The writer appends each batch of log
// entries and hard states to the WAL as one record and syncs it; the batch is then durable
// and the writer releases the responses waiting for it. A background goroutine (the
// checkpointer) applies the logged batches to bbolt later, many in one transaction, and
// records in the same transaction the sequence number of the last one it applied
// (meta/walseq). bbolt thus stays the source of truth for everything older, with the
// layout described in storage.go.
//
// Writes that carry a snapshot received from the leader or create a group go to bbolt
// directly, as before, once the checkpointer has caught up: they are rare and large, and
// keeping them out of the WAL keeps it small. A snapshot this node took itself (with the
// compaction of the log it allows) is not needed for any acknowledgement — everything it
// covers is durable already — so it does not wait on the commit path either: the writer
// queues it behind the logged batches (deferWrite) and the checkpointer writes it in order
// with them. A crash before that leaves the previous snapshot and the whole log, from
// which the node restarts as it did before the snapshot.
//
// Record format (little-endian):
//
//	uint32   payload length n
//	uint32   CRC-32C of seq and payload
//	uint64   seq (each record's is the previous one's + 1, across truncations)
//	n bytes  payload: uvarint count of group writes, then per group write:
//	           uvarint length of the group ID, its bytes
//	           uvarint 0 for no HardState, else 1 + the length of the marshaled one, its bytes
//	           uvarint number of entries, then per entry: uvarint length, marshaled raftpb.Entry
//
// Recovery (openStore) reads records in order and applies to bbolt those with a seq above
// meta/walseq, then truncates the WAL. It stops at the first record that is torn (short,
// or its CRC does not match: the append a crash interrupted, never acknowledged) or whose
// seq does not follow (left over from before a truncation, already in bbolt). A record
// above meta/walseq that does not follow the one before is an error: something is missing.
//
// The WAL is truncated once it exceeds walLimit: the writer waits for the checkpointer to
// catch up, so bbolt holds everything the WAL does, and truncates it. Should the truncation
// not survive a crash, its records are all at or below meta/walseq and are skipped.

const (
	walHeader = 16
	// walLimit is the size past which the WAL is truncated (after a checkpoint).
	walLimit = 64 << 20
	// checkpointDelay is how long the checkpointer lets logged batches gather before it
	// writes them to bbolt (a flush request does not wait).
	checkpointDelay = 50 * time.Millisecond
	// maxWALRecord bounds one record when reading, against a corrupt length.
	maxWALRecord = 1 << 30
)

var (
	bucketMeta = []byte("meta")
	keyWALSeq  = []byte("walseq")
	crcTable   = crc32.MakeTable(crc32.Castagnoli)
)

// wal is the write-ahead log and its checkpointer. append is called by the writer only;
// flush by anyone.
type wal struct {
	f    *os.File
	db   *bolt.DB
	size int64  // bytes in the file (writer only)
	seq  uint64 // seq of the last record appended (writer only)
	buf  []byte // the record being built (writer only)

	mu         sync.Mutex
	cond       *sync.Cond
	queue      []walBatch // logged (or deferred), not yet in bbolt
	logged     uint64     // seq of the last batch logged (= seq, for other goroutines)
	queued     uint64     // batches queued since open, logged or deferred
	written    uint64     // of those, the batches in bbolt (committed)
	flushWant  uint64     // a flush waits for written >= flushWant: no delay
	err        error      // the checkpointer failed; sticky
	stopped    bool
	wake       chan struct{} // a batch was logged
	hurry      chan struct{} // someone waits: no delay
	done       chan struct{}
	checkpoint time.Duration // checkpointDelay
	limit      int64         // walLimit; tests lower it

	checkpoints, checkpointBatches atomic.Uint64 // bbolt transactions of the checkpointer, and batches they carried
}

type walBatch struct {
	seq uint64 // of its record; a deferred write carries the seq of the record before it
	ws  []*groupWrite
}

// openWAL opens Dir/raft.wal, applies to db what it holds beyond db's meta/walseq, and
// truncates it.
func openWAL(path string, db *bolt.DB) (*wal, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("replica: open %s: %w", path, err)
	}
	w := &wal{f: f, db: db, wake: make(chan struct{}, 1), hurry: make(chan struct{}, 1), done: make(chan struct{}), checkpoint: checkpointDelay, limit: walLimit}
	w.cond = sync.NewCond(&w.mu)
	if err := w.recover(); err != nil {
		f.Close()
		return nil, fmt.Errorf("replica: recover %s: %w", path, err)
	}
	go w.run()
	return w, nil
}

// recover replays the WAL into bbolt and empties it.
func (w *wal) recover() error {
	var seq uint64
	if err := w.db.Update(func(tx *bolt.Tx) error {
		mb, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if v := mb.Get(keyWALSeq); len(v) == 8 {
			seq = binary.BigEndian.Uint64(v)
		}
		return nil
	}); err != nil {
		return err
	}
	data, err := io.ReadAll(io.NewSectionReader(w.f, 0, 1<<62))
	if err != nil {
		return err
	}
	var batches []walBatch
	prev, first := uint64(0), true
	for len(data) >= walHeader {
		n := binary.LittleEndian.Uint32(data)
		sum := binary.LittleEndian.Uint32(data[4:])
		if n > maxWALRecord || uint64(len(data)-walHeader) < uint64(n) {
			break // torn
		}
		if crc32.Checksum(data[8:walHeader+int(n)], crcTable) != sum {
			break // torn
		}
		s := binary.LittleEndian.Uint64(data[8:])
		if !first && s != prev+1 {
			break // left over from before a truncation
		}
		if s > seq {
			if len(batches) == 0 && s != seq+1 {
				return fmt.Errorf("record %d follows checkpoint %d: records are missing", s, seq)
			}
			ws, err := decodeWALRecord(data[walHeader : walHeader+int(n)])
			if err != nil {
				return fmt.Errorf("record %d: %w", s, err)
			}
			batches = append(batches, walBatch{seq: s, ws: ws})
		}
		prev, first = s, false
		data = data[walHeader+int(n):]
	}
	if len(batches) > 0 {
		if err := w.db.Update(func(tx *bolt.Tx) error {
			return applyBatches(tx, batches, true)
		}); err != nil {
			return err
		}
		seq = batches[len(batches)-1].seq
	}
	if err := w.f.Truncate(0); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		return err
	}
	w.seq, w.logged = seq, seq
	return nil
}

// applyBatches writes batches to bbolt in order, and the last one's seq as meta/walseq.
// With fromDisk the group writes' disk log ranges are read from bbolt (recovery).
func applyBatches(tx *bolt.Tx, batches []walBatch, fromDisk bool) error {
	root := tx.Bucket(bucketGroups)
	ranges := map[GroupID]*diskLog{}
	for _, b := range batches {
		for _, gw := range b.ws {
			if fromDisk {
				dl := ranges[gw.id]
				if dl == nil {
					dl = new(diskLog)
					*dl = diskRange(root.Bucket([]byte(gw.id)))
					ranges[gw.id] = dl
				}
				gw.dl = dl
			}
			if err := writeGroup(root, gw); err != nil {
				return fmt.Errorf("replica: persist group %s: %w", gw.id, err)
			}
		}
	}
	mb, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return err
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], batches[len(batches)-1].seq)
	return mb.Put(keyWALSeq, v[:])
}

// diskRange reads the index range of a group's log bucket (gb may be nil).
func diskRange(gb *bolt.Bucket) diskLog {
	if gb == nil {
		return diskLog{}
	}
	lb := gb.Bucket(bucketLog)
	if lb == nil {
		return diskLog{}
	}
	c := lb.Cursor()
	k, _ := c.First()
	if k == nil {
		return diskLog{}
	}
	l, _ := c.Last()
	return diskLog{first: binary.BigEndian.Uint64(k), last: binary.BigEndian.Uint64(l)}
}

// walEligible reports whether ws can go through the WAL: log entries and hard states only.
func walEligible(ws []*groupWrite) bool {
	for _, gw := range ws {
		if gw.snap != nil || gw.clearLog || gw.compactTo != 0 || gw.create {
			return false
		}
	}
	return true
}

// append logs ws as one record and syncs it; ws are then durable, and queued for bbolt.
// The group writes carry their marshaled entries and hard state from here on.
func (w *wal) append(ws []*groupWrite) error {
	if err := w.failed(); err != nil {
		return err
	}
	if w.size > w.limit {
		if err := w.flush(); err != nil {
			return err
		}
		if err := w.f.Truncate(0); err != nil {
			return fmt.Errorf("replica: truncate wal: %w", err)
		}
		w.size = 0
	}
	b := append(w.buf[:0], make([]byte, walHeader)...)
	b = binary.AppendUvarint(b, uint64(len(ws)))
	for _, gw := range ws {
		if err := gw.marshal(); err != nil {
			return fmt.Errorf("replica: persist group %s: %w", gw.id, err)
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
	seq := w.seq + 1
	binary.LittleEndian.PutUint32(b, uint32(len(b)-walHeader))
	binary.LittleEndian.PutUint64(b[8:], seq)
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[8:], crcTable))
	if cap(b) <= 1<<20 {
		w.buf = b
	} else {
		w.buf = nil
	}
	if _, err := w.f.WriteAt(b, w.size); err != nil {
		return fmt.Errorf("replica: write wal: %w", err)
	}
	if err := fdatasync(w.f); err != nil {
		return fmt.Errorf("replica: sync wal: %w", err)
	}
	w.size += int64(len(b))
	w.seq = seq
	w.mu.Lock()
	w.queue = append(w.queue, walBatch{seq: seq, ws: ws})
	w.logged = seq
	w.queued++
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return nil
}

// deferWrite queues ws, which need not be durable before anything is acknowledged (a
// snapshot taken here and the compaction it allows), to be written to bbolt by the
// checkpointer after every batch logged so far and before any logged later. The writer
// calls it; flush waits for it as for logged batches.
func (w *wal) deferWrite(ws []*groupWrite) {
	w.mu.Lock()
	w.queue = append(w.queue, walBatch{seq: w.logged, ws: ws})
	w.queued++
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func decodeWALRecord(b []byte) ([]*groupWrite, error) {
	bad := errors.New("malformed record")
	next := func() ([]byte, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, false
		}
		v := b[k : k+int(n)]
		b = b[k+int(n):]
		return v, true
	}
	count, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, bad
	}
	b = b[k:]
	var ws []*groupWrite
	for range count {
		id, ok := next()
		if !ok {
			return nil, bad
		}
		gw := &groupWrite{id: GroupID(id)}
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k)+1 {
			return nil, bad
		}
		b = b[k:]
		if n > 0 {
			hs := b[:n-1]
			b = b[n-1:]
			gw.hs = new(raftpb.HardState)
			if err := proto.Unmarshal(hs, gw.hs); err != nil {
				return nil, fmt.Errorf("group %s: hard state: %w", id, err)
			}
			gw.hsData = hs
		}
		n, k = binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)) {
			return nil, bad
		}
		b = b[k:]
		for range n {
			eb, ok := next()
			if !ok {
				return nil, bad
			}
			e := new(raftpb.Entry)
			if err := proto.Unmarshal(eb, e); err != nil {
				return nil, fmt.Errorf("group %s: entry: %w", id, err)
			}
			gw.entries = append(gw.entries, e)
			gw.entryData = append(gw.entryData, eb)
		}
		ws = append(ws, gw)
	}
	if len(b) != 0 {
		return nil, bad
	}
	return ws, nil
}

// run is the checkpointer: it writes logged batches to bbolt, many per transaction.
func (w *wal) run() {
	defer close(w.done)
	for {
		select {
		case <-w.wake:
		case <-w.hurry:
		}
		w.mu.Lock()
		urgent := w.flushWant > w.written || w.stopped
		w.mu.Unlock()
		if !urgent {
			// Let more batches gather, unless someone waits.
			t := time.NewTimer(w.checkpoint)
			select {
			case <-t.C:
			case <-w.hurry:
				t.Stop()
			}
		}
		w.mu.Lock()
		batches := w.queue
		w.queue = nil
		w.mu.Unlock()
		var err error
		if len(batches) > 0 {
			err = w.db.Update(func(tx *bolt.Tx) error { return applyBatches(tx, batches, false) })
			if err == nil {
				w.checkpoints.Add(1)
				w.checkpointBatches.Add(uint64(len(batches)))
			}
		}
		w.mu.Lock()
		if err != nil && w.err == nil {
			w.err = fmt.Errorf("replica: checkpoint wal to bbolt: %w", err)
		}
		if err == nil && len(batches) > 0 {
			w.written += uint64(len(batches))
		}
		w.cond.Broadcast()
		done := w.stopped && len(w.queue) == 0
		w.mu.Unlock()
		if done {
			return
		}
	}
}

func (w *wal) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *wal) hasten() {
	select {
	case w.hurry <- struct{}{}:
	default:
	}
}

// flush waits until bbolt holds every batch logged or deferred so far.
func (w *wal) flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.queued
	for w.written < n && w.err == nil && !w.stopped {
		if w.flushWant < n {
			w.flushWant = n
		}
		w.hasten()
		w.cond.Wait()
	}
	if w.err != nil {
		return w.err
	}
	if w.written < n {
		return errors.New("replica: wal closed")
	}
	return nil
}

// close stops the checkpointer. With flush it first writes every logged batch to bbolt
// (and empties the WAL); without (a simulated crash), they stay in the WAL only.
func (w *wal) close(flush bool) error {
	var err error
	if flush {
		err = w.flush()
	}
	w.mu.Lock()
	w.stopped = true
	if !flush {
		w.queue = nil
	}
	w.cond.Broadcast()
	w.mu.Unlock()
	w.hasten()
	<-w.done
	if flush && err == nil {
		if terr := w.f.Truncate(0); terr == nil {
			w.f.Sync()
		}
	}
	return errors.Join(err, w.f.Close())
}
