package replica

import (
	"encoding/binary"
	"slices"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// processReady handles the Ready of every dirty group (raft runs with
// AsyncStorageWrites): messages to other nodes are batched per destination and
// sent at the end of the iteration; log writes go to the writer; committed
// entries go to the group's apply goroutine.
func (h *Host) processReady() {
	var snapSent []snapReport
	for round := 0; len(h.dirty) > 0 && round < 4; round++ {
		dirty := h.dirty
		h.dirty = nil
		for _, g := range dirty {
			g.dirty = false
			if g.stopped || !g.rn.HasReady() {
				continue
			}
			snapSent = h.handleReady(g, g.rn.Ready(), snapSent)
		}
		// Stepping the apply responses may produce more work right away
		// (e.g. the next committed entries); take some of it in this iteration.
	}
	h.flush()
	for _, s := range snapSent {
		if !s.g.stopped {
			s.g.rn.ReportSnapshot(s.to, raft.SnapshotFinish)
			h.markDirty(s.g)
		}
	}
	if len(h.dirty) > 0 {
		h.signal()
	}
}

func (h *Host) handleReady(g *Group, rd raft.Ready, snapSent []snapReport) []snapReport {
	if !raft.IsEmptySnap(rd.Snapshot) {
		g.conf = rd.Snapshot.GetMetadata().GetConfState()
		g.confAsOf = max(g.confAsOf, rd.Snapshot.GetMetadata().GetIndex())
		g.stConf.Store(g.conf)
		h.recomputeMembers()
	}
	var applyResps []*raftpb.Message
	for _, m := range rd.Messages {
		switch m.GetTo() {
		case raft.LocalAppendThread:
			g.inflight.Add(1)
			h.w.push(writeItem{g: g, app: m})
		case raft.LocalApplyThread:
			h.handoff(g, m.GetEntries())
			applyResps = append(applyResps, m.GetResponses()...)
		default:
			snapSent = h.route(g, m, snapSent)
		}
	}
	g.suppressHBResp = 0
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
	// Entries are handed to the apply goroutine; raft may consider them applied
	// (it only uses this for flow control and configuration change gating, and
	// configuration changes were applied to raft in handoff).
	for _, m := range applyResps {
		if err := g.rn.Step(m); err != nil {
			h.log.Error("step apply response failed", "group", g.id, "err", err)
		}
		h.markDirty(g)
	}
	return snapSent
}

// stepLocal steps responses released by the writer.
func (h *Host) stepLocal(resps []localResp) {
	for _, r := range resps {
		g := r.g
		if g.stopped || h.lgroups[g.id] != g {
			continue
		}
		if err := g.rn.Step(r.m); err != nil {
			h.log.Debug("step local response failed", "group", g.id, "type", r.m.GetType(), "err", err)
		}
		h.markDirty(g)
	}
}

type snapReport struct {
	g  *Group
	to uint64
}

// handoff gives committed entries to the apply goroutine, applying
// configuration changes to raft on the way.
func (h *Host) handoff(g *Group, ents []*raftpb.Entry) {
	if len(ents) == 0 {
		return
	}
	var task applyTask
	for _, e := range ents {
		if e.GetType() == raftpb.EntryType_EntryNormal {
			continue
		}
		if cs := h.applyConfChange(g, e); cs != nil {
			if task.confs == nil {
				task.confs = make(map[uint64]*raftpb.ConfState)
			}
			task.confs[e.GetIndex()] = cs
		}
	}
	task.entries = ents
	g.aq.push(task)
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
	g.confAsOf = e.GetIndex()
	for _, id := range slices.Concat(g.conf.GetVoters(), g.conf.GetLearners(), g.conf.GetVotersOutgoing(), g.conf.GetLearnersNext()) {
		if id != h.cfg.NodeID && !inConf(cs, id) {
			if g.removedNodes == nil {
				g.removedNodes = map[uint64]uint64{}
			}
			g.removedNodes[id] = e.GetIndex()
		}
	}
	for id := range g.removedNodes {
		if inConf(cs, id) {
			delete(g.removedNodes, id) // added again
		}
	}
	g.conf = cs
	g.stConf.Store(cs)
	h.recomputeMembers()
	h.unquiesce(g)
	return cs
}

// route appends m to the batch of its destination for this iteration.
func (h *Host) route(g *Group, m *raftpb.Message, snaps []snapReport) []snapReport {
	to := m.GetTo()
	if to == h.cfg.NodeID {
		return snaps
	}
	if g.suppressHBResp != 0 && to == g.suppressHBResp && m.GetType() == raftpb.MessageType_MsgHeartbeatResp {
		return snaps
	}
	if m.GetType() == raftpb.MessageType_MsgSnap {
		snaps = append(snaps, snapReport{g: g, to: to})
	}
	h.out[to] = append(h.out[to], Envelope{Group: g.id, Msg: m})
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
