package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"

	"canton.dev/canton/internal/proxy/httpsafe"
)

// h1Pool is the HTTP/1.1 client of a cluster for the requests on the proxy's hot path: it writes a
// request and reads its response head on the caller's goroutine, and the caller reads the response
// body straight from the connection. net/http's Transport hands every exchange to a write-loop and a
// read-loop goroutine of the connection and back; on a proxy those hand-offs cost more CPU than the
// proxying itself (docs/performance.md, "Profiling"). The pool takes only requests it can finish
// without a second goroutine (see h1Eligible); everything else goes to the cluster's http.Transport.
//
// Connections are kept per endpoint address, most recently used first, up to maxIdle each, and
// closed after idleTimeout unused (zero: never). A kept connection is checked before reuse (a
// non-blocking peek: the upstream may have closed it while idle); an idempotent request that fails on
// a reused connection before any byte of the response arrived is sent once more on a new connection,
// as net/http does.
type h1Pool struct {
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	tls         *tls.Config // nil: plain text
	timeout     time.Duration
	idleTimeout time.Duration
	maxIdle     int
	maxHeader   int64

	mu      sync.Mutex
	idle    map[string][]*h1Conn // per address, oldest first
	closed  bool
	janitor *time.Timer // closes expired idle connections; armed while any are idle
	armed   bool
}

// h1Conn is one upstream connection. It is owned by one exchange at a time.
type h1Conn struct {
	conn    net.Conn
	peek    *peeker // the liveness check of the TCP socket under conn; nil when not TCP
	br      *bufio.Reader
	bw      *bufio.Writer
	addr    string
	idleAt  time.Time
	reused  bool
	limit   int64 // bytes the response head may still use; < 0: no limit
	exceeds bool
	abort   func() // interrupts the connection's I/O (cancellation), made once per connection
}

// Read reads from the connection within the response head's size budget.
func (c *h1Conn) Read(p []byte) (int, error) {
	if c.limit >= 0 {
		if c.limit == 0 {
			c.exceeds = true
			return 0, errHeadTooLarge
		}
		if int64(len(p)) > c.limit {
			p = p[:c.limit]
		}
	}
	n, err := c.conn.Read(p)
	if c.limit >= 0 {
		c.limit -= int64(n)
	}
	return n, err
}

var errHeadTooLarge = errors.New("upstream response headers exceed the limit")

func newH1Pool(dial func(ctx context.Context, network, addr string) (net.Conn, error), tc *tls.Config, connectTimeout, idleTimeout time.Duration) *h1Pool {
	return &h1Pool{dial: dial, tls: tc, timeout: connectTimeout, idleTimeout: idleTimeout, maxIdle: 256,
		maxHeader: 64 << 10, idle: map[string][]*h1Conn{}}
}

// h1Eligible reports whether the pool can carry r: an HTTP/1.1 exchange whose request body, if any,
// is in memory (GetBody set), without an upgrade or request trailers. A streamed body is written by
// net/http's write loop while the response is read, which full-duplex exchanges and timeouts rely on.
func h1Eligible(r *http.Request) bool {
	if r.Body != nil && r.Body != http.NoBody && r.GetBody == nil {
		return false
	}
	if r.ContentLength < 0 || len(r.Trailer) > 0 || r.Method == http.MethodConnect {
		return false
	}
	_, upgrade := r.Header["Upgrade"]
	return !upgrade
}

// roundTrip sends r (h1Eligible) to r.URL.Host and returns the response; its Body reads from the
// connection, which returns to the pool when the body is read to its end and the exchange allows
// keep-alive. Cancelling r's context aborts the exchange, body reads included.
func (p *h1Pool) roundTrip(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	addr := r.URL.Host
	c, err := p.get(ctx, addr, replayable(r))
	if err != nil {
		return nil, err
	}
	resp, err := p.exchange(ctx, c, r)
	if err != nil && c.reused && err != errCancelled && replayable(r) {
		// The upstream closed a kept connection just as it was reused: once more on a new one.
		if r.GetBody != nil {
			if r.Body, err = r.GetBody(); err != nil {
				return nil, err
			}
		}
		if c, err = p.dialConn(ctx, addr); err != nil {
			return nil, err
		}
		resp, err = p.exchange(ctx, c, r)
	}
	return resp, err
}

// errCancelled is exchange's error when the request's context ended it.
var errCancelled = errors.New("request cancelled")

// staleError marks a failure before any byte of the response arrived on a reused connection.
type staleError struct{ err error }

func (e *staleError) Error() string { return e.err.Error() }
func (e *staleError) Unwrap() error { return e.err }

