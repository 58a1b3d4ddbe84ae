package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"canton.dev/canton/internal/proxy/httpsafe"
)

// The fast HTTP/1.1 path. A downstream HTTP/1.1 connection (plain text, or TLS without ALPN h2) is
// served on the goroutine that accepted it: it reads a request head into a per-connection buffer,
// parses it without copying (one string per head, see parseH1Head), runs the filter chain's handler
// and writes the response with one buffered write. net/http's server runs a background read per
// request, resets read deadlines three times per request and allocates its header maps, response
// writer and buffers per request; this path does none of that (docs/performance.md).
//
// It serves only requests it fully understands (parseH1Head: HTTP/1.1, origin form, no body or a
// Content-Length body, no Expect, Upgrade or Transfer-Encoding, a head of at most h1BufSize bytes).
// At the first request it does not, it hands the connection, with the bytes it has buffered, to the
// filter chain's net/http server behind httpsafe.Guard, which then serves the rest of the connection
// exactly as before: upgrades (WebSocket), chunked request bodies and trailers, 100-continue,
// HTTP/1.0, oversized heads (431) and every malformed request (400) all take that path. The HTTP/2
// preface (h2c prior knowledge) goes to the proxy's HTTP/2 server instead (h2server.go).
//
// Known difference: a client that closes its connection while its request waits for the upstream is
// noticed when the response is written, not at once (net/http's background read would cancel the
// request); the route timeout still bounds the wait.

const (
	h1BufSize      = 4 << 10   // read buffer: the largest head the fast path takes
	h1PendSize     = 2 << 10   // response bytes held back to send a Content-Length instead of chunks
	h1MaxPostDrain = 256 << 10 // unread request body discarded to keep the connection (net/http's)
)

const (
	h1Active int32 = iota
	h1Idle
	h1Closed
)

// h1Conn is one downstream HTTP/1.1 connection on the fast path.
type h1Conn struct {
	rt     *hcmRuntime
	l      *runningListener
	chain  *chainSpec
	hello  *tls.ClientHelloInfo
	conn   net.Conn
	tls    *tls.ConnectionState
	ctx    context.Context
	remote string
	state  atomic.Int32

	rbuf       []byte // rbuf[rpos:rend] is read and not consumed
	rpos, rend int
	bw         *bufio.Writer
	num        [20]byte // scratch for formatting numbers (a local array would escape through bw)

	req  *http.Request // the connection's request, reused: it carries ctx, set once
	url  url.URL
	hdr  http.Header
	vals []string
	body h1Body
	w    h1Writer

	h2pre []byte // the start of an HTTP/2 connection (the preface) the fast path found
}

var h1Pool = sync.Pool{New: func() any {
	c := &h1Conn{rbuf: make([]byte, h1BufSize), hdr: make(http.Header, 16), vals: make([]string, 0, 32)}
	c.bw = bufio.NewWriterSize(nil, 4<<10)
	c.w = h1Writer{c: c, hdr: make(http.Header, 16), pend: make([]byte, 0, h1PendSize)}
	c.body.c = c
	return c
}}

// serveH1 serves c, an HTTP/1.1 (or h2c prior-knowledge, handed over) connection of chain behind
// httpsafe.Guard, on the calling goroutine. cs is the TLS state when the proxy did a handshake. The
// guard checks every byte read, so a read with a violation anywhere in it is refused as a whole,
// before any request in it is served, on this path as on net/http's.
func (l *runningListener) serveH1(c net.Conn, cs *tls.ConnectionState, chain *chainSpec, hello *tls.ClientHelloInfo) {
	hc := h1Pool.Get().(*h1Conn)
	var rt *hcmRuntime
	for range 3 {
		if rt = l.hcmRuntime(chain); rt != nil && rt.addH1(hc) {
			break
		}
		rt = nil
		if next := selectChain(l.current(), c, hello); next != nil && next.hcm != nil {
			chain = next
		}
	}
	if rt == nil {
		h1Pool.Put(hc)
		l.p.log.Warn("connection dropped: no server for its filter chain", "listener", l.name)
		c.Close()
		return
	}
	hc.rt, hc.l, hc.chain, hc.hello, hc.conn, hc.tls = rt, l, chain, hello, c, cs
	hc.remote = c.RemoteAddr().String()
	hc.state.Store(h1Active)
	ci := &connInfo{listener: l, chain: chain, conn: c, inbound: l.current().inbound, tls: cs}
	// Not cancellable: the contexts of the request's timeouts then need no registration with it.
	hc.ctx = context.WithValue(context.WithValue(context.WithValue(context.Background(),
		http.ServerContextKey, rt.srv), http.LocalAddrContextKey, c.LocalAddr()), connInfoKey{}, ci)
	hc.req = new(http.Request).WithContext(hc.ctx)
	hc.bw.Reset(c)
	handedOver := hc.serve()
	rt.removeH1(hc)
	h2pre := hc.h2pre
	if !handedOver {
		c.Close()
	}
	hc.release()
	if h2pre != nil {
		l.serveH2(c, cs, chain, hello, h2pre) // the HTTP/2 preface: prior knowledge
	}
}

