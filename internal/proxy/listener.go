package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"canton.dev/canton/internal/filter"
	"canton.dev/canton/internal/proxy/httpsafe"
	"canton.dev/canton/internal/proxy/rawsock"
)

// runningListener is a bound listener serving the current spec of its name.
type runningListener struct {
	p    *Proxy
	name string
	addr string // configured address
	ln   net.Listener

	mu      sync.Mutex
	spec    *listenerSpec
	runtime map[string]*hcmRuntime // by chain key
	tcp     map[net.Conn]string    // open tcp_proxy connections, with the key of their filter chain
	closed  bool
	done    chan struct{}
}

// prepareListeners binds the listeners of s that are new or moved; on error it closes what it bound.
func (p *Proxy) prepareListeners(s *snapshot, local *localSecrets) (map[string]net.Listener, error) {
	starts := map[string]net.Listener{}
	for name, spec := range s.listeners {
		if l := p.listeners[name]; (l != nil && l.addr == spec.addr && l.current().virtual == spec.virtual) || !spec.warm(s, local) {
			continue
		}
		ln, err := p.listen(spec)
		if err != nil {
			for n, o := range starts {
				if a := s.listeners[n].addr; p.opts.Bound[a] == o {
					p.bound[a] = o // not used after all: keep it for the next attempt
				} else {
					o.Close()
				}
			}
			return nil, fmt.Errorf("listener %q: address: %w", name, err)
		}
		starts[name] = ln
	}
	return starts, nil
}

// commitListeners starts, updates and drains listeners to match s.
func (p *Proxy) commitListeners(s *snapshot, local *localSecrets, starts map[string]net.Listener) {
	for name, spec := range s.listeners {
		old := p.listeners[name]
		if !spec.warm(s, local) {
			continue // warming: the running version (if any) serves until the new one is ready
		}
		ln, fresh := starts[name]
		if !fresh {
			old.update(spec)
			continue
		}
		l := &runningListener{p: p, name: name, addr: spec.addr, ln: ln, spec: spec, runtime: map[string]*hcmRuntime{},
			tcp: map[net.Conn]string{}, done: make(chan struct{})}
		p.listeners[name] = l
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			l.serve()
		}()
		p.log.Info("listener started", "listener", name, "addr", ln.Addr().String())
		if old != nil {
			go old.close(p.opts.DrainTime)
		}
	}
	for name, l := range p.listeners {
		if _, ok := s.listeners[name]; !ok {
			delete(p.listeners, name)
			go l.close(p.opts.DrainTime)
			p.log.Info("listener removed", "listener", name)
		}
	}
	p.publishCapture()
}

// all returns the filter chains and the default chain (nil entries skipped), in a new slice.
func (spec *listenerSpec) all() []*chainSpec {
	out := make([]*chainSpec, 0, len(spec.chains)+1)
	out = append(out, spec.chains...)
	if spec.def != nil {
		out = append(out, spec.def)
	}
	return out
}

// hasChain reports whether one of the listener's filter chains (or its default chain) has key.
func (spec *listenerSpec) hasChain(key string) bool {
	if spec.def != nil && spec.def.key == key {
		return true
	}
	return slices.ContainsFunc(spec.chains, func(c *chainSpec) bool { return c.key == key })
}

// warm reports whether everything the listener refers to through RDS and SDS has arrived, as
// Envoy's listener warming requires before a listener takes traffic. Secrets served locally count.
func (spec *listenerSpec) warm(s *snapshot, local *localSecrets) bool {
	for _, c := range spec.all() {
		if c == nil {
			continue
		}
		if c.hcm != nil && c.hcm.rdsName != "" && s.routes[c.hcm.rdsName] == nil {
			return false
		}
		if c.tls != nil {
			for _, n := range []string{c.tls.certSecret, c.tls.caSecret} {
				if n != "" && secretIn(s, local, n) == nil {
					return false
				}
			}
		}
	}
	return true
}

