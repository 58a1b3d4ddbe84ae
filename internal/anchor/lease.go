package anchor

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"canton.dev/canton/internal/scope"
)

// lessor keeps the deadlines of a scope's leases while this replica leads the
// scope. Deadlines live only in the leader's memory: keep-alives are not
// replicated. A new leader grants every lease a full TTL from the moment it
// takes over, so a leader change never expires a live workload early; expiry
// itself is a committed mutation, so every replica agrees on it.
type lessor struct {
	a *Anchor
	h *hosted

	mu        sync.Mutex
	active    bool
	gen       uint64        // counts starts, so that a late stop of an earlier term is a no-op
	ready     chan struct{} // closed while active
	deadlines map[uint64]time.Time

	waiting atomic.Int32 // keep-alives waiting for the lessor to start (tests observe it)
}

func newLessor(a *Anchor, h *hosted) *lessor {
	return &lessor{a: a, h: h, ready: make(chan struct{})}
}

// start activates the lessor for a term of leadership: every lease gets a
// full TTL from now.
func (l *lessor) start() (gen uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gen++
	l.deadlines = map[uint64]time.Time{}
	if !l.active {
		l.active = true
		close(l.ready)
	}
	return l.gen
}

// stop deactivates the lessor started as gen, unless it was started again since.
func (l *lessor) stop(gen uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gen != gen || !l.active {
		return
	}
	l.active = false
	l.deadlines = nil
	l.ready = make(chan struct{})
}

// started is closed once the lessor is active.
func (l *lessor) started() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ready
}

// lessorTick is how often the leader looks for expired leases.
const lessorTick = 200 * time.Millisecond

func (l *lessor) run(ctx context.Context) {
	gen := l.start()
	defer l.stop(gen)
	changed, cancel := l.h.state.Subscribe()
	defer cancel()
	t := time.NewTicker(lessorTick)
	defer t.Stop()
	var (
		seen    uint64 // the leases' revision last synced
		live    int
		expired []uint64
		ticked  = true
	)
	for {
		// A change of the scope that left its leases as they were needs no
		// look at them (reading them all costs O(leases)); a tick does.
		if rev := l.h.state.LeasesRevision(); ticked || rev != seen {
			seen = rev
			expired, live = l.sync(time.Now())
		}
		ticked = false
		if len(expired) > 0 {
			m := scope.Mutation{Op: scope.OpExpireLeases, Proposer: l.a.proposer(), LeaseIDs: expired}
			if _, err := l.a.propose(ctx, l.h, m); err != nil {
				l.a.log.Warn("lease expiry not committed", "scope", l.h.domain, "leases", expired, "err", err)
			}
		}
		// With no lease to watch, sleep until the scope changes: an idle scope
		// costs nothing here.
		tick := t.C
		if live == 0 {
			tick = nil
		}
		expired = nil
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick:
			ticked = true
		}
	}
}

// sync adopts leases granted since the last look (full TTL from now), forgets
// revoked ones and returns the expired ones, sorted, and how many leases live.
func (l *lessor) sync(now time.Time) (expired []uint64, live int) {
	leases := l.h.state.Leases()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active {
		return nil, len(leases)
	}
	alive := make(map[uint64]bool, len(leases))
	for _, ls := range leases {
		alive[ls.ID] = true
		d, ok := l.deadlines[ls.ID]
		if !ok {
			l.deadlines[ls.ID] = now.Add(time.Duration(ls.TTLSeconds) * time.Second)
			continue
		}
		if now.After(d) {
			expired = append(expired, ls.ID)
		}
	}
	for id := range l.deadlines {
		if !alive[id] {
			delete(l.deadlines, id)
		}
	}
	sort.Slice(expired, func(i, j int) bool { return expired[i] < expired[j] })
	return expired, len(leases)
}

// keepAlive renews a lease. ok is false when this replica is not leading or
// the lease does not exist.
func (l *lessor) keepAlive(id uint64) (ttl uint32, leading, found bool) {
	ls, exists := l.h.state.Lease(id)
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active {
		return 0, false, false
	}
	if !exists {
		return 0, true, false
	}
	l.deadlines[id] = time.Now().Add(time.Duration(ls.TTLSeconds) * time.Second)
	return uint32(ls.TTLSeconds), true, true
}