// release returns hc to the pool without references to its connection or last request.
func (hc *h1Conn) release() {
	hc.bw.Reset(nil)
	clear(hc.hdr)
	clear(hc.vals[:cap(hc.vals)])
	hc.vals = hc.vals[:0]
	clear(hc.w.hdr)
	hc.rt, hc.l, hc.chain, hc.hello, hc.conn, hc.tls, hc.ctx, hc.req, hc.h2pre = nil, nil, nil, nil, nil, nil, nil, nil, nil
	hc.rpos, hc.rend = 0, 0
	hc.url = url.URL{}
	hc.w.req = nil
	h1Pool.Put(hc)
}

// serve runs the request loop; it reports whether the connection went to net/http.
func (hc *h1Conn) serve() (handedOver bool) {
	h := hc.rt.h.hcm
	if d := h.headersTimeout; d > 0 {
		_ = hc.conn.SetReadDeadline(time.Now().Add(d))
	}
	for {
		n, res := hc.readHead()
		switch res {
		case headClose:
			return false
		case headFallback:
			hc.handOver()
			return true
		}
		if !hc.state.CompareAndSwap(h1Idle, h1Active) && hc.state.Load() != h1Active {
			return false // closed by a shutdown while idle
		}
		clear(hc.hdr)
		hd, vals, ok := parseH1Head(string(hc.rbuf[hc.rpos:hc.rpos+n]), hc.hdr, hc.vals[:0])
		hc.vals = vals[:0]
		if !ok {
			hc.handOver()
			return true
		}
		hc.url = url.URL{Path: hd.path, RawQuery: hd.query}
		if hd.escaped {
			u, err := url.ParseRequestURI(hd.target)
			if err != nil {
				hc.handOver() // net/http answers the bad escape
				return true
			}
			hc.url = *u
		}
		hc.rpos += n
		r := hc.req
		resetRequest(r)
		r.Method, r.URL, r.Proto, r.ProtoMajor, r.ProtoMinor = hd.method, &hc.url, "HTTP/1.1", 1, 1
		r.Header, r.Body, r.ContentLength, r.Close, r.Host = hc.hdr, http.NoBody, hd.cl, hd.close, hd.host
		r.RemoteAddr, r.RequestURI, r.TLS = hc.remote, hd.target, hc.tls
		hc.body.remain, hc.body.closed, hc.body.broken = hd.cl, false, false
		if hd.cl > 0 {
			r.Body = &hc.body
			_ = hc.conn.SetReadDeadline(time.Time{}) // body reads have no deadline (net/http's ReadTimeout 0)
		}
		hc.w.reset(r, hd.close || hc.rt.shuttingDown())
		if !hc.handle(r) {
			return false // the handler aborted the response: close without finishing it
		}
		if !hc.w.finish() || hc.body.broken {
			return false
		}
		if hc.body.remain > 0 {
			if hc.body.remain > h1MaxPostDrain {
				return false
			}
			if _, err := io.Copy(io.Discard, io.LimitReader(readerFunc(hc.readBody), hc.body.remain)); err != nil {
				return false
			}
		}
		if hc.w.closeAfter {
			return false
		}
		hc.w.req = nil
		hc.state.Store(h1Idle)
		if hc.rt.shuttingDown() {
			return false
		}
		if d := h.idleTimeout; d > 0 {
			_ = hc.conn.SetReadDeadline(time.Now().Add(d))
		} else {
			_ = hc.conn.SetReadDeadline(time.Time{})
		}
	}
}

