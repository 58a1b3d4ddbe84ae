package cluster

import "syscall"

// idleAlive reports whether an idle upstream connection can be reused: nothing to read and not
// closed. A kept HTTP/1.1 connection must be silent; EOF or any byte (a close_notify alert, a stray
// response) means the upstream is done with it. One non-blocking MSG_PEEK, no goroutine.
func idleAlive(raw syscall.RawConn) bool {
	var buf [1]byte
	alive := false
	err := raw.Read(func(fd uintptr) bool {
		_, _, errno := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = errno == syscall.EAGAIN || errno == syscall.EWOULDBLOCK
		return true // never wait
	})
	return err == nil && alive
}
