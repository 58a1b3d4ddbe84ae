package replica

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// logSM is a test state machine: it records every applied command in order and
// fails the test if Apply ever sees a non-increasing index.
type logSM struct {
	mu       sync.Mutex
	t        testing.TB
	last     uint64
	cmds     []string
	restores int
}

func (s *logSM) Apply(index uint64, data []byte) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if index <= s.last {
		s.t.Errorf("apply index %d after %d", index, s.last)
	}
	s.last = index
	s.cmds = append(s.cmds, string(data))
	return len(s.cmds)
}

type smImage struct {
	Last uint64
	Cmds []string
}

func (s *logSM) Snapshot() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return json.Marshal(smImage{Last: s.last, Cmds: s.cmds})
}

func (s *logSM) Restore(data []byte) error {
	var img smImage
	if err := json.Unmarshal(data, &img); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last, s.cmds = img.Last, img.Cmds
	s.restores++
	return nil
}

// capturingSM is a logSM that takes snapshots in two steps (SnapshotCapturer):
// it captures on the apply goroutine and encodes when the host asks, after
// gate (if set) is closed.
type capturingSM struct {
	*logSM
	gate     chan struct{}
	captured chan uint64 // receives the index of every capture (if set; never blocks)
}

func (s *capturingSM) CaptureSnapshot() func() ([]byte, error) {
	s.mu.Lock()
	img := smImage{Last: s.last, Cmds: slices.Clone(s.cmds)}
	s.mu.Unlock()
	select {
	case s.captured <- img.Last:
	default:
	}
	return func() ([]byte, error) {
		if s.gate != nil {
			<-s.gate
		}
		return json.Marshal(img)
	}
}

func (s *logSM) commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.cmds)
}

func (s *logSM) has(cmd string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.cmds, cmd)
}

const (
	testTick     = 10 * time.Millisecond
	testElection = 10 // ticks
)

// cluster is a set of hosts on a MemNetwork, each with its own data directory.
type cluster struct {
	t         testing.TB
	net       *MemNetwork
	dirs      map[uint64]string
	hosts     map[uint64]*Host
	sms       map[uint64]map[GroupID]*logSM
	snapN     uint64
	capture   bool          // state machines implement SnapshotCapturer
	tick      time.Duration // zero: testTick
	noQuiesce bool
	mu        sync.Mutex
}

func newCluster(t testing.TB, ids ...uint64) *cluster {
	c := &cluster{
		t:     t,
		net:   NewMemNetwork(),
		dirs:  make(map[uint64]string),
		hosts: make(map[uint64]*Host),
		sms:   make(map[uint64]map[GroupID]*logSM),
	}
	for _, id := range ids {
		c.dirs[id] = t.TempDir()
	}
	t.Cleanup(func() {
		for _, h := range c.hosts {
			h.Close()
		}
	})
	return c
}

func testLogger() *slog.Logger {
	if os.Getenv("REPLICA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (c *cluster) open(id uint64) *Host {
	c.t.Helper()
	if c.dirs[id] == "" {
		c.dirs[id] = c.t.TempDir()
	}
	h, err := Open(Config{
		NodeID:            id,
		Dir:               c.dirs[id],
		Transport:         c.net.Transport(id),
		TickInterval:      cmp.Or(c.tick, testTick),
		ElectionTicks:     testElection,
		SnapshotEntries:   c.snapN,
		Logger:            testLogger(),
		DisableQuiescence: c.noQuiesce,
	})
	if err != nil {
		c.t.Fatalf("open host %d: %v", id, err)
	}
	c.mu.Lock()
	c.hosts[id] = h
	c.sms[id] = make(map[GroupID]*logSM)
	c.mu.Unlock()
	return h
}

func (c *cluster) close(id uint64) {
	c.t.Helper()
	c.net.Detach(id)
	if err := c.hosts[id].Close(); err != nil {
		c.t.Fatalf("close host %d: %v", id, err)
	}
	c.mu.Lock()
	delete(c.hosts, id)
	c.mu.Unlock()
}

func (c *cluster) start(id uint64, g GroupID, peers []uint64) *Group {
	c.t.Helper()
	sm := &logSM{t: c.t}
	var machine StateMachine = sm
	if c.capture {
		machine = &capturingSM{logSM: sm}
	}
	grp, err := c.hosts[id].StartGroup(g, peers, machine)
	if err != nil {
		c.t.Fatalf("start group %s on %d: %v", g, id, err)
	}
	c.mu.Lock()
	c.sms[id][g] = sm
	c.mu.Unlock()
	return grp
}

func (c *cluster) group(id uint64, g GroupID) *Group {
	c.t.Helper()
	grp, ok := c.hosts[id].Group(g)
	if !ok {
		c.t.Fatalf("group %s not running on %d", g, id)
	}
	return grp
}

// waitLeader waits until every running replica of g among ids agrees on one leader.
func (c *cluster) waitLeader(g GroupID, ids ...uint64) uint64 {
	c.t.Helper()
	var lead uint64
	waitFor(c.t, 50*testElection*cmp.Or(c.tick, testTick), fmt.Sprintf("leader of %s among %v", g, ids), func() bool {
		lead = 0
		for _, id := range ids {
			h := c.hosts[id]
			if h == nil {
				return false
			}
			grp, ok := h.Group(g)
			if !ok {
				return false
			}
			l := grp.Status().Leader
			if l == 0 || (lead != 0 && l != lead) {
				return false
			}
			lead = l
		}
		return slices.Contains(ids, lead) && c.group(lead, g).Status().IsLeader
	})
	return lead
}

// waitApplied waits until every listed replica of g holds cmd.
func (c *cluster) waitHas(g GroupID, cmd string, ids ...uint64) {
	c.t.Helper()
	waitFor(c.t, 5*time.Second, fmt.Sprintf("%q applied on %v", cmd, ids), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, id := range ids {
			sm := c.sms[id][g]
			if sm == nil || !sm.has(cmd) {
				return false
			}
		}
		return true
	})
}

func (c *cluster) sm(id uint64, g GroupID) *logSM {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sms[id][g]
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func propose(t testing.TB, g *Group, cmd string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, idx, err := g.Propose(ctx, []byte(cmd))
	if err != nil {
		t.Fatalf("propose %q on node %d: %v", cmd, g.h.cfg.NodeID, err)
	}
	return idx
}