// resetRequest clears every exported field of r, keeping its context (which only WithContext can set:
// reusing the request saves that copy per request). Nothing keeps a request past its handler: the
// filter chain gets its own copy (hcmHandler.ServeHTTP) and the upstream request is a new one.
func resetRequest(r *http.Request) {
	r.Method, r.URL, r.Proto, r.ProtoMajor, r.ProtoMinor = "", nil, "", 0, 0
	r.Header, r.Body, r.GetBody, r.ContentLength, r.TransferEncoding = nil, nil, nil, 0, nil
	r.Close, r.Host, r.Form, r.PostForm, r.MultipartForm, r.Trailer = false, "", nil, nil, nil, nil
	r.RemoteAddr, r.RequestURI, r.TLS, r.Cancel, r.Response, r.Pattern = "", "", nil, nil, nil, ""
}

// handle runs the handler; false means it panicked (http.ErrAbortHandler or a bug).
func (hc *h1Conn) handle(r *http.Request) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				hc.rt.h.p.log.Debug("http handler panicked", "panic", v, "remote", hc.remote)
			}
			ok = false
		}
	}()
	hc.rt.h.ServeHTTP(&hc.w, r)
	return true
}

type headResult uint8

const (
	headOK headResult = iota
	headClose
	headFallback
)

// readHead reads until rbuf[rpos:] holds a complete head and returns its length. It leaves the
// connection to net/http (headFallback) at a bare LF, a head larger than the buffer, a read error
// after part of a head, or the HTTP/2 preface; headClose: the connection is done.
func (hc *h1Conn) readHead() (int, headResult) {
	scan := hc.rpos
	armed := hc.state.Load() == h1Active // the first request: its headers timeout runs since accept
	for {
		for scan < hc.rend {
			i := indexByte(hc.rbuf[scan:hc.rend], '\n')
			if i < 0 {
				scan = hc.rend
				break
			}
			at := scan + i
			if at == hc.rpos || hc.rbuf[at-1] != '\r' {
				return 0, headFallback // bare LF, or a leading empty line
			}
			if at-hc.rpos >= 3 && hc.rbuf[at-2] == '\n' && hc.rbuf[at-3] == '\r' {
				return at + 1 - hc.rpos, headOK
			}
			scan = at + 1
		}
		if hc.rend == len(hc.rbuf) {
			if hc.rpos == 0 {
				return 0, headFallback // a head larger than the buffer: net/http applies its limit
			}
			n := copy(hc.rbuf, hc.rbuf[hc.rpos:hc.rend])
			scan -= hc.rpos
			hc.rpos, hc.rend = 0, n
		}
		if !armed && hc.rend > hc.rpos {
			// A head split across reads: the headers timeout runs from its first bytes.
			armed = true
			if d := hc.rt.h.hcm.headersTimeout; d > 0 {
				_ = hc.conn.SetReadDeadline(time.Now().Add(d))
			}
		}
		n, err := hc.conn.Read(hc.rbuf[hc.rend:])
		hc.rend += n
		if err != nil {
			if hc.rend > hc.rpos && bytesHasCRLF2(hc.rbuf[scan:hc.rend]) {
				continue // the head is complete: serve it, the error comes again at the next read
			}
			var ne net.Error
			if errors.Is(err, httpsafe.ErrRequest) {
				return 0, headFallback // net/http reads the guard's refusal and answers 400
			}
			if hc.rend == hc.rpos || errors.As(err, &ne) && ne.Timeout() {
				return 0, headClose // idle close, or a timeout: net/http does not answer either
			}
			return 0, headFallback // net/http reads the same error after the bytes so far
		}
	}
}

// bytesHasCRLF2 reports whether b may end a head (has a LF); readHead checks it exactly.
func bytesHasCRLF2(b []byte) bool { return indexByte(b, '\n') >= 0 }

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// handOver gives the connection, with the bytes read and not consumed, to the chain's net/http
// server behind the strictness guard, as serveConn does with connections it does not serve itself;
// an HTTP/2 connection (the preface) goes to the HTTP/2 server once serveH1 has let go of it.
func (hc *h1Conn) handOver() {
	_ = hc.conn.SetReadDeadline(time.Time{})
	// The guard under hc.conn has seen these bytes: the next server gets them before the guarded stream.
	rest := hc.rbuf[hc.rpos:hc.rend]
	if isH2Preface(rest) {
		hc.h2pre = append([]byte(nil), rest...)
		return
	}
	var c net.Conn = &prefixConn{Conn: hc.conn, prefix: append([]byte(nil), rest...)}
	if hc.tls != nil {
		c = &guardedTLS{Conn: c, state: hc.tls}
	}
	hc.l.deliverHTTP(c, hc.chain, hc.hello)
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) { return f(b) }

