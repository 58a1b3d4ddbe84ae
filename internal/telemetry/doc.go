// Package telemetry is the data plane's telemetry: Prometheus metrics with
// Istio's standard names and labels (so Istio's Grafana dashboards work
// unchanged) and JSON access logs with Envoy-like field names.
//
// The proxy owns one Reporter (its own prometheus.Registry, never the global
// one) and calls it once per finished HTTP request and at TCP connection
// open/close:
//
//	rep := telemetry.NewReporter()
//	l := rep.Intern(telemetry.Labels{Reporter: telemetry.ReporterDestination, ...}) // once per connection or route
//	rep.HTTP(l, 200, telemetry.NoGRPCStatus, dur, reqBytes, respBytes, "-")         // per request, no allocation
//	rep.TCPOpened(l); rep.TCPBytes(l, sent, received); rep.TCPClosed(l, "-")
//	mux.Handle("/stats/prometheus", rep.Handler())
//
// A *Labels resolves its Prometheus series lazily and caches them by
// (response code, gRPC status, response flags), so the per-request call
// does no label-map building and no allocation once a combination was seen.
// A Labels must not be changed after its first use.
//
// AccessLog writes one JSON object per line for each request (or TCP
// connection) to an io.Writer, with a configurable set of fields.
//
// peer.go holds Istio's peer metadata exchange encoding (the workload a
// proxy tells the proxy at the other end of a call) and the Workload type
// that fills the source_* and destination_* labels.
//
// Only internal/proxy (and tests, benchmarks and internal/meshtest) may
// import this package; others name a workload through proxy.Workload. It
// imports no other Canton package.
package telemetry
