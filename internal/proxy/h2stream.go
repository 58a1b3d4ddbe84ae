package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Streams of the downstream HTTP/2 server (h2server.go): the request, its body and the response
// writer.

// h2MaxPending is how many response bytes a writer holds before it sends them without a Flush: the
// memory a handler can hold against a client that does not read is bounded by it.
const h2MaxPending = 32 << 10

var errDeadline = os.ErrDeadlineExceeded

// h2Stream is one request and its response. The fields under "c.mu" are guarded by the connection's
// mutex; the writer belongs to the handler's goroutine.
type h2Stream struct {
	c      *h2Conn
	id     uint32
	cancel context.CancelFunc
	req    *http.Request
	url    url.URL
	body   h2Body
	w      h2Writer

	// c.mu
	sendWin     int64
	recvWin     int32
	recvUnacked int32
	remoteDone  bool // END_STREAM received
	reset       bool // closed: reset by either side, or the handler ended
	peerReset   bool // the client sent RST_STREAM: what it sends after is a stream error
}

// newStream builds the stream and request of f, validated as RFC 9113 section 8.3 says; a code other
// than NO_ERROR is the stream error the request gets instead.
func (c *h2Conn) newStream(f *http2.MetaHeadersFrame) (*h2Stream, http2.ErrCode) {
	var method, scheme, path, authority, host string
	fields := f.Fields
	hdr := make(http.Header, len(fields))
	vals := make([]string, 0, len(fields))
	var cookies []string
	cl := int64(-1)
	sawRegular := false
	for _, hf := range fields {
		if strings.HasPrefix(hf.Name, ":") {
			var p *string
			switch hf.Name {
			case ":method":
				p = &method
			case ":scheme":
				p = &scheme
			case ":path":
				p = &path
			case ":authority":
				p = &authority
			default:
				return nil, http2.ErrCodeProtocol // :protocol (extended CONNECT) and unknown ones
			}
			if sawRegular || *p != "" || hf.Value == "" {
				return nil, http2.ErrCodeProtocol
			}
			*p = hf.Value
			continue
		}
		sawRegular = true
		switch hf.Name {
		case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
			return nil, http2.ErrCodeProtocol // connection-specific (section 8.2.2)
		case "te":
			if hf.Value != "trailers" {
				return nil, http2.ErrCodeProtocol
			}
		case "host":
			if host == "" {
				host = hf.Value
			}
			continue
		case "content-length":
			n, ok := parseDecimal(hf.Value)
			if !ok || cl >= 0 && n != cl {
				return nil, http2.ErrCodeProtocol
			}
			cl = n
		case "cookie":
			cookies = append(cookies, hf.Value)
			continue
		}
		if hf.Name != strings.ToLower(hf.Name) {
			return nil, http2.ErrCodeProtocol // the framer checks this too
		}
		k := canonicalH2Key(hf.Name)
		if v, ok := hdr[k]; ok {
			hdr[k] = append(v, hf.Value)
			continue
		}
		vals = append(vals, hf.Value)
		hdr[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	if len(cookies) > 0 {
		hdr["Cookie"] = []string{strings.Join(cookies, "; ")} // section 8.2.3
	}
	s := &h2Stream{c: c, id: f.StreamID}
	var req http.Request
	r := &req
	if method == http.MethodConnect {
		// No :scheme or :path, an :authority: the proxy answers it 405 (CONNECT is not supported).
		if scheme != "" || path != "" || authority == "" {
			return nil, http2.ErrCodeProtocol
		}
		s.url = url.URL{Host: authority}
		r.RequestURI = authority
	} else {
		if method == "" || scheme == "" || path == "" {
			return nil, http2.ErrCodeProtocol
		}
		if !parseH2Path(path, &s.url) {
			return nil, http2.ErrCodeProtocol
		}
		r.RequestURI = path
	}
	if authority == "" {
		authority = host
	}
	end := f.StreamEnded()
	if end && cl > 0 {
		return nil, http2.ErrCodeProtocol // a Content-Length the (empty) body contradicts
	}
	r.Method, r.URL, r.Proto, r.ProtoMajor, r.ProtoMinor = method, &s.url, "HTTP/2.0", 2, 0
	r.Header, r.Host, r.RemoteAddr, r.TLS = hdr, authority, c.remote, c.tls
	s.body = h2Body{s: s, declared: cl}
	s.body.cond.L = &s.body.mu
	if end {
		r.Body, r.ContentLength, s.body.eof = http.NoBody, 0, true
		s.remoteDone = true
	} else {
		r.Body, r.ContentLength = &s.body, cl
		if v := hdr["Expect"]; len(v) == 1 && strings.EqualFold(v[0], "100-continue") {
			s.body.expect = true // 100 Continue at the first read that waits for the body
		}
		if decl := hdr["Trailer"]; len(decl) > 0 {
			r.Trailer = http.Header{}
			for _, v := range decl {
				for k := range strings.SplitSeq(v, ",") {
					if k = http.CanonicalHeaderKey(strings.TrimSpace(k)); k != "" && httpguts.ValidTrailerHeader(k) {
						r.Trailer[k] = nil
					}
				}
			}
			s.body.trailer = r.Trailer
		}
	}
	ctx, cancel := context.WithCancel(c.ctx)
	s.cancel = cancel
	s.req = r.WithContext(ctx)
	s.w = h2Writer{s: s, hdr: make(http.Header, 8), cl: -1}
	c.mu.Lock()
	s.sendWin = int64(c.peerInitWin)
	s.recvWin = c.streamWin
	if !c.settingsAcked {
		s.recvWin = max(s.recvWin, h2InitialWindow) // the client may not know our SETTINGS yet
	}
	c.mu.Unlock()
	return s, http2.ErrCodeNo
}

// parseH2Path sets u from an origin-form :path (or "*"), as net/http's url.ParseRequestURI does,
// without its allocations for the common paths of plain characters.
func parseH2Path(path string, u *url.URL) bool {
	if path[0] != '/' && path != "*" {
		pu, err := url.ParseRequestURI(path)
		if err != nil {
			return false
		}
		*u = *pu
		return true
	}
	for i := 0; i < len(path); i++ {
		if b := path[i]; b == '%' || b == '#' || b <= ' ' || b >= 0x7f {
			pu, err := url.ParseRequestURI(path)
			if err != nil {
				return false
			}
			*u = *pu
			return true
		}
	}
	p, q, ok := strings.Cut(path, "?")
	*u = url.URL{Path: p, RawQuery: q, ForceQuery: ok && q == ""}
	return true
}

// h2Body is a request body: the DATA the reader received and the handler has not read, at most the
// stream's receive window.
type h2Body struct {
	s        *h2Stream
	mu       sync.Mutex
	cond     sync.Cond
	buf      []byte // buf[r:] is unread
	r        int
	eof      bool  // END_STREAM received: io.EOF after buf
	err      error // the stream or connection broke
	closed   bool  // Close was called, or the handler ended
	declared int64 // Content-Length, -1 if none
	got      int64
	trailer  http.Header // the request's Trailer, filled at the end
	deadline time.Time
	timer    *time.Timer
	expect   bool // the client waits for 100 Continue before it sends the body
}

// push adds a DATA frame's bytes; it returns how many it keeps (none once the body is closed).
func (b *h2Body) push(p []byte, end bool) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.err != nil {
		return 0, nil
	}
	b.got += int64(len(p))
	if b.declared >= 0 && (b.got > b.declared || end && b.got != b.declared) {
		b.err = errH2StreamReset
		b.cond.Broadcast()
		return 0, http2.StreamError{StreamID: b.s.id, Code: http2.ErrCodeProtocol}
	}
	if len(p) > 0 {
		if b.r > 0 {
			b.buf = b.buf[:copy(b.buf, b.buf[b.r:])]
			b.r = 0
		}
		b.buf = append(b.buf, p...)
	}
	if end {
		b.eof = true
	}
	b.cond.Broadcast()
	return len(p), nil
}

func (b *h2Body) endWithTrailers(fields []hpack.HeaderField) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.declared >= 0 && b.got != b.declared {
		b.err = errH2StreamReset
		b.cond.Broadcast()
		return http2.StreamError{StreamID: b.s.id, Code: http2.ErrCodeProtocol}
	}
	if b.trailer != nil {
		for _, hf := range fields {
			k := canonicalH2Key(hf.Name)
			if httpguts.ValidTrailerHeader(k) {
				b.trailer[k] = append(b.trailer[k], hf.Value)
			}
		}
	}
	b.eof = true
	b.cond.Broadcast()
	return nil
}

