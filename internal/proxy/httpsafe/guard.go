package httpsafe

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
)

// ErrRequest is wrapped by every error a guarded connection returns for a request head it rejects.
// net/http answers such a read error with "400 Bad Request" and closes the connection.
var ErrRequest = errors.New("rejected request")

// GuardOptions bound what a guarded connection accepts.
type GuardOptions struct {
	// MaxHeaderBytes bounds one request head (request line and headers); zero means 60 KiB.
	MaxHeaderBytes int
}

// Guard wraps a plain-text HTTP/1.1 server connection and checks the request bytes as net/http reads
// them, rejecting what net/http would accept but a proxy must not forward:
//   - Content-Length together with Transfer-Encoding (request smuggling; net/http drops the
//     Content-Length and goes on),
//   - line endings other than CRLF (bare LF or bare CR) in heads and chunk framing,
//   - obsolete line folding and NUL bytes in heads,
//   - a head larger than MaxHeaderBytes.
//
// It follows message framing (Content-Length and chunked bodies) so that every request head of a
// keep-alive connection is checked. A connection that starts with the HTTP/2 preface, and the bytes
// after a request asking for an Upgrade, are passed through unchecked.
func Guard(c net.Conn, o GuardOptions) net.Conn {
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = 60 << 10
	}
	return &guardConn{Conn: c, s: Scanner{max: o.MaxHeaderBytes}}
}

type guardConn struct {
	net.Conn
	s   Scanner
	err error
}

func (g *guardConn) Read(b []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.Conn.Read(b)
	if n > 0 {
		if serr := g.s.Feed(b[:n]); serr != nil {
			g.err = serr
			return 0, serr
		}
	}
	return n, err
}

// NetConn returns the wrapped connection.
func (g *guardConn) NetConn() net.Conn { return g.Conn }

type scanState uint8

const (
	stStart scanState = iota // before any byte: looking for the HTTP/2 preface
	stHead
	stBody
	stChunkSize
	stChunkData
	stChunkDataEnd
	stTrailer
	stPassthrough
)

var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// Scanner follows HTTP/1.1 request framing over a byte stream and reports the first violation.
// The zero value is not usable; Guard makes one. It is exported for fuzzing and tests.
type Scanner struct {
	max     int
	state   scanState
	line    []byte // current line without its line ending
	headLen int
	lines   int
	cls     [][]byte
	te      [][]byte
	upgrade bool
	connUpg bool
	remain  int64 // body or chunk bytes left
	start   []byte
}

// NewScanner returns a Scanner with a head limit of max bytes.
func NewScanner(max int) *Scanner { return &Scanner{max: max} }

func violation(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRequest, fmt.Sprintf(format, args...))
}

// Feed scans the next bytes of the stream.
func (s *Scanner) Feed(b []byte) error {
	for len(b) > 0 {
		switch s.state {
		case stPassthrough:
			return nil
		case stStart:
			need := len(h2Preface) - len(s.start)
			take := min(need, len(b))
			s.start = append(s.start, b[:take]...)
			if !bytes.HasPrefix(h2Preface, s.start) {
				// Not HTTP/2: scan what was buffered as HTTP/1.
				buf := s.start
				s.start = nil
				s.state = stHead
				if err := s.Feed(buf); err != nil {
					return err
				}
				b = b[take:]
				continue
			}
			if len(s.start) == len(h2Preface) {
				s.state = stPassthrough
				return nil
			}
			b = b[take:]
		case stBody, stChunkData:
			n := int64(len(b))
			if n > s.remain {
				n = s.remain
			}
			s.remain -= n
			b = b[n:]
			if s.remain == 0 {
				if s.state == stBody {
					s.state = stHead
				} else {
					s.state = stChunkDataEnd
				}
			}
		default:
			if n := len(s.line); n > 0 && s.line[n-1] == '\r' {
				// A CR ended the previous read: this read must start with LF.
				if b[0] != '\n' {
					return violation("bare CR in a line")
				}
				s.line = s.line[:n-1]
				if err := s.endLine(); err != nil {
					return err
				}
				b = b[1:]
				continue
			}
			i := bytes.IndexAny(b, "\r\n")
			if i < 0 {
				if err := s.addToLine(b); err != nil {
					return err
				}
				b = b[len(b):]
				continue
			}
			if err := s.addToLine(b[:i]); err != nil {
				return err
			}
			if b[i] == '\n' {
				return violation("bare LF line ending")
			}
			// b[i] == '\r': the next byte must be '\n'.
			if i+1 == len(b) {
				// CR at the end of this read: remember it by a sentinel and wait.
				s.line = append(s.line, '\r')
				b = b[len(b):]
				continue
			}
			if b[i+1] != '\n' {
				return violation("bare CR in a line")
			}
			if err := s.endLine(); err != nil {
				return err
			}
			b = b[i+2:]
		}
	}
	return nil
}

