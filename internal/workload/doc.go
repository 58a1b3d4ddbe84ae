// Package workload is the `canton proxy` role: everything a sidecar does
// besides moving bytes. It obtains the workload's SPIFFE identity (the key is
// generated here and never leaves the process; the anchors sign a CSR), keeps
// it rotated, registers the workload in its scope under a lease kept alive
// by heartbeats, runs the data plane (internal/proxy) against the scope's
// anchors with the identity served as local secrets, and deregisters at
// once on a clean shutdown. With Options.DNS it also serves DNS for mesh names
// (internal/dns over internal/resolve's cache, asking with the workload's identity and
// verifying every answer's proof against the workload's trust bundle). With
// Options.Gateway the proxy is an ingress gateway instead of a sidecar: node kind
// gateway, registered as one (Workload spec.gateway), serving only the listeners
// of the Istio Gateways that select its labels. The anchors serve a proxy only as
// its Workload registers it, so the node it describes (workload.node) and the
// Workload it registers (workload.register) must agree.
//
// Only internal/cli and tests import this package.
package workload
