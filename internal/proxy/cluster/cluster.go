package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"

	"canton.dev/canton/internal/proxy/rawsock"
)

// LBKind is a load-balancing policy.
type LBKind uint8

// Load-balancing policies.
const (
	RoundRobin LBKind = iota
	LeastRequest
	Random
	RingHash
	Maglev
)

// DefaultIdleTimeout is the idle timeout of pooled upstream connections when the cluster sets none
// (Envoy's default is 1 h; a shorter one frees idle sockets sooner).
const DefaultIdleTimeout = 90 * time.Second

// ErrOverflow is returned when a circuit breaker trips.
var ErrOverflow = errors.New("circuit breaker overflow")

// Limits are circuit-breaker thresholds (the DEFAULT priority's).
type Limits struct {
	MaxConnections, MaxPending, MaxRequests, MaxRetries int64
	// RetryBudget, when set (circuit_breakers.thresholds.retry_budget), replaces MaxRetries: concurrent
	// retries may be at most BudgetPercent of the active requests, and at least MinRetryConcurrency.
	RetryBudget *RetryBudget
}

// RetryBudget limits concurrent retries relative to the cluster's load (Envoy's retry_budget).
type RetryBudget struct {
	BudgetPercent       float64 // 0-100; default 20
	MinRetryConcurrency int64   // default 3
}

// retryLimit returns the current limit on concurrent retries.
func (l *Limits) retryLimit(active int64) int64 {
	b := l.RetryBudget
	if b == nil {
		return l.MaxRetries
	}
	return max(b.MinRetryConcurrency, int64(float64(active)*b.BudgetPercent/100))
}

// Outlier is the outlier detection configuration.
type Outlier struct {
	Consecutive5xx, ConsecutiveGateway  uint32 // 0: disabled
	Interval, BaseEjection, MaxEjection time.Duration
	MaxEjectionPercent                  uint32
}

// Options are runtime settings from outside the Cluster resource.
type Options struct {
	// TLS is the upstream TLS configuration (from the cluster's UpstreamTlsContext); nil means
	// plain text.
	TLS *tls.Config
	// DrainTime is how long a replaced cluster keeps its pooled connections for in-flight requests.
	DrainTime time.Duration
	// Mesh marks an upstream that is a proxy of the mesh (mutual TLS verified as a SPIFFE identity):
	// the proxies exchange peer metadata over it.
	Mesh bool
	// Matches are the cluster's transport_socket_matches, in order: they choose another transport
	// for the endpoints whose metadata they match.
	Matches []TransportMatch
}

// Cluster is one upstream cluster. Its methods are safe for concurrent use.
type Cluster struct {
	Name string
	// TransportSocket is the cluster's transport_socket (nil: none), for the secrets it names. The
	// cluster keeps no other part of its resource.
	TransportSocket *corev3.TransportSocket
	// EDSName is the ClusterLoadAssignment name to subscribe to, empty for STATIC clusters.
	EDSName string
	LB      LBKind
	HTTP2   bool
	Limits  Limits
	Outlier *Outlier
	// transport is the pooled transport to this cluster's hosts for what h1 does not carry (upgrades,
	// streamed request bodies), made on first use (see Transport). HTTP/2 clusters never make it on
	// the request path: h2 carries all their requests.
	transport atomic.Pointer[http.Transport]
	h1        *h1Pool // HTTP/1.1 clusters only
	h2        *h2Pool // HTTP/2 clusters only
	// Scheme is the URL scheme of upstream requests: "https" when the cluster has an upstream TLS
	// context, else "http" (plain HTTP/1.1 or h2c). It is fixed at construction; do not derive it from
	// Transport.TLSClientConfig, which net/http fills in on first use of an HTTP/2 transport (an h2c
	// cluster would then dial TLS to a plain-text host).
	Scheme string
	// TLS is the upstream TLS configuration (nil: plain text), for TCP proxying; the HTTP transports
	// carry it themselves.
	TLS *tls.Config
	// Mesh is Options.Mesh, and false unless every transport match is Mesh too: callers read it per
	// cluster, not per endpoint.
	Mesh bool
	// ConnectTimeout bounds connection establishment.
	ConnectTimeout time.Duration
	// IdleTimeout closes pooled upstream connections idle this long (common_http_protocol_options.
	// idle_timeout; DefaultIdleTimeout when unset, zero: never).
	IdleTimeout time.Duration

	// matched are the transports of Options.Matches.
	matched []*matchedTransport

	set        atomic.Pointer[endpointSet]
	rr         atomic.Uint64
	ringMin    int
	maglevSize int
	// byLocality: common_lb_config.locality_weighted_lb_config. Each priority level chooses a
	// locality by its load_balancing_weight, then an endpoint in it by the cluster's policy.
	byLocality bool

	// mu serializes endpoint updates, ejections and the outlier detection's sweeps (and the
	// transport's creation).
	mu sync.Mutex

	activeRequests atomic.Int64
	activeRetries  atomic.Int64
	connections    atomic.Int64
	ejectedCount   atomic.Int64
	// Overflows counts circuit-breaker trips (upstream_rq_pending_overflow and friends together).
	Overflows atomic.Uint64

	stop chan struct{} // closed by Close; nil without outlier detection (nothing to stop)
	once sync.Once
}

