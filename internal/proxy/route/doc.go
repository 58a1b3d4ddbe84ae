// Package route compiles Envoy RouteConfigurations into immutable tables and matches requests against
// them with Envoy's semantics: virtual host by domain (exact, then the longest "*suffix", then the
// longest "prefix*", then "*"), then the first route whose match accepts the request (path prefix,
// exact path, regex or separated prefix; headers; query parameters; gRPC; runtime fraction).
//
// Matching does not allocate for the common cases (lower-case hosts, single-valued headers, unescaped
// query parameters). Compilation errors name the field, e.g.
// "virtual_hosts[0].routes[2].match.safe_regex: error parsing regexp: ...".
//
// Only internal/proxy and its subpackages import this package.
package route
