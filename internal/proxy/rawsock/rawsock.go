package rawsock

import "net"

// Unwrap returns the *net.TCPConn under c when c is a Conn, else c: splice(2) in io.Copy needs the
// net package's own type on both ends.
func Unwrap(c net.Conn) net.Conn {
	if rc, ok := c.(*Conn); ok {
		return rc.TCPConn
	}
	return c
}

// TCP returns the *net.TCPConn of c when c is one or a Conn.
func TCP(c net.Conn) (*net.TCPConn, bool) {
	switch v := c.(type) {
	case *net.TCPConn:
		return v, true
	case *Conn:
		return v.TCPConn, true
	}
	return nil, false
}
