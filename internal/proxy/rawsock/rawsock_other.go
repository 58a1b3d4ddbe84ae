//go:build !linux

package rawsock

import "net"

// Conn is a *net.TCPConn: the raw path is Linux's only.
type Conn struct{ *net.TCPConn }

// New returns c as a Conn whose every method is c's.
func New(c *net.TCPConn) *Conn { return &Conn{TCPConn: c} }

func (c *Conn) rawPath() bool { return false }
