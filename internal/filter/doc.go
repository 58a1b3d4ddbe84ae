// Package filter is Canton's HTTP filter chain: the Filter interface, Build
// (which turns an Envoy HttpConnectionManager http_filters list into a chain
// ending in the proxy's router), the per-request data filters read from the
// context (the route's typed_per_filter_config, the authenticated peer, the
// response flags they report), and the filters themselves, one file each:
// fault injection (fault.go), local rate limiting (localratelimit.go) and
// the terminal router (router.go). The supported filters and their order of
// registration are listed in registry.go.
//
// It also holds the network filters a tcp_proxy filter chain runs on each
// connection before its tcp_proxy (BuildNetwork, NetworkFilters): the
// network RBAC filter (rbac_network.go), which evaluates the same compiled
// RBAC engine as the HTTP RBAC filter (rbac_engine.go, rbac_rule.go) over
// the connection's attributes (Conn) instead of a request's.
//
// Filters follow Envoy's documented semantics for the subset of fields they
// support; any other field is rejected by Build with an error naming its
// path, so that the proxy NACKs the configuration instead of ignoring it.
//
// Only internal/proxy (and tests, benchmarks and internal/meshtest) may
// import this package. It imports no other Canton package.
package filter
