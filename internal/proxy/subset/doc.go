// Package subset defines the subset of Envoy's v3 API the proxy implements and checks resources against
// it: every populated field of every message, recursively (through google.protobuf.Any by its type),
// must be in the allow list below, or Check returns an error naming the field path, e.g.
// "filter_chains[0].filters[0].typed_config.access_log: field not supported". Nothing outside the
// subset is silently ignored. docs/xds.md lists the same subset for people.
//
// Semantic checks (values, references) happen where resources are compiled (route, cluster and the
// proxy's listener builder); this package only checks which fields are used.
//
// Only internal/proxy and its subpackages import this package.
package subset
