package replica

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// Host runs the replicas of many groups in one process: one loop goroutine drives
// every group's raft state machine, persists all groups' changes of an iteration in
// one bbolt transaction, and sends one batch per peer.
type Host struct {
	cfg Config
	log *slog.Logger
	st  *store
	tr  Transport

	reqSeq atomic.Uint64

	startMu sync.Mutex // serializes StartGroup/StopGroup

	mu          sync.Mutex
	groups      map[GroupID]*Group
	inbox       []incoming
	local       []localResp // released by the writer
	failed      error       // storage failure that stopped the host
	w           *writer
	ops         []func()
	unreachable []uint64
	closed      bool

	wake      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error

	// Owned by the loop goroutine.
	lgroups map[GroupID]*Group
	awake   map[*Group]struct{}
	dirty   []*Group
	peers   map[uint64]*peer
	members map[uint64]int // peers referenced by some group's configuration
	out     map[uint64][]Envelope
	tickN   uint64
	stats   *hostStats
}

type incoming struct {
	from  uint64
	batch []Envelope
}

// Open opens (or creates) Dir/raft.db and starts the host loop. Groups are not
// started automatically: call Groups and StartGroup.
func Open(cfg Config) (*Host, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	st, err := openStore(c.Dir)
	if err != nil {
		return nil, err
	}
	h := &Host{
		cfg:     c,
		log:     c.Logger.With("node", c.NodeID),
		st:      st,
		tr:      c.Transport,
		groups:  make(map[GroupID]*Group),
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		lgroups: make(map[GroupID]*Group),
		awake:   make(map[*Group]struct{}),
		peers:   make(map[uint64]*peer),
		members: make(map[uint64]int),
		out:     make(map[uint64][]Envelope),
		stats:   &hostStats{},
	}
	var seed [8]byte
	if _, err := rand.Read(seed[:]); err != nil {
		st.close()
		return nil, fmt.Errorf("replica: seed request ids: %w", err)
	}
	// Request ids only need to be unique per node across restarts: start at a
	// random point so that entries replayed after a restart never match new waiters.
	h.reqSeq.Store(binary.LittleEndian.Uint64(seed[:]) >> 1)
	if b, ok := c.Transport.(interface{ SetHandler(Handler) }); ok {
		b.SetHandler(h)
	}
	h.w = newWriter(h)
	go h.run()
	return h, nil
}

// Close stops all groups and closes storage. It is idempotent.
func (h *Host) Close() error {
	h.closeOnce.Do(func() {
		h.mu.Lock()
		h.closed = true
		groups := make([]*Group, 0, len(h.groups))
		for _, g := range h.groups {
			groups = append(groups, g)
		}
		h.groups = map[GroupID]*Group{}
		h.mu.Unlock()
		close(h.stop)
		<-h.done
		h.w.close(true)
		var errs []error
		h.mu.Lock()
		if h.failed != nil {
			errs = append(errs, h.failed)
		}
		h.mu.Unlock()
		for _, g := range groups {
			g.stopApply()
			g.closeWaiters()
		}
		if err := h.st.close(); err != nil {
			errs = append(errs, fmt.Errorf("replica: close storage: %w", err))
		}
		h.closeErr = errors.Join(errs...)
	})
	return h.closeErr
}

// Groups lists the groups persisted in storage, so a restarted host can resume them.
func (h *Host) Groups() ([]GroupID, error) { return h.st.groups() }

// Group returns the running replica of id.
func (h *Host) Group(id GroupID) (*Group, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	g, ok := h.groups[id]
	return g, ok
}

