package replica

import (
	"sync"
)

// MemNetwork is an in-memory network connecting hosts in one process, for tests.
// Every batch is encoded and decoded (so hosts never share message memory) and
// delivered synchronously. Links can be cut to simulate partitions.
type MemNetwork struct {
	mu       sync.RWMutex
	handlers map[uint64]Handler
	cut      map[[2]uint64]bool // directed links that drop everything
	drop     func(from, to uint64) bool
}

// NewMemNetwork returns an empty network.
func NewMemNetwork() *MemNetwork {
	return &MemNetwork{handlers: make(map[uint64]Handler), cut: make(map[[2]uint64]bool)}
}

// Transport returns node's endpoint; pass it as Config.Transport (Open attaches the host).
func (n *MemNetwork) Transport(node uint64) *MemTransport {
	return &MemTransport{net: n, node: node}
}

// Partition cuts every link between the two sets of nodes, both directions.
func (n *MemNetwork) Partition(a, b []uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, x := range a {
		for _, y := range b {
			n.cut[[2]uint64{x, y}] = true
			n.cut[[2]uint64{y, x}] = true
		}
	}
}

// Isolate cuts node from every other node.
func (n *MemNetwork) Isolate(node uint64) {
	n.mu.Lock()
	var others []uint64
	for id := range n.handlers {
		if id != node {
			others = append(others, id)
		}
	}
	n.mu.Unlock()
	n.Partition([]uint64{node}, others)
}

// Heal restores every link.
func (n *MemNetwork) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.cut)
}

// SetDropFunc installs an extra filter: batches for which f returns true are dropped.
func (n *MemNetwork) SetDropFunc(f func(from, to uint64) bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.drop = f
}

// Detach removes node's handler (its host was closed): batches to it are dropped.
func (n *MemNetwork) Detach(node uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.handlers, node)
}

func (n *MemNetwork) deliver(from, to uint64, batch []Envelope) {
	n.mu.RLock()
	h := n.handlers[to]
	blocked := n.cut[[2]uint64{from, to}] || (n.drop != nil && n.drop(from, to))
	n.mu.RUnlock()
	if h == nil || blocked {
		return
	}
	frame, err := EncodeBatch(batch)
	if err != nil {
		return
	}
	out, err := DecodeBatch(frame)
	if err != nil {
		return
	}
	h.Receive(from, out)
}

// MemTransport is one node's endpoint on a MemNetwork.
type MemTransport struct {
	net  *MemNetwork
	node uint64
}

// SetHandler attaches the receiving host.
func (t *MemTransport) SetHandler(h Handler) {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	t.net.handlers[t.node] = h
}

// Send delivers batch to node to unless the link is cut.
func (t *MemTransport) Send(to uint64, batch []Envelope) {
	t.net.deliver(t.node, to, batch)
}
