package replica

import (
	"errors"
	"fmt"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// Operations queued by Group methods; they run on the loop goroutine.

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
	h.w.push(writeItem{g: g, snap: snap, compactTo: compactTo})
	h.log.Debug("snapshot created", "group", g.id, "index", index, "compact_to", compactTo, "bytes", len(data))
}
