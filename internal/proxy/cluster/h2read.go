package cluster

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/net/http2"
)

// readLoop is the connection's reader: it reads frames and hands them to their streams until the
// connection fails, then fails the streams still open.
func (c *h2Conn) readLoop() {
	err := c.readFrames()
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	err = c.err
	streams := make([]*h2Stream, 0, len(c.streams))
	for _, cs := range c.streams {
		streams = append(streams, cs)
	}
	c.mu.Unlock()
	c.conn.Close()
	c.once.Do(func() { close(c.ready) })
	c.p.remove(c)
	for _, cs := range streams {
		cs.fail(err, 0)
	}
	c.mu.Lock()
	c.signalFlow()
	c.mu.Unlock()
}

// readFrames reads and dispatches frames; its error names the connection.
func (c *h2Conn) readFrames() error {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				c.resetStream(se.StreamID, se.Code, fmt.Errorf("upstream %s: http2 stream %d: %v", c.addr, se.StreamID, se))
				continue
			}
			return c.connError(err)
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			err = c.onHeaders(f)
		case *http2.DataFrame:
			err = c.onData(f)
		case *http2.SettingsFrame:
			err = c.onSettings(f)
		case *http2.WindowUpdateFrame:
			err = c.onWindowUpdate(f)
		case *http2.RSTStreamFrame:
			c.onReset(f)
		case *http2.PingFrame:
			if !f.IsAck() {
				c.wmu.Lock()
				c.writePreface()
				c.fr.WritePing(true, f.Data)
				err = c.flush()
				c.wmu.Unlock()
			}
		case *http2.GoAwayFrame:
			c.onGoAway(f)
		case *http2.PushPromiseFrame:
			err = http2.ConnectionError(http2.ErrCodeProtocol) // push is disabled in our SETTINGS
		}
		if err != nil {
			return c.connError(err)
		}
	}
}

// connError sends GOAWAY for a protocol error of the upstream's and returns the error to fail the
// streams with.
func (c *h2Conn) connError(err error) error {
	var ce http2.ConnectionError
	if !errors.As(err, &ce) {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("upstream %s closed the http2 connection", c.addr)
		}
		if errors.Is(err, http2.ErrFrameTooLarge) {
			ce = http2.ConnectionError(http2.ErrCodeFrameSize)
		} else {
			return fmt.Errorf("reading from upstream %s: %w", c.addr, err)
		}
	}
	if d := c.fr.ErrorDetail(); d != nil {
		err = fmt.Errorf("%v: %w", err, d)
	}
	if c.wmu.TryLock() { // a writer stuck on a full socket must not hold the reader
		c.writePreface()
		c.fr.WriteGoAway(0, http2.ErrCode(ce), nil)
		_ = c.bw.Flush()
		c.wmu.Unlock()
	}
	return fmt.Errorf("upstream %s broke the http2 protocol: %w", c.addr, err)
}

// stream returns the open stream id, nil when it is closed; err is a connection error when the
// upstream names a stream never opened (c.mu held).
func (c *h2Conn) stream(id uint32) (*h2Stream, error) {
	if cs := c.streams[id]; cs != nil {
		return cs, nil
	}
	if id%2 == 0 || id >= c.nextID {
		return nil, http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil, nil
}

// resetStream fails stream id with err and sends RST_STREAM with code.
func (c *h2Conn) resetStream(id uint32, code http2.ErrCode, err error) {
	c.mu.Lock()
	cs := c.streams[id]
	c.mu.Unlock()
	if cs != nil {
		cs.fail(err, code)
	}
}

func (c *h2Conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	table := int64(-1)
	c.mu.Lock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingMaxConcurrentStreams:
			c.maxStreams = s.Val
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - c.initWin
			for _, cs := range c.streams {
				if cs.sendWin += delta; cs.sendWin > h2MaxStreamID {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
			c.initWin = int64(s.Val)
		case http2.SettingMaxFrameSize:
			c.maxFrame = s.Val
		case http2.SettingHeaderTableSize:
			table = int64(s.Val)
		case http2.SettingMaxHeaderListSize:
			c.maxHeaders = s.Val
		}
		return nil
	})
	if _, ok := f.Value(http2.SettingMaxConcurrentStreams); !ok && !c.settled {
		c.maxStreams = h2DefaultMaxStreams // no limit: this pool's own
	}
	c.settled = true
	c.signalFlow()
	c.mu.Unlock()
	if err != nil {
		return err
	}
	c.wmu.Lock()
	c.writePreface()
	if table >= 0 {
		c.henc.SetMaxDynamicTableSizeLimit(uint32(min(table, 4096)))
	}
	c.fr.WriteSettingsAck()
	err = c.flush()
	c.wmu.Unlock()
	c.once.Do(func() { close(c.ready) })
	return err
}

