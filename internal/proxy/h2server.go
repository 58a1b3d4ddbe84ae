package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The downstream HTTP/2 server. Every downstream HTTP/2 connection (h2c prior knowledge handed over
// by the HTTP/1.1 fast path, plain-text connections of an HTTP/2-only manager, TLS connections that
// negotiated h2) is served here, on the goroutine that accepted it: that goroutine reads and
// dispatches frames and writes the control frames they call for; each stream's handler runs on a
// goroutine of its own and writes its response itself. Writes go through one bufio.Writer under the
// connection's write mutex and are flushed once per step: a response the handler does not flush
// (HEADERS, DATA and trailers) leaves in one write. net/http's server adds a serve loop, a goroutine
// per write and a write per frame kind (docs/performance.md).
//
// Files: h2server.go (the connection: reading, flow control, lifecycle), h2stream.go (requests,
// request bodies and the response writer).
//
// Not supported (net/http's server has them): server push, priorities (ignored), extended CONNECT
// (:protocol, RFC 8441), h2c upgrade from HTTP/1.1 (net/http has none either).

const (
	h2DefaultWindow  = 1 << 20 // stream and connection receive windows when the manager sets none (net/http's)
	h2MaxFrame       = 16 << 10
	h2ReadBuf        = 8 << 10
	h2WriteBuf       = 16 << 10
	h2WriteTimeout   = 30 * time.Second // one write to the client (net/http's WriteByteTimeout)
	h2DrainLinger    = time.Second      // after the last stream of a GOAWAY: read what the client still sends, then close
	h2MaxEmptyFrames = 100              // DATA frames without payload or END_STREAM in a row (Envoy bounds them too)
	h2InitialWindow  = 65535            // RFC 9113 section 6.9.2
)

var (
	errH2ConnClosed  = errors.New("http2: connection closed")
	errH2StreamReset = errors.New("http2: stream reset")
	errH2Calm        = errors.New("http2: too many streams reset while their handlers run")
)

// h2Conn is one downstream HTTP/2 connection.
type h2Conn struct {
	rt      *hcmRuntime
	handler http.Handler
	log     *slog.Logger
	conn    net.Conn
	tls     *tls.ConnectionState
	remote  string
	ctx     context.Context // the requests' parent: connInfo and friends; cancelled when the connection ends
	cancel  context.CancelFunc

	// What this side advertised.
	maxStreams    uint32
	streamWin     int32
	connWin       int32
	maxHeaderList uint32
	idleTimeout   time.Duration
	writeTimeout  time.Duration // h2WriteTimeout (tests shorten it)

	// Reader goroutine only.
	br     *bufio.Reader
	rfr    *http2.Framer
	empty  int         // consecutive empty DATA frames
	ctrlWr bool        // control frames written and not flushed
	starts []*h2Stream // streams whose handlers start before the next read that may wait

	wmu      sync.Mutex // guards the write side; may be held while taking mu, never the other way round
	bw       *bufio.Writer
	wfr      *http2.Framer
	henc     *hpack.Encoder
	hbuf     bytes.Buffer
	werr     error
	wdlSet   time.Time // when the connection's write deadline was last pushed forward
	peerMaxF atomic.Uint32

	mu            sync.Mutex
	cond          sync.Cond // a send window grew, a stream was reset, or the connection closed
	streams       map[uint32]*h2Stream
	open          int    // streams in streams not reset by the client (they count against maxStreams)
	lastID        uint32 // highest stream the client opened
	sendWin       int64  // connection send window
	peerInitWin   int32
	peerMaxList   uint32 // 0: no limit
	recvWin       int32  // what the client may still send on the connection
	recvUnacked   int32  // consumed and not yet returned as credit
	settingsAcked bool   // the client acknowledged our SETTINGS
	goAway        bool   // GOAWAY sent (or the client's received): no new streams
	closed        bool
	calm          int // streams refused because reset streams' handlers still ran
	idle          *time.Timer
	wg            sync.WaitGroup // handlers
}

// serveH2 serves c, an HTTP/2 connection of chain, on the calling goroutine. pre are bytes already
// read from c (the start of the preface), cs the TLS state when the proxy did a handshake.
func (l *runningListener) serveH2(c net.Conn, cs *tls.ConnectionState, chain *chainSpec, hello *tls.ClientHelloInfo, pre []byte) {
	var hc *h2Conn
	for range 3 {
		if rt := l.hcmRuntime(chain); rt != nil {
			ci := &connInfo{listener: l, chain: chain, conn: c, inbound: l.current().inbound, tls: cs}
			ctx := context.WithValue(context.WithValue(context.WithValue(context.Background(),
				http.ServerContextKey, rt.srv), http.LocalAddrContextKey, c.LocalAddr()), connInfoKey{}, ci)
			if hc = newH2Conn(rt, rt.h, l.p.log, c, cs, ctx); rt.addH2(hc) {
				break
			}
			hc.cancel()
			hc = nil
		}
		if next := selectChain(l.current(), c, hello); next != nil && next.hcm != nil {
			chain = next
		}
	}
	if hc == nil {
		l.p.log.Warn("connection dropped: no server for its filter chain", "listener", l.name)
		c.Close()
		return
	}
	hc.serve(pre)
	hc.rt.removeH2(hc)
}

func newH2Conn(rt *hcmRuntime, h http.Handler, log *slog.Logger, c net.Conn, cs *tls.ConnectionState, ctx context.Context) *h2Conn {
	hcm := rt.h.hcm
	hc := &h2Conn{rt: rt, handler: h, log: log, conn: c, tls: cs, remote: c.RemoteAddr().String(),
		maxStreams: hcm.maxStreams, streamWin: hcm.streamWindow, connWin: hcm.connWindow,
		maxHeaderList: uint32(max(hcm.maxHeaderBytes, 0)) + 10*32, idleTimeout: hcm.idleTimeout,
		writeTimeout: h2WriteTimeout, streams: map[uint32]*h2Stream{}, sendWin: h2InitialWindow, peerInitWin: h2InitialWindow}
	if hc.maxStreams == 0 {
		hc.maxStreams = 100
	}
	if hc.streamWin <= 0 {
		hc.streamWin = h2DefaultWindow
	}
	if hc.connWin <= 0 {
		hc.connWin = h2DefaultWindow
	}
	hc.recvWin = max(hc.connWin, h2InitialWindow)
	hc.ctx, hc.cancel = context.WithCancel(ctx)
	hc.cond.L = &hc.mu
	hc.peerMaxF.Store(h2MaxFrame)
	return hc
}

// serve runs the connection until it ends, then waits for its handlers.
func (c *h2Conn) serve(pre []byte) {
	defer c.wg.Wait()
	defer func() {
		c.shut()
		for range c.starts {
			c.wg.Done() // never started: the connection is gone
		}
	}()
	c.br = bufio.NewReaderSize(&prefixConn{Conn: c.conn, prefix: pre}, h2ReadBuf)
	c.rfr = http2.NewFramer(nil, c.br)
	c.rfr.SetReuseFrames() // a DATA frame is handled (its bytes copied) before the next read
	c.rfr.SetMaxReadFrameSize(h2MaxFrame)
	c.rfr.MaxHeaderListSize = c.maxHeaderList
	c.rfr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.bw = bufio.NewWriterSize(h2ConnWriter{c}, h2WriteBuf)
	c.wfr = http2.NewFramer(c.bw, nil)
	c.henc = hpack.NewEncoder(&c.hbuf)

	if d := c.rt.h.hcm.headersTimeout; d > 0 {
		_ = c.conn.SetReadDeadline(time.Now().Add(d)) // the preface and the client's SETTINGS
	}
	var preface [24]byte
	if _, err := io.ReadFull(c.br, preface[:]); err != nil || !bytes.Equal(preface[:], h2Preface) {
		return
	}
	c.wmu.Lock()
	settings := []http2.Setting{
		{ID: http2.SettingMaxConcurrentStreams, Val: c.maxStreams},
		{ID: http2.SettingInitialWindowSize, Val: uint32(c.streamWin)},
		{ID: http2.SettingMaxFrameSize, Val: h2MaxFrame},
		{ID: http2.SettingMaxHeaderListSize, Val: c.maxHeaderList},
		{ID: http2.SettingEnablePush, Val: 0},
	}
	_ = c.wfr.WriteSettings(settings...)
	if c.recvWin > h2InitialWindow {
		_ = c.wfr.WriteWindowUpdate(0, uint32(c.recvWin-h2InitialWindow))
	}
	var err error
	if !c.frameBuffered() {
		err = c.flushLocked()
	} // else the client's SETTINGS came with the preface: its ACK goes out in the same write
	c.ctrlWr = true
	c.wmu.Unlock()
	if err != nil {
		return
	}
	f, err := c.rfr.ReadFrame()
	if sf, ok := f.(*http2.SettingsFrame); err != nil || !ok || sf.IsAck() {
		if err == nil {
			c.goAwayNow(http2.ErrCodeProtocol)
		}
		return
	} else if err := c.onSettings(sf); err != nil {
		c.fail(err)
		return
	}
	_ = c.conn.SetReadDeadline(time.Time{})
	if c.idleTimeout > 0 {
		c.mu.Lock()
		c.idle = time.AfterFunc(c.idleTimeout, c.onIdle)
		c.mu.Unlock()
	}
	for {
		if !c.frameBuffered() {
			// The next read may wait: what this read called for goes out first.
			for _, s := range c.starts {
				go c.runHandler(s)
			}
			clear(c.starts)
			c.starts = c.starts[:0]
			if c.ctrlWr {
				c.wmu.Lock()
				err := c.flushLocked()
				c.wmu.Unlock()
				c.ctrlWr = false
				if err != nil {
					return
				}
			}
		}
		f, err := c.rfr.ReadFrame()
		if err == nil {
			err = c.dispatch(f)
		}
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				c.mu.Lock()
				c.lastID = max(c.lastID, se.StreamID) // a malformed request still used its id
				s := c.streams[se.StreamID]
				c.mu.Unlock()
				c.resetStream(s, se.StreamID, se.Code)
				continue
			}
			c.fail(err)
			return
		}
	}
}