// New builds a cluster from c. Errors name the field.
func New(c *clusterv3.Cluster, o Options) (*Cluster, error) {
	cl := &Cluster{Name: c.GetName(), TransportSocket: c.GetTransportSocket(), ringMin: 1024, maglevSize: 65537,
		ConnectTimeout: 5 * time.Second, Limits: Limits{MaxConnections: 1024, MaxPending: 1024, MaxRequests: 1024, MaxRetries: 3}}
	if cl.Name == "" {
		return nil, errors.New("name: empty")
	}
	switch c.GetClusterDiscoveryType().(type) {
	case *clusterv3.Cluster_Type:
	default:
		return nil, errors.New("cluster_type: custom cluster types are not supported")
	}
	switch c.GetType() {
	case clusterv3.Cluster_STATIC:
	case clusterv3.Cluster_EDS:
		cl.EDSName = c.GetEdsClusterConfig().GetServiceName()
		if cl.EDSName == "" {
			cl.EDSName = cl.Name
		}
		if cs := c.GetEdsClusterConfig().GetEdsConfig(); cs != nil && cs.GetAds() == nil {
			return nil, errors.New("eds_cluster_config.eds_config: only ads config sources are supported")
		}
	default:
		return nil, fmt.Errorf("type: %v is not supported (STATIC and EDS are)", c.GetType())
	}
	switch c.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN:
		cl.LB = RoundRobin
	case clusterv3.Cluster_LEAST_REQUEST:
		cl.LB = LeastRequest
	case clusterv3.Cluster_RANDOM:
		cl.LB = Random
	case clusterv3.Cluster_RING_HASH:
		cl.LB = RingHash
		if rc := c.GetRingHashLbConfig(); rc != nil {
			if rc.GetHashFunction() != clusterv3.Cluster_RingHashLbConfig_XX_HASH {
				return nil, errors.New("ring_hash_lb_config.hash_function: only the default is supported")
			}
			maxRing := uint64(1 << 20)
			if m := rc.GetMaximumRingSize(); m != nil {
				maxRing = min(maxRing, m.GetValue())
			}
			if m := rc.GetMinimumRingSize(); m != nil {
				cl.ringMin = int(min(m.GetValue(), maxRing))
			}
		}
	case clusterv3.Cluster_MAGLEV:
		cl.LB = Maglev
		if t := c.GetMaglevLbConfig().GetTableSize(); t != nil {
			cl.maglevSize = int(t.GetValue())
			if !isPrime(cl.maglevSize) || cl.maglevSize > 5000011 {
				return nil, fmt.Errorf("maglev_lb_config.table_size: %d must be a prime up to 5000011", cl.maglevSize)
			}
		}
	default:
		return nil, fmt.Errorf("lb_policy: %v is not supported", c.GetLbPolicy())
	}
	cl.byLocality = c.GetCommonLbConfig().GetLocalityWeightedLbConfig() != nil
	if d := c.GetConnectTimeout(); d != nil {
		cl.ConnectTimeout = d.AsDuration()
	}
	for _, t := range c.GetCircuitBreakers().GetThresholds() {
		if t.GetPriority() != corev3.RoutingPriority_DEFAULT {
			continue
		}
		if v := t.GetMaxConnections(); v != nil {
			cl.Limits.MaxConnections = int64(v.GetValue())
		}
		if v := t.GetMaxPendingRequests(); v != nil {
			cl.Limits.MaxPending = int64(v.GetValue())
		}
		if v := t.GetMaxRequests(); v != nil {
			cl.Limits.MaxRequests = int64(v.GetValue())
		}
		if v := t.GetMaxRetries(); v != nil {
			cl.Limits.MaxRetries = int64(v.GetValue())
		}
		if rb := t.GetRetryBudget(); rb != nil {
			b := &RetryBudget{BudgetPercent: 20, MinRetryConcurrency: 3}
			if p := rb.GetBudgetPercent(); p != nil {
				b.BudgetPercent = p.GetValue()
				if !(b.BudgetPercent >= 0 && b.BudgetPercent <= 100) { // also rejects NaN
					return nil, fmt.Errorf("circuit_breakers.thresholds.retry_budget.budget_percent: %v is not in [0, 100]", p.GetValue())
				}
			}
			if m := rb.GetMinRetryConcurrency(); m != nil {
				b.MinRetryConcurrency = int64(m.GetValue())
			}
			cl.Limits.RetryBudget = b
		}
	}
	if od := c.GetOutlierDetection(); od != nil {
		cl.Outlier = &Outlier{Consecutive5xx: 5, Interval: 10 * time.Second, BaseEjection: 30 * time.Second,
			MaxEjection: 300 * time.Second, MaxEjectionPercent: 10}
		if v := od.GetConsecutive_5Xx(); v != nil {
			cl.Outlier.Consecutive5xx = v.GetValue()
		}
		if v := od.GetEnforcingConsecutive_5Xx(); v != nil && v.GetValue() == 0 {
			cl.Outlier.Consecutive5xx = 0
		}
		// Envoy only enforces gateway-failure ejection when enforcing_consecutive_gateway_failure > 0.
		if v := od.GetEnforcingConsecutiveGatewayFailure(); v != nil && v.GetValue() > 0 {
			cl.Outlier.ConsecutiveGateway = 5
			if g := od.GetConsecutiveGatewayFailure(); g != nil {
				cl.Outlier.ConsecutiveGateway = g.GetValue()
			}
		}
		if v := od.GetInterval(); v != nil {
			cl.Outlier.Interval = v.AsDuration()
		}
		if v := od.GetBaseEjectionTime(); v != nil {
			cl.Outlier.BaseEjection = v.AsDuration()
		}
		if v := od.GetMaxEjectionTime(); v != nil {
			cl.Outlier.MaxEjection = v.AsDuration()
		}
		if v := od.GetMaxEjectionPercent(); v != nil {
			cl.Outlier.MaxEjectionPercent = min(v.GetValue(), 100)
		}
		if cl.Outlier.Interval <= 0 {
			return nil, errors.New("outlier_detection.interval: must be positive")
		}
	}
	var err error
	if cl.HTTP2, cl.IdleTimeout, err = httpOptions(c); err != nil {
		return nil, err
	}
	cl.Scheme, cl.TLS, cl.Mesh = "http", o.TLS, o.Mesh
	if o.TLS != nil {
		cl.Scheme = "https"
	}
	if cl.HTTP2 {
		cl.h2 = newH2Pool(cl.dial, o.TLS, cl.ConnectTimeout, cl.IdleTimeout)
	} else {
		cl.h1 = newH1Pool(cl.dial, o.TLS, cl.ConnectTimeout, cl.IdleTimeout)
	}
	cl.newMatchedTransports(o)
	if c.GetType() == clusterv3.Cluster_STATIC {
		if err := cl.SetEndpoints(c.GetLoadAssignment()); err != nil {
			return nil, fmt.Errorf("load_assignment.%w", err)
		}
	} else {
		cl.set.Store(&endpointSet{})
	}
	if cl.Outlier != nil {
		cl.stop = make(chan struct{})
		go cl.outlierLoop()
	}
	return cl, nil
}