// update switches to spec; chains that no longer exist drain their connections: HTTP ones without
// failing requests (see hcmRuntime.retire), tcp_proxy ones are closed after the drain time, as Envoy
// drains the connections of a filter chain an update removed (so a connection a changed network
// RBAC filter would now deny does not outlive the change by more than the drain time).
func (l *runningListener) update(spec *listenerSpec) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.spec = spec
	keep := map[string]bool{}
	for _, c := range spec.all() {
		if c != nil {
			keep[c.key] = true
		}
	}
	var stale []net.Conn
	for c, key := range l.tcp {
		if !keep[key] {
			stale = append(stale, c)
		}
	}
	l.drainTCP(stale)
	for k, rt := range l.runtime {
		if !keep[k] {
			delete(l.runtime, k)
			d := l.p.opts.DrainTime
			if rt.h.hcm.drainTimeout > 0 {
				d = rt.h.hcm.drainTimeout
			}
			go rt.retire(d)
		}
	}
}

func (l *runningListener) current() *listenerSpec {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.spec
}

// close stops accepting, then gives established connections up to drain to finish.
func (l *runningListener) close(drain time.Duration) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.ln.Close()
	rts := l.runtime
	l.runtime = map[string]*hcmRuntime{}
	l.mu.Unlock()
	<-l.done
	var wg sync.WaitGroup
	for _, rt := range rts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rt.stop(drain)
		}()
	}
	// TCP connections: wait for them to end, up to drain, then cut them.
	deadline := time.Now().Add(drain)
	for {
		l.mu.Lock()
		n := len(l.tcp)
		if n == 0 || time.Now().After(deadline) {
			for c := range l.tcp {
				c.Close()
			}
			l.mu.Unlock()
			break
		}
		l.mu.Unlock()
		time.Sleep(10 * time.Millisecond) // bounded by drain
	}
	wg.Wait()
}

func (l *runningListener) serve() {
	defer close(l.done)
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.p.log.Warn("accept failed", "listener", l.name, "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		go l.serveConn(c)
	}
}

// tcpHandshakeTimeout bounds the TLS handshake of a tcp_proxy chain (HTTP chains use the connection
// manager's request headers timeout).
const tcpHandshakeTimeout = 10 * time.Second

func (l *runningListener) serveConn(c net.Conn) {
	spec := l.current()
	if spec.restoreDst {
		var to *runningListener
		if c, to = l.restoreOrigDst(c, spec); to != nil {
			to.serveConn(c) // use_original_dst hand-off
			return
		}
	}
	// Reads and writes skip the scheduler's blocking-call bookkeeping (rawsock); a TCP proxy chain
	// unwraps the connection again for splice (rawConn).
	switch v := c.(type) {
	case *net.TCPConn:
		c = rawsock.New(v)
	case *origDstConn:
		if tc, ok := v.Conn.(*net.TCPConn); ok {
			v.Conn = rawsock.New(tc)
		}
	}
	var hello *tls.ClientHelloInfo
	if spec.inspectTLS {
		var err error
		c, hello, err = inspectTLS(c, spec.inspectTimeout)
		if err != nil {
			l.p.log.Debug("tls inspection failed", "listener", l.name, "remote", c.RemoteAddr().String(), "err", err)
			c.Close()
			return
		}
	}
	chain := selectChain(spec, c, hello)
	if chain == nil {
		l.p.log.Debug("no filter chain matches", "listener", l.name, "remote", c.RemoteAddr().String())
		c.Close()
		return
	}
	if chain.tcp != nil {
		sni := ""
		if hello != nil {
			sni = hello.ServerName
		}
		if chain.tls != nil {
			tc := tls.Server(c, l.p.serverTLS(chain.tls, nil))
			_ = c.SetDeadline(time.Now().Add(tcpHandshakeTimeout))
			if err := tc.Handshake(); err != nil {
				l.p.log.Debug("tls handshake failed", "listener", l.name, "remote", c.RemoteAddr().String(), "err", err)
				c.Close()
				return
			}
			_ = c.SetDeadline(time.Time{})
			c = tc
		}
		l.serveTCP(c, spec, chain, sni)
		return
	}
	// HTTP/1.1 is served by the fast path (h1server.go), which leaves what it does not take to the
	// chain's net/http server behind httpsafe.Guard: the strict framing checks net/http lacks (the
	// head size limit is left to net/http, which answers 431; the guard's bound is only a backstop).
	// Over TLS the handshake happens here so that HTTP/1.1 can be served or guarded too. HTTP/2
	// (ALPN h2, every connection of an HTTP/2-only manager, h2c prior knowledge the fast path finds)
	// is served by the proxy's HTTP/2 server (h2server.go).
	if chain.tls != nil {
		tc := tls.Server(c, l.p.serverTLS(chain.tls, alpnFor(chain.hcm)))
		_ = c.SetDeadline(time.Now().Add(chain.hcm.headersTimeout))
		if err := tc.Handshake(); err != nil {
			l.p.log.Debug("tls handshake failed", "listener", l.name, "remote", c.RemoteAddr().String(), "err", err)
			c.Close()
			return
		}
		_ = c.SetDeadline(time.Time{})
		cs := tc.ConnectionState()
		if cs.NegotiatedProtocol == "h2" || chain.hcm.codec == 2 {
			l.serveH2(tc, &cs, chain, hello, nil)
		} else {
			l.serveH1(httpsafe.Guard(tc, guardFor(chain)), &cs, chain, hello)
		}
		return
	}
	if chain.hcm.codec != 2 {
		l.serveH1(httpsafe.Guard(c, guardFor(chain)), nil, chain, hello)
		return
	}
	l.serveH2(c, nil, chain, hello, nil) // HTTP/2 only
}