// frameBuffered reports whether the next frame is read in full without reading the connection (a
// HEADERS frame without END_HEADERS may need more frames: it counts as not buffered).
func (c *h2Conn) frameBuffered() bool {
	n := c.br.Buffered()
	if n < 9 {
		return false
	}
	h, _ := c.br.Peek(9)
	size := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
	if http2.FrameType(h[3]) == http2.FrameHeaders && http2.Flags(h[4])&http2.FlagHeadersEndHeaders == 0 {
		return false
	}
	return n >= 9+size
}

// fail ends the connection after err: a GOAWAY for protocol errors, a plain close otherwise.
func (c *h2Conn) fail(err error) {
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &ce):
		c.goAwayNow(http2.ErrCode(ce))
	case errors.Is(err, http2.ErrFrameTooLarge):
		c.goAwayNow(http2.ErrCodeFrameSize)
	case errors.Is(err, errH2Calm):
		c.goAwayNow(http2.ErrCodeEnhanceYourCalm)
	}
}

// dispatch handles one frame on the reader goroutine.
func (c *h2Conn) dispatch(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return c.onHeaders(f)
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.SettingsFrame:
		if f.IsAck() {
			c.mu.Lock()
			c.settingsAcked = true
			c.mu.Unlock()
			return nil
		}
		return c.onSettings(f)
	case *http2.PingFrame:
		if f.IsAck() {
			return nil
		}
		c.wmu.Lock()
		_ = c.wfr.WritePing(true, f.Data)
		c.ctrlWr = true
		c.wmu.Unlock()
		return nil
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.RSTStreamFrame:
		c.mu.Lock()
		if f.StreamID > c.lastID {
			c.mu.Unlock()
			return http2.ConnectionError(http2.ErrCodeProtocol) // an idle stream
		}
		s := c.streams[f.StreamID]
		if s == nil || s.reset {
			c.mu.Unlock()
			return nil
		}
		s.reset, s.peerReset = true, true
		c.open--
		c.cond.Broadcast()
		c.mu.Unlock()
		s.cancel()
		c.credit(nil, s.body.fail(errH2StreamReset))
		return nil
	case *http2.GoAwayFrame:
		c.shutdown() // the client opens no more streams: finish the open ones
		return nil
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID { // RFC 9113 section 5.3.1
			return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol}
		}
	}
	return nil // other PRIORITY frames (priorities are ignored) and unknown frame types
}

