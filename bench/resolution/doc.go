// Command resolution measures how fast Canton resolves mesh names across the scope
// hierarchy and how fast an endpoint change in one scope reaches the proxies of another.
//
//	go run ./bench/resolution                 # about a minute
//	go run ./bench/resolution -quick          # under a minute, fewer samples
//	go run ./bench/resolution -json
//	go run ./bench/resolution -depth 6 -resolves 2000 -changes 200 -cpuprofile cpu.out
//
// It starts a real mesh in this process (internal/meshtest: Raft, bbolt, mTLS gRPC on
// 127.0.0.1) whose hierarchy is a chain of zone cuts, each scope on its own anchor:
//
//	demo.mesh (a1, a2, a3) → a.demo.mesh (a7) → b.a.demo.mesh (a6) → c.b.a.demo.mesh (a5) → d.c.b.a.demo.mesh (a4)
//
// (with -depth 4: deeper scopes live on anchors that joined earlier, because an anchor that
// does not replicate the root scope only knows the anchors that joined before it),
// plus a sibling scope x.demo.mesh on its own anchor, the importer. Every scope holds a
// Service "svc" exported to every scope ("*"). Then, from an admin client connected to a1
// (a root anchor):
//
//   - baseline: the Status RPC, a unary call a1 answers locally over the same mTLS
//     connection: the cost of one gRPC round trip on loopback;
//   - uncached resolution: the Resolve RPC for svc.<scope> at every depth, interleaved.
//     Depth k ≥ 1 is k forwards between anchors (a1 → a7 → … → the owner), so the slope of
//     latency over depth is the cost of one referral hop, also given in baseline round
//     trips. Depth 0 is answered by the root scope itself, whose 3 voters make the read a
//     quorum round (read index), so it is reported but left out of the slope;
//   - cached resolution: internal/resolve's cache over the same client (the DNS server's
//     path): one miss, then answers from memory, timed one by one;
//   - cross-scope propagation: x.demo.mesh has a VirtualService naming svc.<scope> for the
//     depths given by -propagation-depths, so its anchor imports them (resolve, then a
//     Watch on the owning scope through the anchors in between). A proxy of x.demo.mesh (a
//     minimal delta ADS client with a workload certificate of x.demo.mesh, subscribed to the
//     imported services' ClusterLoadAssignments on x's anchor) sees their endpoints. The
//     benchmark registers and deregisters a Workload in the owning scope (Apply and Delete
//     on the owner's anchor), one change at a time, spaced by the xDS debounce so each is
//     pushed at once (a lone change), and times each change until the proxy
//     holds the new endpoint set. It separates: the commit (the Apply call), the watch
//     (the change's event reaching a watcher connected to a1, which forwards the stream
//     down the chain like the importer's watch), and the rest (re-resolution by the
//     importing anchor, the xDS server's debounce, generation and the push).
//
// Everything is bounded: a deadline for the whole run, per-call and per-change timeouts.
// All parts share one process and GOMAXPROCS cores, client included.
//
// It imports internal packages and is not imported by anything.
package main
