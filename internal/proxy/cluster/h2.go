package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Pool is the HTTP/2 client of a cluster (h2c with prior knowledge, or TLS with ALPN "h2"). It
// replaces net/http's HTTP/2 transport, which writes every request from a goroutine of its own and
// flushes after each frame (docs/performance.md, "HTTP/2 through one proxy"): here the request's own
// goroutine writes its frames under the connection's write lock into a buffer flushed once per step,
// so that a unary gRPC call or a small POST leaves in one write system call, and one reader goroutine
// per connection dispatches the frames it reads to the streams.
//
// Connections are kept per endpoint address. A request takes a stream on the first connection with
// room under the upstream's MAX_CONCURRENT_STREAMS, else dials another one; while a new connection
// waits for the upstream's SETTINGS, its first request goes ahead and the others wait for them
// rather than dial more. A connection without streams is closed after idleTimeout (zero: never).
// A request the upstream did not process (REFUSED_STREAM, or above a GOAWAY's last stream) is sent
// once more, on another connection, when its body can be re-read.
type h2Pool struct {
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	tls         *tls.Config // nil: h2c with prior knowledge; else NextProtos includes "h2"
	timeout     time.Duration
	idleTimeout time.Duration
	// writeTimeout bounds one write to an upstream (h2WriteTimeout; tests shorten it): one that
	// stops reading fails its connection instead of holding the write lock, and so every stream's
	// writes, resets and window updates on it, for ever.
	writeTimeout time.Duration

	mu      sync.Mutex
	conns   map[string][]*h2Conn // per address, oldest first
	closed  bool                 // connections close when their last stream ends
	janitor *time.Timer          // closes expired idle connections; armed while any are idle
	armed   bool
}

// Flow-control windows the pool advertises, and the header list size it accepts. A stream buffers
// at most h2StreamWindow bytes its reader has not read, a connection at most h2ConnWindow; credit
// goes back in batches of half a stream window and a quarter of the connection window.
const (
	h2StreamWindow  = 4 << 20
	h2ConnWindow    = 16 << 20
	h2MaxHeaderList = 64 << 10
	h2MaxStreamID   = 1<<31 - 1
	h2WriteTimeout  = 30 * time.Second
	// h2DefaultMaxStreams is the stream limit of a connection whose upstream sets none.
	h2DefaultMaxStreams = 1000
)

func newH2Pool(dial func(ctx context.Context, network, addr string) (net.Conn, error), tc *tls.Config, connectTimeout, idleTimeout time.Duration) *h2Pool {
	if tc != nil && !slices.Contains(tc.NextProtos, "h2") {
		tc = tc.Clone()
		tc.NextProtos = append([]string{"h2"}, tc.NextProtos...)
	}
	return &h2Pool{dial: dial, tls: tc, timeout: connectTimeout, idleTimeout: idleTimeout, writeTimeout: h2WriteTimeout,
		conns: map[string][]*h2Conn{}}
}

// h2Conn is one upstream HTTP/2 connection.
type h2Conn struct {
	p     *h2Pool
	addr  string
	conn  net.Conn      // set once connected
	ready chan struct{} // closed when the upstream's SETTINGS arrived or the connection failed
	once  sync.Once     // closes ready
	fr    *http2.Framer // read by the reader goroutine, written under wmu

	// wmu serializes writes: the frames of one logical step go into bw and are flushed together.
	wmu     sync.Mutex
	bw      *bufio.Writer
	henc    *hpack.Encoder
	hbuf    bytes.Buffer
	preface bool      // the client preface and SETTINGS are in bw
	wdlSet  time.Time // when the write deadline was last pushed forward

	// mu guards the connection's and its streams' state.
	mu          sync.Mutex
	streams     map[uint32]*h2Stream
	active      int    // streams open or reserved by get
	nextID      uint32 // the next stream's ID
	settled     bool   // the upstream's SETTINGS arrived
	maxStreams  uint32 // the upstream's MAX_CONCURRENT_STREAMS
	initWin     int64  // the upstream's INITIAL_WINDOW_SIZE
	maxFrame    uint32 // the upstream's MAX_FRAME_SIZE
	maxHeaders  uint32 // the upstream's MAX_HEADER_LIST_SIZE; 0: no limit
	sendWin     int64  // connection send window
	recvWin     int64  // bytes the upstream may still send on the connection
	recvUnacked int64  // bytes read (or discarded) and not yet credited back
	goAway      bool   // no new streams
	err         error  // the connection failed: no new streams, and the open ones failed
	dialErr     error  // the connection could not be established
	flow        chan struct{}
	idleAt      time.Time
}