func (c *h2Conn) onSettings(f *http2.SettingsFrame) error {
	if err := f.ForeachSetting(func(s http2.Setting) error { return s.Valid() }); err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - int64(c.peerInitWin)
			c.peerInitWin = int32(s.Val)
			for _, st := range c.streams {
				st.sendWin += delta
				if st.sendWin > 1<<31-1 {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
			c.cond.Broadcast()
		case http2.SettingMaxFrameSize:
			c.peerMaxF.Store(s.Val)
		case http2.SettingMaxHeaderListSize:
			c.peerMaxList = s.Val
		case http2.SettingHeaderTableSize:
			c.henc.SetMaxDynamicTableSizeLimit(s.Val)
		}
		return nil
	})
	c.mu.Unlock()
	if err != nil {
		return err
	}
	_ = c.wfr.WriteSettingsAck()
	c.ctrlWr = true
	return nil
}

func (c *h2Conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.StreamID == 0 {
		c.sendWin += int64(f.Increment)
		if c.sendWin > 1<<31-1 {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		c.cond.Broadcast()
		return nil
	}
	if f.StreamID > c.lastID {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if s := c.streams[f.StreamID]; s != nil {
		s.sendWin += int64(f.Increment)
		if s.sendWin > 1<<31-1 {
			return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeFlowControl}
		}
		c.cond.Broadcast()
	}
	return nil
}

func (c *h2Conn) onData(f *http2.DataFrame) error {
	id, data, flen := f.StreamID, f.Data(), int32(f.Length)
	if len(data) == 0 && !f.StreamEnded() {
		if c.empty++; c.empty > h2MaxEmptyFrames {
			return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
		}
	} else {
		c.empty = 0
	}
	c.mu.Lock()
	if flen > c.recvWin {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.recvWin -= flen
	s := c.streams[id]
	switch {
	case s == nil && id > c.lastID:
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol) // DATA on an idle stream
	case s != nil && s.reset && !s.peerReset:
		// Reset by this side: frames the client sent before it saw the RST_STREAM are ignored
		// (RFC 9113 section 5.1); the connection's window still counts them.
		c.mu.Unlock()
		c.credit(nil, flen)
		return nil
	case s == nil || s.reset || s.remoteDone:
		// A closed stream, one the client reset, or one it ended: STREAM_CLOSED.
		c.mu.Unlock()
		c.credit(nil, flen)
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeStreamClosed}
	case flen > s.recvWin:
		c.mu.Unlock()
		c.credit(nil, flen)
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeFlowControl}
	}
	s.recvWin -= flen
	if f.StreamEnded() {
		s.remoteDone = true
	}
	c.mu.Unlock()
	kept, err := s.body.push(data, f.StreamEnded())
	if unused := flen - int32(kept); unused > 0 {
		c.credit(s, unused) // padding, or bytes of a body the handler closed
	}
	return err
}

