// Package anchor is the anchor role: one process that hosts replicas of many
// scopes and serves the anchor API over one mTLS gRPC port.
//
// An anchor wires the parts together and owns their I/O: the multi-raft host
// (internal/replica) replicates each scope's state machine (internal/scope);
// the API server (this package, protocol in internal/api/apipb) routes each
// request to the scope that governs its namespace — locally when this anchor
// hosts a replica, otherwise by forwarding to an anchor that does; the lessor
// expires workload leases while this anchor leads a scope; the reconciler
// starts replicas of child scopes delegated to this anchor, and a replica
// whose anchor was removed from its scope is deleted (membership.go). Every
// anchor follows the address book, the root scope's Anchor objects
// (addressbook.go). Every replica
// also serves xDS for its scope's proxies from its applied state (xds.go),
// imports the remote services its policies name (imports.go), gives its
// scope a sealed, name-constrained CA that signs workload CSRs (ca.go,
// workload.go), answers resolution like DNS (resolve.go) and, with --http,
// serves the dashboard (dashboard.go).
//
// Data directory layout:
//
//	anchor.json         who this anchor is: ID, mesh, address book, root voters,
//	                    the scopes it was removed from
//	anchor.credentials  this anchor's certificate chain, key and trust bundle
//	raft.db             the Raft log, hard state and snapshots of every scope
//	ca.crt, ca.key      the CA the root scope seals (only on the anchor that
//	                    bootstrapped): the mesh root, or with --ca-cert/--ca-key
//	                    an intermediate of the user's offline root (ca.crt then
//	                    holds it and the root; the root's key is never written)
//	kek                 the mesh key-encryption key that seals scope CA keys
//	admin.credentials   the admin's credentials (written at bootstrap)
//	join.token          what other anchors and proxies present to join
//
// Only internal/cli and internal/meshtest import this package.
package anchor
