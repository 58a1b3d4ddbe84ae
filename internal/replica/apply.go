package replica

import (
	"sync"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// applyTask is one unit of work for a group's apply goroutine, in log order.
type applyTask struct {
	snap    *raftpb.Snapshot // restore this first, if set
	entries []*raftpb.Entry
	// confs holds the configuration resulting from each conf change entry, by index.
	confs map[uint64]*raftpb.ConfState
	// snapshotNow asks for a snapshot at the current applied index.
	snapshotNow bool
}

// applyQueue is an unbounded FIFO between the host loop and one apply goroutine,
// so that a slow state machine never blocks the loop (and thus other groups).
type applyQueue struct {
	mu     sync.Mutex
	tasks  []applyTask
	signal chan struct{}
	stop   chan struct{}
}

func (q *applyQueue) push(t applyTask) {
	q.mu.Lock()
	q.tasks = append(q.tasks, t)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *applyQueue) take() []applyTask {
	q.mu.Lock()
	t := q.tasks
	q.tasks = nil
	q.mu.Unlock()
	return t
}

// applyState is owned by the apply goroutine.
type applyState struct {
	applied   uint64
	snapIndex uint64            // index of the latest snapshot (taken or restored)
	conf      *raftpb.ConfState // configuration as of applied
	removed   bool              // a change applied here removed this node
}

func (g *Group) applyLoop(st applyState) {
	defer close(g.applyEnd)
	force := false
	for {
		select {
		case <-g.aq.signal:
		case <-g.aq.stop:
			return
		}
		for _, t := range g.aq.take() {
			select {
			case <-g.aq.stop:
				return
			default:
			}
			if !g.applyTask(&st, t) {
				return
			}
			if t.snapshotNow {
				force = true
			}
		}
		g.notifyApplied(st.applied)
		g.maybeSnapshot(&st, force)
		force = false
	}
}

// applyTask applies t; false means the state machine failed and the group stops applying.
func (g *Group) applyTask(st *applyState, t applyTask) bool {
	log := g.h.log
	if t.snap != nil {
		idx := t.snap.GetMetadata().GetIndex()
		if idx > st.applied {
			if err := g.sm.Restore(t.snap.GetData()); err != nil {
				log.Error("restore snapshot failed; group stops applying", "group", g.id, "index", idx, "err", err)
				return false
			}
			st.applied = idx
			st.snapIndex = idx
			st.conf = t.snap.GetMetadata().GetConfState()
			g.applied.Store(idx)
		}
	}
	self := g.h.cfg.NodeID
	for _, e := range t.entries {
		idx := e.GetIndex()
		if idx <= st.applied {
			continue
		}
		switch e.GetType() {
		case raftpb.EntryType_EntryNormal:
			if len(e.GetData()) == 0 {
				break // leader's empty entry, or a conf change raft refused
			}
			node, req, data, err := decodeProposal(e.GetData())
			if err != nil {
				log.Error("skipping entry with malformed envelope", "group", g.id, "index", idx, "err", err)
				break
			}
			val := g.sm.Apply(idx, data)
			if node == self {
				g.complete(g.waiters, req, result{val: val, index: idx})
			}
		case raftpb.EntryType_EntryConfChange, raftpb.EntryType_EntryConfChangeV2:
			if cs := t.confs[idx]; cs != nil {
				if inConf(st.conf, self) && !inConf(cs, self) {
					st.removed = true
					g.markRemoved("applied", idx)
				}
				st.conf = cs
			}
			if node, req, ok := confChangeRequest(e); ok && node == self {
				g.complete(g.waiters, req, result{index: idx})
			}
		}
		st.applied = idx
		g.applied.Store(idx)
	}
	return true
}

// confChangeRequest extracts the request header from a conf change entry's context.
func confChangeRequest(e *raftpb.Entry) (node, req uint64, ok bool) {
	var ctx []byte
	if e.GetType() == raftpb.EntryType_EntryConfChange {
		var cc raftpb.ConfChange
		if proto.Unmarshal(e.GetData(), &cc) != nil {
			return 0, 0, false
		}
		ctx = cc.GetContext()
	} else {
		var cc raftpb.ConfChangeV2
		if proto.Unmarshal(e.GetData(), &cc) != nil {
			return 0, 0, false
		}
		ctx = cc.GetContext()
	}
	node, req, _, err := decodeProposal(ctx)
	return node, req, err == nil
}

// notifyApplied wakes ReadIndex waiters whose index is applied.
func (g *Group) notifyApplied(applied uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	keep := g.appliedWs[:0]
	for _, w := range g.appliedWs {
		if w.index <= applied {
			close(w.ch)
		} else {
			keep = append(keep, w)
		}
	}
	clear(g.appliedWs[len(keep):])
	g.appliedWs = keep
}

// maybeSnapshot takes a state machine snapshot every SnapshotEntries applied
// entries and hands it to the loop, which stores it and compacts the log.
func (g *Group) maybeSnapshot(st *applyState, force bool) {
	if st.removed {
		// Never snapshot past this node's removal: should the node restart
		// before its owner deleted the group, the removal is applied again.
		if force {
			g.h.submit(func() { g.snapRequested = false })
		}
		return
	}
	if st.applied < st.snapIndex+g.h.cfg.SnapshotEntries && !(force && st.applied > st.snapIndex) {
		if force {
			g.h.submit(func() { g.snapRequested = false })
		}
		return
	}
	if c, ok := g.sm.(SnapshotCapturer); ok {
		g.snapshotAsync(st, c)
		return
	}
	data, err := g.sm.Snapshot()
	if err != nil {
		g.h.log.Error("state machine snapshot failed", "group", g.id, "index", st.applied, "err", err)
		return
	}
	st.snapIndex = st.applied
	index, conf := st.applied, st.conf
	g.h.submit(func() { g.h.createSnapshot(g, index, conf, data) })
}

// snapshotAsync captures a snapshot here and encodes it on another goroutine,
// so that applying (and the proposals waiting for it) goes on meanwhile. One
// encoding at a time: while one runs, the next is taken after it. A snapshot
// raft asked for (requestSnapshot) that the running one is too old for is
// asked for again by raft (see logCache.Snapshot).
func (g *Group) snapshotAsync(st *applyState, c SnapshotCapturer) {
	if !g.snapEncoding.CompareAndSwap(false, true) {
		return
	}
	encode := c.CaptureSnapshot()
	index, conf := st.applied, st.conf
	st.snapIndex = index
	g.snapWG.Add(1)
	go func() {
		defer g.snapWG.Done()
		data, err := encode()
		if err != nil {
			g.h.log.Error("state machine snapshot failed", "group", g.id, "index", index, "err", err)
			if !g.h.submit(func() { g.snapRequested = false; g.snapEncoding.Store(false) }) {
				g.snapEncoding.Store(false)
			}
			return
		}
		if !g.h.submit(func() { g.h.createSnapshot(g, index, conf, data); g.snapEncoding.Store(false) }) {
			g.snapEncoding.Store(false)
		}
	}()
}

// requestSnapshot runs on the loop: it asks the apply goroutine for a snapshot now.
func (g *Group) requestSnapshot() {
	if g.snapRequested {
		return
	}
	g.snapRequested = true
	g.aq.push(applyTask{snapshotNow: true})
}

// stopApply stops the apply goroutine and waits for it (and for a snapshot
// being encoded).
func (g *Group) stopApply() {
	g.stopOnce.Do(func() { close(g.aq.stop) })
	<-g.applyEnd
	g.snapWG.Wait()
}
