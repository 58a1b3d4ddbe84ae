package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"canton.dev/canton/internal/proxy/httpsafe"
)

// h2Stream is one request on an h2Conn. Its state is guarded by the connection's mu.
type h2Stream struct {
	c        *h2Conn
	id       uint32
	req      *http.Request
	ctx      context.Context
	body     io.ReadCloser // the request body; nil: none
	bodyOnce sync.Once
	stop     func() bool // stops watching ctx
	wake     chan struct{}

	sendWin  int64
	recvWin  int64 // bytes the upstream may still send on the stream
	unacked  int64 // bytes read and not yet credited back to the stream
	buf      [][]byte
	buffered int // bytes in buf
	declared int64
	received int64
	resp     *http.Response
	trailer  http.Header
	gotEnd   bool  // END_STREAM received
	sentEnd  bool  // END_STREAM written (or decided)
	removed  bool  // out of c.streams: closed both ways or reset
	err      error // the stream failed: the response (body) reads fail with it
	werr     error // the request side must stop writing
}

// errStreamOver stops the request body of a stream whose response has ended: the upstream no
// longer wants it.
var errStreamOver = errors.New("upstream ended the http2 stream")

// errBodyClosed is a read of a response body after Close.
var errBodyClosed = errors.New("upstream http2 response body closed")

// roundTrip sends r on a stream reserved by get and waits for the response's HEADERS.
func (c *h2Conn) roundTrip(r *http.Request) (*http.Response, error) {
	cs := &h2Stream{c: c, req: r, ctx: r.Context(), declared: -1, wake: make(chan struct{}, 1)}
	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	if hasBody {
		cs.body = r.Body
	} else {
		closeReqBody(r)
	}
	trailers := len(r.Trailer) > 0

	c.wmu.Lock()
	c.writePreface()
	c.mu.Lock()
	if c.err != nil || c.goAway {
		err := fmt.Errorf("upstream %s: http2 connection closing", c.addr)
		c.mu.Unlock()
		_ = c.flush()
		c.wmu.Unlock()
		c.release()
		cs.closeBody()
		return nil, &unprocessedError{err}
	}
	cs.id = c.nextID
	c.nextID += 2
	cs.sendWin, cs.recvWin = c.initWin, h2StreamWindow
	cs.sentEnd = !hasBody && !trailers
	c.streams[cs.id] = cs
	cs.stop = context.AfterFunc(cs.ctx, cs.cancel)
	maxFrame, maxList := c.maxFrame, c.maxHeaders
	c.mu.Unlock()

	scheme := r.URL.Scheme
	if scheme == "" {
		scheme = "http"
		if c.p.tls != nil {
			scheme = "https"
		}
	}
	emit := func(yield func(name, value string)) error { return requestFields(r, scheme, yield) }
	if err := c.writeHeaders(cs.id, emit, cs.sentEnd, maxFrame, maxList); err != nil {
		_ = c.flush()
		c.wmu.Unlock()
		cs.fail(err, 0) // nothing of the stream was written: no RST_STREAM for an idle stream
		return nil, err
	}
	var w *bodyWriter
	async := false
	if hasBody || trailers {
		w = newBodyWriter(cs)
		done, err := w.writeReady()
		if err != nil {
			_ = c.flush()
			c.wmu.Unlock()
			w.release()
			cs.fail(err, http2.ErrCodeCancel)
			return nil, err
		}
		if done {
			w.release()
			cs.closeBody()
		}
		async = !done
	}
	err := c.flush()
	c.wmu.Unlock()
	if err != nil {
		if w != nil && async {
			w.release()
		}
		cs.fail(err, 0)
		return nil, err
	}
	if async {
		go w.run()
	}
	for {
		c.mu.Lock()
		resp, err := cs.resp, cs.err
		c.mu.Unlock()
		if resp != nil {
			return resp, nil
		}
		if err != nil {
			return nil, err
		}
		<-cs.wake
	}
}

