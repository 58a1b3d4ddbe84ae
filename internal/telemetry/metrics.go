package telemetry

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Values of the reporter label.
const (
	ReporterSource      = "source"      // the client-side proxy (outbound)
	ReporterDestination = "destination" // the server-side proxy (inbound)
)

// Values of the connection_security_policy label.
const (
	SecurityMutualTLS = "mutual_tls"
	SecurityNone      = "none"
	SecurityUnknown   = "unknown"
)

// Values of the request_protocol label.
const (
	ProtocolHTTP = "http"
	ProtocolGRPC = "grpc"
	ProtocolTCP  = "tcp"
)

// NoGRPCStatus is the grpcStatus argument of HTTP for a non-gRPC request:
// the grpc_response_status label is then empty, as in Istio.
const NoGRPCStatus = -1

// unknown is Istio's value for a label whose source is missing.
const unknown = "unknown"

// Labels are the labels of Istio's standard metrics that stay the same for
// many requests: who reports, who talks to whom, over what. An empty field
// is reported as "unknown", as Istio does. Intern a Labels (or keep the
// pointer) and never change it after its first use: it caches its series.
type Labels struct {
	Reporter                     string // ReporterSource or ReporterDestination
	SourceWorkload               string
	SourceCanonicalService       string
	SourceCanonicalRevision      string
	SourceWorkloadNamespace      string
	SourcePrincipal              string // SPIFFE ID as "spiffe://..." or "unknown"
	SourceApp                    string
	SourceVersion                string
	SourceCluster                string
	DestinationWorkload          string
	DestinationWorkloadNamespace string
	DestinationPrincipal         string
	DestinationApp               string
	DestinationVersion           string
	DestinationService           string // the FQDN, e.g. reviews.bookinfo.demo.mesh
	DestinationCanonicalService  string
	DestinationCanonicalRevision string
	DestinationServiceName       string // e.g. reviews
	DestinationServiceNamespace  string // e.g. bookinfo.demo.mesh
	DestinationCluster           string
	RequestProtocol              string // ProtocolHTTP, ProtocolGRPC or ProtocolTCP
	ConnectionSecurityPolicy     string // SecurityMutualTLS, SecurityNone or SecurityUnknown

	// c caches the resolved series; set by Reporter.Intern.
	c *labelCache
}

// labelCache holds the series of one interned Labels: a copy-on-write map,
// so that readers take no lock.
type labelCache struct {
	owner *Reporter
	m     atomic.Pointer[map[seriesKey]*series]
	mu    sync.Mutex // serializes writers
}

// labelNames are the fixed labels, in the order Istio's proxies emit them.
var labelNames = []string{
	"reporter",
	"source_workload", "source_canonical_service", "source_canonical_revision",
	"source_workload_namespace", "source_principal", "source_app", "source_version", "source_cluster",
	"destination_workload", "destination_workload_namespace", "destination_principal",
	"destination_app", "destination_version", "destination_service",
	"destination_canonical_service", "destination_canonical_revision",
	"destination_service_name", "destination_service_namespace", "destination_cluster",
	"request_protocol",
}

// values returns the fixed label values in labelNames order, plus room for
// the per-request ones.
func (l *Labels) values(extra int) []string {
	v := make([]string, 0, len(labelNames)+extra)
	for _, s := range []string{
		l.Reporter,
		l.SourceWorkload, l.SourceCanonicalService, l.SourceCanonicalRevision,
		l.SourceWorkloadNamespace, l.SourcePrincipal, l.SourceApp, l.SourceVersion, l.SourceCluster,
		l.DestinationWorkload, l.DestinationWorkloadNamespace, l.DestinationPrincipal,
		l.DestinationApp, l.DestinationVersion, l.DestinationService,
		l.DestinationCanonicalService, l.DestinationCanonicalRevision,
		l.DestinationServiceName, l.DestinationServiceNamespace, l.DestinationCluster,
		l.RequestProtocol,
	} {
		v = append(v, labelValue(s))
	}
	return v
}

