// Package dns is a DNS server for mesh names with upstream fallback.
//
// It listens on one loopback address over UDP and TCP and answers A, AAAA, SRV
// and ANY queries for names under the mesh root domain (reviews.bookinfo.demo.mesh)
// from a Resolver that the caller provides (the anchors' resolver, or the proxy's
// view of it). Every other name is forwarded to the configured upstream
// resolvers, with a timeout per attempt and failover between them. Names under
// the mesh are never sent upstream, neither as asked nor as expanded by search
// domains, so a mesh name cannot leak to the outside resolver.
//
// Short names (reviews, or _http._tcp.reviews) are expanded with the configured
// search domains, caller's namespace first; the first mesh name that exists
// wins for every record type, and the answer carries a CNAME from the asked
// name to it. A single-label name that exists under no search domain is
// answered NXDOMAIN and not forwarded; longer names are forwarded as asked.
//
// Answers follow RFC 1034/2308: NXDOMAIN when the name does not exist, NOERROR
// with an empty answer (NODATA) when it exists without records of the asked type,
// and both negative kinds carry the mesh SOA whose TTL is the negative-caching
// TTL. TTLs come from the Resolver's answer (at least one second); answers served
// stale because the owning scope is unreachable get a short TTL and, for EDNS
// clients, an Extended DNS Error "Stale Answer" (RFC 8914). UDP answers larger
// than the client's buffer (512 bytes, or its EDNS0 size up to Options.UDPSize)
// are truncated with the TC bit set; TCP answers are complete. Only class IN is
// served; queries are bounded in concurrency and time.
//
// This package imports only the standard library and github.com/miekg/dns (which
// it names mdns, because the two packages share a name). It may be imported by
// internal/cli (canton dns), internal/workload (DNS built into the sidecar) and
// internal/anchor; it must not import any other Canton package, so that the
// data plane can embed it without pulling in the control plane.
package dns
