// Package proxy is the data-plane role of Canton: an xDS-driven L4/L7 proxy.
//
// Run (or New + Proxy.Run) connects to the control plane over ADS (internal/proxy/xdsclient), checks
// every resource against the supported subset of Envoy's API (internal/proxy/subset, documented in
// docs/xds.md), compiles the accepted resources into an immutable snapshot swapped atomically, and
// reconciles listeners: HTTP/1.1 and HTTP/2 (h2c and ALPN over TLS) through an HttpConnectionManager
// with the HTTP filter chain of internal/filter ending in this package's router, gRPC and WebSocket
// through it, TCP proxying with splice-friendly copying (after the network RBAC filters of
// internal/filter decide on each connection), TLS passthrough routed by SNI, and mTLS
// termination and origination with certificates from SDS. On Linux, listeners can take connections
// captured by iptables REDIRECT (use_original_dst, the original_dst listener filter, bind_to_port
// false; origdst*.go, docs/transparent-capture.md). The admin listener serves /ready,
// /stats/prometheus, /config_dump and /clusters.
//
// Only cmd/canton, internal/meshtest and the proxy's own tests import this package. It never imports
// the control plane (raft, scope store).
package proxy