// exchange writes r on c and reads the response head. On error c is closed.
func (p *h1Pool) exchange(ctx context.Context, c *h1Conn, r *http.Request) (*http.Response, error) {
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, c.abort)
	}
	fail := func(err error) (*http.Response, error) {
		c.conn.Close()
		if stop != nil && !stop() {
			return nil, errCancelled
		}
		return nil, err
	}
	if err := writeRequest(c.bw, r); err != nil {
		if r.Body != nil {
			r.Body.Close()
		}
		return fail(err)
	}
	if r.Body != nil {
		r.Body.Close()
	}
	c.limit = p.maxHeader
	if _, err := c.br.Peek(1); err != nil {
		if c.reused {
			return fail(&staleError{err})
		}
		return fail(err)
	}
	var resp *http.Response
	for {
		var err error
		resp = readSimpleResponse(c.br, r)
		if resp != nil {
			break
		}
		resp, err = http.ReadResponse(c.br, r)
		if err != nil {
			if c.exceeds {
				err = errHeadTooLarge
			}
			return fail(err)
		}
		if resp.StatusCode >= 200 {
			break
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return fail(errors.New("upstream switched protocols without an upgrade request"))
		}
		// 1xx informational (100 Continue, 103 Early Hints): the final response follows.
	}
	c.limit = -1
	keep := !resp.Close && !r.Close && (resp.Body == http.NoBody || resp.ContentLength >= 0 || isChunked(resp.TransferEncoding))
	if resp.Body == http.NoBody {
		if stop != nil && !stop() {
			c.conn.Close()
			return nil, errCancelled
		}
		if keep {
			p.put(c)
		} else {
			c.conn.Close()
		}
		return resp, nil
	}
	resp.Body = &h1Body{rc: resp.Body, c: c, p: p, stop: stop, keep: keep}
	return resp, nil
}

func isChunked(te []string) bool { return len(te) == 1 && te[0] == "chunked" }

// replayable reports whether r may be sent again after a failure on a stale connection: its body can
// be re-read and its method is idempotent (or it carries an idempotency key), net/http's rule.
func replayable(r *http.Request) bool {
	if r.Body != nil && r.Body != http.NoBody && r.GetBody == nil {
		return false
	}
	switch r.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, k1 := r.Header["Idempotency-Key"]
	_, k2 := r.Header["X-Idempotency-Key"]
	return k1 || k2
}

// h1Body is a response body read from its connection. At its end the connection goes back to the
// pool (when keep-alive allows); closed before its end, the connection is closed.
type h1Body struct {
	rc   io.ReadCloser
	c    *h1Conn
	p    *h1Pool
	stop func() bool
	keep bool
	done bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.finish(true)
	} else if err != nil && b.stop != nil && !b.stop() {
		b.finish(false)
		return n, errCancelled
	}
	return n, err
}

func (b *h1Body) Close() error {
	if !b.done {
		b.finish(false)
	}
	return nil
}

// finish releases the connection: to the pool after a complete body, else closed.
func (b *h1Body) finish(complete bool) {
	b.done = true
	cancelled := b.stop != nil && !b.stop()
	if complete && b.keep && !cancelled {
		b.p.put(b.c)
		return
	}
	b.c.conn.Close()
	b.rc.Close() // after the close: a partly read body would otherwise be drained
}

// hostAndMethod returns the host an upstream request names (r.Host, else the URL's) and its method
// (GET when empty); an invalid host is an error.
func hostAndMethod(r *http.Request) (host, method string, err error) {
	host = r.Host
	if host == "" {
		host = r.URL.Host
	}
	if !httpguts.ValidHostHeader(host) {
		return "", "", fmt.Errorf("invalid Host header %q", host)
	}
	method = r.Method
	if method == "" {
		method = http.MethodGet
	}
	return host, method, nil
}

// writeRequest writes r's head and body (h1Eligible) and flushes.
func writeRequest(bw *bufio.Writer, r *http.Request) error {
	host, method, err := hostAndMethod(r)
	if err != nil {
		return err
	}
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	bw.WriteString(method)
	bw.WriteByte(' ')
	bw.WriteString(path)
	if r.URL.RawQuery != "" || r.URL.ForceQuery {
		bw.WriteByte('?')
		bw.WriteString(r.URL.RawQuery)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	for k, vs := range r.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer", "Connection":
			continue
		}
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("invalid header field name %q", k)
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("invalid header field value for %q", k)
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(httpsafe.TrimOWS(v))
			bw.WriteString("\r\n")
		}
	}
	if r.Close {
		bw.WriteString("Connection: close\r\n")
	}
	switch {
	case r.ContentLength > 0:
		var num [20]byte
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(num[:0], r.ContentLength, 10))
		bw.WriteString("\r\n")
	case r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n")
	}
	bw.WriteString("\r\n")
	if r.ContentLength > 0 {
		n, err := io.Copy(bw, io.LimitReader(r.Body, r.ContentLength))
		if err != nil {
			return err
		}
		if n != r.ContentLength {
			return fmt.Errorf("request body: %d of %d bytes", n, r.ContentLength)
		}
	}
	return bw.Flush()
}

