package rawsock

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Conn is a *net.TCPConn whose Read and Write make their system calls without the scheduler's
// blocking-call bookkeeping (see the package documentation). Every other method, ReadFrom and
// WriteTo (splice) among them, is the *net.TCPConn's. Reads and writes may run concurrently with each
// other, as on a *net.TCPConn.
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn // nil: Read and Write are the *net.TCPConn's

	// The buffer and result of the read in progress: the poller calls readFn, a method value made
	// once, so that a Read allocates nothing.
	rmu    sync.Mutex
	rbuf   []byte
	rn     int
	rerrno syscall.Errno
	readFn func(fd uintptr) bool

	wmu     sync.Mutex
	wbuf    []byte
	wn      int
	werrno  syscall.Errno
	writeFn func(fd uintptr) bool
}

// New returns c as a Conn. Where c's descriptor cannot be reached or is not in non-blocking mode
// (a raw call on a blocking socket would hold its thread and processor), the Conn reads and writes
// through c's own methods.
func New(c *net.TCPConn) *Conn {
	rc, err := c.SyscallConn()
	if err != nil {
		return &Conn{TCPConn: c}
	}
	nonblocking := false
	if err := rc.Control(func(fd uintptr) {
		flags, _, errno := syscall.RawSyscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
		nonblocking = errno == 0 && flags&syscall.O_NONBLOCK != 0
	}); err != nil || !nonblocking {
		return &Conn{TCPConn: c}
	}
	rs := &Conn{TCPConn: c, rc: rc}
	rs.readFn, rs.writeFn = rs.read, rs.write
	return rs
}

// Read reads as (*net.TCPConn).Read does: at most len(p) bytes, io.EOF at the end of the stream,
// errors as *net.OpError (deadline: os.ErrDeadlineExceeded; closed: net.ErrClosed).
func (c *Conn) Read(p []byte) (int, error) {
	if c.rc == nil {
		return c.TCPConn.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	c.rbuf, c.rn, c.rerrno = p, 0, 0
	err := c.rc.Read(c.readFn)
	n, errno := c.rn, c.rerrno
	c.rbuf = nil
	c.rmu.Unlock()
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// read is one attempt of Read on the descriptor; false asks the poller to wait for readability.
func (c *Conn) read(fd uintptr) bool {
	for {
		r, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.rn, c.rerrno = int(r), errno
		return true
	}
}

// Write writes all of p, waiting for the socket to drain when its buffer is full, as
// (*net.TCPConn).Write does; it returns how much was written before an error.
func (c *Conn) Write(p []byte) (int, error) {
	if c.rc == nil {
		return c.TCPConn.Write(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	c.wbuf, c.wn, c.werrno = p, 0, 0
	err := c.rc.Write(c.writeFn)
	n, errno := c.wn, c.werrno
	c.wbuf = nil
	c.wmu.Unlock()
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// write writes what is left of the buffer; false asks the poller to wait for writability.
func (c *Conn) write(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		r, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&c.wbuf[c.wn])), uintptr(len(c.wbuf)-c.wn))
		switch errno {
		case 0:
			c.wn += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werrno = errno
			return true
		}
	}
	return true
}

func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// rawPath reports whether Read and Write make their own system calls.
func (c *Conn) rawPath() bool { return c.rc != nil }
