package replica

import (
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// The writer is the host's single "append thread" (raft AsyncStorageWrites): the
// loop hands it every group's MsgStorageAppend, in order, and keeps running while
// the disk works. The writer takes everything queued — the appends of many loop
// iterations and many groups — makes it durable with ONE fsync (a WAL record; see
// wal.go), updates the groups' log caches, and only then releases the responses raft
// attached to the appends: acknowledgements to other nodes are sent from here,
// self-addressed ones go back to the loop.
//
// A hard state whose only change is the commit index needs no fsync: it is kept
// and written by the next transaction (or at Close); raft recovers the commit
// index from the leader after a crash.

// writeItem is one unit of work for the writer, processed in queue order.
type writeItem struct {
	g         *Group
	app       *raftpb.Message  // MsgStorageAppend
	init      *groupWrite      // initial state of a new group
	snap      *raftpb.Snapshot // snapshot taken locally
	compactTo uint64           // with snap: delete log entries <= compactTo
	barrier   chan struct{}    // closed once everything queued before is durable
	forget    bool             // with barrier: drop g's unwritten hard state (stopped group)
}

type writer struct {
	h       *Host
	mu      sync.Mutex
	items   []writeItem
	signal  chan struct{}
	stop    chan bool // true: flush and exit; false: exit at once (crash)
	done    chan struct{}
	pending map[*Group]*raftpb.HardState // commit-only hard states not yet durable
	durable map[*Group]*raftpb.HardState // latest durable hard state
}

func newWriter(h *Host) *writer {
	w := &writer{
		h:       h,
		signal:  make(chan struct{}, 1),
		stop:    make(chan bool, 1),
		done:    make(chan struct{}),
		pending: make(map[*Group]*raftpb.HardState),
		durable: make(map[*Group]*raftpb.HardState),
	}
	go w.run()
	return w
}

func (w *writer) push(it writeItem) {
	w.mu.Lock()
	w.items = append(w.items, it)
	w.mu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

// barrier returns once every item queued before it is durable (or the writer
// stopped). With forget, nothing more is written for g (a stopped group must not
// be recreated on disk by a late hard state, e.g. after DeleteGroup).
func (w *writer) barrier(g *Group, forget bool) {
	ch := make(chan struct{})
	w.push(writeItem{g: g, barrier: ch, forget: forget})
	select {
	case <-ch:
	case <-w.done:
	}
}

// close stops the writer; with flush, queued items and pending hard states are
// written first.
func (w *writer) close(flush bool) {
	w.stop <- flush
	<-w.done
}

func (w *writer) run() {
	defer close(w.done)
	var items []writeItem
	for {
		select {
		case <-w.signal:
		case flush := <-w.stop:
			if flush {
				w.mu.Lock()
				items, w.items = w.items, nil
				w.mu.Unlock()
				w.process(items, true)
			}
			return
		}
		w.mu.Lock()
		items, w.items = w.items, items[:0]
		w.mu.Unlock()
		if !w.process(items, false) {
			return
		}
		clear(items)
	}
}

// process persists items; false means storage failed and the host must stop.
func (w *writer) process(items []writeItem, final bool) bool {
	h := w.h
	var ws, deferred []*groupWrite
	var snapOf []*Group // the group of each deferred write
	var forgotten map[*Group]bool
	need := final && len(w.pending) > 0
	for _, it := range items {
		g := it.g
		switch {
		case it.forget:
			delete(w.pending, g)
			delete(w.durable, g)
			if forgotten == nil {
				forgotten = map[*Group]bool{}
			}
			forgotten[g] = true
		case it.init != nil:
			ws = append(ws, it.init)
			if it.init.hs != nil {
				w.durable[g] = it.init.hs
			}
			need = true
		case it.snap != nil:
			// Nothing waits for a snapshot taken here: see wal.deferWrite.
			deferred = append(deferred, &groupWrite{id: g.id, dl: &g.dl, snap: it.snap, compactTo: it.compactTo})
			snapOf = append(snapOf, g)
		case it.app != nil:
			m := it.app
			gw := &groupWrite{id: g.id, dl: &g.dl, entries: m.GetEntries()}
			if !raft.IsEmptySnap(m.GetSnapshot()) {
				gw.snap, gw.clearLog = m.GetSnapshot(), true
				need = true
			}
			if len(gw.entries) > 0 {
				need = true
			}
			if m.Term != nil {
				hs := &raftpb.HardState{Term: m.Term, Vote: m.Vote, Commit: m.Commit}
				d := w.durable[g]
				if d == nil || d.GetTerm() != hs.GetTerm() || d.GetVote() != hs.GetVote() {
					need = true
				}
				w.pending[g] = hs
			}
			ws = append(ws, gw)
		}
	}
	if need {
		// Hard states last: the newest one of each group wins. A snapshot is
		// thus always written with a commit index >= its own index.
		for g, hs := range w.pending {
			ws = append(ws, &groupWrite{id: g.id, dl: &g.dl, hs: hs})
			w.durable[g] = hs
		}
		clear(w.pending)
		start := time.Now()
		err := h.st.commit(ws)
		h.stats.observeSync(time.Since(start), len(ws))
		if err != nil {
			h.fail(err)
			return false
		}
	}
	if len(deferred) > 0 {
		// Each snapshot goes with its group's newest hard state (as of this call:
		// later ones are in later records, written after it), so that the commit
		// index on disk is at least the snapshot's (raft sent a hard state with
		// that commit before it handed the entries the snapshot covers to the
		// apply goroutine). The writes are queued after this call's record, so
		// behind every entry the snapshots cover.
		// (Without either, raft has sent none since the group started, and the one on
		// disk is the newest.) A stopped group's snapshot is dropped: it is optional.
		keep := deferred[:0]
		for i, gw := range deferred {
			g := snapOf[i]
			if forgotten[g] {
				continue
			}
			if gw.hs = w.pending[g]; gw.hs == nil {
				gw.hs = w.durable[g]
			}
			keep = append(keep, gw)
		}
		if len(keep) > 0 {
			h.st.wal.deferWrite(keep)
		}
	}
	if final {
		return true
	}

	// Durable: update the log caches, then release the responses.
	out := make(map[uint64][]Envelope)
	var local []localResp
	for _, it := range items {
		if it.barrier != nil {
			close(it.barrier)
			continue
		}
		if it.init != nil {
			it.g.inflight.Add(-1)
			continue
		}
		m := it.app
		if m == nil {
			continue
		}
		g := it.g
		if snap := m.GetSnapshot(); !raft.IsEmptySnap(snap) {
			if err := g.ms.ApplySnapshot(snap); err != nil {
				h.log.Debug("log cache skipped snapshot", "group", g.id, "index", snap.GetMetadata().GetIndex(), "err", err)
			}
			// The state machine restores it before any later committed entry.
			g.aq.push(applyTask{snap: snap})
		}
		if err := g.ms.Append(m.GetEntries()); err != nil {
			h.fail(err)
			return false
		}
		for _, r := range m.GetResponses() {
			if to := r.GetTo(); to == h.cfg.NodeID {
				local = append(local, localResp{g: g, m: r})
			} else {
				out[to] = append(out[to], Envelope{Group: g.id, Msg: r})
			}
		}
		g.inflight.Add(-1)
	}
	for to, batch := range out {
		h.tr.Send(to, batch)
		h.stats.sent(len(batch))
	}
	if len(local) > 0 {
		h.mu.Lock()
		h.local = append(h.local, local...)
		h.mu.Unlock()
		h.signal()
	}
	return true
}

// localResp is a response raft addressed to itself, released by the writer.
type localResp struct {
	g *Group
	m *raftpb.Message
}