// labelValue maps a field to its label value: "unknown" when empty, and
// invalid UTF-8 replaced (Prometheus refuses it).
func labelValue(s string) string {
	if s == "" {
		return unknown
	}
	if !utf8.ValidString(s) {
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	return s
}

// key returns the Labels' identity for Intern.
func (l *Labels) key() labelsKey {
	return labelsKey{
		l.Reporter,
		l.SourceWorkload, l.SourceCanonicalService, l.SourceCanonicalRevision,
		l.SourceWorkloadNamespace, l.SourcePrincipal, l.SourceApp, l.SourceVersion, l.SourceCluster,
		l.DestinationWorkload, l.DestinationWorkloadNamespace, l.DestinationPrincipal,
		l.DestinationApp, l.DestinationVersion, l.DestinationService,
		l.DestinationCanonicalService, l.DestinationCanonicalRevision,
		l.DestinationServiceName, l.DestinationServiceNamespace, l.DestinationCluster,
		l.RequestProtocol, l.ConnectionSecurityPolicy,
	}
}

type labelsKey [22]string

// seriesKey selects the series of one Labels for one outcome. kind tells the
// HTTP series from the TCP ones.
type seriesKey struct {
	kind  uint8
	code  int32
	grpc  int32
	flags string
}

const (
	kindHTTP uint8 = iota
	kindTCP
)

// series are the resolved observers of one label combination.
type series struct {
	requests  prometheus.Counter
	duration  prometheus.Observer
	reqBytes  prometheus.Observer
	respBytes prometheus.Observer

	tcpOpened   prometheus.Counter
	tcpClosed   prometheus.Counter
	tcpSent     prometheus.Counter
	tcpReceived prometheus.Counter
}

// Istio's default histogram buckets.
var (
	durationBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}
	bytesBuckets    = []float64{1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000}
)

// Reporter records Istio's standard metrics into its own registry.
type Reporter struct {
	reg *prometheus.Registry

	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	reqBytes  *prometheus.HistogramVec
	respBytes *prometheus.HistogramVec

	tcpOpened   *prometheus.CounterVec
	tcpClosed   *prometheus.CounterVec
	tcpSent     *prometheus.CounterVec
	tcpReceived *prometheus.CounterVec

	internMu sync.Mutex
	interned map[labelsKey]*Labels
}

// NewReporter returns a Reporter with a fresh registry holding the Istio
// standard metrics (and nothing else: no Go or process collectors).
func NewReporter() *Reporter {
	httpLabels := append(append([]string{}, labelNames...), "response_code", "grpc_response_status", "response_flags", "connection_security_policy")
	tcpLabels := append(append([]string{}, labelNames...), "response_flags", "connection_security_policy")
	r := &Reporter{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_requests_total", Help: "Requests handled by the proxy.",
		}, httpLabels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "istio_request_duration_milliseconds", Help: "Duration of requests in milliseconds.", Buckets: durationBuckets,
		}, httpLabels),
		reqBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "istio_request_bytes", Help: "Sizes of HTTP requests (headers and body) in bytes.", Buckets: bytesBuckets,
		}, httpLabels),
		respBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "istio_response_bytes", Help: "Sizes of HTTP responses (headers and body) in bytes.", Buckets: bytesBuckets,
		}, httpLabels),
		tcpOpened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_tcp_connections_opened_total", Help: "TCP connections opened.",
		}, tcpLabels),
		tcpClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_tcp_connections_closed_total", Help: "TCP connections closed.",
		}, tcpLabels),
		tcpSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_tcp_sent_bytes_total", Help: "Bytes sent to the downstream on TCP connections.",
		}, tcpLabels),
		tcpReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_tcp_received_bytes_total", Help: "Bytes received from the downstream on TCP connections.",
		}, tcpLabels),
		interned: make(map[labelsKey]*Labels),
	}
	r.reg.MustRegister(r.requests, r.duration, r.reqBytes, r.respBytes, r.tcpOpened, r.tcpClosed, r.tcpSent, r.tcpReceived)
	return r
}

// Registry is the Reporter's registry; the proxy may register its own
// collectors in it so that /stats/prometheus shows them too.
func (r *Reporter) Registry() *prometheus.Registry { return r.reg }

// Handler serves the registry in the Prometheus text format, for
// /stats/prometheus.
func (r *Reporter) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Intern returns the one *Labels of this Reporter equal to l, carrying the
// cache of its resolved series. Call it once per connection, route or peer,
// not per request; the returned value must not be modified. Interned labels
// live as long as the Reporter.
func (r *Reporter) Intern(l Labels) *Labels {
	l.c = nil
	k := l.key()
	r.internMu.Lock()
	defer r.internMu.Unlock()
	if p, ok := r.interned[k]; ok {
		return p
	}
	p := new(Labels)
	*p = l
	p.c = &labelCache{owner: r}
	r.interned[k] = p
	return p
}