var aLongTimeAgo = time.Unix(1, 0)

// h1TrustIdle is how long a kept connection may have been idle and still be reused without the
// liveness peek by a request that can be replayed. Such a request that meets a connection the
// upstream closed in the meantime fails before any response byte and is sent again on a new
// connection (roundTrip), so the peek only saves that retry; skipping it for connections that were
// in use moments ago saves a system call per request under load (docs/performance.md). Requests that
// cannot be replayed (POST with a body...) always peek.
const h1TrustIdle = 50 * time.Millisecond

// get returns a live kept connection to addr, else a new one. replayable: the request may be sent
// again after a failure on a stale connection, so a connection idle for less than h1TrustIdle is
// taken without the liveness check.
func (p *h1Pool) get(ctx context.Context, addr string, replayable bool) (*h1Conn, error) {
	now := time.Now()
	p.mu.Lock()
	for {
		conns := p.idle[addr]
		if len(conns) == 0 {
			break
		}
		c := conns[len(conns)-1]
		conns[len(conns)-1] = nil
		p.idle[addr] = conns[:len(conns)-1]
		if p.idleTimeout > 0 && now.Sub(c.idleAt) >= p.idleTimeout {
			c.conn.Close()
			continue
		}
		p.mu.Unlock()
		if c.peek != nil && !(replayable && now.Sub(c.idleAt) < h1TrustIdle) && !c.peek.idleAlive() {
			c.conn.Close()
			p.mu.Lock()
			continue
		}
		c.reused = true
		return c, nil
	}
	p.mu.Unlock()
	return p.dialConn(ctx, addr)
}

// dialConn opens a new connection to addr (TLS when the pool has a config).
func (p *h1Pool) dialConn(ctx context.Context, addr string) (*h1Conn, error) {
	dctx := ctx
	if p.timeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, p.timeout)
		defer cancel()
	}
	conn, err := p.dial(dctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &h1Conn{addr: addr, limit: -1}
	if sc, ok := underlyingTCP(conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.peek = newPeeker(raw)
		}
	}
	if p.tls != nil {
		cfg := p.tls
		if cfg.ServerName == "" {
			// As net/http: the SNI and the name verified are the address's host.
			host, _, _ := net.SplitHostPort(addr)
			cfg = cfg.Clone()
			cfg.ServerName = host
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(dctx); err != nil {
			conn.Close()
			// A failed handshake is a failed connection attempt (Envoy: UF, "TLS error").
			return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: conn.RemoteAddr(), Err: err}
		}
		conn = tc
	}
	c.conn = conn
	c.abort = func() { _ = conn.SetDeadline(aLongTimeAgo) }
	c.br = bufio.NewReaderSize(c, 4<<10)
	c.bw = bufio.NewWriterSize(conn, 4<<10)
	return c, nil
}

// underlyingTCP finds the *net.TCPConn under the cluster's connection wrapper.
func underlyingTCP(c net.Conn) (*net.TCPConn, bool) {
	switch v := c.(type) {
	case *net.TCPConn:
		return v, true
	case *countedConn:
		return v.Conn.TCPConn, true
	}
	return nil, false
}

// put keeps c for reuse, or closes it when the pool is closed or full.
func (p *h1Pool) put(c *h1Conn) {
	c.idleAt = time.Now()
	p.mu.Lock()
	conns := p.idle[c.addr]
	if p.closed || len(conns) >= p.maxIdle || c.br.Buffered() > 0 {
		p.mu.Unlock()
		c.conn.Close()
		return
	}
	p.idle[c.addr] = append(conns, c)
	if p.idleTimeout > 0 && !p.armed {
		p.armed = true
		if p.janitor == nil {
			p.janitor = time.AfterFunc(p.idleTimeout, p.sweep)
		} else {
			p.janitor.Reset(p.idleTimeout)
		}
	}
	p.mu.Unlock()
}