// fail breaks the body with err and returns how many unread bytes it dropped.
func (b *h2Body) fail(err error) int32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err = err // also after END_STREAM: the bytes dropped must not read as a complete body
	}
	n := len(b.buf) - b.r
	b.buf, b.r = nil, 0
	b.cond.Broadcast()
	return int32(n)
}

// discard ends the body when the handler ends: what it did not read is dropped, and returned as
// connection credit.
func (b *h2Body) discard() {
	b.mu.Lock()
	b.closed = true
	n := len(b.buf) - b.r
	b.buf, b.r = nil, 0
	if b.timer != nil {
		b.timer.Stop()
	}
	b.mu.Unlock()
	b.s.c.credit(nil, int32(n))
}

func (b *h2Body) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.expect && b.r == len(b.buf) && !b.eof && b.err == nil && !b.closed {
		b.expect = false
		b.mu.Unlock()
		_ = b.s.c.writeInterim(b.s, http.StatusContinue, nil)
		b.mu.Lock()
	}
	for b.r == len(b.buf) && !b.eof && b.err == nil && !b.closed {
		if !b.deadline.IsZero() && !time.Now().Before(b.deadline) {
			b.mu.Unlock()
			return 0, errDeadline
		}
		b.cond.Wait()
	}
	if b.closed {
		b.mu.Unlock()
		return 0, http.ErrBodyReadAfterClose
	}
	if b.err != nil && b.r == len(b.buf) {
		err := b.err
		b.mu.Unlock()
		return 0, err
	}
	n := copy(p, b.buf[b.r:])
	b.r += n
	var err error
	if b.r == len(b.buf) {
		b.buf, b.r = b.buf[:0], 0
		if b.eof {
			err = io.EOF
		}
	}
	b.mu.Unlock()
	b.s.c.credit(b.s, int32(n))
	return n, err
}

