package replica

import (
	"fmt"
	"slices"
	"testing"
)

// crash stops h like a process kill: the loop and apply goroutines stop and the
// files are closed without flushing unsynced hard states, and what only the WAL
// holds is not checkpointed into bbolt (bbolt itself only ever exposes committed
// transactions; recovery replays the WAL).
func (h *Host) crash() {
	h.mu.Lock()
	h.closed = true
	groups := make([]*Group, 0, len(h.groups))
	for _, g := range h.groups {
		groups = append(groups, g)
	}
	h.mu.Unlock()
	h.closeOnce.Do(func() {
		close(h.stop)
		<-h.done
		h.w.close(false) // queued writes are lost, as in a crash
		for _, g := range groups {
			g.stopApply()
			g.closeWaiters()
		}
		h.st.crash()
	})
}

func TestCrashAllNodesLosesNothingAcknowledged(t *testing.T) {
	c := newCluster(t, 1, 2, 3)
	c.snapN = 16
	peers := []uint64{1, 2, 3}
	for _, id := range peers {
		c.open(id)
		c.start(id, "g", peers)
	}
	var a acked
	for round := range 3 {
		lead := c.waitLeader("g", peers...)
		for i := range 25 {
			// Alternate leader and follower proposers.
			from := lead
			if i%2 == 1 {
				from = peers[(slices.Index(peers, lead)+1)%3]
			}
			a.propose(t, c.group(from, "g"), fmt.Sprintf("r%d-%d", round, i))
		}
		for _, id := range peers {
			c.net.Detach(id)
			c.hosts[id].crash()
			delete(c.hosts, id)
		}
		for _, id := range peers {
			c.open(id)
			c.start(id, "g", nil)
		}
	}
	c.waitLeader("g", peers...)
	a.check(t, c, "g", peers...)
	if got := c.sm(1, "g").commands(); !slices.Equal(got, a.cmds) {
		t.Fatalf("applied %d commands %v, want exactly the %d acknowledged ones in order", len(got), got, len(a.cmds))
	}
}