func (c *h2Conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	inc := int64(f.Increment)
	if f.StreamID == 0 {
		if c.sendWin += inc; c.sendWin > h2MaxStreamID {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		c.signalFlow()
		return nil
	}
	cs, err := c.stream(f.StreamID)
	if cs == nil {
		return err
	}
	if cs.sendWin += inc; cs.sendWin > h2MaxStreamID {
		c.mu.Unlock()
		cs.fail(fmt.Errorf("upstream %s overflowed the send window of http2 stream %d", c.addr, cs.id), http2.ErrCodeFlowControl)
		c.mu.Lock()
		return nil
	}
	c.signalFlow()
	return nil
}

func (c *h2Conn) onReset(f *http2.RSTStreamFrame) {
	c.mu.Lock()
	cs := c.streams[f.StreamID]
	unprocessed := cs != nil && cs.resp == nil && f.ErrCode == http2.ErrCodeRefusedStream
	c.mu.Unlock()
	if cs == nil {
		return
	}
	var err error = &resetError{addr: c.addr, id: f.StreamID, code: f.ErrCode}
	if unprocessed {
		err = &unprocessedError{err}
	}
	cs.fail(err, 0)
}

func (c *h2Conn) onGoAway(f *http2.GoAwayFrame) {
	c.mu.Lock()
	c.goAway = true
	var refused []*h2Stream
	for id, cs := range c.streams {
		if id > f.LastStreamID {
			refused = append(refused, cs)
		}
	}
	c.mu.Unlock()
	c.p.remove(c)
	for _, cs := range refused {
		cs.fail(&unprocessedError{fmt.Errorf("upstream %s sent GOAWAY (%v, last stream %d) before http2 stream %d was processed",
			c.addr, f.ErrCode, f.LastStreamID, cs.id)}, 0)
	}
	c.mu.Lock()
	idle := c.active == 0
	c.mu.Unlock()
	if idle {
		c.close(errors.New("GOAWAY"))
	}
}

func (c *h2Conn) onData(f *http2.DataFrame) error {
	n := int64(f.Length)
	c.mu.Lock()
	if n > c.recvWin {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.recvWin -= n
	cs, err := c.stream(f.StreamID)
	if cs == nil {
		cinc := c.creditConn(n) // a stream we closed: its bytes are discarded
		c.mu.Unlock()
		if cinc > 0 {
			c.writeWindowUpdates(0, 0, cinc)
		}
		return err
	}
	var fail error
	code := http2.ErrCodeProtocol
	data := f.Data()
	switch {
	case cs.resp == nil:
		fail = fmt.Errorf("upstream %s sent DATA before HEADERS on http2 stream %d", c.addr, cs.id)
	case n > cs.recvWin:
		fail, code = fmt.Errorf("upstream %s overflowed the receive window of http2 stream %d", c.addr, cs.id), http2.ErrCodeFlowControl
	case cs.declared >= 0 && cs.received+int64(len(data)) > cs.declared:
		fail = fmt.Errorf("upstream %s sent more than its content-length of %d on http2 stream %d", c.addr, cs.declared, cs.id)
	}
	if fail != nil {
		cinc := c.creditConn(n)
		c.mu.Unlock()
		if cinc > 0 {
			c.writeWindowUpdates(0, 0, cinc)
		}
		cs.fail(fail, code)
		return nil
	}
	cs.recvWin -= n
	pad := n - int64(len(data))
	cs.unacked += pad
	cinc := c.creditConn(pad)
	if len(data) > 0 {
		cs.appendData(data)
	}
	var end func()
	if f.StreamEnded() {
		end, fail = cs.endLocked()
	}
	cs.wakeLocked()
	c.mu.Unlock()
	if cinc > 0 {
		c.writeWindowUpdates(0, 0, cinc)
	}
	if fail != nil {
		cs.fail(fail, http2.ErrCodeProtocol)
	} else if end != nil {
		end()
	}
	return nil
}

func (c *h2Conn) onHeaders(f *http2.MetaHeadersFrame) error {
	c.mu.Lock()
	cs, err := c.stream(f.StreamID)
	if cs == nil {
		c.mu.Unlock()
		return err
	}
	var fail error
	var end func()
	switch {
	case f.Truncated:
		fail = fmt.Errorf("upstream %s: response headers of http2 stream %d exceed %d bytes", c.addr, cs.id, h2MaxHeaderList)
	case cs.resp == nil:
		var done bool
		done, fail = cs.onResponse(f)
		if done && fail == nil && f.StreamEnded() {
			end, fail = cs.endLocked()
		}
	case !f.StreamEnded():
		fail = fmt.Errorf("upstream %s sent HEADERS after the response without END_STREAM on http2 stream %d", c.addr, cs.id)
	case len(f.PseudoFields()) > 0:
		fail = fmt.Errorf("upstream %s sent pseudo-headers in the trailers of http2 stream %d", c.addr, cs.id)
	default:
		cs.trailer = make(http.Header, len(f.Fields))
		for _, hf := range f.Fields {
			k := http.CanonicalHeaderKey(hf.Name)
			cs.trailer[k] = append(cs.trailer[k], hf.Value)
		}
		end, fail = cs.endLocked()
	}
	cs.wakeLocked()
	c.mu.Unlock()
	if fail != nil {
		cs.fail(fail, http2.ErrCodeProtocol)
	} else if end != nil {
		end()
	}
	return nil
}

// onResponse reads the response head from the first HEADERS; done is false for a 1xx informational
// response, which the final one follows (c.mu held).
func (cs *h2Stream) onResponse(f *http2.MetaHeadersFrame) (done bool, err error) {
	c := cs.c
	s := f.PseudoValue("status")
	code, perr := strconv.Atoi(s)
	if len(s) != 3 || perr != nil || code < 100 {
		return false, fmt.Errorf("upstream %s sent :status %q on http2 stream %d", c.addr, s, cs.id)
	}
	if code < 200 {
		if code == http.StatusSwitchingProtocols || f.StreamEnded() {
			return false, fmt.Errorf("upstream %s sent %d on http2 stream %d", c.addr, code, cs.id)
		}
		return false, nil
	}
	regular := f.RegularFields()
	h := make(http.Header, len(regular))
	vals := make([]string, len(regular)) // one array for the values of keys seen once
	resp := &http.Response{Status: s + " " + http.StatusText(code), StatusCode: code, Proto: "HTTP/2.0", ProtoMajor: 2,
		Header: h, ContentLength: -1, Request: cs.req, Body: http.NoBody}
	for i, hf := range regular {
		k := http.CanonicalHeaderKey(hf.Name)
		if k == "Trailer" {
			if resp.Trailer == nil {
				resp.Trailer = http.Header{}
			}
			for _, t := range strings.Split(hf.Value, ",") {
				if t = strings.TrimSpace(t); t != "" {
					resp.Trailer[http.CanonicalHeaderKey(t)] = nil
				}
			}
			continue
		}
		if vs, ok := h[k]; ok {
			h[k] = append(vs, hf.Value)
		} else {
			vals[i] = hf.Value
			h[k] = vals[i : i+1 : i+1]
		}
	}
	if cl := h["Content-Length"]; len(cl) > 0 {
		n, err := strconv.ParseInt(cl[0], 10, 64)
		if err != nil || n < 0 || differ(cl) {
			return false, fmt.Errorf("upstream %s sent content-length %q on http2 stream %d", c.addr, cl, cs.id)
		}
		cs.declared = n
		resp.ContentLength = n
	}
	switch {
	case cs.req.Method == http.MethodHead:
		cs.declared = 0 // whatever content-length says, no DATA
	case f.StreamEnded() && cs.declared > 0:
		return false, fmt.Errorf("upstream %s ended http2 stream %d at HEADERS with content-length %d", c.addr, cs.id, cs.declared)
	case f.StreamEnded():
		resp.ContentLength = 0
	default:
		resp.Body = &h2Body{cs: cs}
	}
	cs.resp = resp
	return true, nil
}

// differ reports whether a header has differing values.
func differ(vs []string) bool {
	for _, v := range vs[1:] {
		if v != vs[0] {
			return true
		}
	}
	return false
}

// appendData buffers a copy of data for the body's reader (c.mu held). Small frames share chunks: a
// peer sending its window one byte per frame must not cost a slice per byte.
func (cs *h2Stream) appendData(data []byte) {
	if n := len(cs.buf); n > 0 && cap(cs.buf[n-1])-len(cs.buf[n-1]) >= len(data) {
		cs.buf[n-1] = append(cs.buf[n-1], data...)
	} else {
		cs.buf = append(cs.buf, append(make([]byte, 0, max(len(data), 512)), data...))
	}
	cs.buffered += len(data)
	cs.received += int64(len(data))
}
