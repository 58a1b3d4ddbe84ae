package proxy

import (
	"bytes"
	"net"
)

// h2ReadBuf is the read buffer of a downstream HTTP/2 connection served by net/http.
const h2ReadBuf = 8 << 10

// h2Preface is the start of the HTTP/2 client connection preface (RFC 9113 section 3.4).
var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// readBufConn buffers the reads of a plain-text HTTP/2 connection. net/http's HTTP/2 server reads
// every frame with two unbuffered reads (the 9-byte header, then the payload), so a request of a
// HEADERS and a DATA frame costs four read system calls, and every PING and WINDOW_UPDATE two more;
// with this buffer, the frames that arrived together cost one (docs/performance.md). It starts with
// pre, bytes read from the connection before. Reads only: writes, deadlines and Close are the
// connection's. It is not safe for concurrent reads, which net/http's server never makes.
type readBufConn struct {
	net.Conn
	buf     []byte
	r, w    int   // buf[r:w] is read and not yet returned
	pending error // the error of the read that filled buf, returned once buf is empty
}

func newReadBufConn(c net.Conn, pre []byte) *readBufConn {
	b := &readBufConn{Conn: c, buf: make([]byte, max(h2ReadBuf, len(pre)))}
	b.w = copy(b.buf, pre)
	return b
}

func (b *readBufConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if b.r == b.w {
		if len(p) >= len(b.buf) {
			return b.Conn.Read(p) // a large read gains nothing from the buffer
		}
		b.r, b.w = 0, 0
		n, err := b.Conn.Read(b.buf)
		if n <= 0 {
			return 0, err
		}
		b.w = n
		// An error that came with bytes is returned by the next read, as bufio.Reader does.
		m := copy(p, b.buf[:n])
		b.r = m
		if m == n {
			return m, err
		}
		b.pending = err
		return m, nil
	}
	n := copy(p, b.buf[b.r:b.w])
	b.r += n
	if b.r == b.w && b.pending != nil {
		err := b.pending
		b.pending = nil
		return n, err
	}
	return n, nil
}

// NetConn returns the wrapped connection.
func (b *readBufConn) NetConn() net.Conn { return b.Conn }

// isH2Preface reports whether b starts with the first line of the HTTP/2 client preface.
func isH2Preface(b []byte) bool { return bytes.HasPrefix(b, h2Preface[:16]) }
