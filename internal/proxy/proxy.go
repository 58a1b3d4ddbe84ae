package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"canton.dev/canton/internal/proxy/xdsclient"
	"canton.dev/canton/internal/telemetry"
)

// CapabilitiesKey is the node metadata key under which the proxy lists the optional xDS features it
// supports, and Capabilities that list (comma separated, empty: none). See docs/xds.md.
const (
	CapabilitiesKey = "CANTON_CAPABILITIES"
	Capabilities    = "cluster.locality_weighted_lb,cluster.transport_socket_matches,route.retry_previous_hosts"
)

// Options configure a proxy. XDSServers is required.
type Options struct {
	// XDSServers are the control-plane (anchor) addresses, host:port, tried in order.
	XDSServers []string
	// NodeID and NodeCluster identify the proxy to the control plane; NodeMetadata is sent as the
	// node's metadata (string values).
	NodeID, NodeCluster string
	NodeMetadata        map[string]string
	// XDSTLS is the client TLS configuration of the xDS connection; nil means plain text (tests and
	// loopback only).
	XDSTLS *tls.Config
	// AdminAddr is where the admin endpoint listens (host:port); empty means no admin listener.
	AdminAddr string
	// Logger receives the proxy's logs; nil discards them.
	Logger *slog.Logger
	// Reporter receives Istio-standard metrics; nil means a new telemetry.Reporter.
	Reporter *telemetry.Reporter
	// AccessLog, if not nil, gets one entry per request and TCP connection.
	AccessLog *telemetry.AccessLog
	// DrainTime bounds how long removed or changed listeners and clusters keep serving established
	// connections; zero means 5s.
	DrainTime time.Duration
	// BackoffBase and BackoffMax bound the xDS reconnect delay; zero means 200ms and 10s.
	BackoffBase, BackoffMax time.Duration
	// Delta selects incremental xDS (DeltaAggregatedResources); a server without it is used with
	// state of the world. The configuration applied is the same either way.
	Delta bool
	// LocalSecrets supplies secrets locally, as istio-agent's local SDS does: the names it knows are
	// never requested from the control plane, so the workload's private key never leaves it. Nil means
	// every secret comes from SDS.
	LocalSecrets SecretSource
	// Workload is the proxy's own workload for telemetry and the peer metadata exchange; its zero
	// value reports "unknown" and sends no metadata.
	Workload Workload
	// Bound are sockets the caller already bound, by address (host:port): a listener (or the
	// admin endpoint) configured with that address serves on the socket instead of binding its
	// own, so a port chosen in advance cannot be taken by someone else in between. The proxy owns
	// them and closes those it never used when Run returns.
	Bound map[string]net.Listener
}

// Proxy is a running data plane. Create it with New, run it with Run.
type Proxy struct {
	opts    Options
	log     *slog.Logger
	metrics *telemetry.Reporter
	xds     *xdsclient.Client

	snap  atomic.Pointer[snapshot]
	local atomic.Pointer[localSecrets] // written under mu

	mu        sync.Mutex // serializes Apply and listener reconciliation
	listeners map[string]*runningListener
	capture   atomic.Pointer[captureIndex] // listeners by address, for use_original_dst
	applied   map[string]bool              // types received at least once
	closed    bool

	bound      map[string]net.Listener // Options.Bound not yet in use; under mu
	adminAddr  atomic.Value            // string
	ready      atomic.Bool
	labels     sync.Map // labelKey -> *telemetry.Labels
	self       *telemetry.Workload
	peerMeta   []string // the encoded own workload as a header value; nil: none to send
	peerMetaID []string
	peers      peerCache
	wg         sync.WaitGroup
}