func (s *Scanner) addToLine(b []byte) error {
	if bytes.IndexByte(b, 0) >= 0 {
		return violation("NUL byte in a request head")
	}
	s.headLen += len(b)
	if s.headLen > s.max {
		return violation("request head larger than %d bytes", s.max)
	}
	s.line = append(s.line, b...)
	return nil
}

func (s *Scanner) endLine() error {
	line := s.line
	s.line = s.line[:0]
	s.headLen += 2
	switch s.state {
	case stHead:
		return s.headLine(line)
	case stChunkSize:
		size, _, _ := bytes.Cut(line, []byte(";"))
		size = bytes.TrimRight(size, " \t")
		n, err := strconv.ParseInt(string(size), 16, 64)
		if err != nil || n < 0 || len(size) == 0 || len(size) > 16 {
			return violation("bad chunk size %q", line)
		}
		s.headLen = 0
		if n == 0 {
			s.state = stTrailer
			return nil
		}
		s.remain, s.state = n, stChunkData
	case stChunkDataEnd:
		if len(line) != 0 {
			return violation("chunk data longer than its size")
		}
		s.state = stChunkSize
	case stTrailer:
		if len(line) == 0 {
			s.resetHead()
		}
	}
	return nil
}

func (s *Scanner) resetHead() {
	s.state, s.headLen, s.lines, s.cls, s.te, s.upgrade, s.connUpg = stHead, 0, 0, nil, nil, false, false
}

func (s *Scanner) headLine(line []byte) error {
	if len(line) == 0 {
		if s.lines == 0 {
			return nil // empty lines before a request line are allowed (RFC 9112 2.2)
		}
		return s.endHead()
	}
	s.lines++
	if s.lines == 1 {
		return nil // request line: net/http checks method, target and version
	}
	if line[0] == ' ' || line[0] == '\t' {
		return violation("obsolete line folding")
	}
	name, value, ok := bytes.Cut(line, []byte(":"))
	if !ok {
		return violation("header line without ':'")
	}
	value = bytes.Trim(value, " \t")
	switch {
	case bytes.EqualFold(name, []byte("Content-Length")):
		s.cls = append(s.cls, bytes.Clone(value))
	case bytes.EqualFold(name, []byte("Transfer-Encoding")):
		s.te = append(s.te, bytes.Clone(value))
	case bytes.EqualFold(name, []byte("Upgrade")):
		s.upgrade = true
	case bytes.EqualFold(name, []byte("Connection")):
		for _, tok := range bytes.Split(value, []byte(",")) {
			if bytes.EqualFold(bytes.Trim(tok, " \t"), []byte("upgrade")) {
				s.connUpg = true
			}
		}
	}
	return nil
}

func (s *Scanner) endHead() error {
	if len(s.te) > 0 && len(s.cls) > 0 {
		return violation("both Content-Length and Transfer-Encoding")
	}
	upgrade := s.upgrade && s.connUpg
	switch {
	case len(s.te) > 0:
		if len(s.te) != 1 || !bytes.EqualFold(s.te[0], []byte("chunked")) {
			return violation("transfer encoding other than a single chunked")
		}
		s.resetHead()
		s.state, s.headLen = stChunkSize, 0
	case len(s.cls) > 0:
		for _, v := range s.cls[1:] {
			if !bytes.Equal(v, s.cls[0]) {
				return violation("conflicting Content-Length values")
			}
		}
		n, err := strconv.ParseInt(string(s.cls[0]), 10, 64)
		if err != nil || n < 0 || s.cls[0][0] == '+' {
			return violation("bad Content-Length %q", s.cls[0])
		}
		s.resetHead()
		if n > 0 {
			s.state, s.remain = stBody, n
		}
	default:
		s.resetHead()
	}
	if upgrade {
		// What follows may be another protocol (WebSocket frames); net/http still parses the next
		// request itself if the upgrade is refused.
		s.state = stPassthrough
	}
	return nil
}
