// Command dataplane benchmarks Canton's data plane side by side with a direct connection, HAProxy and
// nginx, interleaved in one run (issue #8).
//
//	go run ./bench/dataplane [-quick] [-json] [-reps N] [-duration D] [-sat-duration D]
//
// It starts an upstream HTTP server (1 KB responses, HTTP/1.1 and h2c) and the proxies under test as
// child processes of its own binary (hidden subcommands), so each proxy's CPU time and RSS can be read
// from /proc on its own. For every repetition it runs every scenario once, in the same order (A B C A B
// C …): a fixed-rate open-loop window (fortio's periodic runner, 1,000 requests/s over 16 connections,
// uniform, no catch-up, 10 µs histogram resolution) followed by a closed-loop saturated window. The
// report gives medians and spread over the repetitions, the latency added over the direct connection
// (paired per repetition), proxy CPU per 1,000 requests/s, RSS and the ratios canton/haproxy.
//
// HAProxy and nginx are used when on PATH (bench/setup.sh installs them); the Canton proxies are
// configured by a small static xDS server (go-control-plane) in this process. Everything listens on
// 127.0.0.1. docs/performance.md describes the method and the latest results.
//
// This is a program, not a library: nothing imports it.
package main
