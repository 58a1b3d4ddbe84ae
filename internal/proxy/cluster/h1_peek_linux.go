package cluster

import "syscall"

// peeker checks whether an idle upstream connection can be reused: nothing to read and not
// closed. A kept HTTP/1.1 connection must be silent; EOF or any byte (a close_notify alert, a stray
// response) means the upstream is done with it. One non-blocking MSG_PEEK, no goroutine. A peeker
// belongs to one connection and is built once, so the check allocates nothing per request.
type peeker struct {
	raw   syscall.RawConn
	buf   [1]byte
	alive bool
	fn    func(fd uintptr) bool
}

func newPeeker(raw syscall.RawConn) *peeker {
	p := &peeker{raw: raw}
	p.fn = func(fd uintptr) bool {
		_, _, errno := syscall.Recvfrom(int(fd), p.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		p.alive = errno == syscall.EAGAIN || errno == syscall.EWOULDBLOCK
		return true // never wait
	}
	return p
}

// idleAlive reports whether the connection is idle and open.
func (p *peeker) idleAlive() bool {
	p.alive = false
	err := p.raw.Read(p.fn)
	return err == nil && p.alive
}
