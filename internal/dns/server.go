package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// Resolver answers names under the mesh root domain. The anchors' resolver
// (internal/resolve) implements it; tests use a map.
type Resolver interface {
	// Lookup answers a fully qualified mesh name in lower case without a
	// trailing dot, e.g. "reviews.bookinfo.demo.mesh". found=false means
	// NXDOMAIN: the name is inside the mesh and does not exist. A name that
	// exists without addresses (a namespace, a service without endpoints)
	// must be found=true with an empty Answer, which the server answers as
	// NODATA. A non-nil error is answered SERVFAIL.
	Lookup(ctx context.Context, name string) (Answer, bool, error)
}

// Answer is what a Resolver knows about one mesh name.
type Answer struct {
	// Addrs are the name's addresses: IPv4 (and IPv4-mapped IPv6) ones are
	// served as A records, the others as AAAA. Zones are dropped.
	Addrs []netip.Addr
	// VIPs are the service's virtual IPs (empty for names that are not
	// services, and for services of scopes that allocate none). A Server
	// with Options.VIPs answers them instead of Addrs.
	VIPs []netip.Addr
	// Ports are served as SRV records under _<Name>._<Proto>.<name>, with
	// the name itself as target.
	Ports []SRVTarget
	// TTL is how long clients may cache the answer; below one second
	// (including zero) it is served as one second.
	TTL time.Duration
	// Stale reports that the answer was served from cache while the owning
	// scope is unreachable. Stale answers are served with a TTL of at most
	// Options.StaleTTL.
	Stale bool
}

// SRVTarget is one named port of a mesh name.
type SRVTarget struct {
	// Name is the port's name, e.g. "http" for _http._tcp.<name>; matched
	// case-insensitively.
	Name string
	// Proto is the transport, "tcp" or "udp"; matched case-insensitively.
	Proto string
	// Port is the port number.
	Port uint16
}

// Options configure a Server. Zero values mean the documented defaults.
type Options struct {
	// Listen is the address served over both UDP and TCP, e.g.
	// 127.0.0.1:15053. Empty means DefaultListen. With port 0 a free port
	// that is free for both protocols is chosen; Server.Addr reports it.
	Listen string
	// Mesh is the mesh root domain, e.g. demo.mesh (a trailing dot is
	// allowed). Names under it are answered from the Resolver, never
	// forwarded. Required.
	Mesh string
	// SearchDomains expand short names, in order (the caller's namespace
	// first), e.g. bookinfo.demo.mesh, demo.mesh. Each must be the mesh
	// domain or under it. Empty means no expansion.
	SearchDomains []string
	// NDots: names outside the mesh with fewer dots than NDots (not
	// counting an _<port>._<proto> prefix) are tried with the search
	// domains first. Zero means 1: only single-label names are expanded.
	NDots int
	// Upstream are the resolvers (host:port, port 53 if omitted) that
	// answer every name outside the mesh, tried in order starting from the
	// last one that answered. Empty means non-mesh names get SERVFAIL.
	Upstream []string
	// VIPs makes A/AAAA answers (and SRV's additional records) carry a
	// service's virtual IPs instead of its endpoints' addresses, for callers
	// whose proxy captures their connections transparently: the proxy routes
	// a connection to a VIP by the service's rules (load balancing, retries,
	// mTLS) where a connection to an endpoint address would bypass them.
	// Names without VIPs are answered with their addresses either way.
	VIPs bool
	// UpstreamTimeout bounds one attempt at one upstream. Zero means 1s.
	UpstreamTimeout time.Duration
	// QueryTimeout bounds the handling of one query, resolver lookup and
	// upstream failover included. Zero means 2s.
	QueryTimeout time.Duration
	// MaxConcurrent bounds the queries handled at once; queries beyond it
	// are answered SERVFAIL at once. Zero means 1024.
	MaxConcurrent int
	// NegativeTTL is the TTL of negative answers (the SOA's TTL and minimum
	// field). Zero means 5s.
	NegativeTTL time.Duration
	// StaleTTL caps the TTL of stale answers. Zero means 1s.
	StaleTTL time.Duration
	// UDPSize is the largest UDP response sent to EDNS0 clients (their own
	// advertised size permitting) and the size advertised upstream. Zero
	// means 1232; values are clamped to 512..4096.
	UDPSize int
	// Logger receives debug logs of failed lookups and upstream attempts.
	// Nil means no logs.
	Logger *slog.Logger
}