// httpOptions reads the upstream protocol (HTTP/2 or not) and the pooled connections' idle timeout
// from the cluster's protocol options.
func httpOptions(c *clusterv3.Cluster) (h2 bool, idle time.Duration, err error) {
	h2 = c.GetHttp2ProtocolOptions() != nil
	if err := http2Unsupported(c.GetHttp2ProtocolOptions(), "http2_protocol_options"); err != nil {
		return false, 0, err
	}
	idle = DefaultIdleTimeout
	for name, a := range c.GetTypedExtensionProtocolOptions() {
		if name != "envoy.extensions.upstreams.http.v3.HttpProtocolOptions" {
			return false, 0, fmt.Errorf("typed_extension_protocol_options[%q]: unsupported extension", name)
		}
		po := &upstreamhttpv3.HttpProtocolOptions{}
		if err := a.UnmarshalTo(po); err != nil {
			return false, 0, fmt.Errorf("typed_extension_protocol_options[%q]: %w", name, err)
		}
		switch p := po.GetUpstreamProtocolOptions().(type) {
		case *upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_:
			h2 = p.ExplicitHttpConfig.GetHttp2ProtocolOptions() != nil
			path := fmt.Sprintf("typed_extension_protocol_options[%q].explicit_http_config.http2_protocol_options", name)
			if err := http2Unsupported(p.ExplicitHttpConfig.GetHttp2ProtocolOptions(), path); err != nil {
				return false, 0, err
			}
		case nil:
		default:
			return false, 0, fmt.Errorf("typed_extension_protocol_options[%q].upstream_protocol_options: only explicit_http_config is supported", name)
		}
		common := po.GetCommonHttpProtocolOptions()
		if common.GetMaxHeadersCount() != nil || common.GetMaxConnectionDuration() != nil {
			return false, 0, fmt.Errorf("typed_extension_protocol_options[%q].common_http_protocol_options: only idle_timeout is supported on clusters (max_headers_count and max_connection_duration are not)", name)
		}
		if d := common.GetIdleTimeout(); d != nil {
			if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
				return false, 0, fmt.Errorf("typed_extension_protocol_options[%q].common_http_protocol_options.idle_timeout: invalid duration", name)
			}
			idle = d.AsDuration() // 0 disables it, as in Envoy
		}
	}
	return h2, idle, nil
}

