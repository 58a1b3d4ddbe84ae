package proxy

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	origdstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"

	"canton.dev/canton/internal/proxy/rawsock"
)

// Transparent capture (docs/transparent-capture.md): iptables REDIRECTs a connection to one of the
// proxy's ports; the kernel keeps the address the client dialed, which the proxy reads back with
// getsockopt(SO_ORIGINAL_DST) (origdst_linux.go).
//
//   - The original_dst listener filter (and use_original_dst, which implies it, as in Envoy) makes
//     that address the connection's local address: filter chains match their destination_port on
//     it, and access logs report it.
//   - use_original_dst also hands the connection to the listener bound to, or declared with
//     bind_to_port false at, the original destination (Envoy's virtual outbound listener). Without
//     such a listener the receiving listener serves it with its own filter chains.

const origDstFilterType = "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"

// compileCapture reads the transparent-capture fields of l into ls: use_original_dst, bind_to_port
// and the original_dst listener filter (which has no fields).
func compileCapture(l *listenerv3.Listener, ls *listenerSpec) error {
	if l.GetUseOriginalDst().GetValue() {
		if !origDstSupported {
			return fmt.Errorf("use_original_dst: %w", errNoOrigDst)
		}
		ls.handOff, ls.restoreDst = true, true
	}
	if b := l.GetBindToPort(); b != nil && !b.GetValue() {
		ls.virtual = true
		if ap, err := netip.ParseAddrPort(ls.addr); err != nil || ap.Port() == 0 {
			return fmt.Errorf("bind_to_port: a listener that does not bind needs a port to be found by (address %s)", ls.addr)
		}
	}
	for i, lf := range l.GetListenerFilters() {
		if lf.GetTypedConfig().GetTypeUrl() != origDstFilterType {
			continue
		}
		if err := lf.GetTypedConfig().UnmarshalTo(&origdstv3.OriginalDst{}); err != nil {
			return fmt.Errorf("listener_filters[%d].typed_config: %w", i, err)
		}
		if !origDstSupported {
			return fmt.Errorf("listener_filters[%d]: envoy.filters.listener.original_dst: %w", i, errNoOrigDst)
		}
		ls.restoreDst = true
	}
	return nil
}

// origDstConn is a connection whose local address is the original destination read from the
// kernel, as Envoy's original_dst filter restores it.
type origDstConn struct {
	net.Conn
	local *net.TCPAddr
}

func (c *origDstConn) LocalAddr() net.Addr { return c.local }

// rawConn returns the *net.TCPConn under an origDstConn and a rawsock.Conn (for splice), or c.
func rawConn(c net.Conn) net.Conn {
	if oc, ok := c.(*origDstConn); ok {
		c = oc.Conn
	}
	return rawsock.Unwrap(c)
}

// captureIndex finds running listeners by address, for use_original_dst hand-off. It is rebuilt
// whenever listeners change and read without locks.
type captureIndex struct {
	byAddr map[netip.AddrPort]*runningListener
}

// publishCapture rebuilds the hand-off index from p.listeners; p.mu is held.
func (p *Proxy) publishCapture() {
	idx := &captureIndex{byAddr: map[netip.AddrPort]*runningListener{}}
	for _, l := range p.listeners {
		if ap, err := netip.ParseAddrPort(l.ln.Addr().String()); err == nil {
			idx.byAddr[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] = l
		}
	}
	p.capture.Store(idx)
}

// restoreOrigDst reads c's original destination. It returns c wrapped so that its local address is
// that destination, and, for a use_original_dst listener, the listener to hand it to (nil: serve it
// here). A connection already restored (handed off) is returned as is. If the kernel has no
// original destination (not redirected, no conntrack) c keeps its address, as in Envoy.
func (l *runningListener) restoreOrigDst(c net.Conn, spec *listenerSpec) (net.Conn, *runningListener) {
	if _, done := c.(*origDstConn); done {
		return c, nil
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c, nil
	}
	orig, err := originalDst(tc)
	if err != nil {
		l.p.log.Debug("no original destination", "listener", l.name, "remote", c.RemoteAddr().String(), "err", err)
		return c, nil
	}
	c = &origDstConn{Conn: tc, local: net.TCPAddrFromAddrPort(orig)}
	if !spec.handOff {
		return c, nil
	}
	idx := l.p.capture.Load()
	if idx == nil {
		return c, nil
	}
	to, ok := pickListener(orig, idx.byAddr)
	if !ok || to == l {
		return c, nil
	}
	return c, to
}

// pickListener chooses the listener for an original destination as Envoy does: the one at exactly
// that address, else the one at the wildcard address of its family and port (0.0.0.0:port, or
// [::]:port), else, for IPv4, a dual-stack [::]:port.
func pickListener[T any](orig netip.AddrPort, by map[netip.AddrPort]T) (T, bool) {
	a := orig.Addr().Unmap()
	cands := []netip.Addr{a}
	if a.Is4() {
		cands = append(cands, netip.IPv4Unspecified(), netip.IPv6Unspecified())
	} else {
		cands = append(cands, netip.IPv6Unspecified())
	}
	for _, c := range slices.Compact(cands) {
		if v, ok := by[netip.AddrPortFrom(c, orig.Port())]; ok {
			return v, true
		}
	}
	var zero T
	return zero, false
}

// Linux address families, as getsockopt(SO_ORIGINAL_DST) writes them.
const (
	afInet  = 2
	afInet6 = 10
)

// parseOrigDst decodes the sockaddr_in or sockaddr_in6 returned by getsockopt(SO_ORIGINAL_DST) or
// (IP6T_SO_ORIGINAL_DST) on Linux: family in host byte order, port and address in network order.
// An IPv4-mapped IPv6 address is returned as IPv4; the IPv6 scope ID is not kept.
func parseOrigDst(b []byte) (netip.AddrPort, error) {
	if len(b) < 2 {
		return netip.AddrPort{}, fmt.Errorf("original destination: %d bytes, too short for a socket address", len(b))
	}
	switch fam := binary.NativeEndian.Uint16(b); fam {
	case afInet:
		if len(b) < 8 {
			return netip.AddrPort{}, fmt.Errorf("original destination: sockaddr_in of %d bytes", len(b))
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:4])), nil
	case afInet6:
		if len(b) < 24 {
			return netip.AddrPort{}, fmt.Errorf("original destination: sockaddr_in6 of %d bytes", len(b))
		}
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])).Unmap(), binary.BigEndian.Uint16(b[2:4])), nil
	default:
		return netip.AddrPort{}, fmt.Errorf("original destination: address family %d (neither AF_INET nor AF_INET6)", fam)
	}
}

// listen binds spec's address, or, for a listener with bind_to_port false, returns a listener that
// only ever reports its address and its close: connections reach it by hand-off. Call with mu held.
func (p *Proxy) listen(spec *listenerSpec) (net.Listener, error) {
	if spec.virtual {
		ap, err := netip.ParseAddrPort(spec.addr)
		if err != nil {
			return nil, err
		}
		return newChanListener(net.TCPAddrFromAddrPort(ap)), nil
	}
	return p.bind(spec.addr)
}
