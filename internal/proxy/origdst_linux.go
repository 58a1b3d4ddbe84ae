//go:build linux

package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// origDstSupported says whether this platform can read original destinations.
const origDstSupported = true

// ip6tSOOriginalDst is IP6T_SO_ORIGINAL_DST of linux/netfilter_ipv6/ip6_tables.h (x/sys/unix does
// not define it).
const ip6tSOOriginalDst = 80

var errNoOrigDst = errors.New("unreachable: original destinations are supported on linux")

// originalDst reads the destination c had before an iptables REDIRECT (or any DNAT) from
// conntrack: getsockopt(SOL_IP, SO_ORIGINAL_DST) for IPv4 (including IPv4 on a dual-stack socket),
// getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST) for IPv6.
func originalDst(c *net.TCPConn) (netip.AddrPort, error) {
	level, opt, size := unix.SOL_IP, unix.SO_ORIGINAL_DST, unix.SizeofSockaddrInet4
	if la, ok := c.LocalAddr().(*net.TCPAddr); ok && la.IP.To4() == nil {
		level, opt, size = unix.SOL_IPV6, ip6tSOOriginalDst, unix.SizeofSockaddrInet6
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	var buf [unix.SizeofSockaddrInet6]byte
	n := uint32(size)
	var serr error
	err = rc.Control(func(fd uintptr) {
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, uintptr(level), uintptr(opt),
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
		if e != 0 {
			serr = e
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: getsockopt: %w", err)
	}
	return parseOrigDst(buf[:min(int(n), len(buf))])
}