// StartGroup starts (or resumes from disk) the replica of group id. peers is used
// only when the group has no state on disk: it then bootstraps with those voters
// (every initial member must use the same list). A node added later by a
// configuration change starts with peers == nil and waits for the leader.
func (h *Host) StartGroup(id GroupID, peers []uint64, sm StateMachine) (*Group, error) {
	if id == "" {
		return nil, errors.New("replica: start group: empty group id")
	}
	if sm == nil {
		return nil, fmt.Errorf("replica: start group %s: nil state machine", id)
	}
	h.startMu.Lock()
	defer h.startMu.Unlock()
	h.mu.Lock()
	closed, exists := h.closed, h.groups[id] != nil
	h.mu.Unlock()
	if closed {
		return nil, ErrStopped
	}
	if exists {
		return nil, fmt.Errorf("replica: start group %s: already started", id)
	}
	p, dl, err := h.st.load(id)
	if err != nil {
		return nil, err
	}
	empty := p.hs == nil && p.snap == nil && len(p.entries) == 0
	bootstrapped := false
	switch {
	case empty && len(peers) > 0:
		data, err := sm.Snapshot()
		if err != nil {
			return nil, fmt.Errorf("replica: start group %s: snapshot of initial state: %w", id, err)
		}
		// The group starts from a snapshot at index 1 holding the initial voters
		// and the state machine's initial state; a member added later receives it.
		p.snap = &raftpb.Snapshot{
			Data: data,
			Metadata: &raftpb.SnapshotMetadata{
				Index:     new(uint64(1)),
				Term:      new(uint64(1)),
				ConfState: &raftpb.ConfState{Voters: dedup(peers)},
			},
		}
		p.hs = &raftpb.HardState{Term: new(uint64(1)), Commit: new(uint64(1))}
		bootstrapped = true
	}
	ms, err := newMemoryStorage(p)
	if err != nil {
		return nil, fmt.Errorf("replica: start group %s: %w", id, err)
	}
	hs, cs, _ := ms.InitialState()
	snapIndex := p.snap.GetMetadata().GetIndex()
	g := newGroup(h, id, sm)
	rn, err := raft.NewRawNode(&raft.Config{
		ID:                        h.cfg.NodeID,
		ElectionTick:              h.cfg.ElectionTicks,
		HeartbeatTick:             h.cfg.HeartbeatTicks,
		Storage:                   logCache{MemoryStorage: ms, g: g},
		Applied:                   snapIndex,
		MaxSizePerMsg:             1 << 20,
		MaxCommittedSizePerReady:  8 << 20,
		MaxUncommittedEntriesSize: 256 << 20,
		MaxInflightMsgs:           256,
		AsyncStorageWrites:        true,
		CheckQuorum:               true,
		PreVote:                   true,
		StepDownOnRemoval:         true,
		Logger:                    raftLogger{l: h.log.With("group", string(id))},
	})
	if err != nil {
		return nil, fmt.Errorf("replica: start group %s: %w", id, err)
	}
	g.rn, g.ms, g.dl = rn, ms, dl
	if bootstrapped || !p.exists {
		// Written by the writer before any append of this group (and batched with
		// other groups' writes: one fsync for many new groups).
		g.inflight.Add(1)
		h.w.push(writeItem{g: g, init: &groupWrite{id: id, dl: &g.dl, snap: p.snap, hs: p.hs}})
	}
	g.conf = cs
	g.confAsOf = snapIndex
	g.stConf.Store(cs)
	g.stTerm.Store(hs.GetTerm())
	g.stCommit.Store(hs.GetCommit())
	as := applyState{applied: snapIndex, snapIndex: snapIndex, conf: cs}
	if !bootstrapped && snapIndex > 0 {
		// Restart: rebuild the state machine from the snapshot; raft then replays
		// the committed entries after it. Applied stays 0 until the restore is done.
		as.applied = 0
		g.aq.push(applyTask{snap: p.snap})
	} else {
		g.applied.Store(snapIndex)
	}
	go g.applyLoop(as)

	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		g.stopApply()
		return nil, ErrStopped
	}
	h.groups[id] = g
	h.mu.Unlock()
	h.submit(func() {
		h.lgroups[id] = g
		h.awake[g] = struct{}{}
		h.markDirty(g)
		h.recomputeMembers()
		if vs := cs.GetVoters(); len(vs) == 1 && vs[0] == h.cfg.NodeID && len(cs.GetLearners()) == 0 {
			_ = rn.Campaign() // a single voter need not wait for an election timeout
		}
	})
	h.log.Debug("group started", "group", id, "bootstrapped", bootstrapped, "snapshot_index", snapIndex, "commit", hs.GetCommit())
	return g, nil
}

