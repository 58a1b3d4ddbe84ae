package replica

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// Group is this host's replica of one Raft group. Its methods are safe for
// concurrent use.
type Group struct {
	id GroupID
	h  *Host
	sm StateMachine

	// Owned by the host loop goroutine.
	rn        *raft.RawNode
	ms        *raft.MemoryStorage
	dl        diskLog           // owned by the writer once the group runs
	conf      *raftpb.ConfState // latest applied configuration (raft's view)
	quiesced  bool
	dirty     bool
	stopped   bool
	wasLeader bool
	lead      uint64
	// suppressHBResp is the leader whose quiesce heartbeat was accepted in this
	// iteration: its heartbeat response is not sent (it would wake the leader).
	suppressHBResp uint64
	confIndex      uint64 // index of the latest configuration change raft applied
	snapRequested  bool   // a snapshot was requested from the apply goroutine
	// confAsOf is the log index as of which conf is known: the latest
	// configuration change applied or snapshot installed. A removal notice
	// about an older change is stale (this node was added again since).
	confAsOf uint64
	// removedNodes are the nodes a configuration change applied here removed
	// (by the index of that change), so that one still sending to the group
	// can be told; noticed is the tick at which each was last told.
	removedNodes map[uint64]uint64
	noticed      map[uint64]uint64

	// Published by the loop for Status.
	stLead     atomic.Uint64
	stTerm     atomic.Uint64
	stCommit   atomic.Uint64
	stQuiesced atomic.Bool
	stConf     atomic.Pointer[raftpb.ConfState]
	applied    atomic.Uint64
	inflight   atomic.Int32 // appends queued to the writer and not yet durable

	leaderCh chan bool

	removed     chan struct{} // closed once this node is known to be removed
	removedOnce sync.Once

	mu        sync.Mutex
	waiters   map[uint64]chan result // proposals and conf changes by request id
	reads     map[uint64]chan result // read index requests by request id
	appliedWs []appliedWaiter
	changed   chan struct{} // closed and replaced when the leader changes
	closed    bool

	aq       applyQueue
	stopOnce sync.Once
	applyEnd chan struct{}
	// snapEncoding is set while a captured snapshot is being encoded (see
	// snapshotAsync); snapWG waits for that goroutine.
	snapEncoding atomic.Bool
	snapWG       sync.WaitGroup
}

type result struct {
	val   any
	index uint64
	err   error
}

type appliedWaiter struct {
	index uint64
	ch    chan struct{}
}

func newGroup(h *Host, id GroupID, sm StateMachine) *Group {
	return &Group{
		id:       id,
		h:        h,
		sm:       sm,
		leaderCh: make(chan bool, 1),
		removed:  make(chan struct{}),
		waiters:  make(map[uint64]chan result),
		reads:    make(map[uint64]chan result),
		changed:  make(chan struct{}),
		aq:       applyQueue{signal: make(chan struct{}, 1), stop: make(chan struct{})},
		applyEnd: make(chan struct{}),
	}
}

// ID returns the group's ID.
func (g *Group) ID() GroupID { return g.id }

// Status returns a point-in-time view of this replica.
func (g *Group) Status() Status {
	s := Status{
		ID:       g.h.cfg.NodeID,
		Leader:   g.stLead.Load(),
		Term:     g.stTerm.Load(),
		Commit:   g.stCommit.Load(),
		Applied:  g.applied.Load(),
		Quiesced: g.stQuiesced.Load(),
	}
	s.IsLeader = s.Leader == s.ID
	if cs := g.stConf.Load(); cs != nil {
		s.Voters = slices.Clone(cs.GetVoters())
		s.Learners = slices.Clone(cs.GetLearners())
		slices.Sort(s.Voters)
		slices.Sort(s.Learners)
	}
	return s
}

// LeaderCh delivers true when this replica becomes leader and false when it stops
// being leader. It is buffered; only the latest value is kept.
func (g *Group) LeaderCh() <-chan bool { return g.leaderCh }

