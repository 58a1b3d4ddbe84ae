//go:build !linux

package proxy

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
)

// origDstSupported says whether this platform can read original destinations.
const origDstSupported = false

var errNoOrigDst = errors.New("transparent capture needs Linux (SO_ORIGINAL_DST); this proxy runs on " + runtime.GOOS)

func originalDst(*net.TCPConn) (netip.AddrPort, error) { return netip.AddrPort{}, errNoOrigDst }