// StopGroup stops the replica of id; its data stays on disk.
func (h *Host) StopGroup(id GroupID) error {
	h.startMu.Lock()
	defer h.startMu.Unlock()
	h.mu.Lock()
	g := h.groups[id]
	delete(h.groups, id)
	h.mu.Unlock()
	if g == nil {
		return fmt.Errorf("replica: stop group %s: not running", id)
	}
	removed := make(chan struct{})
	if h.submit(func() {
		g.stopped = true
		if h.lgroups[id] == g {
			delete(h.lgroups, id)
		}
		delete(h.awake, g)
		h.recomputeMembers()
		close(removed)
	}) {
		select {
		case <-removed:
		case <-h.done:
		}
	}
	h.w.barrier(g, true) // nothing of this group is written after StopGroup returns
	g.stopApply()
	g.closeWaiters()
	return nil
}

// DeleteGroup removes a stopped group's data from disk (e.g. after this node was
// removed from the group). It fails if the group is running.
func (h *Host) DeleteGroup(id GroupID) error {
	h.startMu.Lock()
	defer h.startMu.Unlock()
	if _, running := h.Group(id); running {
		return fmt.Errorf("replica: delete group %s: group is running; stop it first", id)
	}
	return h.st.deleteGroup(id)
}

// maxInbox bounds the batches waiting for the loop; beyond it batches are dropped
// (raft retries) rather than letting memory grow without limit.
const maxInbox = 1 << 14

// Receive is called by the transport for every batch arriving from node from.
func (h *Host) Receive(from uint64, batch []Envelope) {
	h.mu.Lock()
	if h.closed || len(h.inbox) >= maxInbox {
		h.mu.Unlock()
		return
	}
	h.inbox = append(h.inbox, incoming{from: from, batch: batch})
	h.mu.Unlock()
	h.signal()
}

// PeerUnreachable is called by the transport when node cannot be reached. It is
// reported to raft, and quiesced groups led by node wake up so they can elect.
func (h *Host) PeerUnreachable(node uint64) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.unreachable = append(h.unreachable, node)
	h.mu.Unlock()
	h.signal()
}

func (h *Host) nextRequestID() uint64 { return h.reqSeq.Add(1) }

// submit queues op to run on the loop goroutine; false if the host is closed.
func (h *Host) submit(op func()) bool {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return false
	}
	h.ops = append(h.ops, op)
	h.mu.Unlock()
	h.signal()
	return true
}

// fail stops the host after a storage failure: nothing more is acknowledged.
func (h *Host) fail(err error) {
	h.log.Error("storage write failed; host stops", "err", err)
	h.mu.Lock()
	if h.failed == nil {
		h.failed = err
	}
	h.closed = true
	h.mu.Unlock()
	h.signal()
}

func (h *Host) signal() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

func (h *Host) markDirty(g *Group) {
	if !g.dirty {
		g.dirty = true
		h.dirty = append(h.dirty, g)
	}
}

