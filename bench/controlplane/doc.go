// Command controlplane measures how fast Canton's anchors push a policy change to many
// connected proxies, and what each connected proxy costs them.
//
//	go run ./bench/controlplane                        # 100 and 1,000 clients, about a minute
//	go run ./bench/controlplane -clients 100,1000,5000 -json
//	go run ./bench/controlplane -clients 1000,5000 -sidecar-egress 3   # Sidecar-scoped proxies
//	go run ./bench/controlplane -clients 1000 -cpuprofile cpu.out -memprofile heap.out
//	go run ./bench/controlplane -identical-nodes   # replicas that differ only in their ID
//	go run ./bench/controlplane -clients 1000 -delta   # delta ADS, as canton proxy uses
//	go run ./bench/controlplane -clients 1000 -anchor-procs   # one process per anchor
//
// It starts a real three-anchor mesh in this process (internal/meshtest: Raft, bbolt, mTLS
// gRPC on 127.0.0.1) or, with -anchor-procs, each anchor in a process of its own (this binary
// with CANTON_BENCH_CONTROLPLANE_ANCHOR set, bootstrapping and joining as meshtest does), as a
// real deployment runs one anchor per host. In one process the anchors share one Go scheduler:
// a follower's replication and pushes wait behind the leader's runnable goroutines. With
// -anchor-procs the anchors' CPU, memory and profiles are the three processes' (profiles go
// to <file>.a1, .a2, .a3). It creates a scope of realistic size (by default 50 services × 3
// versions: Services, Workloads, DestinationRules with subsets and traffic policy,
// VirtualServices with a header match and weighted routes), then, for each client count N:
//
//   - starts a child process (this binary, with CANTON_BENCH_CONTROLPLANE_WORKER set) holding N simulated xDS clients,
//     so that the anchors' process only holds anchor memory. Each client describes itself
//     as `canton proxy` does, with its own outbound port, inbound, application and admin
//     addresses (so every client is a distinct node, as real proxies are; -identical-nodes
//     gives the clients of one service version one node but for the ID), and, as the proxy
//     does, its Workload is registered (under a lease of the run) before it connects, so the
//     clients are endpoints of their services too. Each client gets a workload
//     certificate the way `canton proxy` does (CSR → IssueCertificate with the join token
//     of the bootstrap anchor; one certificate per service account, shared by that
//     account's clients), opens its own mTLS connection and ADS stream (state of the world;
//     delta with -delta, keeping every type's resources to follow the names they imply) to
//     one of the three anchors (round robin), subscribes like the proxy (CDS and LDS
//     wildcard, then EDS and RDS by name) and ACKs every response;
//   - measures the anchors' process memory (runtime.MemStats, after GC) before and after
//     the clients are connected, divided by N;
//   - commits a change (a weight flip in one VirtualService, which every client routes unless Sidecars scope them)
//     several times and measures, per client, the time from the start of the Apply call that
//     commits it (the call's return can come after the proxies have the change) to the client
//     sending its ACK of the new route version,
//     and the bytes of xDS responses pushed because of the change (encoded
//     DiscoveryResponse sizes, without gRPC, HTTP/2 and TLS framing), and the CPU the
//     anchors' process spent per change.
//
// With -sidecar-egress K every service gets a Sidecar limiting its proxies to K other
// services; only the proxies routing the flipped service are then measured, and any push to
// the others is counted as an error of the control plane.
//
// Time stamps cross the process boundary as wall-clock Unix nanoseconds (same host).
// Everything is bounded: per-round and connect timeouts, and the child dies with the parent.
//
// It imports internal packages and is not imported by anything.
package main
