package replica

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestManyGroupsQuiesceAndWake(t *testing.T) {
	const n = 100
	c := newCluster(t, 1, 2, 3)
	c.tick = 25 * time.Millisecond // 100 groups x 3 replicas must not saturate 2 cores under -race
	peers := []uint64{1, 2, 3}
	for _, id := range peers {
		c.open(id)
	}
	t0 := time.Now()
	ids := make([]GroupID, n)
	for i := range ids {
		ids[i] = GroupID(fmt.Sprintf("s%03d.demo.mesh", i))
		for _, id := range peers {
			c.start(id, ids[i], peers)
		}
	}
	t.Logf("started %d groups on 3 hosts in %v", n, time.Since(t0))
	leaders := make(map[GroupID]uint64, n)
	for _, g := range ids {
		leaders[g] = c.waitLeader(g, peers...)
	}
	t.Logf("leaders elected at %v", time.Since(t0))
	// One write per group, proposed concurrently from a follower.
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, g := range ids {
		wg.Go(func() {
			from := peers[(leaders[g])%3] // a follower: leader+1 mod 3
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, _, err := c.group(from, g).Propose(ctx, []byte("w")); err != nil {
				errs <- fmt.Errorf("group %s from %d: %w", g, from, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	allQuiesced := func() bool {
		for _, g := range ids {
			for _, id := range peers {
				if h := c.hosts[id]; h != nil {
					if grp, ok := h.Group(g); ok && !grp.Status().Quiesced {
						return false
					}
				}
			}
		}
		return true
	}
	t.Logf("writes done at %v", time.Since(t0))
	waitFor(t, 10*time.Second, "every replica quiesced", allQuiesced)
	t.Logf("all quiesced at %v", time.Since(t0))

	// While quiesced, hosts exchange only liveness pings: no raft message at all. A group that has
	// just quiesced may still flush its last messages (slowly, under -race on a loaded machine), so
	// a window with traffic is measured once more: the second must be silent.
	window := 30 * c.tick
	for attempt := 0; ; attempt++ {
		before := make(map[uint64]HostStats)
		for _, id := range peers {
			before[id] = c.hosts[id].Stats()
		}
		time.Sleep(window) // measuring a rate over a fixed window, not synchronizing
		var problems []string
		for _, id := range peers {
			d := c.hosts[id].Stats()
			msgs, batches := d.Messages-before[id].Messages, d.Batches-before[id].Batches
			if msgs != 0 {
				problems = append(problems, fmt.Sprintf("host %d sent %d raft messages for %d idle groups in %v", id, msgs, n, window))
			}
			// Two peers, a ping every ElectionTicks/3 ticks each, plus slack.
			if limit := uint64(2*(30/(testElection/3)+2)) + 4; batches > limit {
				problems = append(problems, fmt.Sprintf("host %d sent %d batches in %v, want <= %d", id, batches, window, limit))
			}
		}
		if len(problems) == 0 {
			break
		}
		if attempt == 1 {
			for _, p := range problems {
				t.Error(p)
			}
			break
		}
		t.Logf("first idle window not silent (%s): measuring again", strings.Join(problems, "; "))
	}
	if !allQuiesced() {
		t.Fatalf("a group woke up without traffic")
	}

	// ReadIndex on a quiesced follower wakes the group and returns.
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := c.group(peers[leaders[ids[1]]%3], ids[1]).ReadIndex(rctx); err != nil {
		t.Fatalf("read index on quiesced follower: %v", err)
	}
	rcancel()

	// A proposal on a quiesced follower wakes the group and commits.
	g0 := ids[0]
	propose(t, c.group(peers[leaders[g0]%3], g0), "wake")
	c.waitHas(g0, "wake", peers...)

	// Killing a node wakes the quiesced groups it led: they elect and commit.
	victim := leaders[g0]
	c.close(victim)
	rest := []uint64{}
	for _, id := range peers {
		if id != victim {
			rest = append(rest, id)
		}
	}
	start := time.Now()
	for _, g := range ids {
		if leaders[g] != victim {
			continue
		}
		lead := c.waitLeader(g, rest...)
		propose(t, c.group(lead, g), "after-kill")
	}
	t.Logf("re-elected and committed in every group led by node %d in %v", victim, time.Since(start))

	// With one of three nodes dead, the groups quiesce again (two live voters
	// are a quorum), instead of heartbeating the dead node forever.
	waitFor(t, 10*time.Second, "groups quiesce with a dead member", allQuiesced)

	// The dead node comes back: the groups wake, catch it up and quiesce again.
	c.open(victim)
	for _, g := range ids {
		c.start(victim, g, nil)
	}
	c.waitHas(g0, "wake", victim)
	waitFor(t, 10*time.Second, "all quiesced after the node returned", allQuiesced)
}

// TestQuiescedLeaderPartitioned: a quiesced group whose leader is cut off (alive,
// not crashed) must notice through node liveness: the majority elects a new
// leader and the old one steps down (CheckQuorum) and says so on LeaderCh.
func TestQuiescedLeaderPartitioned(t *testing.T) {
	c := newCluster(t, 1, 2, 3)
	peers := []uint64{1, 2, 3}
	for _, id := range peers {
		c.open(id)
		c.start(id, "g", peers)
	}
	old := c.waitLeader("g", peers...)
	leaderCh := c.group(old, "g").LeaderCh()
	propose(t, c.group(old, "g"), "before")
	waitFor(t, 5*time.Second, "group quiesced", func() bool {
		for _, id := range peers {
			if !c.group(id, "g").Status().Quiesced {
				return false
			}
		}
		return true
	})
	select { // drain the "became leader" notification
	case <-leaderCh:
	default:
	}

	c.net.Isolate(old)
	var rest []uint64
	for _, id := range peers {
		if id != old {
			rest = append(rest, id)
		}
	}
	waitFor(t, 5*time.Second, "majority elects a new leader", func() bool {
		l := c.group(rest[0], "g").Status().Leader
		return l != 0 && l != old && c.group(rest[1], "g").Status().Leader == l
	})
	lead := c.group(rest[0], "g").Status().Leader
	propose(t, c.group(lead, "g"), "majority")
	waitFor(t, 5*time.Second, "old leader steps down", func() bool {
		select {
		case v := <-leaderCh:
			return !v
		default:
			return false
		}
	})
	c.net.Heal()
	c.waitHas("g", "majority", peers...)
}