// readBody reads request body bytes: buffered ones first, then from the connection.
func (hc *h1Conn) readBody(b []byte) (int, error) {
	if hc.rpos < hc.rend {
		n := copy(b, hc.rbuf[hc.rpos:hc.rend])
		hc.rpos += n
		if hc.rpos == hc.rend {
			hc.rpos, hc.rend = 0, 0
		}
		return n, nil
	}
	hc.rpos, hc.rend = 0, 0
	return hc.conn.Read(b)
}

// h1Body is a Content-Length request body read from the connection.
type h1Body struct {
	c      *h1Conn
	remain int64
	closed bool
	broken bool // a read failed: the connection cannot carry another request
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.remain <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.remain {
		p = p[:b.remain]
	}
	n, err := b.c.readBody(p)
	b.remain -= int64(n)
	switch {
	case err == io.EOF && b.remain > 0:
		b.broken = true
		return n, io.ErrUnexpectedEOF
	case err != nil:
		b.broken = true
		return n, err
	case b.remain == 0:
		return n, io.EOF
	}
	return n, nil
}

func (b *h1Body) Close() error {
	b.closed = true
	return nil
}

// h1Writer is the http.ResponseWriter of the fast path. It holds back up to h1PendSize bytes of body
// so that a response the handler finishes in that much gets a Content-Length; longer ones without
// a Content-Length are chunked, as net/http does.
type h1Writer struct {
	c           *h1Conn
	req         *http.Request
	hdr         http.Header
	status      int
	wroteHeader bool
	headSent    bool
	chunked     bool
	noBody      bool // HEAD, or a status without body
	cl          int64
	written     int64
	pend        []byte
	closeAfter  bool
	err         error
}

func (w *h1Writer) reset(r *http.Request, closeAfter bool) {
	clear(w.hdr)
	*w = h1Writer{c: w.c, req: r, hdr: w.hdr, cl: -1, pend: w.pend[:0], closeAfter: closeAfter}
}

func (w *h1Writer) Header() http.Header { return w.hdr }

func (w *h1Writer) WriteHeader(code int) {
	if w.wroteHeader || w.err != nil {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// Informational: sent at once with the headers set so far (103 Early Hints).
		w.writeStatusLine(code)
		for k, vs := range w.hdr {
			w.writeField(k, vs)
		}
		w.c.bw.WriteString("\r\n")
		if err := w.c.bw.Flush(); err != nil {
			w.fail(err)
		}
		return
	}
	w.wroteHeader, w.status = true, code
	if v := w.hdr["Content-Length"]; len(v) > 0 {
		if n, ok := parseDecimal(httpsafe.TrimOWS(v[0])); ok {
			w.cl = n
		} else {
			delete(w.hdr, "Content-Length") // as net/http: an invalid value is not sent
		}
	}
	w.noBody = w.req.Method == http.MethodHead || !bodyAllowed(code)
	if _, typed := w.hdr["Content-Type"]; w.noBody || w.cl >= 0 && typed && !w.hasTrailers() {
		// The framing is known and nothing is to be sniffed: the head goes to the buffer now, so
		// that header changes after WriteHeader are ignored, as net/http ignores them.
		w.sendHead(false, nil)
	}
}

func bodyAllowed(code int) bool {
	return !(code >= 100 && code < 200 || code == http.StatusNoContent || code == http.StatusNotModified)
}

func (w *h1Writer) fail(err error) {
	if w.err == nil {
		w.err = err
	}
	w.closeAfter = true
}

