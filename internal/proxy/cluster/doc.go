// Package cluster holds the proxy's upstream clusters: endpoint sets by priority (and, with locality
// weights, by locality), load balancing (round robin, least request with two random choices, random,
// ring hash, maglev), circuit breakers, outlier detection and the pooled HTTP transports (HTTP/1.1
// keep-alive, HTTP/2 with h2c or ALPN).
//
// A Cluster is created from an Envoy Cluster resource and keeps its runtime state (endpoint health,
// ejections, counters) across endpoint updates; picking an endpoint reads an immutable endpoint set
// through an atomic pointer and takes no lock.
//
// Only internal/proxy imports this package.
package cluster