// writeHeaders encodes the fields emit yields and writes them as HEADERS (and CONTINUATION) frames
// (wmu held). The fields are checked before any is encoded: a half-encoded block would leave the
// upstream's decoder out of step with our encoder.
func (c *h2Conn) writeHeaders(id uint32, emit func(func(name, value string)) error, end bool, maxFrame, maxList uint32) error {
	var size uint64
	if err := emit(func(name, value string) { size += uint64(len(name) + len(value) + 32) }); err != nil {
		return err
	}
	if maxList > 0 && size > uint64(maxList) {
		return fmt.Errorf("upstream %s accepts header lists up to %d bytes, the request's is %d", c.addr, maxList, size)
	}
	c.hbuf.Reset()
	_ = emit(func(name, value string) {
		sensitive := name == "authorization" || name == "proxy-authorization"
		c.henc.WriteField(hpack.HeaderField{Name: name, Value: value, Sensitive: sensitive})
	})
	block := c.hbuf.Bytes()
	for first := true; first || len(block) > 0; first = false {
		frag := block[:min(len(block), int(maxFrame))]
		block = block[len(frag):]
		if first {
			c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndStream: end, EndHeaders: len(block) == 0})
		} else {
			c.fr.WriteContinuation(id, len(block) == 0, frag)
		}
	}
	return nil
}

// requestFields yields r's header fields in HTTP/2 form: the pseudo-headers first, names in lower
// case, the connection-specific fields left out (TE is kept when it is "trailers"). It fails on a
// field HTTP/2 cannot carry.
func requestFields(r *http.Request, scheme string, yield func(name, value string)) error {
	host, method, err := hostAndMethod(r)
	if err != nil {
		return err
	}
	yield(":method", method)
	if method != http.MethodConnect {
		yield(":scheme", scheme)
		yield(":path", r.URL.RequestURI())
	}
	yield(":authority", host)
	var named []string // the fields the Connection header names
	for _, v := range r.Header["Connection"] {
		for _, t := range strings.Split(v, ",") {
			if t = strings.ToLower(httpsafe.TrimOWS(t)); t != "" {
				named = append(named, t)
			}
		}
	}
	for k, vs := range r.Header {
		name := lowerHeader(k)
		switch name {
		case "host", "content-length", "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade", "trailer":
			continue
		case "te":
			for _, v := range vs {
				if httpsafe.HasToken(v, "trailers") {
					yield("te", "trailers")
					break
				}
			}
			continue
		}
		if len(named) > 0 && contains(named, name) {
			continue
		}
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("invalid header field name %q", k)
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("invalid header field value for %q", k)
			}
			yield(name, httpsafe.TrimOWS(v))
		}
	}
	if len(r.Trailer) > 0 {
		keys := make([]string, 0, len(r.Trailer))
		for k := range r.Trailer {
			if !httpguts.ValidHeaderFieldName(k) {
				return fmt.Errorf("invalid trailer name %q", k)
			}
			keys = append(keys, lowerHeader(k))
		}
		sort.Strings(keys)
		yield("trailer", strings.Join(keys, ", "))
	}
	switch {
	case r.ContentLength > 0:
		yield("content-length", strconv.FormatInt(r.ContentLength, 10))
	case r.ContentLength == 0 && (method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch):
		yield("content-length", "0")
	}
	return nil
}

// trailerFields yields the request trailers that have values.
func trailerFields(t http.Header, yield func(name, value string)) error {
	for k, vs := range t {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("invalid trailer name %q", k)
		}
		name := lowerHeader(k)
		switch name {
		case "host", "content-length", "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade", "trailer", "te":
			continue
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("invalid trailer value for %q", k)
			}
			yield(name, httpsafe.TrimOWS(v))
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// lowerHeader returns the HTTP/2 (lower-case) name of a header key; common keys cost no allocation.
func lowerHeader(k string) string {
	if v, ok := commonLower[k]; ok {
		return v
	}
	return strings.ToLower(k)
}

var commonLower = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"accept", "accept-encoding", "accept-language", "authorization", "cache-control",
		"content-encoding", "content-length", "content-type", "cookie", "date", "etag", "grpc-accept-encoding",
		"grpc-encoding", "grpc-timeout", "host", "if-match", "if-modified-since", "if-none-match", "origin",
		"referer", "te", "trailer", "user-agent", "via", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid",
		"x-b3-sampled", "x-envoy-attempt-count", "x-envoy-expected-rq-timeout-ms", "x-envoy-peer-metadata",
		"x-envoy-peer-metadata-id", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-client-cert",
		"x-request-id", "traceparent", "tracestate", "connection", "upgrade", "transfer-encoding", "keep-alive",
		"proxy-connection"} {
		m[http.CanonicalHeaderKey(k)] = k
	}
	return m
}()