// Removed is closed once this replica knows that this node is no longer a
// member of the group: it applied the configuration change that removed it,
// or a member told it so (a node that missed the change, e.g. because it was
// down, hears it when it next contacts a member). The replica keeps running:
// its owner should stop it (StopGroup) and delete its data (DeleteGroup).
// After its removal is applied the replica takes no more snapshots, so the
// change is applied again if the node restarts before its owner deleted it.
//
// A learner removed while it was down is not told: it never contacts the
// other members on its own.
func (g *Group) Removed() <-chan struct{} { return g.removed }

func (g *Group) markRemoved(how string, index uint64) {
	g.removedOnce.Do(func() {
		g.h.log.Info("this node was removed from the group", "group", g.id, "index", index, "learned", how)
		close(g.removed)
	})
}

// Propose replicates data and waits until it is applied on this replica. It returns
// what StateMachine.Apply returned and the entry's index. It works on followers
// (raft forwards the proposal to the leader). It fails fast with ErrNoLeader when no
// leader is known, and returns ctx's error when ctx ends first; in that case the
// proposal may still be applied later.
func (g *Group) Propose(ctx context.Context, data []byte) (any, uint64, error) {
	if g.stLead.Load() == 0 {
		return nil, 0, ErrNoLeader
	}
	req := g.h.nextRequestID()
	ch := make(chan result, 1)
	if !g.addWaiter(g.waiters, req, ch) {
		return nil, 0, ErrStopped
	}
	payload := encodeProposal(g.h.cfg.NodeID, req, data)
	if !g.h.submit(func() { g.h.propose(g, req, payload) }) {
		g.removeWaiter(g.waiters, req)
		return nil, 0, ErrStopped
	}
	select {
	case r := <-ch:
		return r.val, r.index, r.err
	case <-ctx.Done():
		g.removeWaiter(g.waiters, req)
		return nil, 0, ctxErr(ctx, "propose", g.id)
	}
}

// ReadIndex is a linearizable read barrier: it returns once this replica has
// applied everything that was committed when it was called. It fails fast with
// ErrNoLeader when no leader is known.
//
// A follower's request travels to the leader, and is lost if the leader dies
// (or a message is dropped): raft does not answer it then. So the request is
// sent again, as a new one, whenever the known leader changes and after every
// election timeout without an answer; reading an index twice is harmless.
func (g *Group) ReadIndex(ctx context.Context) error {
	if g.stLead.Load() == 0 {
		return ErrNoLeader
	}
	retry := time.Duration(g.h.cfg.ElectionTicks) * g.h.cfg.TickInterval
	for {
		changed := g.leaderChanged()
		req := g.h.nextRequestID()
		ch := make(chan result, 1)
		if !g.addWaiter(g.reads, req, ch) {
			return ErrStopped
		}
		rctx := binary.BigEndian.AppendUint64(nil, req)
		if !g.h.submit(func() { g.h.readIndex(g, rctx) }) {
			g.removeWaiter(g.reads, req)
			return ErrStopped
		}
		t := time.NewTimer(retry)
		select {
		case r := <-ch:
			t.Stop()
			if r.err != nil {
				return r.err
			}
			return g.waitApplied(ctx, r.index)
		case <-changed:
			// Wait for the next leader if there is none yet, within ctx.
			for {
				next := g.leaderChanged()
				if g.stLead.Load() != 0 {
					break
				}
				select {
				case <-next:
				case <-ctx.Done():
					t.Stop()
					g.removeWaiter(g.reads, req)
					return ctxErr(ctx, "read index", g.id)
				}
			}
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			g.removeWaiter(g.reads, req)
			return ctxErr(ctx, "read index", g.id)
		}
		t.Stop()
		g.removeWaiter(g.reads, req)
	}
}

