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

// TestRemovedNodeLearnsItsRemoval: a member removed from a group learns it
// from the applied configuration change (Removed is closed) while the others
// are not told anything; the remaining members keep committing.
func TestRemovedNodeLearnsItsRemoval(t *testing.T) {
	c := newCluster(t, 1, 2, 3)
	peers := []uint64{1, 2, 3}
	for _, id := range peers {
		c.open(id)
		c.start(id, "g", peers)
	}
	lead := c.waitLeader("g", peers...)
	propose(t, c.group(lead, "g"), "before")
	// Remove a follower, asked through the other follower.
	removed := peers[(slices.Index(peers, lead)+1)%3]
	asker := peers[(slices.Index(peers, lead)+2)%3]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.group(asker, "g").Remove(ctx, removed); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.group(removed, "g").Removed():
	case <-ctx.Done():
		t.Fatalf("node %d was removed but its replica was not told (status %+v)", removed, c.group(removed, "g").Status())
	}
	for _, id := range []uint64{lead, asker} {
		select {
		case <-c.group(id, "g").Removed():
			t.Fatalf("node %d, still a member, was told it is removed", id)
		default:
		}
	}
	propose(t, c.group(asker, "g"), "after")
	c.waitHas("g", "after", lead, asker)
}

// TestNodeRemovedWhileDownIsTold: a node removed while it was down never
// applies its removal (nobody sends it the log any more); when it comes back
// and campaigns, a member answers with a removal notice. A node removed and
// then added again is not fooled by notices about the old removal.
func TestNodeRemovedWhileDownIsTold(t *testing.T) {
	c := newCluster(t, 1, 2, 3)
	peers := []uint64{1, 2, 3}
	for _, id := range peers {
		c.open(id)
		c.start(id, "g", peers)
	}
	lead := c.waitLeader("g", peers...)
	propose(t, c.group(lead, "g"), "before")
	gone := peers[(slices.Index(peers, lead)+1)%3]
	c.waitHas("g", "before", gone)
	c.close(gone)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.group(lead, "g").Remove(ctx, gone); err != nil {
		t.Fatal(err)
	}
	propose(t, c.group(lead, "g"), "after")

	c.open(gone)
	g := c.start(gone, "g", nil)
	select {
	case <-g.Removed():
	case <-ctx.Done():
		t.Fatalf("node %d, removed while down, was not told after it came back (status %+v)", gone, g.Status())
	}
	if c.sm(gone, "g").has("after") {
		t.Fatal("the removed node applied an entry committed after its removal")
	}

	// Added again with a fresh replica: no notice about the old removal.
	if err := c.hosts[gone].StopGroup("g"); err != nil {
		t.Fatal(err)
	}
	if err := c.hosts[gone].DeleteGroup("g"); err != nil {
		t.Fatal(err)
	}
	if err := c.group(lead, "g").AddLearner(ctx, gone); err != nil {
		t.Fatal(err)
	}
	again := c.start(gone, "g", nil)
	c.waitHas("g", "after", gone)
	select {
	case <-again.Removed():
		t.Fatal("a node added again was told it is removed")
	default:
	}
}