// bodyReady reports whether the next Read of the request body returns without waiting.
func bodyReady(r *http.Request, body io.Reader) bool {
	if r.GetBody != nil || body == http.NoBody {
		return true
	}
	rr, ok := body.(ReadReadier)
	return ok && rr.ReadReady()
}

// closeBody closes the request body (once).
func (cs *h2Stream) closeBody() {
	if cs.body != nil {
		cs.bodyOnce.Do(func() { cs.body.Close() })
	}
}

// wakeLocked wakes the goroutine waiting for the response or its body (c.mu held).
func (cs *h2Stream) wakeLocked() {
	select {
	case cs.wake <- struct{}{}:
	default:
	}
}

// removeLocked takes the stream out of its connection; it reports whether it was in (c.mu held).
func (cs *h2Stream) removeLocked() bool {
	if cs.removed {
		return false
	}
	cs.removed = true
	delete(cs.c.streams, cs.id)
	return true
}

// finish ends a removed stream: it stops watching the context and frees its place on the
// connection.
func (cs *h2Stream) finish() {
	cs.stop()
	cs.c.release()
}

// endLocked handles END_STREAM from the upstream. The returned function, run once c.mu is released,
// closes the stream: if the request is still being written, its writing stops and the stream is
// reset with NO_ERROR, as the upstream no longer reads it (c.mu held).
func (cs *h2Stream) endLocked() (after func(), err error) {
	c := cs.c
	if cs.declared >= 0 && cs.received != cs.declared {
		return nil, fmt.Errorf("upstream %s sent %d bytes with content-length %d on http2 stream %d", c.addr, cs.received, cs.declared, cs.id)
	}
	cs.gotEnd = true
	rst := !cs.sentEnd
	if rst {
		cs.werr = errStreamOver
		c.signalFlow()
	}
	if !cs.removeLocked() {
		return nil, nil
	}
	return func() {
		if rst {
			c.writeRST(cs.id, http2.ErrCodeNo)
			cs.closeBody()
		}
		cs.finish()
	}, nil
}

// cancel ends the stream when its request's context is done.
func (cs *h2Stream) cancel() { cs.fail(ctxError(cs.ctx), http2.ErrCodeCancel) }

// fail ends the stream with err: response reads fail with it, the request body stops and is closed,
// unread response bytes are discarded (credited back to the connection) and, when code is not
// zero and the stream was open, RST_STREAM with code tells the upstream.
func (cs *h2Stream) fail(err error, code http2.ErrCode) {
	c := cs.c
	c.mu.Lock()
	if cs.err == nil {
		cs.err = err
	}
	if cs.werr == nil || cs.werr == errStreamOver {
		cs.werr = err
	}
	removed := cs.removeLocked()
	rst := removed && code != 0 && c.err == nil
	cinc := c.creditConn(int64(cs.buffered))
	cs.buf, cs.buffered = nil, 0
	cs.wakeLocked()
	c.signalFlow()
	c.mu.Unlock()
	if rst || cinc > 0 {
		c.wmu.Lock()
		c.writePreface()
		if rst {
			c.fr.WriteRSTStream(cs.id, code)
		}
		if cinc > 0 {
			c.fr.WriteWindowUpdate(0, uint32(cinc))
		}
		_ = c.flush()
		c.wmu.Unlock()
	}
	if removed {
		cs.finish()
	}
	cs.closeBody()
}