// http2Unsupported rejects the HTTP/2 settings a cluster's transport does not honour: the HTTP/2
// pool (h2Pool) advertises its own flow-control windows and opens streams up to the server's limit.
func http2Unsupported(o *corev3.Http2ProtocolOptions, path string) error {
	switch {
	case o.GetMaxConcurrentStreams() != nil:
		return fmt.Errorf("%s.max_concurrent_streams: not supported on clusters", path)
	case o.GetInitialStreamWindowSize() != nil || o.GetInitialConnectionWindowSize() != nil:
		return fmt.Errorf("%s: initial_stream_window_size and initial_connection_window_size are not supported on clusters", path)
	}
	return nil
}

func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// countedConn is an upstream TCP connection counted against max_connections until closed. It reads
// and writes without the scheduler's blocking-call bookkeeping (rawsock) and embeds the
// *net.TCPConn under that, so that ReadFrom/WriteTo (splice) and CloseWrite stay reachable.
type countedConn struct {
	*rawsock.Conn
	c    *Cluster
	once sync.Once
}

func (cc *countedConn) Close() error {
	cc.once.Do(func() { cc.c.connections.Add(-1) })
	return cc.Conn.Close()
}

// dial opens a connection to a host within the max_connections breaker; the connection counts
// against it until closed.
func (c *Cluster) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if c.connections.Add(1) > c.Limits.MaxConnections {
		c.connections.Add(-1)
		c.Overflows.Add(1)
		return nil, ErrOverflow
	}
	d := net.Dialer{Timeout: c.ConnectTimeout, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		c.connections.Add(-1)
		return nil, err
	}
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		conn.Close()
		c.connections.Add(-1)
		return nil, fmt.Errorf("dial %s: not a TCP connection", addr)
	}
	return &countedConn{Conn: rawsock.New(tc), c: c}, nil
}

// DialTCP opens a connection to an endpoint for TCP proxying, within the max_connections breaker and
// over TLS when the endpoint's transport (the cluster's, or its transport socket match's) has an
// upstream TLS context (the handshake is bounded by the connect timeout).
func (c *Cluster) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	if c.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.ConnectTimeout)
		defer cancel()
	}
	cfg := c.TLS
	if m := c.matchedFor(addr); m != nil {
		cfg = m.tls
	}
	conn, err := c.dial(ctx, "tcp", addr)
	if err != nil || cfg == nil {
		return conn, err
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, &net.OpError{Op: "dial", Net: "tcp", Source: nil, Addr: conn.RemoteAddr(), Err: err}
	}
	return tc, nil
}