func (w *h1Writer) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.noBody {
		if w.req.Method == http.MethodHead && bodyAllowed(w.status) {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.cl >= 0 && w.written+int64(len(p)) > w.cl {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if !w.headSent {
		if w.cl < 0 && len(w.pend)+len(p) <= cap(w.pend) && !w.hasTrailers() {
			w.pend = append(w.pend, p...)
			return len(p), nil
		}
		w.sendHead(false, p)
	}
	w.writeBody(p)
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

func (w *h1Writer) writeBody(p []byte) {
	if len(p) == 0 {
		return
	}
	bw := w.c.bw
	if w.chunked {
		bw.Write(strconv.AppendInt(w.c.num[:0], int64(len(p)), 16))
		bw.WriteString("\r\n")
		bw.Write(p)
		_, err := bw.WriteString("\r\n")
		if err != nil {
			w.fail(err)
		}
		return
	}
	if _, err := bw.Write(p); err != nil {
		w.fail(err)
	}
}

func (w *h1Writer) hasTrailers() bool {
	if _, ok := w.hdr["Trailer"]; ok {
		return true
	}
	for k := range w.hdr {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return true
		}
	}
	return false
}

// sendHead writes the status line and headers; final: the handler is done and pend is the whole body.
// data is the first body bytes (for Content-Type sniffing).
func (w *h1Writer) sendHead(final bool, data []byte) {
	w.headSent = true
	h := w.hdr
	if !w.noBody {
		_, hasType := h["Content-Type"]
		if len(w.pend) > 0 {
			data = w.pend
		}
		if !hasType && len(data) > 0 {
			h["Content-Type"] = []string{http.DetectContentType(data)}
		}
		trailers := w.hasTrailers()
		switch {
		case trailers:
			delete(h, "Content-Length")
			w.cl, w.chunked = -1, true
		case w.cl < 0 && final:
			w.cl = int64(len(w.pend))
		case w.cl < 0:
			w.chunked = true
		}
	}
	if !w.closeAfter {
		if v := h["Connection"]; len(v) > 0 && hasToken(v, "close") {
			w.closeAfter = true
		}
	}
	w.writeStatusLine(w.status)
	for k, vs := range h {
		switch {
		case k == "Transfer-Encoding", strings.HasPrefix(k, http.TrailerPrefix):
			continue
		case k == "Content-Length" && !w.noBody:
			continue // written below from w.cl
		case k == "Connection" && w.closeAfter:
			continue
		}
		w.writeField(k, vs)
	}
	bw := w.c.bw
	if !w.noBody {
		if w.chunked {
			bw.WriteString("Transfer-Encoding: chunked\r\n")
		} else {
			bw.WriteString("Content-Length: ")
			bw.Write(strconv.AppendInt(w.c.num[:0], w.cl, 10))
			bw.WriteString("\r\n")
		}
	}
	if _, ok := h["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.WriteString(httpDate())
		bw.WriteString("\r\n")
	}
	if w.closeAfter {
		bw.WriteString("Connection: close\r\n")
	}
	if _, err := bw.WriteString("\r\n"); err != nil {
		w.fail(err)
	}
	if len(w.pend) > 0 {
		pend := w.pend
		w.pend = w.pend[:0]
		w.writeBody(pend)
	}
}

var statusLines sync.Map // int -> string

func (w *h1Writer) writeStatusLine(code int) {
	if v, ok := statusLines.Load(code); ok {
		w.c.bw.WriteString(v.(string))
		return
	}
	text := http.StatusText(code)
	if text == "" {
		text = "status code " + strconv.Itoa(code)
	}
	line := "HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n"
	if code >= 100 && code <= 999 {
		statusLines.Store(code, line)
	}
	w.c.bw.WriteString(line)
}

// writeField writes one header field; CR and LF in values become spaces, as net/http does.
func (w *h1Writer) writeField(k string, vs []string) {
	bw := w.c.bw
	for _, v := range vs {
		if strings.ContainsAny(v, "\r\n") {
			v = strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ").Replace(v)
		}
		bw.WriteString(k)
		bw.WriteString(": ")
		bw.WriteString(httpsafe.TrimOWS(v))
		bw.WriteString("\r\n")
	}
}

// finish completes the response; false: the connection must close at once.
func (w *h1Writer) finish() bool {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headSent && w.err == nil {
		w.sendHead(true, nil)
	}
	if w.chunked && w.err == nil {
		bw := w.c.bw
		bw.WriteString("0\r\n")
		w.writeTrailers()
		if _, err := bw.WriteString("\r\n"); err != nil {
			w.fail(err)
		}
	}
	if !w.noBody && !w.chunked && w.written < w.cl {
		w.closeAfter = true // the body is shorter than announced: the client must see the end
	}
	if w.err == nil {
		if err := w.c.bw.Flush(); err != nil {
			w.fail(err)
		}
	}
	return w.err == nil
}

// writeTrailers writes the declared trailers and those set with http.TrailerPrefix.
func (w *h1Writer) writeTrailers() {
	for _, decl := range w.hdr["Trailer"] {
		for _, k := range strings.Split(decl, ",") {
			k = http.CanonicalHeaderKey(httpsafe.TrimOWS(k))
			if vs, ok := w.hdr[k]; ok && k != "" {
				w.writeField(k, vs)
			}
		}
	}
	for k, vs := range w.hdr {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			w.writeField(name, vs)
		}
	}
}

// Flush sends what is buffered (http.Flusher; http.ResponseController uses FlushError).
func (w *h1Writer) Flush() { _ = w.FlushError() }

func (w *h1Writer) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return w.err
	}
	if !w.headSent {
		w.sendHead(false, nil)
	}
	if err := w.c.bw.Flush(); err != nil {
		w.fail(err)
	}
	return w.err
}

