package replica

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestThreeReplicasCommit(t *testing.T) {
	c := newCluster(t, 1, 2, 3)
	peers := []uint64{1, 2, 3}
	for _, id := range peers {
		c.open(id)
		c.start(id, "demo.mesh", peers)
	}
	lead := c.waitLeader("demo.mesh", peers...)
	follower := peers[(slices.Index(peers, lead)+1)%3]

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, idx, err := c.group(lead, "demo.mesh").Propose(ctx, []byte("on-leader"))
	if err != nil || idx == 0 || res.(int) != 1 {
		t.Fatalf("propose on leader: res=%v idx=%d err=%v", res, idx, err)
	}
	res, idx2, err := c.group(follower, "demo.mesh").Propose(ctx, []byte("on-follower"))
	if err != nil || idx2 <= idx || res.(int) != 2 {
		t.Fatalf("propose on follower: res=%v idx=%d err=%v", res, idx2, err)
	}
	c.waitHas("demo.mesh", "on-follower", peers...)
	want := []string{"on-leader", "on-follower"}
	for _, id := range peers {
		if got := c.sm(id, "demo.mesh").commands(); !slices.Equal(got, want) {
			t.Errorf("node %d applied %q, want %q", id, got, want)
		}
	}
	st := c.group(lead, "demo.mesh").Status()
	if !st.IsLeader || !slices.Equal(st.Voters, peers) || st.Applied < idx2 {
		t.Errorf("leader status = %+v", st)
	}
}

// acked records proposals that returned success, to check none is lost.
type acked struct{ cmds []string }

func (a *acked) propose(t *testing.T, g *Group, cmd string) {
	t.Helper()
	propose(t, g, cmd)
	a.cmds = append(a.cmds, cmd)
}

func (a *acked) check(t *testing.T, c *cluster, group GroupID, ids ...uint64) {
	t.Helper()
	for _, cmd := range a.cmds {
		c.waitHas(group, cmd, ids...)
	}
	// Every replica applied the same sequence.
	ref := c.sm(ids[0], group).commands()
	for _, id := range ids[1:] {
		waitFor(t, 5*time.Second, fmt.Sprintf("node %d converges with node %d", id, ids[0]), func() bool {
			return slices.Equal(c.sm(id, group).commands(), ref)
		})
	}
}

func TestLeaderStoppedNewLeaderCommits(t *testing.T) {
	c := newCluster(t, 1, 2, 3)
	peers := []uint64{1, 2, 3}
	for _, id := range peers {
		c.open(id)
		c.start(id, "g", peers)
	}
	var a acked
	old := c.waitLeader("g", peers...)
	a.propose(t, c.group(old, "g"), "before")
	c.waitHas("g", "before", peers...)

	c.close(old)
	rest := slices.DeleteFunc(slices.Clone(peers), func(id uint64) bool { return id == old })
	stopped := time.Now()
	lead := c.waitLeader("g", rest...)
	if lead == old {
		t.Fatalf("old leader %d still leader", old)
	}
	a.propose(t, c.group(lead, "g"), "after")
	// A few election timeouts (100ms each here), with slack for -race on 2 cores.
	if took := time.Since(stopped); took > 10*testElection*testTick {
		t.Errorf("new leader committed %v after the old one stopped", took)
	}

	// The old leader comes back from its directory and catches up.
	c.open(old)
	c.start(old, "g", nil)
	a.propose(t, c.group(lead, "g"), "rejoined")
	a.check(t, c, "g", 1, 2, 3)
}

func TestRestartCatchesUpViaSnapshot(t *testing.T) {
	t.Run("snapshot", func(t *testing.T) { testRestartCatchesUpViaSnapshot(t, false) })
	t.Run("captured snapshot", func(t *testing.T) { testRestartCatchesUpViaSnapshot(t, true) })
}