// DefaultListen is where a Server listens when Options.Listen is empty.
const DefaultListen = "127.0.0.1:15053"

// Stats counts what a Server did since it was created.
type Stats struct {
	Queries   uint64 // queries handled (including rejected ones)
	Mesh      uint64 // queries answered from the Resolver
	Forwarded uint64 // queries answered by an upstream
	NXDomain  uint64 // NXDOMAIN answers
	ServFail  uint64 // SERVFAIL answers
	Truncated uint64 // UDP answers sent with the TC bit
	Overload  uint64 // queries refused because MaxConcurrent were in flight
}

type counters struct {
	queries, mesh, forwarded, nxdomain, servfail, truncated, overload atomic.Uint64
}

// exchangeFunc sends one query to one upstream and returns its response.
type exchangeFunc func(ctx context.Context, m *mdns.Msg, upstream string) (*mdns.Msg, error)

// Server is a DNS server for mesh names. Create it with New, run it with Serve.
type Server struct {
	r        Resolver
	log      *slog.Logger
	mesh     []string   // mesh domain labels, lower case
	meshFQDN string     // "demo.mesh."
	search   [][]string // search domain labels, lower case
	ndots    int
	upstream []string
	udpSize  int
	vips     bool

	upstreamTimeout, queryTimeout time.Duration
	negativeTTL, staleTTL         uint32

	sem      chan struct{}
	exchange exchangeFunc
	next     atomic.Uint32 // index of the upstream to try first
	stats    counters

	pc net.PacketConn
	ln net.Listener

	mu      sync.Mutex
	started bool
	baseCtx context.Context // Serve's context, parent of every query's
}

// New validates o, binds the UDP and TCP listeners and returns a Server ready
// to Serve. Call Close instead of Serve to release the listeners.
func New(r Resolver, o Options) (*Server, error) {
	if r == nil {
		return nil, errors.New("dns: new: nil Resolver")
	}
	s := &Server{r: r, log: o.Logger, baseCtx: context.Background()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	mesh, err := domainLabels(o.Mesh)
	if err != nil || len(mesh) == 0 {
		return nil, fmt.Errorf("dns: new: Options.Mesh %q: must be a domain name such as demo.mesh", o.Mesh)
	}
	s.mesh = mesh
	s.meshFQDN = strings.Join(mesh, ".") + "."
	for i, d := range o.SearchDomains {
		l, err := domainLabels(d)
		if err != nil || !isUnder(l, mesh) {
			return nil, fmt.Errorf("dns: new: Options.SearchDomains[%d] %q: must be %s or a domain under it", i, d, o.Mesh)
		}
		s.search = append(s.search, l)
	}
	for i, u := range o.Upstream {
		addr, err := upstreamAddr(u)
		if err != nil {
			return nil, fmt.Errorf("dns: new: Options.Upstream[%d] %q: %v", i, u, err)
		}
		s.upstream = append(s.upstream, addr)
	}
	s.ndots = orDefault(o.NDots, 1)
	s.vips = o.VIPs
	s.upstreamTimeout = orDefault(o.UpstreamTimeout, time.Second)
	s.queryTimeout = orDefault(o.QueryTimeout, 2*time.Second)
	s.sem = make(chan struct{}, orDefault(o.MaxConcurrent, 1024))
	s.negativeTTL = ttlSeconds(orDefault(o.NegativeTTL, 5*time.Second))
	s.staleTTL = ttlSeconds(orDefault(o.StaleTTL, time.Second))
	s.udpSize = min(max(orDefault(o.UDPSize, 1232), mdns.MinMsgSize), 4096)
	if o.NDots < 0 || o.UpstreamTimeout < 0 || o.QueryTimeout < 0 || o.MaxConcurrent < 0 ||
		o.NegativeTTL < 0 || o.StaleTTL < 0 || o.UDPSize < 0 {
		return nil, errors.New("dns: new: Options: durations, sizes and counts must not be negative")
	}
	s.exchange = exchangeUpstream
	listen := o.Listen
	if listen == "" {
		listen = DefaultListen
	}
	if s.pc, s.ln, err = listenBoth(listen); err != nil {
		return nil, fmt.Errorf("dns: new: listen %s: %w", listen, err)
	}
	return s, nil
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// upstreamAddr validates an upstream address and adds port 53 when omitted.
func upstreamAddr(u string) (string, error) {
	host, port, err := net.SplitHostPort(u)
	if err != nil {
		if _, perr := netip.ParseAddr(strings.Trim(u, "[]")); perr != nil {
			return "", errors.New("must be host:port or an IP address")
		}
		host, port = strings.Trim(u, "[]"), "53"
	}
	if host == "" || port == "" {
		return "", errors.New("must be host:port or an IP address")
	}
	return net.JoinHostPort(host, port), nil
}

// listenBoth binds UDP and TCP on the same address. With port 0 it retries a
// few times when the port chosen for UDP is taken for TCP.
func listenBoth(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	attempts := 1
	if port == "0" {
		attempts = 16
	}
	var lastErr error
	for range attempts {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		bound := net.JoinHostPort(host, fmt.Sprint(pc.LocalAddr().(*net.UDPAddr).Port))
		ln, err := net.Listen("tcp", bound)
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
	}
	return nil, nil, lastErr
}

// Addr returns the address served over UDP and TCP, e.g. 127.0.0.1:15053.
func (s *Server) Addr() string {
	return s.ln.Addr().String()
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		Queries: c.queries.Load(), Mesh: c.mesh.Load(), Forwarded: c.forwarded.Load(),
		NXDomain: c.nxdomain.Load(), ServFail: c.servfail.Load(),
		Truncated: c.truncated.Load(), Overload: c.overload.Load(),
	}
}

// Close releases the listeners of a Server whose Serve was never called.
// Serve releases them itself when its context ends.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("dns: close: server is serving; cancel Serve's context instead")
	}
	s.started = true // a closed server cannot serve
	return errors.Join(s.pc.Close(), s.ln.Close())
}