// sendData writes data as DATA frames within the send windows and the upstream's frame size,
// END_STREAM on the last when end (an empty data with end is one empty frame). Called with wmu
// held; when a window is exhausted it returns what it wrote if !wait, else it flushes and releases
// wmu until the window grows.
func (c *h2Conn) sendData(cs *h2Stream, data []byte, end, wait bool) (int, error) {
	sent := 0
	for {
		c.mu.Lock()
		if cs.werr != nil {
			err := cs.werr
			c.mu.Unlock()
			return sent, err
		}
		n := min(int64(len(data)-sent), c.sendWin, cs.sendWin, int64(c.maxFrame))
		if n <= 0 && len(data) > sent {
			if !wait {
				c.mu.Unlock()
				return sent, nil
			}
			ch := c.flow
			c.mu.Unlock()
			if err := c.flush(); err != nil {
				return sent, err
			}
			c.wmu.Unlock()
			<-ch
			c.wmu.Lock()
			continue
		}
		n = max(n, 0)
		c.sendWin -= n
		cs.sendWin -= n
		last := end && sent+int(n) == len(data)
		if last {
			cs.sentEnd = true
		}
		c.mu.Unlock()
		c.fr.WriteData(cs.id, last, data[sent:sent+int(n)])
		if sent += int(n); sent == len(data) {
			return sent, nil
		}
	}
}

// bodyWriter copies a request body (and its trailers) to its stream.
type bodyWriter struct {
	cs       *h2Stream
	remain   int64 // body bytes still expected when the length is known, else -1
	bufp     *[]byte
	pending  []byte // read, not yet written
	eof      bool
	trailers bool
}

var h2BufPool = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

func newBodyWriter(cs *h2Stream) *bodyWriter {
	w := &bodyWriter{cs: cs, remain: -1, trailers: len(cs.req.Trailer) > 0, eof: cs.body == nil}
	if cs.req.ContentLength > 0 {
		w.remain = cs.req.ContentLength
	}
	if !w.eof {
		w.bufp = h2BufPool.Get().(*[]byte)
	}
	return w
}

func (w *bodyWriter) release() {
	if w.bufp != nil {
		h2BufPool.Put(w.bufp)
		w.bufp = nil
	}
}

// read reads the next part of the body into pending.
func (w *bodyWriter) read() error {
	buf := *w.bufp
	if w.remain >= 0 && w.remain < int64(len(buf)) {
		buf = buf[:w.remain]
	}
	n, err := w.cs.body.Read(buf)
	w.pending = buf[:n]
	if w.remain >= 0 {
		if w.remain -= int64(n); w.remain == 0 {
			w.eof = true
			return nil
		}
	}
	switch {
	case err == io.EOF && w.remain > 0:
		return fmt.Errorf("request body: %d bytes short of its content-length %d", w.remain, w.cs.req.ContentLength)
	case err == io.EOF:
		w.eof = true
	case err != nil:
		return fmt.Errorf("reading the request body: %w", err)
	}
	return nil
}

// step writes pending (and, at the end of the body, the end of the stream); it reports whether all of
// it is written (wmu held).
func (w *bodyWriter) step(wait bool) (bool, error) {
	c := w.cs.c
	if len(w.pending) > 0 || (w.eof && !w.trailers) {
		n, err := c.sendData(w.cs, w.pending, w.eof && !w.trailers, wait)
		w.pending = w.pending[n:]
		if err != nil || len(w.pending) > 0 {
			return false, err
		}
	}
	if w.eof && w.trailers {
		return true, w.writeTrailers()
	}
	return true, nil
}

// writeReady writes the body while its reads would not wait and the send windows have room (wmu
// held); done reports that the body and its end are written.
func (w *bodyWriter) writeReady() (done bool, err error) {
	for {
		if len(w.pending) == 0 && !w.eof {
			if !bodyReady(w.cs.req, w.cs.body) {
				return false, nil
			}
			if err := w.read(); err != nil {
				return false, err
			}
			if len(w.pending) == 0 && !w.eof {
				return false, nil // a ready body that gave nothing: go on without holding the lock
			}
		}
		ok, err := w.step(false)
		if err != nil || !ok {
			return false, err
		}
		if w.eof {
			return true, nil
		}
	}
}

// run copies the rest of the body on its own goroutine, full duplex with the response: it flushes
// before every read that may wait.
func (w *bodyWriter) run() {
	defer w.release()
	err := w.copy()
	if err != nil {
		// A stream already over (its response ended, or it failed) closed the body under the read.
		c := w.cs.c
		c.mu.Lock()
		over := w.cs.werr != nil
		c.mu.Unlock()
		if !over {
			w.cs.fail(err, http2.ErrCodeCancel)
		}
	}
	w.cs.closeBody()
}

