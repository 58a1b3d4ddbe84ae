package replica

import (
	"slices"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
)

// Quiescence (after CockroachDB): an idle group costs nothing per tick.
//
// On each tick, before ticking it, a leader checks whether its group is idle and
// fully replicated: no unapplied or uncommitted entries, no leadership transfer,
// every member's Match equal to the last index in StateReplicate, and every member's
// node alive (see liveness below); dead members are skipped if the live voters
// are a quorum, and woken for when they come back. If so it sends each live member one heartbeat envelope
// flagged Quiesce (commit = last index) and stops ticking. A follower receiving it
// steps the heartbeat and, if it then has the same leader, term and last index =
// commit, stops ticking too and does not answer (an answer would wake the leader).
// Otherwise it answers normally, which wakes the leader, and the leader retries at
// a later tick.
//
// Any proposal, read, configuration change or incoming message (except a heartbeat
// response that raft needs no action for) wakes a quiesced group.
//
// Node liveness replaces per-group heartbeats: every host pings each node that
// shares a group with it when it has sent it nothing for ElectionTicks/3 ticks
// (an empty batch: one message per peer, not per group), and considers a node dead
// after ElectionTicks ticks without hearing from it, or when the transport reports
// it unreachable. A node going dead wakes every quiesced group it leads (so the
// followers elect a new leader) and every group led here that it belongs to (so
// CheckQuorum runs). A node coming back wakes the quiesced groups led here that
// it belongs to, so it is caught up.

type peer struct {
	lastHeard uint64 // tick of the last batch received
	lastSent  uint64 // tick of the last batch sent
	alive     bool
}

func (h *Host) peer(id uint64) *peer {
	p := h.peers[id]
	if p == nil {
		p = &peer{}
		h.peers[id] = p
	}
	return p
}

func (h *Host) heard(from uint64) {
	p := h.peer(from)
	p.lastHeard = h.tickN
	if !p.alive {
		p.alive = true
		h.peerUp(from)
	}
}

// peerUp wakes the quiesced groups led here that node belongs to, so that the
// leader catches it up (they may have quiesced without it while it was dead).
func (h *Host) peerUp(node uint64) {
	for _, g := range h.lgroups {
		if g.quiesced && g.lead == h.cfg.NodeID && isMember(g.conf, node) {
			h.unquiesce(g)
		}
	}
}

func (h *Host) peerAlive(id uint64) bool {
	p := h.peers[id]
	return p != nil && p.alive
}

// peerUnreachable handles a transport report.
func (h *Host) peerUnreachable(node uint64) {
	p := h.peer(node)
	wasAlive := p.alive
	p.alive = false
	for g := range h.awake {
		if isMember(g.conf, node) {
			g.rn.ReportUnreachable(node)
		}
	}
	if wasAlive {
		h.peerDown(node)
	}
}

// peerDown wakes the groups that must notice node's death.
func (h *Host) peerDown(node uint64) {
	n := 0
	for _, g := range h.lgroups {
		if !g.quiesced {
			continue
		}
		if g.lead == node || (g.lead == h.cfg.NodeID && isMember(g.conf, node)) {
			h.unquiesce(g)
			n++
		}
	}
	h.log.Debug("peer down", "peer", node, "groups_woken", n)
}

func isMember(cs *raftpb.ConfState, id uint64) bool {
	for _, v := range cs.GetVoters() {
		if v == id {
			return true
		}
	}
	for _, v := range cs.GetLearners() {
		if v == id {
			return true
		}
	}
	for _, v := range cs.GetVotersOutgoing() {
		if v == id {
			return true
		}
	}
	return false
}

// inConf reports whether id is in cs in any role, on either side of a joint
// configuration.
func inConf(cs *raftpb.ConfState, id uint64) bool {
	return isMember(cs, id) || slices.Contains(cs.GetLearnersNext(), id)
}

// recomputeMembers refreshes the set of peers this host shares a group with.
func (h *Host) recomputeMembers() {
	clear(h.members)
	for _, g := range h.lgroups {
		for _, id := range g.conf.GetVoters() {
			h.members[id]++
		}
		for _, id := range g.conf.GetLearners() {
			h.members[id]++
		}
		for _, id := range g.conf.GetVotersOutgoing() {
			h.members[id]++
		}
	}
	delete(h.members, h.cfg.NodeID)
}