// Serve answers queries until ctx ends, then stops the listeners, waits up to
// a second for queries in flight and returns nil. It returns an error when a
// listener fails. Serve may be called once.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("dns: serve: already serving or closed")
	}
	s.started = true
	s.baseCtx = ctx
	s.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	servers := []*mdns.Server{
		{
			PacketConn:   s.pc,
			Handler:      s,
			UDPSize:      65535, // read buffer: never cut a query short
			ReadTimeout:  s.queryTimeout,
			WriteTimeout: s.queryTimeout,
		},
		{
			Listener:      s.ln,
			Handler:       s,
			ReadTimeout:   s.queryTimeout,
			WriteTimeout:  s.queryTimeout,
			IdleTimeout:   func() time.Duration { return 10 * time.Second },
			MaxTCPQueries: 1000,
		},
	}
	started := make(chan struct{}, len(servers))
	errs := make(chan error, len(servers))
	for _, srv := range servers {
		srv.NotifyStartedFunc = func() { started <- struct{}{} }
		go func() { errs <- srv.ActivateAndServe() }()
	}
	// Wait until both serve (Shutdown fails on a server not yet started),
	// or one fails to.
	var err error
	for range servers {
		select {
		case <-started:
		case err = <-errs:
		}
		if err != nil {
			break
		}
	}
	if err == nil {
		select {
		case <-ctx.Done():
		case err = <-errs:
		}
	}
	for _, srv := range servers {
		sctx, scancel := context.WithTimeout(context.Background(), time.Second)
		_ = srv.ShutdownContext(sctx) // fails only for a server that never started
		scancel()
	}
	// A server that failed already closed its listener; close both anyway.
	s.pc.Close()
	s.ln.Close()
	if err != nil {
		return fmt.Errorf("dns: serve %s: %w", s.Addr(), err)
	}
	return nil
}

// ServeDNS implements mdns.Handler.
func (s *Server) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	_, tcp := w.LocalAddr().(*net.TCPAddr)
	ctx, cancel := context.WithTimeout(s.baseCtx, s.queryTimeout)
	defer cancel()
	resp := s.handle(ctx, req, tcp)
	if resp == nil {
		return
	}
	if err := w.WriteMsg(resp); err != nil {
		s.log.Debug("dns write failed", "client", w.RemoteAddr().String(), "err", err)
	}
}