// ReadReady reports whether the next Read returns without waiting: bytes, io.EOF or an error are
// already there (cluster.ReadReadier).
func (b *h2Body) ReadReady() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.r < len(b.buf) || b.eof || b.err != nil || b.closed
}

// Close drops what is unread; the stream's window is credited for it and for what still comes.
func (b *h2Body) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	n := len(b.buf) - b.r
	b.buf, b.r = nil, 0
	b.cond.Broadcast()
	b.mu.Unlock()
	b.s.c.credit(b.s, int32(n))
	return nil
}

func (b *h2Body) setDeadline(t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.deadline = t
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	if !t.IsZero() {
		b.timer = time.AfterFunc(time.Until(t), func() {
			b.mu.Lock()
			b.cond.Broadcast()
			b.mu.Unlock()
		})
	}
	b.cond.Broadcast()
}

// h2Writer is the http.ResponseWriter of a stream. It holds the response until Flush, until
// h2MaxPending bytes, or until the handler ends; then the head, the body and the trailers leave in
// one write (as far as the client's flow-control windows allow).
type h2Writer struct {
	s           *h2Stream
	hdr         http.Header
	status      int
	wroteHeader bool
	headSent    bool
	noBody      bool // HEAD, or a status without body
	cl          int64
	written     int64
	pend        []byte  // response bytes not yet sent, in *pendBuf (from h2PendPool)
	pendBuf     *[]byte // nil until the first buffered write
	wdeadline   time.Time
	closeConn   bool // the response said "Connection: close": GOAWAY after it
	done        bool
	err         error
}