// RoundTrip sends one request to the host in r.URL.Host: every request of an HTTP/2 cluster goes
// through the cluster's own HTTP/2 pool; HTTP/1.1 exchanges with their body in memory (r.GetBody
// set) go through its own HTTP/1.1 pool, on the caller's goroutine; the rest through Transport. A
// host that a transport socket match selects is reached over that match's transport instead,
// whatever scheme r.URL has.
func (c *Cluster) RoundTrip(r *http.Request) (*http.Response, error) {
	if m := c.matchedFor(r.URL.Host); m != nil {
		return m.roundTrip(r)
	}
	if c.h2 != nil {
		return c.h2.roundTrip(r)
	}
	if c.h1 != nil && h1Eligible(r) {
		return c.h1.roundTrip(r)
	}
	return c.Transport().RoundTrip(r)
}

// Transport returns the cluster's pooled http.Transport, making it on first use: most clusters of
// a large configuration never carry a request that needs it (an http.Transport is ≈ 400 bytes
// before any connection). It speaks HTTP/1.1 only: RoundTrip never uses it for an HTTP/2 cluster.
func (c *Cluster) Transport() *http.Transport { return c.lazyTransport(&c.transport, c.TLS) }

// lazyTransport returns *p, first storing in it a new transport with TLS configuration tc if it is
// nil.
func (c *Cluster) lazyTransport(p *atomic.Pointer[http.Transport], tc *tls.Config) *http.Transport {
	if t := p.Load(); t != nil {
		return t
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := p.Load(); t != nil {
		return t
	}
	t := c.newTransport(tc)
	p.Store(t)
	return t
}

func (c *Cluster) newTransport(tc *tls.Config) *http.Transport {
	t := &http.Transport{
		Proxy:                  nil,
		DialContext:            c.dial,
		MaxIdleConns:           0,
		MaxIdleConnsPerHost:    256,
		IdleConnTimeout:        c.IdleTimeout,
		DisableCompression:     true,
		ExpectContinueTimeout:  0,
		TLSClientConfig:        tc,
		ResponseHeaderTimeout:  0,
		MaxResponseHeaderBytes: 64 << 10,
	}
	p := new(http.Protocols)
	p.SetHTTP1(true) // HTTP/2 clusters go through h2Pool
	t.Protocols = p
	return t
}

// SetEndpoints replaces the endpoints from a ClusterLoadAssignment (nil: none). Hosts that stay keep
// their counters and ejection state.
func (c *Cluster) SetEndpoints(cla *endpointv3.ClusterLoadAssignment) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var known map[string]*Host // the current hosts by address, whose state carries over
	if cur := c.set.Load(); cur != nil && len(cur.all) > 0 {
		known = make(map[string]*Host, len(cur.all))
		for _, e := range cur.all {
			known[e.Addr] = e.Host
		}
	}
	eps, err := parseEndpoints(cla, known, c.matchIndex)
	if err != nil {
		return err
	}
	var ejected int64
	for _, e := range eps {
		if e.ejected.Load() {
			ejected++
		}
	}
	c.ejectedCount.Store(ejected)
	set := buildSet(eps, c.LB, c.ringMin, c.maglevSize, c.byLocality)
	if len(c.matched) > 0 {
		set.matchOf = make(map[string]int, len(eps))
		for _, e := range eps {
			set.matchOf[e.Addr] = e.match
		}
	}
	c.set.Store(set)
	return nil
}

// Endpoints returns the current endpoints.
func (c *Cluster) Endpoints() []*Endpoint { return c.set.Load().all }

// Pick chooses an available endpoint from the highest-priority level that has one; hash is used by the
// hashing policies when hasHash. It returns nil when no endpoint is available.
//
// In a cluster that balances by locality weight, a level first chooses a locality by weight (weighted
// round robin) and then an endpoint in it; a locality without an available endpoint passes the pick
// to the next one in order (unlike Envoy, a partly available locality keeps its full weight). Hashed
// picks use the locality weights through the hash table's endpoint weights instead.
func (c *Cluster) Pick(hash uint64, hasHash bool) *Endpoint {
	s := c.set.Load()
	for _, l := range s.levels {
		if e := c.pickLevel(l, hash, hasHash); e != nil {
			return e
		}
	}
	return nil
}