// HTTP records one finished HTTP (or gRPC) request: istio_requests_total,
// istio_request_duration_milliseconds, istio_request_bytes and
// istio_response_bytes. grpcStatus is the gRPC status code, or NoGRPCStatus.
// flags is the response_flags value ("-" for none). Once a combination of l,
// code, grpcStatus and flags was seen, the call does not allocate.
func (r *Reporter) HTTP(l *Labels, code, grpcStatus int, dur time.Duration, reqBytes, respBytes int64, flags string) {
	s := r.series(l, seriesKey{kind: kindHTTP, code: int32(code), grpc: int32(grpcStatus), flags: flags})
	s.requests.Inc()
	s.duration.Observe(float64(dur) / float64(time.Millisecond))
	s.reqBytes.Observe(float64(reqBytes))
	s.respBytes.Observe(float64(respBytes))
}

// TCPOpened records a new TCP connection (istio_tcp_connections_opened_total).
func (r *Reporter) TCPOpened(l *Labels) {
	r.series(l, seriesKey{kind: kindTCP, flags: "-"}).tcpOpened.Inc()
}

// TCPBytes adds to istio_tcp_sent_bytes_total and
// istio_tcp_received_bytes_total; call it while the connection lives
// (periodically) and/or when it closes, with the bytes since the last call.
func (r *Reporter) TCPBytes(l *Labels, sent, received int64) {
	s := r.series(l, seriesKey{kind: kindTCP, flags: "-"})
	if sent > 0 {
		s.tcpSent.Add(float64(sent))
	}
	if received > 0 {
		s.tcpReceived.Add(float64(received))
	}
}

// TCPClosed records a closed TCP connection with its response flags ("-"
// for none), in istio_tcp_connections_closed_total.
func (r *Reporter) TCPClosed(l *Labels, flags string) {
	r.series(l, seriesKey{kind: kindTCP, flags: flags}).tcpClosed.Inc()
}

// series returns the cached observers for l and k, resolving them on first
// use. Reads are lock-free: the cache is a copy-on-write map. Labels that
// were not interned are interned here (a map lookup under a lock).
func (r *Reporter) series(l *Labels, k seriesKey) *series {
	if l.c == nil || l.c.owner != r {
		l = r.Intern(*l)
	}
	c := l.c
	if m := c.m.Load(); m != nil {
		if s, ok := (*m)[k]; ok {
			return s
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil {
		if s, ok := (*old)[k]; ok {
			return s
		}
	}
	s := r.resolve(l, k)
	n := make(map[seriesKey]*series, 1+lenMap(old))
	if old != nil {
		for kk, v := range *old {
			n[kk] = v
		}
	}
	n[k] = s
	c.m.Store(&n)
	return s
}

func lenMap(m *map[seriesKey]*series) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

func (r *Reporter) resolve(l *Labels, k seriesKey) *series {
	flags := k.flags
	if flags == "" {
		flags = "-"
	}
	sec := labelValue(l.ConnectionSecurityPolicy)
	s := &series{}
	switch k.kind {
	case kindHTTP:
		grpc := ""
		if k.grpc >= 0 {
			grpc = strconv.Itoa(int(k.grpc))
		}
		v := append(l.values(4), strconv.Itoa(int(k.code)), grpc, labelValue(flags), sec)
		s.requests = mustLabels(r.requests.GetMetricWithLabelValues(v...))
		s.duration = mustLabels(r.duration.GetMetricWithLabelValues(v...))
		s.reqBytes = mustLabels(r.reqBytes.GetMetricWithLabelValues(v...))
		s.respBytes = mustLabels(r.respBytes.GetMetricWithLabelValues(v...))
	case kindTCP:
		v := append(l.values(2), labelValue(flags), sec)
		s.tcpOpened = mustLabels(r.tcpOpened.GetMetricWithLabelValues(v...))
		s.tcpClosed = mustLabels(r.tcpClosed.GetMetricWithLabelValues(v...))
		s.tcpSent = mustLabels(r.tcpSent.GetMetricWithLabelValues(v...))
		s.tcpReceived = mustLabels(r.tcpReceived.GetMetricWithLabelValues(v...))
	}
	return s
}

// mustLabels unwraps a series lookup. The label count is fixed by this file
// and values are made valid UTF-8, so an error is a bug here.
func mustLabels[T any](m T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("telemetry: resolving series: %v", err))
	}
	return m
}