// waitApplied blocks until this replica applied index.
func (g *Group) waitApplied(ctx context.Context, index uint64) error {
	if g.applied.Load() >= index {
		return nil
	}
	ch := make(chan struct{})
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return ErrStopped
	}
	if g.applied.Load() >= index {
		g.mu.Unlock()
		return nil
	}
	g.appliedWs = append(g.appliedWs, appliedWaiter{index: index, ch: ch})
	g.mu.Unlock()
	select {
	case <-ch:
		if g.applied.Load() < index {
			return ErrStopped
		}
		return nil
	case <-ctx.Done():
		return ctxErr(ctx, "wait applied", g.id)
	}
}

// AddLearner adds node as a non-voting member and waits until the change is
// applied on this replica.
func (g *Group) AddLearner(ctx context.Context, node uint64) error {
	return g.changeConf(ctx, raftpb.ConfChangeType_ConfChangeAddLearnerNode, node, func(cs *raftpb.ConfState) bool {
		return slices.Contains(cs.GetLearners(), node) || slices.Contains(cs.GetVoters(), node)
	})
}

// Promote turns learner node into a voter (or adds it as a voter directly).
func (g *Group) Promote(ctx context.Context, node uint64) error {
	return g.changeConf(ctx, raftpb.ConfChangeType_ConfChangeAddNode, node, func(cs *raftpb.ConfState) bool {
		return slices.Contains(cs.GetVoters(), node)
	})
}

// Remove removes node from the group.
func (g *Group) Remove(ctx context.Context, node uint64) error {
	return g.changeConf(ctx, raftpb.ConfChangeType_ConfChangeRemoveNode, node, func(cs *raftpb.ConfState) bool {
		return !slices.Contains(cs.GetVoters(), node) && !slices.Contains(cs.GetLearners(), node)
	})
}

// changeConf proposes a single-node configuration change and waits until it is
// applied here. Raft silently refuses a change while another is pending (it then
// commits an empty entry instead), so an attempt that is not applied within a few
// election timeouts is retried while the desired configuration is not reached.
// Every change here is idempotent, which makes retries safe.
func (g *Group) changeConf(ctx context.Context, typ raftpb.ConfChangeType, node uint64, done func(*raftpb.ConfState) bool) error {
	if node == 0 {
		return fmt.Errorf("replica: group %s: conf change %s: node 0 is invalid", g.id, typ)
	}
	attempt := 3 * time.Duration(g.h.cfg.ElectionTicks) * g.h.cfg.TickInterval
	for {
		if cs := g.stConf.Load(); cs != nil && done(cs) {
			return nil
		}
		if g.stLead.Load() == 0 {
			return ErrNoLeader
		}
		req := g.h.nextRequestID()
		ch := make(chan result, 1)
		if !g.addWaiter(g.waiters, req, ch) {
			return ErrStopped
		}
		cc := &raftpb.ConfChange{
			Type:    typ.Enum(),
			NodeId:  &node,
			Context: encodeProposal(g.h.cfg.NodeID, req, nil),
		}
		if !g.h.submit(func() { g.h.proposeConfChange(g, req, cc) }) {
			g.removeWaiter(g.waiters, req)
			return ErrStopped
		}
		t := time.NewTimer(attempt)
		select {
		case r := <-ch:
			t.Stop()
			if r.err != nil && r.err != ErrDropped {
				return fmt.Errorf("replica: group %s: conf change %s node %d: %w", g.id, typ, node, r.err)
			}
		case <-t.C:
			g.removeWaiter(g.waiters, req)
		case <-ctx.Done():
			t.Stop()
			g.removeWaiter(g.waiters, req)
			return ctxErr(ctx, "conf change", g.id)
		}
		if r := g.waitConf(ctx, done, g.h.cfg.TickInterval*time.Duration(g.h.cfg.ElectionTicks)); r {
			return nil
		}
		if ctx.Err() != nil {
			return ctxErr(ctx, "conf change", g.id)
		}
	}
}