// PickOther is Pick for a retry that avoids the hosts for which tried is true (Envoy's
// previous_hosts predicate): the balancer chooses up to attempts times; if it keeps choosing tried
// hosts, the first available untried host of the highest priority level with one is taken, and when
// every host was tried, the balancer's choice.
func (c *Cluster) PickOther(hash uint64, hasHash bool, attempts int, tried func(*Endpoint) bool) *Endpoint {
	first := c.Pick(hash, hasHash)
	for n := 1; n < attempts && first != nil && tried(first); n++ {
		if e := c.Pick(hash+uint64(n), hasHash); e != nil && !tried(e) {
			return e
		}
	}
	if first == nil || !tried(first) {
		return first
	}
	for _, l := range c.set.Load().levels {
		for _, e := range l.eps {
			if e.available() && !tried(e) {
				return e
			}
		}
	}
	return first
}

func (c *Cluster) pickLevel(l *level, hash uint64, hasHash bool) *Endpoint {
	hashed := hasHash && (c.LB == RingHash || c.LB == Maglev)
	if l.loc != nil && !hashed {
		return c.pickLocality(l, hash, hasHash)
	}
	n := len(l.schedule)
	if n == 0 {
		return nil
	}
	switch {
	case c.LB == RingHash && hasHash:
		ring, _ := l.hashTables()
		i := ringLookup(ring, hash)
		for k := 0; k < len(ring); k++ {
			if e := l.eps[ring[(i+k)%len(ring)].idx]; e.available() {
				return e
			}
		}
		return nil
	case c.LB == Maglev && hasHash:
		_, table := l.hashTables()
		if e := l.eps[table[hash%uint64(len(table))]]; e.available() {
			return e
		}
		// The chosen host is unavailable: fall back to the next ones in table order.
		for k := uint64(1); k < uint64(len(table)) && k < 64; k++ {
			if e := l.eps[table[(hash+k)%uint64(len(table))]]; e.available() {
				return e
			}
		}
	case c.LB == LeastRequest:
		a := l.eps[l.schedule[rand.IntN(n)]]
		b := l.eps[l.schedule[rand.IntN(n)]]
		if !a.available() || (b.available() && b.active.Load() < a.active.Load()) {
			a = b
		}
		if a.available() {
			return a
		}
	case c.LB == Random || c.LB == RingHash || c.LB == Maglev:
		if e := l.eps[l.schedule[rand.IntN(n)]]; e.available() {
			return e
		}
	default:
		rr := &c.rr
		if l.own {
			rr = &l.rr
		}
		start := rr.Add(1)
		for k := 0; k < n; k++ {
			if e := l.eps[l.schedule[(start+uint64(k))%uint64(n)]]; e.available() {
				return e
			}
		}
		return nil
	}
	// Random choice hit an unavailable endpoint: scan from a random start.
	start := rand.IntN(len(l.eps))
	for k := range l.eps {
		if e := l.eps[(start+k)%len(l.eps)]; e.available() {
			return e
		}
	}
	return nil
}

// pickLocality chooses the locality of level l by weight, and an endpoint in it; when the locality
// has no available endpoint, the next localities in order are tried.
func (c *Cluster) pickLocality(l *level, hash uint64, hasHash bool) *Endpoint {
	loc := l.loc
	n := uint64(len(loc.schedule))
	if n == 0 {
		return nil
	}
	first := int(loc.schedule[(loc.next.Add(1)-1)%n])
	for k := range loc.levels {
		if e := c.pickLevel(loc.levels[(first+k)%len(loc.levels)], hash, hasHash); e != nil {
			return e
		}
	}
	return nil
}

// StartRequest applies the max_requests and max_pending_requests breakers; on success the caller must
// call h's Done when the request ends.
func (c *Cluster) StartRequest() error {
	n := c.activeRequests.Add(1)
	pending := n - c.connections.Load()
	if n > c.Limits.MaxRequests || (!c.HTTP2 && pending > c.Limits.MaxPending) {
		c.activeRequests.Add(-1)
		c.Overflows.Add(1)
		return ErrOverflow
	}
	return nil
}

// EndRequest undoes a successful StartRequest.
func (c *Cluster) EndRequest() { c.activeRequests.Add(-1) }