func (h *Host) unquiesce(g *Group) {
	if !g.quiesced || g.stopped {
		return
	}
	g.quiesced = false
	g.stQuiesced.Store(false)
	h.awake[g] = struct{}{}
	h.markDirty(g)
}

func (h *Host) quiesce(g *Group) {
	h.stats.quiesces.Add(1)
	g.quiesced = true
	g.stQuiesced.Store(true)
	delete(h.awake, g)
}

// tick advances the clock of every awake group, quiesces idle leaders, detects
// dead peers and sends liveness pings.
func (h *Host) tick() {
	h.tickN++
	for g := range h.awake {
		if g.lead == h.cfg.NodeID && !h.cfg.DisableQuiescence && h.maybeQuiesceLeader(g) {
			continue
		}
		g.rn.Tick()
		h.markDirty(g)
	}
	timeout := uint64(h.cfg.ElectionTicks)
	for id, p := range h.peers {
		if p.alive && h.tickN-p.lastHeard > timeout {
			p.alive = false
			h.peerDown(id)
		}
	}
	every := max(uint64(h.cfg.ElectionTicks/3), 1)
	for id := range h.members {
		p := h.peer(id)
		if h.tickN-p.lastSent >= every && len(h.out[id]) == 0 {
			h.tr.Send(id, nil)
			h.stats.sent(0)
			p.lastSent = h.tickN
		}
	}
}

// maybeQuiesceLeader quiesces g if it is idle and fully replicated.
func (h *Host) maybeQuiesceLeader(g *Group) bool {
	if g.rn.HasReady() || g.inflight.Load() != 0 {
		return false
	}
	st := g.rn.BasicStatus()
	if st.RaftState != raft.StateLeader || st.LeadTransferee != 0 {
		return false
	}
	last, _ := g.ms.LastIndex()
	if st.HardState.GetCommit() != last || st.Applied != last || g.applied.Load() != last {
		return false
	}
	if len(g.conf.GetVotersOutgoing()) > 0 {
		return false // joint configuration: let it finish
	}
	// Every live member must be caught up. Dead members are ignored (they are
	// caught up when they come back, see peerUp) as long as the live voters form
	// a quorum; otherwise the group stays awake so that CheckQuorum runs.
	ok := true
	var followers []uint64
	g.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		if id == h.cfg.NodeID || !h.peerAlive(id) {
			return
		}
		if pr.Match != last || pr.State != tracker.StateReplicate {
			ok = false
		}
		followers = append(followers, id)
	})
	if !ok {
		return false
	}
	live := 0
	for _, v := range g.conf.GetVoters() {
		if v == h.cfg.NodeID || h.peerAlive(v) {
			live++
		}
	}
	if live <= len(g.conf.GetVoters())/2 {
		return false
	}
	term := st.HardState.GetTerm()
	for _, id := range followers {
		h.out[id] = append(h.out[id], Envelope{
			Group: g.id,
			Msg: &raftpb.Message{
				Type:   raftpb.MessageType_MsgHeartbeat.Enum(),
				To:     new(id),
				From:   new(h.cfg.NodeID),
				Term:   new(term),
				Commit: new(last),
			},
			Quiesce: true,
		})
	}
	h.quiesce(g)
	return true
}

// quiesceFollower handles a leader's quiesce heartbeat.
func (h *Host) quiesceFollower(g *Group, m *raftpb.Message) {
	if m.GetType() != raftpb.MessageType_MsgHeartbeat {
		return
	}
	idle := !g.rn.HasReady() && g.inflight.Load() == 0 // the log cache is the whole log
	if err := g.rn.Step(m); err != nil {
		return
	}
	h.markDirty(g)
	st := g.rn.BasicStatus()
	last, _ := g.ms.LastIndex()
	if idle && st.RaftState == raft.StateFollower && st.Lead == m.GetFrom() && st.HardState.GetTerm() == m.GetTerm() &&
		last == m.GetCommit() && st.HardState.GetCommit() == last {
		g.suppressHBResp = m.GetFrom()
		h.quiesce(g)
		return
	}
	h.unquiesce(g)
}
