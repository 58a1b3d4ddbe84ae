// Package demo runs `canton demo`: a whole mesh on loopback in one process.
// Three anchors replicate the root scope and the bookinfo scope; every
// bookinfo service (examples/bookinfo) runs behind its own sidecar
// (internal/workload) and talks to the others only through it; a traffic
// generator with its own sidecar requests product pages at a bounded rate;
// the terminal shows what runs where and a live one-line summary; Istio
// task flows (--scenario) apply their YAML and print the expected outcome
// beside the measured one.
//
// Only internal/cli and tests import this package.
package demo