// StartRetry applies the max_retries breaker, or the retry budget if the cluster has one (retries are
// counted against the requests active at that moment, the retried one included); on success the caller
// calls EndRetry after the retry.
func (c *Cluster) StartRetry() bool {
	if c.activeRetries.Add(1) > c.Limits.retryLimit(c.activeRequests.Load()) {
		c.activeRetries.Add(-1)
		c.Overflows.Add(1)
		return false
	}
	return true
}

// EndRetry undoes a successful StartRetry.
func (c *Cluster) EndRetry() { c.activeRetries.Add(-1) }

// Begin marks a request in flight to e; End reports its outcome (status 0 means a connection failure or
// reset) for outlier detection.
func (c *Cluster) Begin(e *Endpoint) { e.active.Add(1) }

// Abandon ends a request on e that failed for a local reason (the cluster's own breaker, the
// downstream going away): it counts neither as a request to e nor as e's failure.
func (c *Cluster) Abandon(e *Endpoint) { e.active.Add(-1) }

// End reports the outcome of a request to e begun with Begin.
func (c *Cluster) End(e *Endpoint, status int) {
	e.active.Add(-1)
	e.Requests.Add(1)
	gateway := status == 0 || status == 502 || status == 503 || status == 504
	if status == 0 || status >= 500 {
		e.Failures.Add(1)
	}
	o := c.Outlier
	if o == nil {
		return
	}
	if status != 0 && status < 500 {
		e.consecutive5x.Store(0)
		e.consecutiveGw.Store(0)
		return
	}
	n5 := e.consecutive5x.Add(1)
	var ngw uint32
	if gateway {
		ngw = e.consecutiveGw.Add(1)
	}
	if (o.Consecutive5xx > 0 && n5 >= o.Consecutive5xx) || (o.ConsecutiveGateway > 0 && ngw >= o.ConsecutiveGateway) {
		c.eject(e)
	}
}

func (c *Cluster) eject(e *Endpoint) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.ejected.Load() {
		return
	}
	total := int64(len(c.set.Load().all))
	ejected := c.ejectedCount.Load()
	// Envoy ejects at least one host whatever max_ejection_percent says.
	if ejected > 0 && (ejected+1)*100 > total*int64(c.Outlier.MaxEjectionPercent) {
		return
	}
	n := e.ejections.Add(1)
	d := min(c.Outlier.BaseEjection*time.Duration(n), max(c.Outlier.MaxEjection, c.Outlier.BaseEjection))
	e.ejectedUntil.Store(time.Now().Add(d).UnixNano())
	e.ejected.Store(true)
	c.ejectedCount.Add(1)
	e.consecutive5x.Store(0)
	e.consecutiveGw.Store(0)
}

// outlierLoop runs Envoy's interval timer: it returns hosts whose ejection time is over and lets the
// ejection multiplier of healthy hosts decay.
func (c *Cluster) outlierLoop() {
	t := time.NewTicker(c.Outlier.Interval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			c.mu.Lock()
			for _, h := range c.set.Load().all { // each host once: addresses are unique in a set
				switch {
				case h.ejected.Load() && now.UnixNano() >= h.ejectedUntil.Load():
					h.ejected.Store(false)
					c.ejectedCount.Add(-1)
				case !h.ejected.Load() && h.ejections.Load() > 0:
					h.ejections.Add(^uint32(0))
				}
			}
			c.mu.Unlock()
		}
	}
}

// Close stops background work and closes pooled connections after drain (in-flight requests finish).
func (c *Cluster) Close(drain time.Duration) {
	c.once.Do(func() {
		if c.stop != nil {
			close(c.stop)
		}
		c.closeIdle(false)
		if drain > 0 {
			time.AfterFunc(drain, func() { c.closeIdle(true) })
		} else {
			c.closeIdle(true)
		}
	})
}

// closeIdle closes the pooled connections that are not in use; final also closes those in use when
// their exchange ends.
func (c *Cluster) closeIdle(final bool) {
	if t := c.transport.Load(); t != nil { // not made: no connections
		t.CloseIdleConnections()
	}
	if c.h1 != nil {
		c.h1.closeIdle(final)
	}
	if c.h2 != nil {
		c.h2.closeIdle(final)
	}
	for _, m := range c.matched {
		m.closeIdle(final)
	}
}

// Connections returns the number of open upstream connections.
func (c *Cluster) Connections() int64 { return c.connections.Load() }

// ActiveRequests returns the number of requests in flight.
func (c *Cluster) ActiveRequests() int64 { return c.activeRequests.Load() }