// sweep closes the connections idle for idleTimeout and re-arms for the next one to expire.
func (p *h1Pool) sweep() {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	var next time.Time
	for addr, conns := range p.idle {
		keep := conns[:0]
		for _, c := range conns {
			if now.Sub(c.idleAt) >= p.idleTimeout {
				c.conn.Close()
				continue
			}
			keep = append(keep, c)
			if at := c.idleAt.Add(p.idleTimeout); next.IsZero() || at.Before(next) {
				next = at
			}
		}
		clear(conns[len(keep):])
		if len(keep) == 0 {
			delete(p.idle, addr)
		} else {
			p.idle[addr] = keep
		}
	}
	p.armed = !next.IsZero() && !p.closed
	if p.armed {
		p.janitor.Reset(next.Sub(now))
	}
}

// closeIdle closes every kept connection; with final set, connections returned later are closed too.
func (p *h1Pool) closeIdle(final bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if final {
		p.closed = true
	}
	for addr, conns := range p.idle {
		for _, c := range conns {
			c.conn.Close()
		}
		delete(p.idle, addr)
	}
}

// readSimpleResponse parses the response head already buffered in br when it is the common case:
// HTTP/1.1, a final status other than 204 and 304, a single Content-Length, no Transfer-Encoding,
// to a request other than HEAD, clean header lines. Keys and values are substrings of one string and
// the body reads br directly, which saves most of http.ReadResponse's allocations. Anything else
// returns nil with nothing consumed, and http.ReadResponse reads the head instead.
func readSimpleResponse(br *bufio.Reader, r *http.Request) *http.Response {
	if r.Method == http.MethodHead {
		return nil
	}
	buf, _ := br.Peek(br.Buffered())
	end := bytes.Index(buf, crlf2)
	if end < 0 {
		return nil
	}
	head := buf[:end+4]
	for i := 0; i < len(head); i++ { // CR only before LF, LF only after CR, no other control bytes
		switch b := head[i]; {
		case b == '\r':
			if head[i+1] != '\n' {
				return nil
			}
			i++
		case b == '\n', b == 0x7f, b < 0x20 && b != '\t':
			return nil
		}
	}
	if len(head) < len("HTTP/1.1 200\r\n\r\n") || string(head[:9]) != "HTTP/1.1 " {
		return nil
	}
	code := 0
	for _, b := range head[9:12] {
		if b < '0' || b > '9' {
			return nil
		}
		code = code*10 + int(b-'0')
	}
	if code < 200 || code == http.StatusNoContent || code == http.StatusNotModified || (head[12] != ' ' && head[12] != '\r') {
		return nil
	}
	s := string(head)
	line, rest, _ := strings.Cut(s, "\r\n")
	n := strings.Count(rest, "\r\n") - 1
	h := make(http.Header, n)
	vals := make([]string, 0, n)
	cl := int64(-1)
	closing := false
	for {
		var l string
		l, rest, _ = strings.Cut(rest, "\r\n")
		if l == "" {
			break
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok || name == "" || !httpguts.ValidHeaderFieldName(name) {
			return nil // also obsolete line folding
		}
		value = httpsafe.TrimOWS(value)
		key := http.CanonicalHeaderKey(name)
		switch key {
		case "Content-Length":
			if cl >= 0 {
				return nil
			}
			v, err := strconv.ParseInt(value, 10, 64)
			if err != nil || v < 0 || value[0] == '+' {
				return nil
			}
			cl = v
		case "Transfer-Encoding", "Trailer":
			return nil
		case "Connection":
			closing = closing || httpsafe.HasToken(value, "close")
		}
		vals = append(vals, value)
		if vs, ok := h[key]; ok {
			h[key] = append(vs, value)
		} else {
			h[key] = vals[len(vals)-1 : len(vals) : len(vals)]
		}
	}
	if cl < 0 {
		return nil // close-delimited: http.ReadResponse
	}
	if closing {
		delete(h, "Connection") // as http.ReadResponse does
	}
	_, _ = br.Discard(len(head))
	resp := &http.Response{Status: strings.TrimPrefix(line, "HTTP/1.1 "), StatusCode: code, Proto: "HTTP/1.1",
		ProtoMajor: 1, ProtoMinor: 1, Header: h, ContentLength: cl, Close: closing, Request: r, Body: http.NoBody}
	if cl > 0 {
		resp.Body = &lengthBody{br: br, remain: cl}
	}
	return resp
}

var crlf2 = []byte("\r\n\r\n")

// lengthBody is a Content-Length response body read from the connection's buffer.
type lengthBody struct {
	br     *bufio.Reader
	remain int64
}

func (b *lengthBody) Read(p []byte) (int, error) {
	if b.remain <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.remain {
		p = p[:b.remain]
	}
	n, err := b.br.Read(p)
	b.remain -= int64(n)
	switch {
	case err == io.EOF:
		return n, io.ErrUnexpectedEOF
	case err == nil && b.remain == 0:
		return n, io.EOF
	}
	return n, err
}

func (b *lengthBody) Close() error { return nil }
