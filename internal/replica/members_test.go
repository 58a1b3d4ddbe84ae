package replica

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// TestMessagesFromOutsideTheGroupAreDropped: a node the host talks to (the
// transport authenticated it) but that is not a member of a group cannot
// step messages into it — a heartbeat at a higher term from node 9 would
// otherwise make the follower adopt term 1000 and node 9 as its leader — and
// a member cannot send messages under another member's name. A member's
// message at a higher term still gets through (the check is not vacuous).
func TestMessagesFromOutsideTheGroupAreDropped(t *testing.T) {
	c := newCluster(t, 1, 2, 3)
	c.noQuiesce = true
	peers := []uint64{1, 2, 3}
	for _, id := range peers {
		c.open(id)
		c.start(id, "demo.mesh", peers)
	}
	lead := c.waitLeader("demo.mesh", peers...)
	follower := peers[(slices.Index(peers, lead)+1)%3]
	other := peers[(slices.Index(peers, lead)+2)%3]
	g := c.group(follower, "demo.mesh")
	term := g.Status().Term
	hb := func(from uint64, term uint64) []Envelope {
		return []Envelope{{Group: "demo.mesh", Msg: &raftpb.Message{Type: raftpb.MessageType_MsgHeartbeat.Enum(), From: new(from), To: new(follower), Term: new(term)}}}
	}
	h := c.hosts[follower]
	h.Receive(9, hb(9, 1000))        // not a member
	h.Receive(other, hb(lead, 1000)) // a member claiming to be the leader
	h.Receive(other, hb(other, term+5))
	waitFor(t, 5*time.Second, "the member's heartbeat at a higher term", func() bool { return g.Status().Term >= term+5 })
	if st := g.Status(); st.Term >= 1000 || st.Leader == 9 {
		t.Fatalf("a message from outside the group was stepped: term %d, leader %d", st.Term, st.Leader)
	}
}

// TestReadIndexSurvivesLeaderLoss: a read barrier asked of a follower just
// after the leader died is forwarded to the dead leader and lost; it must be
// asked again of the next leader rather than wait for its deadline.
func TestReadIndexSurvivesLeaderLoss(t *testing.T) {
	c := newCluster(t, 1, 2, 3)
	peers := []uint64{1, 2, 3}
	for _, id := range peers {
		c.open(id)
		c.start(id, "demo.mesh", peers)
	}
	lead := c.waitLeader("demo.mesh", peers...)
	propose(t, c.group(lead, "demo.mesh"), "before")
	follower := peers[(slices.Index(peers, lead)+1)%3]
	c.close(lead)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	g := c.group(follower, "demo.mesh")
	for {
		err := g.ReadIndex(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrNoLeader) {
			t.Fatalf("read index on a follower after the leader died: %v (status %+v)", err, g.Status())
		}
		time.Sleep(10 * time.Millisecond) // no leader known yet: the election is under way
	}
	if g.Status().Leader == lead {
		t.Fatalf("read answered while the dead leader %d is still the known leader", lead)
	}
}