// New checks o and returns a proxy that does nothing until Run.
func New(o Options) (*Proxy, error) {
	if len(o.XDSServers) == 0 {
		return nil, errors.New("proxy: options: no xDS servers")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Reporter == nil {
		o.Reporter = telemetry.NewReporter()
	}
	if o.DrainTime <= 0 {
		o.DrainTime = 5 * time.Second
	}
	p := &Proxy{opts: o, log: o.Logger, metrics: o.Reporter, listeners: map[string]*runningListener{}, applied: map[string]bool{},
		bound: maps.Clone(o.Bound)}
	p.self = &p.opts.Workload
	if o.Workload != (Workload{}) {
		meta, err := telemetry.EncodePeerMetadata(o.NodeID, o.Workload)
		if err != nil {
			return nil, fmt.Errorf("proxy: options: workload: %w", err)
		}
		p.peerMeta, p.peerMetaID = []string{meta}, []string{o.NodeID}
	}
	p.snap.Store(emptySnapshot())
	p.local.Store(emptyLocalSecrets())
	node := &corev3.Node{Id: o.NodeID, Cluster: o.NodeCluster, UserAgentName: "canton-proxy"}
	{
		// CANTON_CAPABILITIES lists the optional features of docs/xds.md this proxy implements
		// (comma separated). Options.NodeMetadata may not override it.
		fields := map[string]any{}
		for k, v := range o.NodeMetadata {
			fields[k] = v
		}
		fields[CapabilitiesKey] = Capabilities
		md, err := structpb.NewStruct(fields)
		if err != nil {
			return nil, fmt.Errorf("proxy: options: node metadata: %w", err)
		}
		node.Metadata = md
	}
	var creds credentials.TransportCredentials = insecure.NewCredentials()
	if o.XDSTLS != nil {
		creds = credentials.NewTLS(o.XDSTLS)
	}
	c, err := xdsclient.New(xdsclient.Options{Servers: o.XDSServers, Node: node, Consumer: p, Logger: o.Logger,
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(creds)}, BackoffBase: o.BackoffBase, BackoffMax: o.BackoffMax,
		Delta: o.Delta})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	p.xds = c
	p.registerMetrics()
	return p, nil
}

// Run starts the proxy with options o and serves until ctx is done.
func Run(ctx context.Context, o Options) error {
	p, err := New(o)
	if err != nil {
		return err
	}
	return p.Run(ctx)
}

// Run serves until ctx is done: the admin listener, the xDS client and, as configuration arrives, the
// listeners. On return every listener is closed (established connections get DrainTime to finish).
func (p *Proxy) Run(ctx context.Context) error {
	var admin *http.Server
	if p.opts.AdminAddr != "" {
		p.mu.Lock()
		ln, err := p.bind(p.opts.AdminAddr)
		p.mu.Unlock()
		if err != nil {
			return fmt.Errorf("proxy: admin listener %s: %w", p.opts.AdminAddr, err)
		}
		p.adminAddr.Store(ln.Addr().String())
		admin = &http.Server{Handler: p.adminHandler(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			_ = admin.Serve(ln) // returns when the server is closed
		}()
	}
	if src := p.opts.LocalSecrets; src != nil {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.watchLocal(ctx, src)
		}()
	}
	err := p.xds.Run(ctx)
	p.shutdown()
	if admin != nil {
		admin.Close()
	}
	p.wg.Wait()
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

func (p *Proxy) shutdown() {
	p.mu.Lock()
	p.closed = true
	ls := p.listeners
	p.listeners = map[string]*runningListener{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.close(p.opts.DrainTime)
		}()
	}
	wg.Wait()
	for _, c := range p.snap.Load().clusters {
		c.Close(0)
	}
	p.mu.Lock()
	for addr, ln := range p.bound {
		ln.Close()
		delete(p.bound, addr)
	}
	p.mu.Unlock()
}

// bind returns the socket the caller bound for addr (Options.Bound), or binds one. Call with mu
// held.
func (p *Proxy) bind(addr string) (net.Listener, error) {
	if ln, ok := p.bound[addr]; ok {
		delete(p.bound, addr)
		return ln, nil
	}
	return net.Listen("tcp", addr)
}

// AdminAddr returns the bound admin address, empty before Run or without one.
func (p *Proxy) AdminAddr() string {
	s, _ := p.adminAddr.Load().(string)
	return s
}

// ListenerAddr returns the bound address of the named listener, empty if it is not running.
func (p *Proxy) ListenerAddr(name string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l := p.listeners[name]; l != nil {
		return l.ln.Addr().String()
	}
	return ""
}

