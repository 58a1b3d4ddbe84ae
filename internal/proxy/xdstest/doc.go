// Package xdstest is an in-process ADS (state of the world) server for tests of the proxy: it serves the
// resources a test sets, pushes changes to connected streams and records every request it receives so
// tests can assert ACKs and NACKs.
//
// Only tests under internal/proxy import this package.
package xdstest
