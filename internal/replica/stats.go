package replica

import (
	"sync/atomic"
	"time"
)

// HostStats counts a host's traffic and disk syncs since Open.
type HostStats struct {
	Batches   uint64        // Transport.Send calls (including liveness pings)
	Messages  uint64        // raft messages sent (envelopes)
	Pings     uint64        // empty batches sent for node liveness
	Syncs     uint64        // durable writes on the commit path: WAL appends (one fsync) or bbolt transactions (received snapshots, new groups)
	SyncTime  time.Duration // total time spent in those writes
	SyncWrite uint64        // group writes persisted (sum over those writes)
	SyncMax   time.Duration // slowest write
	Quiesces  uint64        // times a replica here quiesced (leader or follower)
	// Checkpoints are the bbolt transactions that copied logged writes from the WAL
	// (off the commit path); CheckpointedSyncs the WAL appends they carried, and the
	// snapshots taken here, which they write too.
	Checkpoints       uint64
	CheckpointedSyncs uint64
}

type hostStats struct {
	batches, messages, pings, syncs, syncNanos, groupWrites, syncMax, quiesces atomic.Uint64
}

func (s *hostStats) sent(n int) {
	s.batches.Add(1)
	if n == 0 {
		s.pings.Add(1)
	}
	s.messages.Add(uint64(n))
}

func (s *hostStats) observeSync(d time.Duration, groups int) {
	s.syncs.Add(1)
	s.syncNanos.Add(uint64(d))
	s.groupWrites.Add(uint64(groups))
	for {
		m := s.syncMax.Load()
		if uint64(d) <= m || s.syncMax.CompareAndSwap(m, uint64(d)) {
			break
		}
	}
}

// Stats returns the host's counters.
func (h *Host) Stats() HostStats {
	s := h.stats
	return HostStats{
		Batches:   s.batches.Load(),
		Messages:  s.messages.Load(),
		Pings:     s.pings.Load(),
		Syncs:     s.syncs.Load(),
		SyncTime:  time.Duration(s.syncNanos.Load()),
		SyncWrite: s.groupWrites.Load(),
		SyncMax:   time.Duration(s.syncMax.Load()),
		Quiesces:  s.quiesces.Load(),

		Checkpoints:       h.st.wal.checkpoints.Load(),
		CheckpointedSyncs: h.st.wal.checkpointBatches.Load(),
	}
}