// credit returns n consumed bytes as flow-control credit, in batches: the connection's when half its
// window is consumed, the stream's (s may be nil) when half of it is, in one write.
func (c *h2Conn) credit(s *h2Stream, n int32) {
	if n <= 0 {
		return
	}
	var sinc, cinc int32
	c.mu.Lock()
	c.recvUnacked += n
	if c.recvUnacked >= max(c.connWin, h2InitialWindow)/2 {
		cinc, c.recvUnacked = c.recvUnacked, 0
		c.recvWin += cinc
	}
	if s != nil && !s.remoteDone && !s.reset {
		s.recvUnacked += n
		if s.recvUnacked >= c.streamWin/2 {
			sinc, s.recvUnacked = s.recvUnacked, 0
			s.recvWin += sinc
		}
	}
	c.mu.Unlock()
	if sinc == 0 && cinc == 0 {
		return
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if cinc > 0 {
		_ = c.wfr.WriteWindowUpdate(0, uint32(cinc))
	}
	if sinc > 0 {
		_ = c.wfr.WriteWindowUpdate(s.id, uint32(sinc))
	}
	_ = c.flushLocked()
}

// onHeaders opens a stream, or takes a stream's trailers.
func (c *h2Conn) onHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if f.HasPriority() && f.Priority.StreamDep == id { // RFC 9113 section 5.3.1
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	c.mu.Lock()
	if s := c.streams[id]; s != nil {
		c.mu.Unlock()
		return c.onTrailers(s, f)
	}
	if id <= c.lastID {
		// A stream that is closed, or an identifier lower than one the client already used
		// (RFC 9113 section 5.1.1).
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if c.goAway || c.closed {
		c.mu.Unlock()
		return nil // a stream after GOAWAY: ignored
	}
	c.lastID = id
	refuse := http2.ErrCodeNo
	switch {
	case c.open >= int(c.maxStreams):
		refuse = http2.ErrCodeRefusedStream
	case len(c.streams) >= int(c.maxStreams):
		// The client reset streams whose handlers still run: refusing bounds the work it can
		// start (rapid reset, CVE-2023-44487); insisting ends the connection.
		refuse = http2.ErrCodeRefusedStream
		if c.calm++; c.calm > 4*int(c.maxStreams) {
			c.mu.Unlock()
			return errH2Calm
		}
	}
	c.mu.Unlock()
	if refuse != http2.ErrCodeNo {
		c.resetStream(nil, id, refuse)
		return nil
	}
	if f.Truncated {
		c.replyStatus(id, http.StatusRequestHeaderFieldsTooLarge, !f.StreamEnded())
		return nil
	}
	s, code := c.newStream(f)
	if code != http2.ErrCodeNo {
		c.resetStream(nil, id, code)
		return nil
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errH2ConnClosed
	}
	c.streams[id] = s
	c.open++
	if len(c.streams) == 1 && c.idle != nil {
		c.idle.Stop()
	}
	c.wg.Add(1)
	c.mu.Unlock()
	// Started once the frames that arrived with the HEADERS are read: a body that came along is then
	// complete when the handler starts (ReadReady).
	c.starts = append(c.starts, s)
	return nil
}

func (c *h2Conn) onTrailers(s *h2Stream, f *http2.MetaHeadersFrame) error {
	c.mu.Lock()
	closed := s.remoteDone || s.peerReset
	bad := !f.StreamEnded() || len(f.PseudoFields()) > 0
	done := s.reset && !s.peerReset
	if !closed && !bad {
		s.remoteDone = true
	}
	c.mu.Unlock()
	switch {
	case done:
		return nil // reset by this side: ignored, as its DATA
	case closed:
		return http2.StreamError{StreamID: s.id, Code: http2.ErrCodeStreamClosed}
	case bad:
		return http2.StreamError{StreamID: s.id, Code: http2.ErrCodeProtocol}
	}
	return s.body.endWithTrailers(f.RegularFields())
}

// resetStream sends RST_STREAM for id (s, its stream, may be nil) and fails the stream's handler side.
func (c *h2Conn) resetStream(s *h2Stream, id uint32, code http2.ErrCode) {
	if s != nil {
		c.mu.Lock()
		already := s.reset
		if !already {
			s.reset = true
			c.open--
			c.cond.Broadcast()
		}
		c.mu.Unlock()
		if !already {
			s.cancel()
			c.credit(nil, s.body.fail(errH2StreamReset))
		}
	}
	c.wmu.Lock()
	_ = c.wfr.WriteRSTStream(id, code)
	c.ctrlWr = true // reader goroutine: flushed when it has read what arrived
	c.wmu.Unlock()
}

// replyStatus answers a request without running the handler (431 for a header list over the limit).
func (c *h2Conn) replyStatus(id uint32, status int, rst bool) {
	c.wmu.Lock()
	c.hbuf.Reset()
	_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: statusString(status)})
	_ = c.henc.WriteField(hpack.HeaderField{Name: "content-length", Value: "0"})
	c.writeBlockLocked(id, true)
	if rst {
		_ = c.wfr.WriteRSTStream(id, http2.ErrCodeNo)
	}
	c.ctrlWr = true // reader goroutine
	c.wmu.Unlock()
}

