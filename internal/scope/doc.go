// Package scope is the deterministic state machine of one Canton scope: the zone of the
// namespace (a domain and every name below it, minus delegated subtrees) that one Raft group
// of anchors replicates.
//
// A State holds the scope's objects (Services with stable UIDs, Workloads under leases, the
// Istio policy kinds, Aliases, Delegations, Anchors), its leases, its governance, a bounded
// history of watch events and the lineage: the hash chain of every accepted mutation.
//
// State implements the method set internal/replica expects from a state machine:
//
//	Apply(index uint64, data []byte) any   // data = Encode(Mutation); returns a Result
//	Snapshot() ([]byte, error)
//	Restore(data []byte) error
//
// Apply is pure and deterministic: no clock, no randomness, no network, no dependence on map
// iteration order. The same log applied to two States gives byte-identical Snapshots. Every
// put is validated with resource.Normalize (a replica never trusts the proposer) and stored
// in its normalised form. Lease expiry is decided outside (by the leader's lessor, which reads
// Leases()) and committed as an "expire-leases" mutation. A "rename" moves a Service to a new
// name keeping its UID and Created, leaves an Alias (resolve, invoke) with the old name
// pointing at the UID and moves the old name's Workloads, all in one entry.
//
// Apply calls come from one goroutine; all read methods are safe for concurrent use.
//
// # Lineage
//
// Every accepted mutation (not rejected ones, not "noop" and not empty Raft entries) appends
// a Record. Its Mutation field holds the canonical bytes of the mutation as the state machine
// accepted it: Encode of the decoded mutation with every object normalised (canonical kind,
// canonical spec, server fields cleared) and, for "expire-leases", only the lease IDs that
// still existed. The hash is
//
//	hash_n = SHA-256( prev[32]
//	                  || uint64be(len(mutation)) || mutation
//	                  || uint64be(len(proposer)) || proposer
//	                  || uint64be(index) )
//
// where prev is hash_{n-1} as 32 raw bytes (32 zero bytes for the first record), mutation and
// proposer are raw bytes, and uint64be is the 8-byte big-endian encoding. Records store
// hashes as 64 lower-case hex characters. VerifyLineage recomputes all of this.
//
// # Time
//
// The proposing anchor stamps a mutation with its wall-clock time (Mutation.Time, RFC 3339
// UTC with milliseconds) before proposing it, so the time travels in the Raft entry, every
// replica applies the same bytes, and the time is part of the canonical mutation the hash
// covers. Record.Time repeats it, as Record.Proposer repeats the proposer. Apply checks only
// its spelling: it never reads a clock and never compares the time with anything, so a
// time is the proposer's claim, recorded, not a fact the anchors agreed on (it may go
// backwards from one record to the next). Mutations without a time (everything committed
// before anchors stamped them) encode without the field, so their records hash exactly as
// before; the hash layout above is the same for both.
//
// # Who may import it
//
// internal/replica (through its StateMachine interface), internal/anchor, internal/xds and
// tests. It must not import network, storage or clock-driven packages.
package scope