func (w *h2Writer) Header() http.Header { return w.hdr }

func (w *h2Writer) WriteHeader(code int) {
	if w.wroteHeader || w.err != nil || w.done {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.err = w.s.c.writeInterim(w.s, code, w.hdr)
		return
	}
	w.wroteHeader, w.status = true, code
	if v := w.hdr["Content-Length"]; len(v) > 0 {
		if n, ok := parseDecimal(strings.TrimSpace(v[0])); ok {
			w.cl = n
		} else {
			delete(w.hdr, "Content-Length") // as net/http: an invalid value is not sent
		}
	}
	w.noBody = w.s.req.Method == http.MethodHead || !bodyAllowed(code)
}

func (w *h2Writer) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	switch {
	case w.done:
		return 0, errH2StreamReset
	case w.err != nil:
		return 0, w.err
	case w.noBody:
		if w.s.req.Method == http.MethodHead && bodyAllowed(w.status) {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	case w.cl >= 0 && w.written+int64(len(p)) > w.cl:
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if len(w.pend)+len(p) > h2MaxPending {
		if len(w.pend) > 0 {
			if err := w.send(false); err != nil {
				return 0, err
			}
		}
		if len(p) > h2MaxPending {
			keep := w.pend
			w.pend = p // sent from the caller's slice: no copy, and it is not kept
			err := w.send(false)
			w.pend = keep[:0]
			if err != nil {
				return 0, err
			}
			return len(p), nil
		}
	}
	if w.pendBuf == nil {
		w.pendBuf = h2PendPool.Get().(*[]byte)
		w.pend = (*w.pendBuf)[:0]
	}
	w.pend = append(w.pend, p...)
	return len(p), nil
}

// h2PendPool holds the writers' buffers of pending response bytes.
var h2PendPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// Flush sends what is buffered (http.Flusher; http.ResponseController uses FlushError).
func (w *h2Writer) Flush() { _ = w.FlushError() }

func (w *h2Writer) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.done {
		return errH2StreamReset
	}
	if w.err != nil {
		return w.err
	}
	return w.send(false)
}

// SetReadDeadline bounds the handler's reads of the request body (forward.go's request_timeout).
func (w *h2Writer) SetReadDeadline(t time.Time) error {
	w.s.body.setDeadline(t)
	return nil
}

// SetWriteDeadline bounds the handler's waits for flow-control window and its writes.
func (w *h2Writer) SetWriteDeadline(t time.Time) error {
	w.wdeadline = t
	return nil
}

// EnableFullDuplex: HTTP/2 streams read and write independently.
func (w *h2Writer) EnableFullDuplex() error { return nil }

// finish completes the response when the handler returns; an error means the stream must be reset.
func (w *h2Writer) finish() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err == nil {
		w.err = w.send(true)
	}
	w.done = true
	if w.pendBuf != nil {
		*w.pendBuf = w.pend[:0]
		h2PendPool.Put(w.pendBuf)
		w.pendBuf = nil
	}
	w.pend = nil
	return w.err
}

// trailerFields returns the trailers the handler set: declared ones and http.TrailerPrefix ones.
func (w *h2Writer) trailerFields() (fs []hpack.HeaderField) {
	for _, decl := range w.hdr["Trailer"] {
		for k := range strings.SplitSeq(decl, ",") {
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			for _, v := range w.hdr[k] {
				if k != "" && httpguts.ValidTrailerHeader(k) {
					fs = append(fs, hpack.HeaderField{Name: lowerH2Key(k), Value: v})
				}
			}
		}
	}
	for k, vs := range w.hdr {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok && httpguts.ValidTrailerHeader(name) {
			for _, v := range vs {
				fs = append(fs, hpack.HeaderField{Name: strings.ToLower(name), Value: v})
			}
		}
	}
	return fs
}