// writeBlockLocked writes the header block in hbuf for stream id as HEADERS and CONTINUATION frames.
func (c *h2Conn) writeBlockLocked(id uint32, endStream bool) {
	block, maxF := c.hbuf.Bytes(), int(c.peerMaxF.Load())
	first := block[:min(len(block), maxF)]
	block = block[len(first):]
	_ = c.wfr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: endStream, EndHeaders: len(block) == 0})
	for len(block) > 0 {
		frag := block[:min(len(block), maxF)]
		block = block[len(frag):]
		_ = c.wfr.WriteContinuation(id, len(block) == 0, frag)
	}
}

// flushLocked flushes the write buffer, with the connection's write timeout; a failed write closes
// the connection (the reader then ends it).
func (c *h2Conn) flushLocked() error {
	if c.werr != nil {
		return c.werr
	}
	// Flush also when nothing is buffered: a large frame bypasses the buffer, and its write error is
	// only reported here.
	if err := c.bw.Flush(); err != nil {
		c.werr = fmt.Errorf("http2: write to %s: %w", c.remote, err)
		c.conn.Close()
		return c.werr
	}
	return nil
}

// h2ConnWriter is the connection under the write buffer (c.wmu held): every write to the client
// gets the write timeout, pushed forward at most once per thirtieth of it (once a second: each write
// gets between 29 and 30 seconds).
type h2ConnWriter struct{ c *h2Conn }