// Apply implements xdsclient.Consumer: it checks and compiles next, swaps the snapshot in and
// reconciles listeners. An error leaves everything as it was.
func (p *Proxy) Apply(typeURL string, next xdsclient.State) (xdsclient.Subscriptions, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("proxy is shutting down")
	}
	old := p.snap.Load()
	s, created, err := p.build(old, typeURL, next)
	if err != nil {
		return nil, err
	}
	// Bind new listeners before publishing, so a port conflict NACKs instead of half-applying.
	local, _ := p.readLocal(s)
	starts, err := p.prepareListeners(s, local)
	if err != nil {
		for _, c := range created {
			c.Close(0)
		}
		return nil, err
	}
	s.applyEndpoints(old)
	p.local.Store(local) // before the snapshot, so that handshakes on new listeners find their secrets
	p.snap.Store(s)
	p.commitListeners(s, local, starts)
	for name, c := range old.clusters {
		if s.clusters[name] != c {
			c.Close(p.opts.DrainTime)
		}
	}
	p.applied[typeURL] = true
	if p.applied[xdsclient.ListenerType] && p.applied[xdsclient.ClusterType] {
		p.ready.Store(true)
	}
	return p.subscriptions(s), nil
}

// subscriptions lists the RDS, EDS and SDS names the snapshot refers to.
func subscriptions(s *snapshot) xdsclient.Subscriptions {
	subs := xdsclient.Subscriptions{}
	add := func(t, n string) {
		if n != "" && !slices.Contains(subs[t], n) {
			subs[t] = append(subs[t], n)
		}
	}
	addTLS := func(t *tlsContext) {
		if t != nil {
			add(xdsclient.SecretType, t.certSecret)
			add(xdsclient.SecretType, t.caSecret)
		}
	}
	for _, l := range s.listeners {
		for _, c := range l.all() {
			if c == nil {
				continue
			}
			if c.hcm != nil {
				add(xdsclient.RouteType, c.hcm.rdsName)
			}
			addTLS(c.tls)
		}
	}
	for _, c := range s.clusters {
		add(xdsclient.EndpointType, c.EDSName)
		if ts := c.TransportSocket; ts != nil {
			if t, err := upstreamTLSContext(ts); err == nil {
				addTLS(t)
			}
		}
	}
	return subs
}

// Ready reports whether the proxy has configuration, and a one-line status.
func (p *Proxy) Ready() (bool, string) {
	st := p.xds.Status()
	if !p.ready.Load() {
		if st.LastError != "" {
			return false, "waiting for the first configuration (listeners and clusters); last error: " + st.LastError
		}
		return false, "waiting for the first configuration (listeners and clusters)"
	}
	if !st.Connected {
		return true, fmt.Sprintf("stale: no xDS server reachable, serving the configuration received at %s", st.LastUpdate.UTC().Format(time.RFC3339))
	}
	return true, "live: connected to " + st.Server
}

func (p *Proxy) registerMetrics() {
	reg := p.metrics.Registry()
	gauge := func(name, help string, f func() float64) {
		_ = reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	gauge("canton_proxy_xds_connected", "1 while an xDS stream is up, 0 while serving stale configuration.", func() float64 {
		if p.xds.Status().Connected {
			return 1
		}
		return 0
	})
	gauge("canton_proxy_xds_last_update_timestamp_seconds", "Unix time of the last accepted xDS response.", func() float64 {
		t := p.xds.Status().LastUpdate
		if t.IsZero() {
			return 0
		}
		return float64(t.UnixNano()) / 1e9
	})
	gauge("canton_proxy_xds_rejected_total", "xDS responses rejected (NACKed).", func() float64 { return float64(p.xds.Status().Rejected) })
	gauge("canton_proxy_xds_accepted_total", "xDS responses accepted (ACKed).", func() float64 { return float64(p.xds.Status().Accepted) })
	gauge("canton_proxy_upstream_overflow_total", "Requests refused by circuit breakers, all clusters.", func() float64 {
		var n uint64
		for _, c := range p.snap.Load().clusters {
			n += c.Overflows.Load()
		}
		return float64(n)
	})
}
