// Package dashboard is the mesh's web dashboard, served by anchors on their
// --http address: a topology graph of services and calls with live request
// rate, error rate, p99 latency and mTLS per edge (drawn server-side as
// inline SVG); the scope tree with each scope's anchors, leader and health;
// per-scope services, workloads, policies and lineage timeline; and per
// service the routing rules drawn as the split they produce.
//
// New returns an http.Handler over a Source, a small read-only view of what
// an anchor knows (mesh, anchors, scopes, objects, lineage, connected
// proxies). The handler renders plain HTML with html/template, one embedded
// stylesheet and a small vanilla script that polls the /api/*.json endpoint
// behind each page; nothing is loaded from outside, so the dashboard works
// offline.
//
// Telemetry comes from the proxies themselves: the handler scrapes each
// connected proxy's admin /stats/prometheus (loopback addresses only unless
// Options.AllowRemoteScrape; short timeout, bounded concurrency, cached for
// Options.ScrapeInterval) and derives rates from successive scrapes.
//
// Only internal/anchor (which implements Source and mounts the handler),
// internal/demo and tests may import this package.
package dashboard