func testRestartCatchesUpViaSnapshot(t *testing.T, capture bool) {
	c := newCluster(t, 1, 2, 3)
	c.snapN = 8
	c.capture = capture
	peers := []uint64{1, 2, 3}
	for _, id := range peers {
		c.open(id)
		c.start(id, "g", peers)
	}
	var a acked
	lead := c.waitLeader("g", peers...)
	a.propose(t, c.group(lead, "g"), "x0")
	down := peers[(slices.Index(peers, lead)+1)%3]
	c.waitHas("g", "x0", down)
	c.close(down)
	for i := 1; i <= 60; i++ {
		a.propose(t, c.group(lead, "g"), fmt.Sprintf("x%d", i))
	}
	// The leader compacted its log past what the stopped follower has.
	waitFor(t, 5*time.Second, "leader log compaction", func() bool {
		first := make(chan uint64, 1)
		h := c.hosts[lead]
		g := c.group(lead, "g")
		if !h.submit(func() { f, _ := g.ms.FirstIndex(); first <- f }) {
			return false
		}
		return <-first > 10
	})

	c.open(down)
	c.start(down, "g", nil)
	a.check(t, c, "g", peers...)
	if c.sm(down, "g").restores == 0 {
		t.Errorf("node %d caught up without a snapshot", down)
	}

	// A full restart of every node restores from local snapshots and replays the rest.
	for _, id := range peers {
		c.close(id)
	}
	for _, id := range peers {
		c.open(id)
		c.start(id, "g", nil)
	}
	for _, id := range peers {
		waitFor(t, 5*time.Second, "restored state", func() bool { return len(c.sm(id, "g").commands()) == 61 })
		if c.sm(id, "g").restores == 0 {
			t.Errorf("node %d did not restore a snapshot on restart", id)
		}
	}
	lead = c.waitLeader("g", peers...)
	a.propose(t, c.group(lead, "g"), "after-restart")
	a.check(t, c, "g", peers...)
}

func TestMinorityPartitionCannotCommit(t *testing.T) {
	c := newCluster(t, 1, 2, 3)
	peers := []uint64{1, 2, 3}
	for _, id := range peers {
		c.open(id)
		c.start(id, "g", peers)
	}
	var a acked
	old := c.waitLeader("g", peers...)
	a.propose(t, c.group(old, "g"), "before")
	rest := slices.DeleteFunc(slices.Clone(peers), func(id uint64) bool { return id == old })
	c.net.Isolate(old)

	// The majority elects a new leader and commits.
	waitFor(t, 5*time.Second, "majority elects", func() bool {
		l := c.group(rest[0], "g").Status().Leader
		return l != 0 && l != old && c.group(rest[1], "g").Status().Leader == l
	})
	lead := c.group(rest[0], "g").Status().Leader
	a.propose(t, c.group(lead, "g"), "majority")

	// The isolated old leader cannot commit.
	ctx, cancel := context.WithTimeout(context.Background(), 5*testElection*testTick)
	_, _, err := c.group(old, "g").Propose(ctx, []byte("minority"))
	cancel()
	if err == nil {
		t.Fatalf("isolated node %d committed a proposal", old)
	}
	// CheckQuorum makes it step down; then it fails fast.
	waitFor(t, 5*time.Second, "isolated node loses leadership", func() bool {
		return !c.group(old, "g").Status().IsLeader
	})
	waitFor(t, 5*time.Second, "isolated node fails fast", func() bool {
		_, _, err := c.group(old, "g").Propose(context.Background(), []byte("minority2"))
		return err == ErrNoLeader
	})

	c.net.Heal()
	a.propose(t, c.group(lead, "g"), "healed")
	a.check(t, c, "g", peers...)
	for _, id := range peers {
		if c.sm(id, "g").has("minority2") {
			t.Errorf("node %d applied a proposal that failed fast", id)
		}
	}
}