// waitConf waits up to d for the published configuration to satisfy done.
func (g *Group) waitConf(ctx context.Context, done func(*raftpb.ConfState) bool, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if cs := g.stConf.Load(); cs != nil && done(cs) {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		// The configuration is published by the apply path right before the
		// waiter completes, so this is only reached on refusal; poll gently.
		select {
		case <-ctx.Done():
		case <-time.After(g.h.cfg.TickInterval):
		}
	}
}

// TransferLeadership asks the leader to hand leadership to node to and waits until
// this replica sees to as leader.
func (g *Group) TransferLeadership(ctx context.Context, to uint64) error {
	retry := 2 * time.Duration(g.h.cfg.ElectionTicks) * g.h.cfg.TickInterval
	for {
		if g.stLead.Load() == to {
			return nil
		}
		if g.stLead.Load() == 0 {
			return ErrNoLeader
		}
		changed := g.leaderChanged()
		if !g.h.submit(func() { g.h.transferLeader(g, to) }) {
			return ErrStopped
		}
		t := time.NewTimer(retry)
		for wait := true; wait; {
			select {
			case <-changed:
				if g.stLead.Load() == to {
					t.Stop()
					return nil
				}
				changed = g.leaderChanged()
			case <-t.C:
				wait = false
			case <-ctx.Done():
				t.Stop()
				return ctxErr(ctx, "transfer leadership", g.id)
			}
		}
	}
}

func (g *Group) leaderChanged() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.changed
}

// publishLeader is called by the loop when the known leader changes.
func (g *Group) publishLeader(lead uint64) {
	g.stLead.Store(lead)
	g.mu.Lock()
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
	isLeader := lead == g.h.cfg.NodeID
	if isLeader != g.wasLeader {
		g.wasLeader = isLeader
		select {
		case <-g.leaderCh:
		default:
		}
		g.leaderCh <- isLeader
	}
}

func (g *Group) addWaiter(m map[uint64]chan result, req uint64, ch chan result) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	m[req] = ch
	return true
}

func (g *Group) removeWaiter(m map[uint64]chan result, req uint64) {
	g.mu.Lock()
	delete(m, req)
	g.mu.Unlock()
}

// complete hands r to the waiter of req in m, if any.
func (g *Group) complete(m map[uint64]chan result, req uint64, r result) {
	g.mu.Lock()
	ch, ok := m[req]
	delete(m, req)
	g.mu.Unlock()
	if ok {
		ch <- r
	}
}

// closeWaiters fails every waiter with ErrStopped.
func (g *Group) closeWaiters() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	g.closed = true
	for req, ch := range g.waiters {
		ch <- result{err: ErrStopped}
		delete(g.waiters, req)
	}
	for req, ch := range g.reads {
		ch <- result{err: ErrStopped}
		delete(g.reads, req)
	}
	for _, w := range g.appliedWs {
		close(w.ch)
	}
	g.appliedWs = nil
}

// accepts reports whether a message the transport received from node from may
// be stepped into g: raft's own sender field must be that node (the transport
// authenticated it), and the node must be in g's latest applied configuration
// (voter or learner, on either side of a joint change). Any other node of the
// host's peers — an anchor of another scope, or one removed from this one —
// could otherwise disrupt the group, e.g. with a vote at a higher term. A
// group that has not applied a configuration yet (a replica that is joining)
// accepts every sender; its leader's first append brings the configuration.
// Called on the host's loop goroutine.
func (g *Group) accepts(from uint64, m *raftpb.Message) bool {
	if m.GetFrom() != from {
		return false
	}
	cs := g.conf
	if cs == nil || len(cs.GetVoters())+len(cs.GetLearners()) == 0 {
		return true
	}
	return slices.Contains(cs.GetVoters(), from) || slices.Contains(cs.GetLearners(), from) ||
		slices.Contains(cs.GetVotersOutgoing(), from) || slices.Contains(cs.GetLearnersNext(), from)
}