// roundTrip sends r (URL.Host is the endpoint address) and returns the response once its HEADERS
// arrived; the body streams on. A request the upstream did not process is sent once more on another
// connection when its body can be re-read.
func (p *h2Pool) roundTrip(r *http.Request) (*http.Response, error) {
	if _, upgrade := r.Header["Upgrade"]; upgrade {
		// An upgrade (WebSocket) would need extended CONNECT (RFC 8441) upstream; sending it as a
		// plain request would answer the client's handshake with an ordinary response.
		closeReqBody(r)
		return nil, fmt.Errorf("upstream %s: an upgrade (%s) cannot be carried over HTTP/2", r.URL.Host, r.Header.Get("Upgrade"))
	}
	ctx := r.Context()
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			closeReqBody(r)
			return nil, ctxError(ctx)
		}
		c, err := p.get(ctx, r.URL.Host)
		if err != nil {
			closeReqBody(r)
			return nil, err
		}
		resp, err := c.roundTrip(r)
		var ue *unprocessedError
		if err == nil || attempt > 0 || !errors.As(err, &ue) || !bodyReplayable(r) {
			return resp, err
		}
		if r.GetBody != nil {
			if r.Body, err = r.GetBody(); err != nil {
				return nil, err
			}
		}
	}
}

// bodyReplayable reports whether r's body can be sent again: none, or GetBody re-reads it. A request
// the upstream did not process may be sent again whatever its method.
func bodyReplayable(r *http.Request) bool {
	return r.Body == nil || r.Body == http.NoBody || r.GetBody != nil || r.ContentLength == 0
}

func closeReqBody(r *http.Request) {
	if r.Body != nil {
		r.Body.Close()
	}
}

// unprocessedError marks a request the upstream did not process (it may be sent again).
type unprocessedError struct{ err error }

func (e *unprocessedError) Error() string { return e.err.Error() }
func (e *unprocessedError) Unwrap() error { return e.err }

// resetError is a stream the upstream reset.
type resetError struct {
	addr string
	id   uint32
	code http2.ErrCode
}

func (e *resetError) Error() string {
	return fmt.Sprintf("upstream %s reset http2 stream %d: %v", e.addr, e.id, e.code)
}

// ctxError is the error of a request whose context ended: ctx.Err() and, when it differs, its cause.
func ctxError(ctx context.Context) error {
	err, cause := ctx.Err(), context.Cause(ctx)
	if cause == nil || cause == err {
		return fmt.Errorf("upstream http2 request: %w", err)
	}
	return fmt.Errorf("upstream http2 request: %w (%w)", err, cause)
}

// get returns a connection to addr with a stream reserved for the caller (c.active counts it).
func (p *h2Pool) get(ctx context.Context, addr string) (*h2Conn, error) {
	for {
		p.mu.Lock()
		var pending *h2Conn
		for _, c := range p.conns[addr] {
			ok, waiting := c.reserve()
			if ok {
				p.mu.Unlock()
				return c, nil
			}
			if waiting {
				pending = c
			}
		}
		if pending == nil {
			c := &h2Conn{p: p, addr: addr, ready: make(chan struct{}), active: 1, nextID: 1, maxStreams: 1,
				initWin: 65535, maxFrame: 16384, sendWin: 65535, recvWin: h2ConnWindow, flow: make(chan struct{}),
				streams: map[uint32]*h2Stream{}}
			p.conns[addr] = append(p.conns[addr], c)
			p.mu.Unlock()
			if err := c.connect(ctx); err != nil {
				if ctx.Err() != nil {
					err = ctxError(ctx)
				}
				c.mu.Lock()
				c.dialErr, c.err = err, err
				c.mu.Unlock()
				c.once.Do(func() { close(c.ready) })
				p.remove(c)
				return nil, err
			}
			return c, nil
		}
		p.mu.Unlock()
		select {
		case <-pending.ready:
		case <-ctx.Done():
			return nil, ctxError(ctx)
		}
		pending.mu.Lock()
		err := pending.dialErr
		pending.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
}

// reserve takes a stream on c if it has room. waiting: c is new and waits for the upstream's
// SETTINGS, after which it may have room.
func (c *h2Conn) reserve() (ok, waiting bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.err != nil || c.goAway || c.nextID+2*uint32(c.active) > h2MaxStreamID:
		return false, false
	case !c.settled:
		return false, true
	case uint32(c.active) >= c.maxStreams:
		return false, false
	}
	c.active++
	return true, false
}