func (w *bodyWriter) copy() error {
	c := w.cs.c
	for {
		if len(w.pending) == 0 && !w.eof {
			if !bodyReady(w.cs.req, w.cs.body) {
				c.wmu.Lock()
				err := c.flush()
				c.wmu.Unlock()
				if err != nil {
					return err
				}
			}
			if err := w.read(); err != nil {
				return err
			}
		}
		c.wmu.Lock()
		_, err := w.step(true)
		if err == nil && w.eof {
			err = c.flush()
			c.wmu.Unlock()
			return err
		}
		c.wmu.Unlock()
		if err != nil {
			return err
		}
	}
}

// writeTrailers ends the stream with the request's trailers, or an empty DATA frame when none has a
// value (wmu held).
func (w *bodyWriter) writeTrailers() error {
	cs, c := w.cs, w.cs.c
	emit := func(yield func(name, value string)) error { return trailerFields(cs.req.Trailer, yield) }
	n := 0
	if err := emit(func(string, string) { n++ }); err != nil {
		return err
	}
	if n == 0 {
		_, err := c.sendData(cs, nil, true, false)
		return err
	}
	c.mu.Lock()
	err := cs.werr
	if err == nil {
		cs.sentEnd = true
	}
	maxFrame, maxList := c.maxFrame, c.maxHeaders
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.writeHeaders(cs.id, emit, true, maxFrame, maxList)
}

// h2Body is a response body: it reads the DATA the connection's reader buffered for the stream and
// returns flow-control credit in batches.
type h2Body struct {
	cs     *h2Stream
	closed bool
	eof    bool
}

func (b *h2Body) Read(p []byte) (int, error) {
	cs, c := b.cs, b.cs.c
	if b.closed {
		return 0, errBodyClosed
	}
	if b.eof {
		return 0, io.EOF
	}
	c.mu.Lock()
	for cs.buffered == 0 && !cs.gotEnd && cs.err == nil {
		c.mu.Unlock()
		<-cs.wake
		c.mu.Lock()
	}
	if cs.err != nil {
		err := cs.err
		c.mu.Unlock()
		return 0, err
	}
	n := 0
	for n < len(p) && len(cs.buf) > 0 {
		m := copy(p[n:], cs.buf[0])
		n += m
		if m == len(cs.buf[0]) {
			cs.buf[0] = nil
			cs.buf = cs.buf[1:]
		} else {
			cs.buf[0] = cs.buf[0][m:]
		}
	}
	cs.buffered -= n
	var sinc int64
	if !cs.removed {
		if cs.unacked += int64(n); cs.unacked >= h2StreamWindow/2 {
			sinc, cs.unacked = cs.unacked, 0
			cs.recvWin += sinc
		}
	}
	cinc := c.creditConn(int64(n))
	var err error
	if cs.buffered == 0 && cs.gotEnd {
		err = io.EOF
	}
	c.mu.Unlock()
	if sinc > 0 || cinc > 0 {
		c.writeWindowUpdates(cs.id, sinc, cinc)
	}
	if err == io.EOF {
		b.eof = true
		if len(cs.trailer) > 0 { // filled in here, on the reader's goroutine: the caller reads resp.Trailer
			if cs.resp.Trailer == nil {
				cs.resp.Trailer = make(http.Header, len(cs.trailer))
			}
			for k, vs := range cs.trailer {
				cs.resp.Trailer[k] = vs
			}
		}
	}
	return n, err
}

// ReadReady reports whether Read would return without waiting.
func (b *h2Body) ReadReady() bool {
	if b.closed || b.eof {
		return true
	}
	c := b.cs.c
	c.mu.Lock()
	defer c.mu.Unlock()
	return b.cs.buffered > 0 || b.cs.gotEnd || b.cs.err != nil
}

// Close discards the unread rest of the body; before its end, it resets the stream (CANCEL).
func (b *h2Body) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	cs, c := b.cs, b.cs.c
	c.mu.Lock()
	open := !cs.removed
	cinc := c.creditConn(int64(cs.buffered))
	cs.buf, cs.buffered = nil, 0
	c.mu.Unlock()
	if open {
		cs.fail(errBodyClosed, http2.ErrCodeCancel)
	}
	if cinc > 0 {
		c.writeWindowUpdates(0, 0, cinc)
	}
	return nil
}