// send writes the head if not yet sent and the pending body; final: the handler has ended, the
// trailers or END_STREAM follow in the same write. An error is the response's: later writes fail.
func (w *h2Writer) send(final bool) error {
	err := w.transmit(final)
	if err != nil && w.err == nil {
		w.err = err
	}
	return err
}

func (w *h2Writer) transmit(final bool) error {
	s, c := w.s, w.s.c
	short := final && !w.noBody && w.cl >= 0 && w.written < w.cl
	if short {
		final = false // no END_STREAM: the stream is reset instead
	}
	var trailers []hpack.HeaderField
	if final && !w.noBody {
		trailers = w.trailerFields()
	}
	if !w.headSent {
		w.prepareHead(final)
	}
	data := w.pend
	if w.noBody {
		data = nil
	}
	headPending := !w.headSent
	for {
		n := 0
		if len(data) > 0 {
			var err error
			if n, err = c.reserve(s, len(data), w.wdeadline); err != nil {
				return err
			}
		}
		c.wmu.Lock()
		c.mu.Lock()
		gone := s.reset || c.closed
		c.mu.Unlock()
		if gone {
			c.wmu.Unlock()
			if n > 0 {
				c.unreserve(s, n)
			}
			return errH2StreamReset
		}
		if !w.deadlineOK() {
			c.wmu.Unlock()
			c.unreserve(s, n)
			return errDeadline
		}
		last := final && len(data) == n // everything left goes out in this step
		if headPending {
			if err := c.encodeHead(w.status, w.hdr); err != nil {
				c.wmu.Unlock()
				c.unreserve(s, n)
				return err
			}
			c.writeBlockLocked(s.id, last && n == 0 && len(trailers) == 0)
			headPending, w.headSent = false, true
		} else if last && n == 0 && len(trailers) == 0 {
			_ = c.wfr.WriteData(s.id, true, nil)
		}
		maxF := int(c.peerMaxF.Load())
		for chunk := data[:n]; len(chunk) > 0; {
			m := min(len(chunk), maxF)
			_ = c.wfr.WriteData(s.id, last && m == len(chunk) && len(trailers) == 0, chunk[:m])
			chunk = chunk[m:]
		}
		data = data[n:]
		if last && len(trailers) > 0 {
			if err := c.encodeFields(trailers); err != nil {
				c.wmu.Unlock()
				return err
			}
			c.writeBlockLocked(s.id, true)
		}
		err := c.flushLocked()
		c.wmu.Unlock()
		if err != nil {
			return err
		}
		if len(data) == 0 {
			break
		}
	}
	w.pend = w.pend[:0]
	if short {
		return http.ErrContentLength // shorter than announced: the client must not take it for complete
	}
	return nil
}

func (w *h2Writer) deadlineOK() bool { return w.wdeadline.IsZero() || time.Now().Before(w.wdeadline) }

// prepareHead completes the response head as net/http does: a sniffed Content-Type, and a
// Content-Length when the handler ended with the whole body buffered.
func (w *h2Writer) prepareHead(final bool) {
	h := w.hdr
	if v := h["Connection"]; len(v) > 0 && hasToken(v, "close") {
		w.closeConn = true
	}
	if w.noBody {
		return
	}
	if _, ok := h["Content-Type"]; !ok && len(w.pend) > 0 {
		h["Content-Type"] = []string{http.DetectContentType(w.pend)}
	}
	if final && w.cl < 0 && w.s.req.Method != http.MethodHead && len(w.trailerFields()) == 0 {
		if _, declared := h["Trailer"]; !declared {
			w.cl = int64(len(w.pend))
			h["Content-Length"] = []string{strconv.Itoa(len(w.pend))}
		}
	}
}