func TestMembershipLearnerPromoteRemove(t *testing.T) {
	c := newCluster(t, 1, 2, 3, 4)
	peers := []uint64{1, 2, 3}
	for _, id := range peers {
		c.open(id)
		c.start(id, "g", peers)
	}
	var a acked
	lead := c.waitLeader("g", peers...)
	lg := c.group(lead, "g")
	a.propose(t, lg, "one")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c.open(4)
	c.start(4, "g", nil)
	if err := lg.AddLearner(ctx, 4); err != nil {
		t.Fatalf("add learner: %v", err)
	}
	if st := lg.Status(); !slices.Equal(st.Learners, []uint64{4}) || slices.Contains(st.Voters, 4) {
		t.Fatalf("after AddLearner: %+v", st)
	}
	a.check(t, c, "g", 1, 2, 3, 4)

	// A follower can drive a conf change too.
	follower := peers[(slices.Index(peers, lead)+1)%3]
	if err := c.group(follower, "g").Promote(ctx, 4); err != nil {
		t.Fatalf("promote: %v", err)
	}
	// Promote returns once the change is applied on the replica that made it.
	if st := c.group(follower, "g").Status(); !slices.Equal(st.Voters, []uint64{1, 2, 3, 4}) || len(st.Learners) != 0 {
		t.Fatalf("after Promote: %+v", st)
	}
	waitFor(t, 5*time.Second, "node 4 sees itself voter", func() bool {
		return slices.Contains(c.group(4, "g").Status().Voters, 4)
	})

	victim := follower
	if err := lg.Remove(ctx, victim); err != nil {
		t.Fatalf("remove %d: %v", victim, err)
	}
	rest := slices.DeleteFunc([]uint64{1, 2, 3, 4}, func(id uint64) bool { return id == victim })
	if st := lg.Status(); !slices.Equal(st.Voters, rest) {
		t.Fatalf("after Remove: %+v", st)
	}
	a.propose(t, lg, "after-remove")
	a.check(t, c, "g", rest...)
}

func TestReadIndexOnFollowerSeesPriorWrite(t *testing.T) {
	c := newCluster(t, 1, 2, 3)
	peers := []uint64{1, 2, 3}
	for _, id := range peers {
		c.open(id)
		c.start(id, "g", peers)
	}
	lead := c.waitLeader("g", peers...)
	// Slow down the follower's view: drop appends to it until the write is acknowledged,
	// so only ReadIndex can make it see the write.
	follower := peers[(slices.Index(peers, lead)+1)%3]
	c.net.Partition([]uint64{follower}, []uint64{lead})
	propose(t, c.group(lead, "g"), "w1")
	if c.sm(follower, "g").has("w1") {
		t.Fatalf("follower applied w1 while cut from the leader")
	}
	c.net.Heal()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.group(follower, "g").ReadIndex(ctx); err != nil {
		t.Fatalf("read index on follower: %v", err)
	}
	if !c.sm(follower, "g").has("w1") {
		t.Fatalf("ReadIndex returned before the follower applied the prior write")
	}
}

func TestTransferLeadership(t *testing.T) {
	c := newCluster(t, 1, 2, 3)
	peers := []uint64{1, 2, 3}
	for _, id := range peers {
		c.open(id)
		c.start(id, "g", peers)
	}
	lead := c.waitLeader("g", peers...)
	ch := c.group(lead, "g").LeaderCh()
	to := peers[(slices.Index(peers, lead)+1)%3]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.group(lead, "g").TransferLeadership(ctx, to); err != nil {
		t.Fatalf("transfer to %d: %v", to, err)
	}
	if c.waitLeader("g", peers...) != to {
		t.Fatalf("leader is not %d", to)
	}
	waitFor(t, 2*time.Second, "old leader's LeaderCh reports false", func() bool {
		select {
		case v := <-ch:
			return !v
		default:
			return false
		}
	})
	propose(t, c.group(to, "g"), "after-transfer")
}

