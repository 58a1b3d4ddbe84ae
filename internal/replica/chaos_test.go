package replica

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestChaosNoAcknowledgedLoss runs concurrent proposers against groups while
// nodes are partitioned, healed, crashed and restarted at random (seeded), then
// checks that every replica applied the same sequence, that it holds every
// acknowledged proposal exactly once, and nothing that was never proposed.
// The sparse variant leaves time between proposals so groups quiesce and must
// be woken by traffic, liveness and restarts.
func TestChaosNoAcknowledgedLoss(t *testing.T) {
	t.Run("busy", func(t *testing.T) { chaos(t, 1, 0) })
	t.Run("sparse", func(t *testing.T) { chaos(t, 6, 40*time.Millisecond) })
}

func chaos(t *testing.T, ngroups int, pause time.Duration) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	c := newCluster(t, 1, 2, 3)
	c.snapN = 20
	peers := []uint64{1, 2, 3}
	gids := make([]GroupID, ngroups)
	for i := range gids {
		gids[i] = GroupID(fmt.Sprintf("g%d", i))
	}
	for _, id := range peers {
		c.open(id)
		for _, gid := range gids {
			c.start(id, gid, peers)
		}
	}
	for _, gid := range gids {
		c.waitLeader(gid, peers...)
	}

	var (
		mu      sync.Mutex
		ackedBy = map[string]bool{}
		tried   = map[string]bool{}
		down    = map[uint64]bool{}
	)
	group := func(id uint64, gid GroupID) *Group {
		mu.Lock()
		defer mu.Unlock()
		if down[id] {
			return nil
		}
		h := c.hosts[id]
		if h == nil {
			return nil
		}
		g, _ := h.Group(gid)
		return g
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				cmd := fmt.Sprintf("w%d-%d", w, i)
				g := group(peers[(w+i)%3], gids[(w+i/3)%ngroups])
				if g == nil {
					time.Sleep(time.Millisecond)
					continue
				}
				mu.Lock()
				tried[cmd] = true
				mu.Unlock()
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				_, _, err := g.Propose(ctx, []byte(cmd))
				cancel()
				time.Sleep(pause)
				if err == nil {
					mu.Lock()
					ackedBy[cmd] = true
					mu.Unlock()
				} else if errors.Is(err, ErrNoLeader) || errors.Is(err, ErrStopped) {
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}

	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		victim := peers[rng.IntN(3)]
		switch rng.IntN(3) {
		case 0: // partition one node away for a while
			c.net.Isolate(victim)
			time.Sleep(time.Duration(50+rng.IntN(250)) * time.Millisecond)
			c.net.Heal()
		case 1: // crash and restart one node
			mu.Lock()
			down[victim] = true
			h := c.hosts[victim]
			mu.Unlock()
			c.net.Detach(victim)
			h.crash()
			time.Sleep(time.Duration(50+rng.IntN(250)) * time.Millisecond)
			mu.Lock()
			c.open(victim)
			for _, gid := range gids {
				c.start(victim, gid, nil)
			}
			down[victim] = false
			mu.Unlock()
		case 2: // let it run
			time.Sleep(time.Duration(50+rng.IntN(150)) * time.Millisecond)
		}
	}
	close(stop)
	wg.Wait()
	var quiesces uint64
	for _, id := range peers {
		quiesces += c.hosts[id].Stats().Quiesces
	}
	t.Logf("replicas quiesced %d times (since the last restart of each host)", quiesces)
	c.net.Heal()

	// One final write through the leader makes every earlier entry committed.
	seen := map[string]int{}
	applied := 0
	for _, gid := range gids {
		lead := c.waitLeader(gid, peers...)
		propose(t, c.group(lead, gid), "final")
		c.waitHas(gid, "final", peers...)
		ref := c.sm(peers[0], gid).commands()
		for _, id := range peers[1:] {
			waitFor(t, 5*time.Second, fmt.Sprintf("node %d converges on %s", id, gid), func() bool {
				return slices.Equal(c.sm(id, gid).commands(), ref)
			})
		}
		applied += len(ref)
		for _, cmd := range ref {
			if cmd == "final" {
				continue
			}
			seen[cmd]++
			if seen[cmd] > 1 {
				t.Errorf("%q applied twice", cmd)
			}
			if !tried[cmd] {
				t.Errorf("%q applied but never proposed", cmd)
			}
		}
	}
	lost := 0
	for cmd := range ackedBy {
		if seen[cmd] == 0 {
			lost++
			t.Errorf("acknowledged %q lost", cmd)
		}
	}
	t.Logf("%d proposals acknowledged, %d applied, %d lost", len(ackedBy), applied, lost)
	if len(ackedBy) == 0 {
		t.Fatalf("no proposal succeeded during the run")
	}
}