// release gives back a stream reserved by get; a connection left without streams is closed when the
// upstream sent GOAWAY or the pool is closed, else it becomes idle.
func (c *h2Conn) release() {
	c.mu.Lock()
	c.active--
	idle := c.active == 0
	if idle {
		c.idleAt = time.Now()
	}
	closing := idle && (c.goAway || c.err != nil)
	c.mu.Unlock()
	if closing {
		c.close(errors.New("no more streams after GOAWAY"))
		return
	}
	if idle {
		c.p.idle(c)
	}
}

// connect dials c (TLS with ALPN h2, or plain text) within the pool's connect timeout and starts
// its reader.
func (c *h2Conn) connect(ctx context.Context) error {
	p := c.p
	dctx := ctx
	if p.timeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, p.timeout)
		defer cancel()
	}
	conn, err := p.dial(dctx, "tcp", c.addr)
	if err != nil {
		return err
	}
	if p.tls != nil {
		cfg := p.tls
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(c.addr)
			cfg = cfg.Clone()
			cfg.ServerName = host
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(dctx); err != nil {
			conn.Close()
			return &net.OpError{Op: "dial", Net: "tcp", Addr: conn.RemoteAddr(), Err: fmt.Errorf("TLS handshake offering ALPN h2: %w", err)}
		}
		if proto := tc.ConnectionState().NegotiatedProtocol; proto != "h2" {
			tc.Close()
			return &net.OpError{Op: "dial", Net: "tcp", Addr: conn.RemoteAddr(),
				Err: fmt.Errorf("TLS ALPN negotiated %q, not h2: the upstream does not serve HTTP/2 over TLS (remove http2_protocol_options from the cluster, or enable HTTP/2 upstream)", proto)}
		}
		conn = tc
	}
	c.conn = conn
	c.bw = bufio.NewWriterSize(deadlineWriter{c}, 16<<10)
	c.fr = http2.NewFramer(c.bw, bufio.NewReaderSize(conn, 16<<10))
	c.fr.SetReuseFrames() // a DATA frame is handled (its bytes copied) before the next read
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = h2MaxHeaderList
	c.henc = hpack.NewEncoder(&c.hbuf)
	go c.readLoop()
	return nil
}

// writePreface puts the client preface and SETTINGS in bw if they are not there yet (wmu held).
func (c *h2Conn) writePreface() {
	if c.preface {
		return
	}
	c.preface = true
	c.bw.WriteString(http2.ClientPreface)
	c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2StreamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: h2MaxHeaderList})
	c.fr.WriteWindowUpdate(0, h2ConnWindow-65535)
}

// flush writes bw out (wmu held, c.mu not). A failed write breaks the connection: the reader fails
// its streams with the write's error.
func (c *h2Conn) flush() error {
	if err := c.bw.Flush(); err != nil {
		err = fmt.Errorf("writing to upstream %s: %w", c.addr, err)
		c.mu.Lock()
		if c.err == nil {
			c.err = err
		}
		c.mu.Unlock()
		c.conn.Close()
		return err
	}
	return nil
}

// deadlineWriter writes to the connection within the pool's write timeout (wmu held: bw is its only
// user). The deadline is pushed forward at most every 1/30 of the timeout, so a write may get up to
// that much less time.
type deadlineWriter struct{ c *h2Conn }

func (w deadlineWriter) Write(p []byte) (int, error) {
	c := w.c
	if d := c.p.writeTimeout; d > 0 {
		if now := time.Now(); now.Sub(c.wdlSet) > d/30 {
			c.wdlSet = now
			_ = c.conn.SetWriteDeadline(now.Add(d))
		}
	}
	return c.conn.Write(p)
}

