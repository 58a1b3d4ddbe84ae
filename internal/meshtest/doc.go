// Package meshtest starts whole meshes in one process on loopback: anchors
// that bootstrap and join exactly as separate processes would, with real
// storage, real mTLS and real replication. Tests use it to kill, restart and
// partition anchors; `canton demo` uses it to run a mesh on one machine.
//
// Only tests, internal/demo and benchmarks import this package.
package meshtest
