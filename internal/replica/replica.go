package replica

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// GroupID names one Raft group: the domain of the scope it replicates, e.g. "demo.mesh".
type GroupID string

// StateMachine is the deterministic state of one group.
//
// Apply is called in log order, exactly once per committed normal entry (never for
// empty entries or configuration changes), always from the group's apply goroutine.
// Snapshot and Restore are called from that same goroutine.
type StateMachine interface {
	// Apply applies the data of the committed entry at index. The result is handed
	// back to the proposer's waiter when the proposal was made on this replica.
	Apply(index uint64, data []byte) any
	// Snapshot serializes the full state.
	Snapshot() ([]byte, error)
	// Restore replaces the whole state with a Snapshot's bytes.
	Restore(data []byte) error
}

// SnapshotCapturer is an optional interface of a StateMachine whose snapshot is
// taken in two steps, so that a large state is encoded without stopping the
// group's apply goroutine (proposals wait for it).
type SnapshotCapturer interface {
	// CaptureSnapshot is called from the apply goroutine, like Snapshot, and
	// should be quick: it captures the state as of now and returns a function
	// that encodes it, giving the bytes Snapshot would have given at this
	// point. The function is called once, from another goroutine, possibly
	// while Apply runs.
	CaptureSnapshot() func() ([]byte, error)
}

// Config configures a Host. Zero values mean the documented defaults.
type Config struct {
	// NodeID is this anchor's raft ID; it must be non-zero and unique in every group.
	NodeID uint64
	// Dir is the data directory. The package owns Dir/raft.db, one bbolt file for all groups.
	Dir string
	// Transport carries messages to other nodes. If it has a SetHandler(Handler)
	// method (both transports of this package do), Open binds the Host to it.
	Transport Transport
	// TickInterval is the raft logical clock period. Zero means 100ms.
	TickInterval time.Duration
	// ElectionTicks is the election timeout in ticks. Zero means 10.
	ElectionTicks int
	// HeartbeatTicks is the leader heartbeat period in ticks. Zero means 1.
	HeartbeatTicks int
	// SnapshotEntries: a group takes a snapshot and compacts its log every
	// SnapshotEntries applied entries. Zero means 10000.
	SnapshotEntries uint64
	// Logger receives the host's logs. Nil means slog.Default().
	Logger *slog.Logger
	// DisableQuiescence keeps idle groups ticking and heartbeating (for
	// measurements and debugging).
	DisableQuiescence bool
}

func (c *Config) withDefaults() (Config, error) {
	out := *c
	if out.NodeID == 0 {
		return out, errors.New("replica: config: NodeID must be non-zero")
	}
	if out.Dir == "" {
		return out, errors.New("replica: config: Dir must be set")
	}
	if out.Transport == nil {
		return out, errors.New("replica: config: Transport must be set")
	}
	if out.TickInterval <= 0 {
		out.TickInterval = 100 * time.Millisecond
	}
	if out.HeartbeatTicks <= 0 {
		out.HeartbeatTicks = 1
	}
	if out.ElectionTicks <= 0 {
		out.ElectionTicks = 10
	}
	if out.ElectionTicks <= out.HeartbeatTicks {
		return out, errors.New("replica: config: ElectionTicks must be greater than HeartbeatTicks")
	}
	if out.SnapshotEntries == 0 {
		out.SnapshotEntries = 10000
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	return out, nil
}

// Status is a point-in-time view of one replica.
type Status struct {
	ID       uint64 // this node
	Leader   uint64 // 0 when no leader is known
	Term     uint64
	Commit   uint64
	Applied  uint64 // applied to the StateMachine on this replica
	IsLeader bool
	Voters   []uint64
	Learners []uint64
	Quiesced bool // the group stopped ticking because it is idle
}

// Envelope is one raft message of one group, as carried by a Transport.
type Envelope struct {
	Group GroupID
	Msg   *raftpb.Message
	// Quiesce marks a leader heartbeat telling the follower to stop ticking.
	Quiesce bool
	// Removed marks a removal notice: a member tells the receiver, which sent
	// the group a message, that a configuration change applied at Msg.Index
	// removed it from the group (see Group.Removed). Msg carries only From,
	// To and Index, with a type raft ignores from a peer.
	Removed bool
}

// Transport carries batches of envelopes between nodes.
type Transport interface {
	// Send must not block and may drop (raft retries). One batch carries the
	// messages of all groups for one peer. An empty batch is a node-level liveness ping.
	Send(to uint64, batch []Envelope)
}

// Handler is what a Transport delivers to; *Host implements it.
type Handler interface {
	Receive(from uint64, batch []Envelope)
	PeerUnreachable(node uint64)
}

var (
	// ErrNoLeader is returned when the group has no known leader (e.g. it lost quorum).
	ErrNoLeader = errors.New("replica: group has no leader")
	// ErrStopped is returned when the group or host was stopped.
	ErrStopped = errors.New("replica: stopped")
	// ErrDropped is returned when raft refused a proposal (e.g. during a leadership transfer).
	ErrDropped = errors.New("replica: proposal dropped by raft")
)

// ctxErr returns ctx's error wrapped with what was waiting.
func ctxErr(ctx context.Context, what string, id GroupID) error {
	return &opError{op: what, group: id, err: ctx.Err()}
}

type opError struct {
	op    string
	group GroupID
	err   error
}

func (e *opError) Error() string {
	return "replica: " + e.op + " in group " + string(e.group) + ": " + e.err.Error()
}
func (e *opError) Unwrap() error { return e.err }