func (h *Host) run() {
	defer close(h.done)
	t := time.NewTicker(h.cfg.TickInterval)
	defer t.Stop()
	var (
		inbox []incoming
		ops   []func()
		unr   []uint64
		local []localResp
	)
	for {
		tick := false
		select {
		case <-h.stop:
			return
		case <-t.C:
			tick = true
		case <-h.wake:
		}
		h.mu.Lock()
		inbox, h.inbox = h.inbox, inbox[:0]
		ops, h.ops = h.ops, ops[:0]
		unr, h.unreachable = h.unreachable, unr[:0]
		local, h.local = h.local, local[:0]
		failed := h.failed
		h.mu.Unlock()
		if failed != nil {
			return
		}
		h.stepLocal(local)
		clear(local)

		for i, op := range ops {
			op()
			ops[i] = nil
		}
		for _, node := range unr {
			h.peerUnreachable(node)
		}
		for i, in := range inbox {
			h.receive(in)
			inbox[i] = incoming{}
		}
		if tick {
			h.tick()
		}
		h.processReady()
	}
}

// receive steps an incoming batch into its groups.
func (h *Host) receive(in incoming) {
	h.heard(in.from)
	for _, env := range in.batch {
		g := h.lgroups[env.Group]
		if g == nil || env.Msg == nil {
			continue // unknown group (not started here yet): raft retries
		}
		if env.Removed {
			h.removalNotice(g, in.from, env.Msg)
			continue
		}
		if !g.accepts(in.from, env.Msg) {
			h.log.Debug("dropping a raft message from a node outside the group", "group", g.id, "from", in.from,
				"claimed", env.Msg.GetFrom(), "type", env.Msg.GetType())
			h.tellRemoved(g, in.from, env.Msg)
			continue
		}
		if env.Quiesce {
			h.quiesceFollower(g, env.Msg)
			continue
		}
		wasQuiesced := g.quiesced
		if err := g.rn.Step(env.Msg); err != nil {
			h.log.Debug("step failed", "group", g.id, "from", in.from, "type", env.Msg.GetType(), "err", err)
		}
		h.markDirty(g)
		// A heartbeat response to a quiesced leader needs no work unless raft
		// wants to send something because of it.
		if wasQuiesced && env.Msg.GetType() == raftpb.MessageType_MsgHeartbeatResp && !g.rn.HasReady() {
			continue
		}
		h.unquiesce(g)
	}
}

// tellRemoved answers a message from a node that a configuration change
// applied here removed from g with a removal notice (at most one per
// election timeout per node): a removed node that missed its removal, e.g.
// because it was down, would otherwise keep a stale replica forever, since
// nobody sends it anything any more.
func (h *Host) tellRemoved(g *Group, from uint64, m *raftpb.Message) {
	idx, ok := g.removedNodes[from]
	if !ok || m.GetFrom() != from {
		return
	}
	if last, told := g.noticed[from]; told && h.tickN-last < uint64(h.cfg.ElectionTicks) {
		return
	}
	if g.noticed == nil {
		g.noticed = map[uint64]uint64{}
	}
	g.noticed[from] = h.tickN
	h.out[from] = append(h.out[from], Envelope{
		Group:   g.id,
		Removed: true,
		Msg: &raftpb.Message{
			Type:  raftpb.MessageType_MsgUnreachable.Enum(),
			From:  new(h.cfg.NodeID),
			To:    new(from),
			Index: new(idx),
		},
	})
}

// removalNotice handles a member's notice that this node was removed from g
// by the configuration change at m.Index. It is believed only from a member
// of the configuration this replica knows, which includes this node, and
// only when that configuration is older than the change: a node added again
// since ignores notices about its earlier removal.
func (h *Host) removalNotice(g *Group, from uint64, m *raftpb.Message) {
	self := h.cfg.NodeID
	if m.GetFrom() != from || m.GetTo() != self || from == self || !inConf(g.conf, from) || !inConf(g.conf, self) {
		return
	}
	if m.GetIndex() <= g.confAsOf {
		return
	}
	g.markRemoved("notice from node "+strconv.FormatUint(from, 10), m.GetIndex())
}

func dedup(ids []uint64) []uint64 {
	seen := make(map[uint64]bool, len(ids))
	out := make([]uint64, 0, len(ids))
	for _, id := range ids {
		if id != 0 && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