// guardFor is the strictness guard's configuration for the connections of chain.
func guardFor(chain *chainSpec) httpsafe.GuardOptions {
	return httpsafe.GuardOptions{MaxHeaderBytes: chain.hcm.maxHeaderBytes + 8<<10}
}

// deliverHTTP hands c, an HTTP/1.1 connection, to the net/http server of its filter chain. The
// chain's server may be retired by an update between lookup and hand-off; then the connection goes to
// the server of the current chain for its key.
func (l *runningListener) deliverHTTP(c net.Conn, chain *chainSpec, hello *tls.ClientHelloInfo) {
	for range 3 {
		if rt := l.hcmRuntime(chain); rt != nil && rt.ln.deliver(c) {
			return
		}
		if next := selectChain(l.current(), c, hello); next != nil && next.hcm != nil {
			chain = next
		}
	}
	l.p.log.Warn("connection dropped: no server for its filter chain", "listener", l.name)
	c.Close()
}

func (l *runningListener) hcmRuntime(chain *chainSpec) *hcmRuntime {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	rt := l.runtime[chain.key]
	if rt == nil {
		current := false
		for _, c := range l.spec.all() {
			current = current || c == chain
		}
		if !current {
			return nil // replaced by an update; the caller selects again
		}
		rt = newHCMRuntime(l.p, l, chain)
		l.runtime[chain.key] = rt
	}
	return rt
}

// trackTCP records (add) or forgets a tcp_proxy connection of chain. A connection whose chain an
// update replaced after the connection chose it is drained like the other connections of that
// chain. It returns false, recording nothing, when the listener is closed.
func (l *runningListener) trackTCP(c net.Conn, chain *chainSpec, add bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !add {
		delete(l.tcp, c)
		return true
	}
	if l.closed {
		return false
	}
	l.tcp[c] = chain.key
	if !l.spec.hasChain(chain.key) {
		l.drainTCP([]net.Conn{c})
	}
	return true
}

// drainTCP closes cs, connections of filter chains an update removed, after the drain time.
func (l *runningListener) drainTCP(cs []net.Conn) {
	if len(cs) == 0 {
		return
	}
	time.AfterFunc(l.p.opts.DrainTime, func() {
		for _, c := range cs {
			c.Close()
		}
	})
}