// signalFlow wakes the writers waiting for send window (c.mu held).
func (c *h2Conn) signalFlow() {
	close(c.flow)
	c.flow = make(chan struct{})
}

// writeRST resets stream id.
func (c *h2Conn) writeRST(id uint32, code http2.ErrCode) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.writePreface()
	c.fr.WriteRSTStream(id, code)
	_ = c.flush()
}

// writeWindowUpdates returns receive credit: stream sid (when sinc > 0) and the connection (cinc),
// in one write.
func (c *h2Conn) writeWindowUpdates(sid uint32, sinc, cinc int64) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if sinc > 0 {
		c.fr.WriteWindowUpdate(sid, uint32(sinc))
	}
	if cinc > 0 {
		c.fr.WriteWindowUpdate(0, uint32(cinc))
	}
	_ = c.flush()
}

// creditConn counts n bytes read or discarded and returns the connection credit to send now, if any
// (c.mu held).
func (c *h2Conn) creditConn(n int64) int64 {
	c.recvUnacked += n
	if c.recvUnacked < h2ConnWindow/4 {
		return 0
	}
	inc := c.recvUnacked
	c.recvUnacked = 0
	c.recvWin += inc
	return inc
}

// close fails c with err (if it has not failed yet) and closes its socket.
func (c *h2Conn) close(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	if c.conn != nil {
		c.conn.Close()
	}
}

// remove takes c out of the pool.
func (p *h2Pool) remove(c *h2Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	conns := p.conns[c.addr]
	if i := slices.Index(conns, c); i >= 0 {
		conns = slices.Delete(conns, i, i+1)
	}
	if len(conns) == 0 {
		delete(p.conns, c.addr)
	} else {
		p.conns[c.addr] = conns
	}
}

// idle notes that c has no streams: it is closed now when the pool is closed, else by the janitor
// after idleTimeout.
func (p *h2Pool) idle(c *h2Conn) {
	p.mu.Lock()
	closed := p.closed
	if !closed && p.idleTimeout > 0 && !p.armed {
		p.armed = true
		if p.janitor == nil {
			p.janitor = time.AfterFunc(p.idleTimeout, p.sweep)
		} else {
			p.janitor.Reset(p.idleTimeout)
		}
	}
	p.mu.Unlock()
	if closed {
		c.closeIfIdle(time.Time{})
	}
}

// closeIfIdle closes c if it has no streams and has had none since before (zero: any time); it
// reports whether c is still idle and open, and when it became idle.
func (c *h2Conn) closeIfIdle(before time.Time) (open bool, idleAt time.Time) {
	c.mu.Lock()
	if c.active > 0 || c.err != nil {
		c.mu.Unlock()
		return false, time.Time{}
	}
	if !before.IsZero() && c.idleAt.After(before) {
		c.mu.Unlock()
		return true, c.idleAt
	}
	c.err = errors.New("idle connection closed")
	c.mu.Unlock()
	c.conn.Close()
	return false, time.Time{}
}

// sweep closes the connections idle for idleTimeout and re-arms for the next one to expire.
func (p *h2Pool) sweep() {
	now := time.Now()
	p.mu.Lock()
	var all []*h2Conn
	for _, conns := range p.conns {
		all = append(all, conns...)
	}
	p.mu.Unlock()
	var next time.Time
	for _, c := range all {
		if open, at := c.closeIfIdle(now.Add(-p.idleTimeout)); open {
			if at = at.Add(p.idleTimeout); next.IsZero() || at.Before(next) {
				next = at
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = !next.IsZero() && !p.closed
	if p.armed {
		p.janitor.Reset(max(next.Sub(now), time.Millisecond))
	}
}

// closeIdle closes the connections without streams; with final set, the others close when their last
// stream ends.
func (p *h2Pool) closeIdle(final bool) {
	p.mu.Lock()
	if final {
		p.closed = true
	}
	var all []*h2Conn
	for _, conns := range p.conns {
		all = append(all, conns...)
	}
	p.mu.Unlock()
	for _, c := range all {
		c.closeIfIdle(time.Time{})
	}
}