func TestSingleVoterGroup(t *testing.T) {
	c := newCluster(t, 1)
	c.open(1)
	g := c.start(1, "solo", []uint64{1})
	waitFor(t, 2*time.Second, "single voter leads", func() bool { return g.Status().IsLeader })
	propose(t, g, "a")
	c.close(1)
	c.open(1)
	g = c.start(1, "solo", nil)
	waitFor(t, 2*time.Second, "replay", func() bool { return c.sm(1, "solo").has("a") })
	waitFor(t, 2*time.Second, "single voter leads again", func() bool { return g.Status().IsLeader })
	propose(t, g, "b")
	ids, err := c.hosts[1].Groups()
	if err != nil || !slices.Equal(ids, []GroupID{"solo"}) {
		t.Fatalf("Groups() = %v, %v", ids, err)
	}
}

func TestStopDeleteGroup(t *testing.T) {
	c := newCluster(t, 1)
	h := c.open(1)
	g := c.start(1, "a", []uint64{1})
	c.start(1, "b", []uint64{1})
	waitFor(t, 2*time.Second, "leader", func() bool { return g.Status().IsLeader })
	propose(t, g, "x")
	if err := h.DeleteGroup("a"); err == nil {
		t.Fatal("deleted a running group")
	}
	if err := h.StopGroup("a"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := g.Propose(context.Background(), []byte("y")); err != ErrStopped && err != ErrNoLeader {
		t.Fatalf("propose on stopped group: %v", err)
	}
	if err := h.DeleteGroup("a"); err != nil {
		t.Fatal(err)
	}
	ids, err := h.Groups()
	if err != nil || !slices.Equal(ids, []GroupID{"b"}) {
		t.Fatalf("Groups() = %v, %v", ids, err)
	}
	// Nothing of the deleted group comes back with later writes or at Close.
	waitFor(t, 2*time.Second, "leader of b", func() bool { return c.group(1, "b").Status().IsLeader })
	propose(t, c.group(1, "b"), "z")
	c.close(1)
	h = c.open(1)
	ids, err = h.Groups()
	if err != nil || !slices.Equal(ids, []GroupID{"b"}) {
		t.Fatalf("after reopen: Groups() = %v, %v", ids, err)
	}
}

// TestSnapshotEncodingDoesNotStopApplying: a state machine that captures its
// snapshots (SnapshotCapturer) has them encoded off the apply goroutine.
// While an encoding is held up, proposals keep committing and applying; once
// it finishes, the snapshot is stored and the log compacted.
func TestSnapshotEncodingDoesNotStopApplying(t *testing.T) {
	c := newCluster(t, 1)
	c.snapN = 8
	c.open(1)
	sm := &capturingSM{logSM: &logSM{t: t}, gate: make(chan struct{}), captured: make(chan uint64, 16)}
	g, err := c.hosts[1].StartGroup("g", []uint64{1}, sm)
	if err != nil {
		t.Fatal(err)
	}
	c.waitLeader("g", 1)
	for i := range 10 {
		propose(t, g, fmt.Sprintf("x%d", i))
	}
	select {
	case <-sm.captured:
	case <-time.After(5 * time.Second):
		t.Fatal("no snapshot captured after 10 entries with SnapshotEntries 8")
	}
	// The encoding waits for the gate; applying does not.
	for i := 10; i < 40; i++ {
		propose(t, g, fmt.Sprintf("x%d", i))
	}
	if n := len(sm.commands()); n != 40 {
		t.Fatalf("%d commands applied while the snapshot was being encoded, want 40", n)
	}
	firstIndex := func() uint64 {
		ch := make(chan uint64, 1)
		if !c.hosts[1].submit(func() { f, _ := g.ms.FirstIndex(); ch <- f }) {
			t.Fatal("host closed")
		}
		return <-ch
	}
	if f := firstIndex(); f > 2 {
		t.Fatalf("log compacted to %d before the snapshot was encoded", f)
	}
	close(sm.gate)
	waitFor(t, 5*time.Second, "log compaction after the encoding", func() bool { return firstIndex() > 2 })
}
