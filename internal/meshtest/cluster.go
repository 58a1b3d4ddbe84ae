package meshtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"canton.dev/canton/internal/anchor"
	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/identity"
)

// Options configures a cluster. Zero values are defaults.
type Options struct {
	Anchors         int           // default 3
	Mesh            string        // default "demo.mesh"
	Dir             string        // required: each anchor gets Dir/a<N>; existing anchors resume
	TickInterval    time.Duration // Raft tick; default 20ms (tests want fast elections)
	SnapshotEntries uint64        // default: the anchor's default
	RequestTimeout  time.Duration // default 8s (loaded CI machines)
	Logger          *slog.Logger  // default: discard
	HTTP            string        // anchor a1's HTTP side (dashboard, /metrics, /healthz), host:port; empty: none
	RootVoters      int           // how many anchors (a1..) replicate the root scope; default all
	ScopeCATTL      time.Duration // lifetime of scope CAs (anchor.Config.ScopeCATTL); default the anchor's
}

// Cluster is a set of in-process anchors. Anchor i is named "a<i+1>".
type Cluster struct {
	opts Options

	mu      sync.Mutex
	anchors []*anchor.Anchor // nil while stopped
	addrs   []string
	drop    func(from, to string) bool
}

// Start starts opts.Anchors anchors: a1 bootstraps the mesh with all of them
// as root voters, the others join through a1 with its join token. When Dir
// already holds the anchors (a restart of the demo), they resume on the
// addresses they had.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Anchors == 0 {
		opts.Anchors = 3
	}
	if opts.Mesh == "" {
		opts.Mesh = "demo.mesh"
	}
	if opts.TickInterval == 0 {
		opts.TickInterval = 20 * time.Millisecond
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 8 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Dir == "" {
		return nil, errors.New("meshtest: Options.Dir is required")
	}
	c := &Cluster{opts: opts, anchors: make([]*anchor.Anchor, opts.Anchors), addrs: make([]string, opts.Anchors)}
	listeners := make([]net.Listener, opts.Anchors)
	var peers []anchor.Peer
	for i := range opts.Anchors {
		addr := "127.0.0.1:0"
		if prev, err := anchor.ReadAddress(c.dir(i)); err == nil && prev != "" {
			addr = prev
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			closeAll(listeners)
			return nil, fmt.Errorf("meshtest: listen for %s: %w", c.Name(i), err)
		}
		listeners[i] = l
		c.addrs[i] = l.Addr().String()
		if opts.RootVoters == 0 || i < opts.RootVoters {
			peers = append(peers, anchor.Peer{ID: c.Name(i), Address: c.addrs[i]})
		}
	}
	for i := range opts.Anchors {
		cfg := c.config(i, listeners[i])
		if i == 0 {
			cfg.Bootstrap, cfg.Peers = true, peers
		} else {
			tok, err := os.ReadFile(filepath.Join(c.dir(0), "join.token"))
			if err != nil {
				closeAll(listeners[i:])
				c.Close()
				return nil, fmt.Errorf("meshtest: %w", err)
			}
			cfg.Join, cfg.JoinToken = c.addrs[0], string(tok)
		}
		a, err := anchor.Start(ctx, cfg)
		if err != nil {
			closeAll(listeners[i+1:])
			c.Close()
			return nil, fmt.Errorf("meshtest: start %s: %w", c.Name(i), err)
		}
		c.anchors[i] = a
	}
	return c, nil
}

func closeAll(ls []net.Listener) {
	for _, l := range ls {
		if l != nil {
			l.Close()
		}
	}
}

func (c *Cluster) config(i int, l net.Listener) anchor.Config {
	cfg := anchor.Config{
		ID:              c.Name(i),
		DataDir:         c.dir(i),
		Listener:        l,
		Mesh:            c.opts.Mesh,
		TickInterval:    c.opts.TickInterval,
		SnapshotEntries: c.opts.SnapshotEntries,
		RequestTimeout:  c.opts.RequestTimeout,
		ScopeCATTL:      c.opts.ScopeCATTL,
		Logger:          c.opts.Logger.With("anchor", c.Name(i)),
	}
	if i == 0 {
		cfg.HTTP = c.opts.HTTP
	}
	return cfg
}

