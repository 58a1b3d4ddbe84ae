package replica

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// grpcNode is one host served by its own gRPC server on 127.0.0.1:0.
type grpcNode struct {
	id   uint64
	host *Host
	tr   *GRPCTransport
	srv  *grpc.Server
	sm   map[GroupID]*logSM
}

type grpcCluster struct {
	t     testing.TB
	mu    sync.Mutex
	addrs map[uint64]string
	nodes map[uint64]*grpcNode
	dirs  map[uint64]string
	tick  time.Duration
	snapN uint64
}

func newGRPCCluster(t testing.TB) *grpcCluster {
	c := &grpcCluster{t: t, addrs: map[uint64]string{}, nodes: map[uint64]*grpcNode{}, dirs: map[uint64]string{}, tick: testTick}
	t.Cleanup(func() {
		for id := range c.nodes {
			c.stop(id)
		}
	})
	return c
}

func (c *grpcCluster) resolve(id uint64) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.addrs[id]
	return a, ok
}

func (c *grpcCluster) start(id uint64) *grpcNode {
	c.t.Helper()
	if c.dirs[id] == "" {
		c.dirs[id] = c.t.TempDir()
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	tr, err := NewGRPCTransport(GRPCConfig{
		NodeID:      id,
		Resolve:     c.resolve,
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		Logger:      testLogger(),
	})
	if err != nil {
		c.t.Fatal(err)
	}
	srv := grpc.NewServer()
	tr.Register(srv)
	go srv.Serve(lis)
	h, err := Open(Config{
		NodeID:          id,
		Dir:             c.dirs[id],
		Transport:       tr,
		TickInterval:    c.tick,
		ElectionTicks:   testElection,
		SnapshotEntries: c.snapN,
		Logger:          testLogger(),
	})
	if err != nil {
		c.t.Fatal(err)
	}
	n := &grpcNode{id: id, host: h, tr: tr, srv: srv, sm: map[GroupID]*logSM{}}
	c.mu.Lock()
	c.addrs[id] = lis.Addr().String()
	c.nodes[id] = n
	c.mu.Unlock()
	return n
}

func (c *grpcCluster) stop(id uint64) {
	n := c.nodes[id]
	n.host.Close()
	n.tr.Close()
	n.srv.Stop()
	c.mu.Lock()
	delete(c.nodes, id)
	delete(c.addrs, id)
	c.mu.Unlock()
}

func (n *grpcNode) startGroup(t testing.TB, g GroupID, peers []uint64) *Group {
	t.Helper()
	sm := &logSM{t: t}
	grp, err := n.host.StartGroup(g, peers, sm)
	if err != nil {
		t.Fatal(err)
	}
	n.sm[g] = sm
	return grp
}

func (c *grpcCluster) waitLeader(g GroupID, ids ...uint64) uint64 {
	c.t.Helper()
	var lead uint64
	waitFor(c.t, 50*testElection*c.tick, "leader of "+string(g), func() bool {
		lead = 0
		for _, id := range ids {
			grp, ok := c.nodes[id].host.Group(g)
			if !ok {
				return false
			}
			l := grp.Status().Leader
			if l == 0 || (lead != 0 && l != lead) {
				return false
			}
			lead = l
		}
		return slices.Contains(ids, lead)
	})
	return lead
}

func TestGRPCTransportCommitPartitionRestart(t *testing.T) {
	c := newGRPCCluster(t)
	peers := []uint64{1, 2, 3}
	for _, id := range peers {
		c.start(id).startGroup(t, "g", peers)
	}
	lead := c.waitLeader("g", peers...)
	g := func(id uint64) *Group { grp, _ := c.nodes[id].host.Group("g"); return grp }
	propose(t, g(lead), "a")
	follower := peers[(slices.Index(peers, lead)+1)%3]
	propose(t, g(follower), "b")

	// Partition the leader away with the drop hook on its own transport only.
	old := lead
	c.nodes[old].tr.SetDropFunc(func(from, to uint64) bool { return true })
	rest := slices.DeleteFunc(slices.Clone(peers), func(id uint64) bool { return id == old })
	waitFor(t, 5*time.Second, "majority elects", func() bool {
		l := g(rest[0]).Status().Leader
		return l != 0 && l != old && g(rest[1]).Status().Leader == l
	})
	lead = g(rest[0]).Status().Leader
	propose(t, g(lead), "c")
	ctx, cancel := context.WithTimeout(context.Background(), 3*testElection*c.tick)
	if _, _, err := g(old).Propose(ctx, []byte("lost")); err == nil {
		t.Errorf("partitioned node %d committed", old)
	}
	cancel()
	c.nodes[old].tr.SetDropFunc(nil)

	// Restart a follower on a new port: peers re-resolve its address.
	follower = rest[0]
	if follower == lead {
		follower = rest[1]
	}
	c.stop(follower)
	propose(t, g(lead), "d")
	c.start(follower).startGroup(t, "g", nil)
	propose(t, g(lead), "e")
	want := []string{"a", "b", "c", "d", "e"}
	for _, id := range peers {
		// The partitioned proposal was never acknowledged and was overwritten.
		waitFor(t, 5*time.Second, "convergence", func() bool {
			return slices.Equal(c.nodes[id].sm["g"].commands(), want)
		})
	}
}

// TestGRPCLargeSnapshot sends entries and a snapshot larger than gRPC's default
// 4 MiB message limit: frames are chunked.
func TestGRPCLargeSnapshot(t *testing.T) {
	c := newGRPCCluster(t)
	c.snapN = 4
	peers := []uint64{1, 2, 3}
	for _, id := range peers {
		c.start(id).startGroup(t, "g", peers)
	}
	lead := c.waitLeader("g", peers...)
	g := func(id uint64) *Group { grp, _ := c.nodes[id].host.Group("g"); return grp }
	down := peers[(slices.Index(peers, lead)+1)%3]
	c.stop(down)
	big := strings.Repeat("x", 1<<20+100)
	for i := range 6 {
		propose(t, g(lead), fmt.Sprintf("%d%s", i, big))
	}
	c.start(down).startGroup(t, "g", nil)
	waitFor(t, 10*time.Second, "restarted node catches up", func() bool {
		return len(c.nodes[down].sm["g"].commands()) == 6
	})
	if c.nodes[down].sm["g"].restores == 0 {
		t.Errorf("node %d caught up without the snapshot", down)
	}
}
