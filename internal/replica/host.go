package replica

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
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
	hsDirty map[*Group]struct{} // hard states (commit only) not yet on disk
	snapDue []*Group            // groups with a local snapshot to persist
	creates []*Group            // new groups whose initial state is not on disk yet
	peers   map[uint64]*peer
	members map[uint64]int // peers referenced by some group's configuration
	out     map[uint64][]Envelope
	tickN   uint64
	failed  error
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
		hsDirty: make(map[*Group]struct{}),
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
		var errs []error
		if h.failed != nil {
			errs = append(errs, h.failed)
		} else if err := h.flushHardStates(); err != nil {
			errs = append(errs, err)
		}
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
		// Persisted by the next loop iteration's transaction, before any message
		// of this group leaves (batches group creation: one fsync for many).
		g.initWrite = &groupWrite{id: id, dl: &g.dl, snap: p.snap, hs: p.hs}
	}
	g.hs = hs
	g.conf = cs
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
		if g.initWrite != nil {
			h.creates = append(h.creates, g)
		}
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

// Receive is called by the transport for every batch arriving from node from.
func (h *Host) Receive(from uint64, batch []Envelope) {
	h.mu.Lock()
	if h.closed {
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
		h.mu.Unlock()

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
		if err := h.processReady(); err != nil {
			h.failed = err
			h.log.Error("storage write failed; host stops", "err", err)
			h.mu.Lock()
			h.closed = true
			h.mu.Unlock()
			return
		}
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

// ready is one group's Ready of one loop iteration.
type ready struct {
	g    *Group
	rd   raft.Ready
	sent bool // messages already sent (leader, before the fsync)
}

// processReady handles the Ready of every dirty group: it sends a stable leader's
// messages, persists all groups in one transaction, sends the remaining messages,
// hands committed entries to the apply goroutines and advances raft.
func (h *Host) processReady() error {
	var rds []ready
	for _, g := range h.dirty {
		g.dirty = false
		if g.stopped || !g.rn.HasReady() {
			continue
		}
		rds = append(rds, ready{g: g, rd: g.rn.Ready()})
	}
	clear(h.dirty)
	h.dirty = h.dirty[:0]

	// A leader that stays leader in the same term may send its appends while
	// its own log write is in flight (Raft thesis 10.2.1); its responses
	// and votes (which need durability) never appear in its Messages.
	needSync := len(h.snapDue) > 0 || len(h.creates) > 0
	var snapSent []snapReport
	for i := range rds {
		r := &rds[i]
		if !raft.IsEmptySnap(r.rd.Snapshot) || r.rd.MustSync || len(r.rd.Entries) > 0 {
			needSync = true
		}
		if r.g.lead == h.cfg.NodeID && (r.rd.SoftState == nil || r.rd.SoftState.Lead == h.cfg.NodeID) &&
			(r.rd.HardState == nil || (r.rd.HardState.GetTerm() == r.g.hs.GetTerm() && r.rd.HardState.GetVote() == r.g.hs.GetVote())) {
			snapSent = h.route(r.g, r.rd.Messages, snapSent)
			r.sent = true
		}
	}
	h.flush()

	if needSync {
		if err := h.persist(rds); err != nil {
			return err
		}
	} else {
		for i := range rds {
			if hs := rds[i].rd.HardState; hs != nil {
				rds[i].g.hs = hs
				h.hsDirty[rds[i].g] = struct{}{}
			}
		}
	}
	for i := range rds {
		r := &rds[i]
		g := r.g
		if !raft.IsEmptySnap(r.rd.Snapshot) {
			if err := g.ms.ApplySnapshot(r.rd.Snapshot); err != nil && !errors.Is(err, raft.ErrSnapOutOfDate) {
				return fmt.Errorf("replica: group %s: apply snapshot to log cache: %w", g.id, err)
			}
		}
		if err := g.ms.Append(r.rd.Entries); err != nil {
			return fmt.Errorf("replica: group %s: append to log cache: %w", g.id, err)
		}
		if r.rd.HardState != nil {
			_ = g.ms.SetHardState(r.rd.HardState)
		}
		if !r.sent {
			snapSent = h.route(g, r.rd.Messages, snapSent)
		}
	}
	h.flush()

	for i := range rds {
		h.afterPersist(&rds[i])
	}
	for _, s := range snapSent {
		if !s.g.stopped {
			s.g.rn.ReportSnapshot(s.to, raft.SnapshotFinish)
			h.markDirty(s.g)
		}
	}
	for i := range rds {
		if g := rds[i].g; !g.stopped && g.rn.HasReady() {
			h.markDirty(g)
		}
	}
	if len(h.dirty) > 0 {
		h.signal()
	}
	return nil
}

type snapReport struct {
	g  *Group
	to uint64
}

// persist writes every group's entries, hard state and snapshots in one
// transaction (one fsync for all groups), including hard states left unsynced by
// earlier iterations.
func (h *Host) persist(rds []ready) error {
	ws := make([]*groupWrite, 0, len(rds)+len(h.snapDue)+len(h.hsDirty)+len(h.creates))
	byGroup := make(map[*Group]*groupWrite, len(rds))
	// Initial states go first: later writes of the same group build on them.
	for _, g := range h.creates {
		if !g.stopped {
			ws = append(ws, g.initWrite)
		}
		g.initWrite = nil
	}
	h.creates = h.creates[:0]
	get := func(g *Group) *groupWrite {
		if w := byGroup[g]; w != nil {
			return w
		}
		w := &groupWrite{id: g.id, dl: &g.dl}
		byGroup[g] = w
		ws = append(ws, w)
		return w
	}
	for i := range rds {
		g, rd := rds[i].g, &rds[i].rd
		w := get(g)
		if !raft.IsEmptySnap(rd.Snapshot) {
			w.snap = rd.Snapshot
			w.clearLog = true
			if g.pendingSnap != nil && g.pendingSnap.GetMetadata().GetIndex() <= rd.Snapshot.GetMetadata().GetIndex() {
				g.pendingSnap, g.pendingCompact = nil, 0
			}
		}
		w.entries = rd.Entries
		if rd.HardState != nil {
			g.hs = rd.HardState
			w.hs = g.hs
		}
	}
	for _, g := range h.snapDue {
		if g.stopped || g.pendingSnap == nil {
			continue
		}
		w := get(g)
		if w.snap == nil {
			w.snap = g.pendingSnap
			w.compactTo = g.pendingCompact
			w.hs = g.hs // commit >= snapshot index must be durable with the snapshot
		}
		g.pendingSnap, g.pendingCompact = nil, 0
	}
	h.snapDue = h.snapDue[:0]
	for g := range h.hsDirty {
		if !g.stopped {
			get(g).hs = g.hs
		}
	}
	clear(h.hsDirty)
	start := time.Now()
	err := h.st.commit(ws)
	h.stats.observeSync(time.Since(start), len(ws))
	return err
}

// flushHardStates writes hard states that were not synced yet (Close).
func (h *Host) flushHardStates() error {
	if len(h.hsDirty) == 0 {
		return nil
	}
	var ws []*groupWrite
	for g := range h.hsDirty {
		ws = append(ws, &groupWrite{id: g.id, dl: &g.dl, hs: g.hs})
	}
	clear(h.hsDirty)
	return h.st.commit(ws)
}

// afterPersist handles the parts of a Ready that follow durability: committed
// entries, read states, leadership changes, then Advance.
func (h *Host) afterPersist(r *ready) {
	g, rd := r.g, &r.rd
	if g.stopped {
		return
	}
	var task applyTask
	if !raft.IsEmptySnap(rd.Snapshot) {
		task.snap = rd.Snapshot
		g.conf = rd.Snapshot.GetMetadata().GetConfState()
		g.stConf.Store(g.conf)
		h.recomputeMembers()
	}
	for _, e := range rd.CommittedEntries {
		if e.GetType() == raftpb.EntryType_EntryNormal {
			continue
		}
		cs := h.applyConfChange(g, e)
		if cs != nil {
			if task.confs == nil {
				task.confs = make(map[uint64]*raftpb.ConfState)
			}
			task.confs[e.GetIndex()] = cs
		}
	}
	if len(rd.CommittedEntries) > 0 || task.snap != nil {
		task.entries = rd.CommittedEntries
		g.aq.push(task)
	}
	for _, rs := range rd.ReadStates {
		if len(rs.RequestCtx) == 8 {
			g.complete(g.reads, binary.BigEndian.Uint64(rs.RequestCtx), result{index: rs.Index})
		}
	}
	if rd.SoftState != nil && rd.SoftState.Lead != g.lead {
		g.lead = rd.SoftState.Lead
		g.publishLeader(g.lead)
		if g.lead == 0 {
			h.unquiesce(g)
		}
	}
	if rd.HardState != nil {
		g.stTerm.Store(rd.HardState.GetTerm())
		g.stCommit.Store(rd.HardState.GetCommit())
	}
	g.rn.Advance(*rd)
}

func (h *Host) applyConfChange(g *Group, e *raftpb.Entry) *raftpb.ConfState {
	var cc raftpb.ConfChangeI
	if e.GetType() == raftpb.EntryType_EntryConfChange {
		c := new(raftpb.ConfChange)
		if err := proto.Unmarshal(e.GetData(), c); err != nil {
			h.log.Error("malformed conf change entry", "group", g.id, "index", e.GetIndex(), "err", err)
			return nil
		}
		cc = c
	} else {
		c := new(raftpb.ConfChangeV2)
		if err := proto.Unmarshal(e.GetData(), c); err != nil {
			h.log.Error("malformed conf change entry", "group", g.id, "index", e.GetIndex(), "err", err)
			return nil
		}
		cc = c
	}
	cs := g.rn.ApplyConfChange(cc)
	g.confIndex = e.GetIndex()
	g.conf = cs
	g.stConf.Store(cs)
	h.recomputeMembers()
	h.unquiesce(g)
	return cs
}

// route appends msgs to the per-destination batches of this iteration.
func (h *Host) route(g *Group, msgs []*raftpb.Message, snaps []snapReport) []snapReport {
	for _, m := range msgs {
		to := m.GetTo()
		if to == h.cfg.NodeID {
			continue
		}
		if g.suppressHBResp != 0 && to == g.suppressHBResp && m.GetType() == raftpb.MessageType_MsgHeartbeatResp {
			continue
		}
		if m.GetType() == raftpb.MessageType_MsgSnap {
			snaps = append(snaps, snapReport{g: g, to: to})
		}
		h.out[to] = append(h.out[to], Envelope{Group: g.id, Msg: m})
	}
	g.suppressHBResp = 0
	return snaps
}

// flush sends one batch per destination.
func (h *Host) flush() {
	for to, batch := range h.out {
		if len(batch) == 0 {
			continue
		}
		h.tr.Send(to, batch)
		h.stats.sent(len(batch))
		if p := h.peers[to]; p != nil {
			p.lastSent = h.tickN
		}
		h.out[to] = nil
	}
}

// propose runs on the loop.
func (h *Host) propose(g *Group, req uint64, payload []byte) {
	if g.stopped {
		g.complete(g.waiters, req, result{err: ErrStopped})
		return
	}
	h.unquiesce(g)
	if err := g.rn.Propose(payload); err != nil {
		g.complete(g.waiters, req, result{err: h.proposeErr(g, err)})
	}
	h.markDirty(g)
}

func (h *Host) proposeConfChange(g *Group, req uint64, cc *raftpb.ConfChange) {
	if g.stopped {
		g.complete(g.waiters, req, result{err: ErrStopped})
		return
	}
	h.unquiesce(g)
	if err := g.rn.ProposeConfChange(cc); err != nil {
		g.complete(g.waiters, req, result{err: h.proposeErr(g, err)})
	}
	h.markDirty(g)
}

func (h *Host) proposeErr(g *Group, err error) error {
	if errors.Is(err, raft.ErrProposalDropped) {
		if g.rn.BasicStatus().Lead == 0 {
			return ErrNoLeader
		}
		return ErrDropped
	}
	return fmt.Errorf("replica: group %s: propose: %w", g.id, err)
}

func (h *Host) readIndex(g *Group, rctx []byte) {
	if g.stopped {
		return
	}
	h.unquiesce(g)
	g.rn.ReadIndex(rctx)
	h.markDirty(g)
}

func (h *Host) transferLeader(g *Group, to uint64) {
	if g.stopped {
		return
	}
	h.unquiesce(g)
	g.rn.TransferLeader(to)
	h.markDirty(g)
}

// createSnapshot stores a snapshot the apply goroutine took at index and compacts
// the log, keeping a tail so slightly lagging followers need no snapshot.
func (h *Host) createSnapshot(g *Group, index uint64, cs *raftpb.ConfState, data []byte) {
	if g.stopped {
		return
	}
	g.snapRequested = false
	snap, err := g.ms.CreateSnapshot(index, cs, data)
	if errors.Is(err, raft.ErrSnapOutOfDate) {
		return
	}
	if err != nil {
		h.log.Error("create snapshot failed", "group", g.id, "index", index, "err", err)
		return
	}
	tail := min(h.cfg.SnapshotEntries/2, 5000)
	var compactTo uint64
	if index > tail {
		compactTo = index - tail
		if first, _ := g.ms.FirstIndex(); compactTo >= first {
			if err := g.ms.Compact(compactTo); err != nil && !errors.Is(err, raft.ErrCompacted) {
				h.log.Error("compact log failed", "group", g.id, "index", compactTo, "err", err)
			}
		}
	}
	if g.pendingSnap == nil {
		h.snapDue = append(h.snapDue, g)
	}
	g.pendingSnap, g.pendingCompact = snap, compactTo
	h.signal()
	h.log.Debug("snapshot created", "group", g.id, "index", index, "compact_to", compactTo, "bytes", len(data))
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