func (c *Cluster) dir(i int) string { return filepath.Join(c.opts.Dir, c.Name(i)) }

// Name is the ID of anchor i.
func (c *Cluster) Name(i int) string { return fmt.Sprintf("a%d", i+1) }

// Len is the number of anchors, running or not.
func (c *Cluster) Len() int { return len(c.addrs) }

// Mesh is the mesh domain.
func (c *Cluster) Mesh() string { return c.opts.Mesh }

// Addr is the gRPC address of anchor i.
func (c *Cluster) Addr(i int) string { return c.addrs[i] }

// DataDir is the data directory of anchor i.
func (c *Cluster) DataDir(i int) string { return c.dir(i) }

// AdminCredentials is the path of the admin's credentials file.
func (c *Cluster) AdminCredentials() string { return filepath.Join(c.dir(0), "admin.credentials") }

// Anchor returns anchor i, or nil while it is stopped.
func (c *Cluster) Anchor(i int) *anchor.Anchor {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.anchors[i]
}

// Client returns an admin client of anchor i.
func (c *Cluster) Client(i int) (*api.Client, error) {
	creds, err := identity.LoadCredentials(c.AdminCredentials())
	if err != nil {
		return nil, err
	}
	return api.Dial(c.addrs[i], creds)
}

// Stop stops anchor i as a crash would leave it: its storage stays.
func (c *Cluster) Stop(i int) error {
	c.mu.Lock()
	a := c.anchors[i]
	c.anchors[i] = nil
	c.mu.Unlock()
	if a == nil {
		return nil
	}
	return a.Close()
}

// Restart starts a stopped anchor i again from its data directory, on the
// same address.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.anchors[i] != nil {
		return fmt.Errorf("meshtest: %s is running", c.Name(i))
	}
	var l net.Listener
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for {
		if l, err = net.Listen("tcp", c.addrs[i]); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // the old socket is closing
	}
	if err != nil {
		return fmt.Errorf("meshtest: relisten %s: %w", c.addrs[i], err)
	}
	a, err := anchor.Start(ctx, c.config(i, l))
	if err != nil {
		return err
	}
	if c.drop != nil {
		a.SetReplicationFilter(c.drop)
	}
	c.anchors[i] = a
	return nil
}

// Partition splits the anchors into groups (by index): replication between
// groups is dropped until Heal. Anchors not named form one more group.
func (c *Cluster) Partition(groups ...[]int) {
	side := map[string]int{}
	for g, members := range groups {
		for _, i := range members {
			side[c.Name(i)] = g + 1
		}
	}
	c.setDrop(func(from, to string) bool { return side[from] != side[to] })
}

// Heal ends a partition.
func (c *Cluster) Heal() { c.setDrop(nil) }

func (c *Cluster) setDrop(f func(from, to string) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drop = f
	for _, a := range c.anchors {
		if a != nil {
			a.SetReplicationFilter(f)
		}
	}
}

// Leader returns the index of the anchor that leads scope, as the running
// anchors see it, or -1.
func (c *Cluster) Leader(scope string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, a := range c.anchors {
		if a != nil && a.Leads(scope) {
			return i
		}
	}
	return -1
}

// WaitLeader waits until some running anchor leads scope.
func (c *Cluster) WaitLeader(ctx context.Context, scope string) (int, error) {
	for {
		if i := c.Leader(scope); i >= 0 {
			return i, nil
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("meshtest: no leader of scope %s: %w", scope, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// WaitScope waits until scope has a leader and its genesis is applied on
// that leader: from then on it accepts mutations.
func (c *Cluster) WaitScope(ctx context.Context, scope string) error {
	for {
		if i := c.Leader(scope); i >= 0 {
			if a := c.Anchor(i); a != nil && a.Initialised(scope) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("meshtest: scope %s not ready: %w", scope, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Close stops every anchor.
func (c *Cluster) Close() error {
	var errs []error
	for i := range c.addrs {
		errs = append(errs, c.Stop(i))
	}
	return errors.Join(errs...)
}