// selectChain picks the filter chain for a connection as Envoy does: destination port, then server
// name (exact, then the longest wildcard, then chains without names), then transport protocol, then
// application protocols; the default chain when nothing matches.
func selectChain(spec *listenerSpec, c net.Conn, hello *tls.ClientHelloInfo) *chainSpec {
	port := 0
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		port = a.Port
	}
	cands := narrow(spec.chains, func(ch *chainSpec) int {
		switch {
		case ch.destPort != 0 && int(ch.destPort) == port:
			return 2
		case ch.destPort == 0:
			return 1
		}
		return 0
	})
	sni := ""
	if hello != nil {
		sni = strings.ToLower(hello.ServerName)
	}
	cands = narrow(cands, func(ch *chainSpec) int {
		if len(ch.serverNames) == 0 {
			return 1
		}
		best := 0
		for _, n := range ch.serverNames {
			switch {
			case n == sni && sni != "":
				return 1 << 20
			case strings.HasPrefix(n, "*.") && strings.HasSuffix(sni, n[1:]):
				best = max(best, 1+len(n))
			}
		}
		return best
	})
	transport := "raw_buffer"
	if hello != nil {
		transport = "tls"
	}
	cands = narrow(cands, func(ch *chainSpec) int {
		switch ch.transport {
		case transport:
			return 2
		case "":
			return 1
		}
		return 0
	})
	cands = narrow(cands, func(ch *chainSpec) int {
		if len(ch.alpn) == 0 {
			return 1
		}
		if hello != nil {
			for _, a := range ch.alpn {
				for _, h := range hello.SupportedProtos {
					if a == h {
						return 2
					}
				}
			}
		}
		return 0
	})
	if len(cands) > 0 {
		return cands[0]
	}
	return spec.def
}

// narrow keeps the candidates with the highest positive score.
func narrow(cs []*chainSpec, score func(*chainSpec) int) []*chainSpec {
	best := 0
	var out []*chainSpec
	for _, c := range cs {
		switch s := score(c); {
		case s > best:
			best, out = s, []*chainSpec{c}
		case s == best && s > 0:
			out = append(out, c)
		}
	}
	return out
}

var errHelloSeen = errors.New("client hello seen")

// inspectTLS reads the start of c to find out whether it is TLS and, if so, its ClientHello. The bytes
// read are replayed by the returned connection. hello is nil for non-TLS traffic.
func inspectTLS(c net.Conn, timeout time.Duration) (net.Conn, *tls.ClientHelloInfo, error) {
	rec := &recordingConn{Conn: c}
	var hello *tls.ClientHelloInfo
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	err := tls.Server(rec, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		cp := *h
		cp.Conn = nil
		hello = &cp
		return nil, errHelloSeen
	}}).Handshake()
	_ = c.SetReadDeadline(time.Time{})
	replay := &prefixConn{Conn: c, prefix: rec.buf.Bytes()}
	switch {
	case hello != nil:
		return replay, hello, nil
	case rec.buf.Len() > 0 && rec.buf.Bytes()[0] != 0x16:
		return replay, nil, nil // not a TLS handshake record: plain text
	case err != nil:
		return c, nil, fmt.Errorf("inspect tls: %w", err)
	}
	return replay, nil, nil
}

// recordingConn records what is read and refuses writes (inspection must not answer the client).
type recordingConn struct {
	net.Conn
	buf bytes.Buffer
}

func (r *recordingConn) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	r.buf.Write(b[:n])
	return n, err
}

func (r *recordingConn) Write(b []byte) (int, error) {
	return 0, errors.New("inspection does not write")
}

// prefixConn replays prefix before reading from Conn.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// hcmRuntime is the HTTP server of one filter chain. Connections are handed to it by the listener.
type hcmRuntime struct {
	mu     sync.Mutex
	h1     map[*h1Conn]struct{} // connections on the fast HTTP/1.1 path
	h2     map[*h2Conn]struct{} // HTTP/2 connections (h2server.go)
	shut   atomic.Bool          // stopping: the fast path takes no more requests, HTTP/2 no connections
	srv    *http.Server
	ln     *chanListener
	h      *hcmHandler
	conns  atomic.Int64  // open connections
	served chan struct{} // closed when Serve has returned
}

type connInfoKey struct{}

// connInfo is what the proxy knows about a downstream connection.
type connInfo struct {
	listener *runningListener
	chain    *chainSpec
	conn     net.Conn
	inbound  bool
	// tls is the TLS state of a connection whose handshake the proxy did (net/http sees a plain
	// connection then, and leaves Request.TLS nil; the HTTP/2 server sets Request.TLS from it).
	tls *tls.ConnectionState

	peerOnce sync.Once // the peer is the connection's: checked once, for every request on it
	peer     filter.Peer
	hasPeer  bool
}