// SetReadDeadline, SetWriteDeadline and EnableFullDuplex are found by http.ResponseController.
func (w *h1Writer) SetReadDeadline(t time.Time) error  { return w.c.conn.SetReadDeadline(t) }
func (w *h1Writer) SetWriteDeadline(t time.Time) error { return w.c.conn.SetWriteDeadline(t) }

// EnableFullDuplex: the fast path reads the request body and writes the response independently.
func (w *h1Writer) EnableFullDuplex() error { return nil }

// httpDate is the current time in the Date header's format, formatted once per second.
func httpDate() string {
	now := time.Now()
	sec := now.Unix()
	if d := cachedDate.Load(); d != nil && d.sec == sec {
		return d.v
	}
	v := now.UTC().Format(http.TimeFormat)
	cachedDate.Store(&dateValue{sec: sec, v: v, vs: []string{v}})
	return v
}

// httpDateHeader is httpDate as a header value, shared (header values are replaced, never edited in
// place).
func httpDateHeader() []string {
	if d := cachedDate.Load(); d != nil && d.sec == time.Now().Unix() {
		return d.vs
	}
	httpDate()
	return cachedDate.Load().vs
}

type dateValue struct {
	sec int64
	v   string
	vs  []string // []string{v}
}

var cachedDate atomic.Pointer[dateValue]

// addH1 registers hc with the runtime; false when the runtime takes no more connections (retired or
// stopped).
func (rt *hcmRuntime) addH1(hc *h1Conn) bool { return addConn(rt, &rt.h1, hc) }

func (rt *hcmRuntime) removeH1(hc *h1Conn) { removeConn(rt, &rt.h1, hc) }

// addConn adds c to *set, one of the runtime's connection sets, and counts it in rt.conns; false
// when the runtime takes no more connections (retired or stopped).
func addConn[C comparable](rt *hcmRuntime, set *map[C]struct{}, c C) bool {
	rt.ln.mu.Lock()
	closed := rt.ln.closed
	rt.ln.mu.Unlock()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if closed || rt.shut.Load() {
		return false
	}
	if *set == nil {
		*set = map[C]struct{}{}
	}
	(*set)[c] = struct{}{}
	rt.conns.Add(1)
	return true
}

// removeConn removes c, added by addConn, from set.
func removeConn[C comparable](rt *hcmRuntime, set *map[C]struct{}, c C) {
	rt.mu.Lock()
	delete(*set, c)
	rt.mu.Unlock()
	rt.conns.Add(-1)
}

func (rt *hcmRuntime) shuttingDown() bool { return rt.shut.Load() }

// stopH1 stops the fast path's connections: idle ones now, active ones when their request ends
// (they see shut), the rest when ctx ends.
func (rt *hcmRuntime) stopH1(ctx context.Context) {
	rt.mu.Lock()
	rt.shut.Store(true)
	for hc := range rt.h1 {
		if hc.state.CompareAndSwap(h1Idle, h1Closed) {
			hc.conn.Close()
		}
	}
	rt.mu.Unlock()
	awaitConns(ctx, rt, &rt.h1, func(hc *h1Conn) net.Conn { return hc.conn })
}

// awaitConns waits until *set, one of the runtime's connection sets, is empty, polling every 10 ms
// (connections remove themselves when they end); when ctx ends first it closes those left.
func awaitConns[C comparable](ctx context.Context, rt *hcmRuntime, set *map[C]struct{}, conn func(C) net.Conn) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		rt.mu.Lock()
		if len(*set) == 0 || ctx.Err() != nil {
			for c := range *set {
				conn(c).Close()
			}
			rt.mu.Unlock()
			return
		}
		rt.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}