func (w h2ConnWriter) Write(p []byte) (int, error) {
	c := w.c
	if now := time.Now(); now.Sub(c.wdlSet) > c.writeTimeout/30 {
		c.wdlSet = now
		_ = c.conn.SetWriteDeadline(now.Add(c.writeTimeout))
	}
	return c.conn.Write(p)
}

// goAwayNow sends GOAWAY with code and closes the connection.
func (c *h2Conn) goAwayNow(code http2.ErrCode) {
	c.mu.Lock()
	c.goAway = true
	last := c.lastID
	c.mu.Unlock()
	c.wmu.Lock()
	_ = c.wfr.WriteGoAway(last, code, nil)
	_ = c.flushLocked()
	c.wmu.Unlock()
	c.conn.Close()
}

// shutdown starts a graceful close: GOAWAY with the last stream opened, the open streams finish, then
// the connection closes.
func (c *h2Conn) shutdown() {
	c.mu.Lock()
	if c.goAway || c.closed {
		c.mu.Unlock()
		return
	}
	c.goAway = true
	last, idle := c.lastID, len(c.streams) == 0
	c.mu.Unlock()
	c.wmu.Lock()
	_ = c.wfr.WriteGoAway(last, http2.ErrCodeNo, nil)
	_ = c.flushLocked()
	c.wmu.Unlock()
	if idle {
		c.linger()
	}
}

// linger lets the reader take what the client sent before it saw the GOAWAY (closing with unread
// bytes would reset the connection and could lose the GOAWAY), then end.
func (c *h2Conn) linger() { _ = c.conn.SetReadDeadline(time.Now().Add(h2DrainLinger)) }

func (c *h2Conn) onIdle() {
	c.mu.Lock()
	idle := len(c.streams) == 0 && !c.closed
	c.mu.Unlock()
	if idle {
		c.shutdown()
	}
}