// peerOf returns the connection's peer (see peerOf), computed on its first request.
func (ci *connInfo) peerOf(cs *tls.ConnectionState) (filter.Peer, bool) {
	ci.peerOnce.Do(func() { ci.peer, ci.hasPeer = peerOf(cs, ci.conn.RemoteAddr()) })
	return ci.peer, ci.hasPeer
}

// guardedTLS is a guarded HTTP/1.1 connection over TLS, carrying the handshake's state.
type guardedTLS struct {
	net.Conn
	state *tls.ConnectionState
}

func alpnFor(h *hcmSpec) []string {
	switch h.codec {
	case 1: // HTTP1
		return []string{"http/1.1"}
	case 2: // HTTP2
		return []string{"h2"}
	}
	return []string{"h2", "http/1.1"}
}

func newHCMRuntime(p *Proxy, l *runningListener, chain *chainSpec) *hcmRuntime {
	h := chain.hcm
	ln := newChanListener(l.ln.Addr())
	inbound := l.spec.inbound // l.mu is held
	handler := &hcmHandler{p: p, chain: chain, hcm: h}
	rt := &hcmRuntime{ln: ln, h: handler, served: make(chan struct{})}
	srv := &http.Server{
		Handler: handler,
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				rt.conns.Add(1)
			case http.StateClosed, http.StateHijacked:
				rt.conns.Add(-1)
			}
		},
		ReadHeaderTimeout: h.headersTimeout,
		IdleTimeout:       h.idleTimeout,
		MaxHeaderBytes:    h.maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			ci := &connInfo{listener: l, chain: chain, conn: c, inbound: inbound}
			if g, ok := c.(*guardedTLS); ok {
				ci.tls = g.state
			}
			return context.WithValue(ctx, connInfoKey{}, ci)
		},
	}
	// Only HTTP/1.1 comes here (the connections the fast path hands over); HTTP/2 has its own server.
	pr := new(http.Protocols)
	pr.SetHTTP1(true)
	srv.Protocols = pr
	rt.srv = srv
	go func() {
		defer close(rt.served)
		_ = srv.Serve(ln) // returns when ln is closed and its queue drained
	}()
	return rt
}

// stop stops the server gracefully: idle connections close now, active ones when their requests end,
// all of them after d.
func (rt *hcmRuntime) stop(d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { rt.stopH1(ctx) })
	wg.Go(func() { rt.stopH2(ctx) })
	if err := rt.srv.Shutdown(ctx); err != nil {
		rt.srv.Close()
	}
	wg.Wait()
}

// retire drains a filter chain replaced by an update without failing requests: it takes no new
// connections, answers every further request with "Connection: close" (HTTP/2: GOAWAY), and stops
// the server when its connections are gone or after d.
func (rt *hcmRuntime) retire(d time.Duration) {
	rt.h.draining.Store(true)
	rt.ln.Close()
	rt.drainH2()
	deadline := time.Now().Add(d)
	// Once Serve has returned, every connection handed over is counted in conns.
	select {
	case <-rt.served:
	case <-time.After(d):
	}
	for rt.conns.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // bounded by d
	}
	rt.stop(time.Second)
}

// chanListener is a net.Listener fed by the proxy's own accept loop. A connection handed over before
// Close is always returned by Accept (Accept drains the queue before reporting the close), so a
// retired server serves every connection it was given.
type chanListener struct {
	addr   net.Addr
	conns  chan net.Conn
	mu     sync.Mutex
	closed bool
	done   chan struct{}
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn, 1024), done: make(chan struct{})}
}

// deliver hands conn to the server; false means the listener is closed (or its queue full) and conn
// was not taken.
func (c *chanListener) deliver(conn net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	select {
	case c.conns <- conn:
		return true
	default:
		return false
	}
}

func (c *chanListener) Accept() (net.Conn, error) {
	select {
	case conn := <-c.conns:
		return conn, nil
	case <-c.done:
		select {
		case conn := <-c.conns:
			return conn, nil
		default:
			return nil, net.ErrClosed
		}
	}
}

func (c *chanListener) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.done)
	}
	return nil
}

func (c *chanListener) Addr() net.Addr { return c.addr }

var _ io.Reader = (*prefixConn)(nil)
