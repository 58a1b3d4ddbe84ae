package netns

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// addLocalRoute makes every address of the IPv4 prefix local, on interface ifname, with one
// rtnetlink request, as `ip route add local PREFIX dev IFNAME` would.
func addLocalRoute(prefix, ifname string) error {
	p, err := netip.ParsePrefix(prefix)
	if err != nil || !p.Addr().Is4() {
		return fmt.Errorf("%q is not an IPv4 prefix", prefix)
	}
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	attr := func(typ uint16, data []byte) []byte {
		n := unix.SizeofRtAttr + len(data)
		b := make([]byte, (n+unix.RTA_ALIGNTO-1)&^(unix.RTA_ALIGNTO-1))
		binary.NativeEndian.PutUint16(b[0:2], uint16(n))
		binary.NativeEndian.PutUint16(b[2:4], typ)
		copy(b[unix.SizeofRtAttr:], data)
		return b
	}
	rtm := unix.RtMsg{Family: unix.AF_INET, Dst_len: uint8(p.Bits()), Table: unix.RT_TABLE_LOCAL,
		Protocol: unix.RTPROT_BOOT, Scope: unix.RT_SCOPE_HOST, Type: unix.RTN_LOCAL}
	body := (*[unix.SizeofRtMsg]byte)(unsafe.Pointer(&rtm))[:]
	dst := p.Masked().Addr().As4()
	oif := make([]byte, 4)
	binary.NativeEndian.PutUint32(oif, uint32(ifi.Index))
	payload := append(append(append([]byte(nil), body...), attr(unix.RTA_DST, dst[:])...), attr(unix.RTA_OIF, oif)...)

	msg := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(payload))
	binary.NativeEndian.PutUint32(msg[0:4], uint32(unix.NLMSG_HDRLEN+len(payload)))
	binary.NativeEndian.PutUint16(msg[4:6], unix.RTM_NEWROUTE)
	binary.NativeEndian.PutUint16(msg[6:8], unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	binary.NativeEndian.PutUint32(msg[8:12], 1) // sequence
	msg = append(msg, payload...)

	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return fmt.Errorf("netlink receive: %w", err)
	}
	// One reply: an NLMSG_ERROR whose first field is 0 (acknowledged) or -errno.
	if n < unix.NLMSG_HDRLEN+4 || binary.NativeEndian.Uint16(buf[4:6]) != unix.NLMSG_ERROR {
		return fmt.Errorf("RTM_NEWROUTE: unexpected reply of %d bytes", n)
	}
	if errno := int32(binary.NativeEndian.Uint32(buf[unix.NLMSG_HDRLEN:])); errno != 0 {
		return fmt.Errorf("RTM_NEWROUTE: %w", unix.Errno(-errno))
	}
	return nil
}