// shut ends the connection: handlers see their contexts cancelled and their bodies and writes fail.
func (c *h2Conn) shut() {
	c.mu.Lock()
	c.closed = true
	if c.idle != nil {
		c.idle.Stop()
	}
	ss := make([]*h2Stream, 0, len(c.streams))
	for _, s := range c.streams {
		ss = append(ss, s)
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	c.cancel()
	for _, s := range ss {
		s.body.fail(errH2ConnClosed)
	}
	c.conn.Close()
}

// runHandler runs the handler of s and completes its response.
func (c *h2Conn) runHandler(s *h2Stream) {
	defer c.wg.Done()
	c.mu.Lock()
	gone := s.reset // reset by the client before its handler started
	c.mu.Unlock()
	ok := !gone && c.call(s)
	code := http2.ErrCodeInternal
	if ok && s.w.finish() == nil {
		code = http2.ErrCodeNo
	}
	s.body.discard()
	c.mu.Lock()
	delete(c.streams, s.id)
	rst := !s.reset && (code != http2.ErrCodeNo || !s.remoteDone)
	if !s.reset {
		s.reset = true // nothing more is written or read on it
		c.open--
	}
	if len(c.streams) == 0 {
		c.calm = 0
		if c.idle != nil && !c.goAway {
			c.idle.Reset(c.idleTimeout)
		}
	}
	drained := c.goAway && len(c.streams) == 0
	c.mu.Unlock()
	s.cancel()
	if rst {
		// An incomplete response, or a complete one before the whole request: RST_STREAM (NO_ERROR
		// asks the client to stop sending, RFC 9113 section 8.1).
		c.wmu.Lock()
		_ = c.wfr.WriteRSTStream(s.id, code)
		_ = c.flushLocked()
		c.wmu.Unlock()
	}
	if s.w.closeConn {
		c.shutdown()
	} else if drained {
		c.linger()
	}
}

// call runs the handler; false means it panicked (http.ErrAbortHandler or a bug).
func (c *h2Conn) call(s *h2Stream) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				c.log.Error("http handler panicked", "panic", v, "remote", c.remote, "stream", s.id, "stack", string(debug.Stack()))
			}
			ok = false
		}
	}()
	c.handler.ServeHTTP(&s.w, s.req)
	return true
}

// reserve takes up to want bytes of send window for s, waiting for some while there is none: until
// deadline (the handler's write deadline, if any), and at most h2WriteTimeout (a client that stops
// granting window holds a handler no longer than one that stops reading).
func (c *h2Conn) reserve(s *h2Stream, want int, deadline time.Time) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		switch {
		case s.reset:
			return 0, errH2StreamReset
		case c.closed:
			return 0, errH2ConnClosed
		}
		if n := min(int64(want), s.sendWin, c.sendWin); n > 0 {
			s.sendWin -= n
			c.sendWin -= n
			return int(n), nil
		}
		if t == nil {
			if limit := time.Now().Add(c.writeTimeout); deadline.IsZero() || limit.Before(deadline) {
				deadline = limit
			}
		}
		d := time.Until(deadline)
		if d <= 0 {
			return 0, errDeadline
		}
		if t == nil {
			t = time.AfterFunc(d, c.wake)
		}
		c.cond.Wait()
	}
}

// unreserve gives back window reserved and not used (the stream was reset, or its write failed).
func (c *h2Conn) unreserve(s *h2Stream, n int) {
	if n == 0 {
		return
	}
	c.mu.Lock()
	s.sendWin += int64(n)
	c.sendWin += int64(n)
	c.cond.Broadcast()
	c.mu.Unlock()
}

func (c *h2Conn) wake() {
	c.mu.Lock()
	c.cond.Broadcast()
	c.mu.Unlock()
}

// addH2 registers c with the runtime; false when the runtime takes no more connections (retired or
// stopped).
func (rt *hcmRuntime) addH2(c *h2Conn) bool { return addConn(rt, &rt.h2, c) }

func (rt *hcmRuntime) removeH2(c *h2Conn) { removeConn(rt, &rt.h2, c) }

// drainH2 sends GOAWAY on every HTTP/2 connection: their open streams finish, then they close.
func (rt *hcmRuntime) drainH2() {
	rt.mu.Lock()
	cs := make([]*h2Conn, 0, len(rt.h2))
	for c := range rt.h2 {
		cs = append(cs, c)
	}
	rt.mu.Unlock()
	for _, c := range cs {
		c.shutdown()
	}
}

// stopH2 sends GOAWAY on every HTTP/2 connection, waits for their streams until ctx ends, then closes
// what is left.
func (rt *hcmRuntime) stopH2(ctx context.Context) {
	rt.mu.Lock()
	rt.shut.Store(true)
	cs := make([]*h2Conn, 0, len(rt.h2))
	for c := range rt.h2 {
		cs = append(cs, c)
	}
	rt.mu.Unlock()
	for _, c := range cs {
		c.shutdown()
	}
	awaitConns(ctx, rt, &rt.h2, func(c *h2Conn) net.Conn { return c.conn })
}