// writeInterim sends a 1xx response (103 Early Hints) with the headers set so far.
func (c *h2Conn) writeInterim(s *h2Stream, code int, h http.Header) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	gone := s.reset || c.closed
	c.mu.Unlock()
	if gone {
		return errH2StreamReset
	}
	if err := c.encodeHead(code, h); err != nil {
		return err
	}
	c.writeBlockLocked(s.id, false)
	return c.flushLocked()
}

// h2HopByHop are response headers HTTP/2 does not carry (RFC 9113 section 8.2.2), and the Trailer
// declaration (the trailers follow as their own HEADERS frame).
var h2HopByHop = map[string]bool{"Connection": true, "Transfer-Encoding": true, "Keep-Alive": true,
	"Upgrade": true, "Proxy-Connection": true, "Trailer": true}

// encodeHead encodes a response head into c.hbuf (c.wmu held). Fields with names or values HTTP/2
// cannot carry are left out, as net/http does.
func (c *h2Conn) encodeHead(status int, h http.Header) error {
	keep := func(k, v string) bool {
		return !h2HopByHop[k] && !strings.HasPrefix(k, http.TrailerPrefix) && httpguts.ValidHeaderFieldName(k) &&
			httpguts.ValidHeaderFieldValue(v)
	}
	size := uint32(32 + len(":status") + 3)
	for k, vs := range h {
		for _, v := range vs {
			if keep(k, v) {
				size += uint32(32 + len(k) + len(v))
			}
		}
	}
	if err := c.checkListSize(size); err != nil {
		return err
	}
	c.hbuf.Reset()
	_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: statusString(status)})
	for k, vs := range h {
		for _, v := range vs {
			if keep(k, v) {
				_ = c.henc.WriteField(hpack.HeaderField{Name: lowerH2Key(k), Value: v})
			}
		}
	}
	return nil
}

// encodeFields encodes trailers into c.hbuf (c.wmu held).
func (c *h2Conn) encodeFields(fs []hpack.HeaderField) error {
	size := uint32(0)
	for _, hf := range fs {
		size += hf.Size()
	}
	if err := c.checkListSize(size); err != nil {
		return err
	}
	c.hbuf.Reset()
	for _, hf := range fs {
		if httpguts.ValidHeaderFieldValue(hf.Value) {
			_ = c.henc.WriteField(hf)
		}
	}
	return nil
}

var errH2HeaderListSize = errors.New("http2: response header list larger than the client's MAX_HEADER_LIST_SIZE")

// checkListSize refuses a header list over the client's MAX_HEADER_LIST_SIZE (the stream is reset).
func (c *h2Conn) checkListSize(size uint32) error {
	c.mu.Lock()
	limit := c.peerMaxList
	c.mu.Unlock()
	if limit != 0 && size > limit {
		return errH2HeaderListSize
	}
	return nil
}

func statusString(code int) string {
	switch code {
	case 200:
		return "200"
	case 204:
		return "204"
	case 304:
		return "304"
	case 400:
		return "400"
	case 404:
		return "404"
	case 500:
		return "500"
	case 503:
		return "503"
	}
	return strconv.Itoa(code)
}

// Header name conversions between http.Header's canonical form and HTTP/2's lower case, cached for
// the names seen (up to h2KeyCacheMax of them: names come from clients and upstreams).
const h2KeyCacheMax = 1000

var (
	h2Lower     sync.Map // canonical -> lower
	h2Canon     sync.Map // lower -> canonical
	h2KeyCached atomic.Int32
)

func lowerH2Key(k string) string {
	if v, ok := h2Lower.Load(k); ok {
		return v.(string)
	}
	l := strings.ToLower(k)
	if h2KeyCached.Load() < h2KeyCacheMax {
		h2KeyCached.Add(1)
		h2Lower.Store(k, l)
	}
	return l
}

func canonicalH2Key(l string) string {
	if v, ok := h2Canon.Load(l); ok {
		return v.(string)
	}
	k := http.CanonicalHeaderKey(l)
	if h2KeyCached.Load() < h2KeyCacheMax {
		h2KeyCached.Add(1)
		h2Canon.Store(l, k)
	}
	return k
}
