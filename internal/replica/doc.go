// Package replica is the multi-raft host of an anchor: it runs the Raft replicas
// of many groups (one per scope) in one process, on go.etcd.io/raft/v3 with
// durable storage in one bbolt file. It replicates opaque commands into a
// StateMachine and knows nothing about scopes.
//
// Who may import it: internal/anchor (and test harnesses such as
// internal/meshtest). The data plane (internal/proxy) and the CLI must not.
//
// # Loop, writer and batching
//
// One goroutine (Host.run) drives every group's raft.RawNode, with raft's
// AsyncStorageWrites. Each iteration it runs queued operations (proposals, reads,
// configuration changes, snapshots), steps received messages and the responses
// released by the writer, ticks the awake groups, and takes the Ready of every
// group that changed: messages to other nodes are batched per destination (one
// Transport.Send per peer per iteration, carrying every group's messages), log
// writes (MsgStorageAppend) are queued to the writer, committed entries go to the
// group's apply goroutine.
//
// The writer (writer.go) is the single append thread of all groups: it takes
// everything queued, from many groups and loop iterations, and makes it durable
// with ONE fsync: one record appended to the WAL (wal.go; a snapshot received from the
// leader or a new group goes to bbolt directly, in one transaction, and a snapshot taken
// here is queued for the WAL's checkpointer, as nothing waits for it); then it updates the
// log caches and releases the responses raft made conditional on durability (append and vote
// acknowledgements). The loop never waits for the disk, so a leader's fsync
// overlaps its followers' and new proposals keep batching while a write is in
// flight. Hard states whose only change is the commit index are not worth an
// fsync: they ride along with the next transaction (or Close); raft recovers the
// commit index from the leader after a crash.
//
// The apply goroutine of each group applies committed entries in order, so a slow
// state machine never blocks the loop or other groups; proposals wait for it.
//
// # Storage layout
//
// Dir/raft.db has a top-level bucket "groups" with one nested bucket per group:
// "hs" (HardState), a "snapshot" bucket holding "snap" (latest Snapshot with its
// ConfState and the state machine bytes) and a nested "log" bucket of entries keyed
// by big-endian index. Dir/raft.wal is a write-ahead log in front of it: log entries
// and hard states are appended there (one fsync) and copied into bbolt in the
// background; opening the store replays what bbolt lacks. A raft.MemoryStorage per
// group caches the log for raft; bbolt and the WAL are the source of truth and
// rebuild the cache on restart. See storage.go and wal.go.
//
// A new group is bootstrapped by a snapshot at index 1, term 1, holding the
// initial voters and the state machine's initial Snapshot(); members added later
// receive a snapshot. The bootstrap state is queued to the writer ahead of any
// append of the group, so many new groups share one fsync.
//
// # Snapshots and compaction
//
// Every SnapshotEntries applied entries the apply goroutine calls
// StateMachine.Snapshot — or, for a state machine implementing
// SnapshotCapturer, captures the state there and encodes it on another
// goroutine, so that applying (and the proposals waiting for it) does not
// stop while a large state is encoded; the loop stores it and compacts the log, keeping
// min(SnapshotEntries/2, 5000) entries for slightly lagging followers. A
// follower further behind gets MsgSnap with the snapshot bytes (reported to raft
// as finished once handed to the transport). A snapshot older than the latest
// configuration change is never sent (the new member would ignore it): a fresh one
// is taken first. On restart the latest snapshot is restored into the state
// machine and raft replays the committed entries after it (Config.Applied is the
// snapshot index).
//
// # Proposals and reads
//
// Propose wraps data in a small envelope (node ID, request ID; see proposal.go)
// so the replica that proposed it finds its waiter when the entry is applied,
// whether it was leader or follower. StateMachine.Apply sees only the caller's
// bytes. ReadIndex uses raft's ReadIndex (ReadOnlySafe) and then waits for the
// local apply. Both fail fast with ErrNoLeader when no leader is known. A waiter
// whose proposal was lost with a leader change returns at its context's deadline.
//
// # Membership
//
// AddLearner, Promote and Remove are single-node configuration changes. A
// message from a node outside a group's configuration is dropped (see
// Group.accepts). A removed node learns of its removal from the applied
// change, or, if it missed it (it was down), from the removal notice a member
// answers its next message with (Envelope.Removed); Group.Removed tells the
// owner, which stops the replica and deletes its data.
//
// # Quiescence and liveness
//
// Idle groups stop ticking (see quiesce.go): a leader whose group is fully
// replicated sends one quiesce heartbeat and stops; followers stop too. Nodes
// ping each other (one empty batch per peer, not per group) to detect dead nodes;
// a dead node wakes the groups it led. With 1,000 idle groups on 3 hosts no raft
// message is sent at all once quiesced; see BenchmarkIdleGroups.
//
// # Transports
//
// Transport is one non-blocking Send of a batch per peer. GRPCTransport
// (transport_grpc.go) registers a stream service on a shared *grpc.Server and
// dials peers with the anchor's options; MemNetwork (memnet.go) connects hosts
// in one process for tests, with partitions.
package replica
