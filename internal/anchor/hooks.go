package anchor

import (
	"context"
	"net"

	"canton.dev/canton/internal/replica"
)

// ReadAddress returns the address recorded in an anchor's data directory, so
// a restarted anchor can listen where its peers expect it.
func ReadAddress(dir string) (string, error) {
	m, err := loadMeta(dir)
	if err != nil || m == nil {
		return "", err
	}
	return m.Address, nil
}

// Leads reports whether this anchor currently leads scope.
func (a *Anchor) Leads(scope string) bool {
	h, ok := a.scope(scope)
	return ok && h.group.Status().IsLeader
}

// SetReplicationFilter drops replication traffic between anchors for which
// drop(from, to) is true (anchor IDs); nil lets everything through. It exists
// for partition tests; the API port keeps working, as in a real partition
// between replication links only.
func (a *Anchor) SetReplicationFilter(drop func(from, to string) bool) {
	if drop == nil {
		a.trans.SetDropFunc(nil)
		return
	}
	a.trans.SetDropFunc(func(from, to uint64) bool { return drop(a.book.name(from), a.book.name(to)) })
}

// SetPeerDialer makes this anchor open its connections to other anchors'
// API (forwarded requests, resolution, watches of other scopes) with dial;
// nil restores gRPC's own. The connections open are closed, so every later
// one goes through dial. It exists for partition tests of the API links
// (SetReplicationFilter covers replication).
func (a *Anchor) SetPeerDialer(dial func(ctx context.Context, addr string) (net.Conn, error)) {
	a.peers.mu.Lock()
	a.peers.dialer = dial
	a.peers.mu.Unlock()
	a.peers.close()
}

// Hosts reports whether this anchor hosts a replica of scope.
func (a *Anchor) Hosts(scope string) bool {
	_, ok := a.scope(scope)
	return ok
}

// Revision is the last revision of scope applied on this anchor, or 0 when it
// hosts no replica of it.
func (a *Anchor) Revision(scope string) uint64 {
	h, ok := a.scope(scope)
	if !ok {
		return 0
	}
	return h.state.Revision()
}

// LineageHead is the index and hash of the last lineage record of scope on
// this anchor.
func (a *Anchor) LineageHead(scope string) (uint64, string) {
	h, ok := a.scope(scope)
	if !ok {
		return 0, ""
	}
	return h.state.LineageHead()
}

// Initialised reports whether this anchor hosts scope and has applied its
// genesis (before that, the scope accepts no other mutation).
func (a *Anchor) Initialised(scope string) bool {
	h, ok := a.scope(scope)
	return ok && h.state.Incarnation() != ""
}

// ReplicaStats are the counters of this anchor's replica host (messages
// sent, disk syncs), for benchmarks and diagnostics.
func (a *Anchor) ReplicaStats() replica.HostStats { return a.host.Stats() }
