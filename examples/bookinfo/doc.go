// Package bookinfo is Canton's sample application: the bookinfo shape users
// know from Istio, written in Go, with its Istio YAML beside it.
//
// Six services run as plain servers on 127.0.0.1: productpage (an HTML page
// that calls details and reviews), details, reviews v1 (no ratings), v2
// (black stars) and v3 (red stars), which call ratings over gRPC, and
// ratings. A service never dials another one directly: every call goes to its
// sidecar's outbound listener (SetOutbound) with the callee named by the Host
// header (`details:9080`), so the mesh decides where it lands.
//
// The YAML: Manifests is the base configuration `canton demo` applies (the
// services, their subsets, every request of reviews to v1); Scenarios holds
// the Istio task flows (routing, canary, fault, circuit breaking, security),
// applied on demand.
//
// Only internal/demo and tests import this package.
package bookinfo
