package resource

import (
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
)

// Every Service gets a virtual IP that callers under transparent capture connect to
// (docs/design/0006-service-vips.md). The owning scope allocates it when the Service is
// created, from the hash of its fully qualified name, probing past addresses the scope has
// already given out, and it stays the Service's for its life (renames included).

// VIPPrefix is the range of service VIPs: part of 240.0.0.0/4 (reserved, never routed on the
// Internet), like Istio's auto-allocated 240.240.0.0/16 but large enough (2^27 addresses) that
// services of different scopes, allocated independently, rarely meet.
var VIPPrefix = netip.MustParsePrefix("240.0.0.0/5")

// IsVIP reports whether a is in the service VIP range.
func IsVIP(a netip.Addr) bool { return VIPPrefix.Contains(a.Unmap()) }

// AllocateVIP returns the VIP of the Service name in namespace (absolute): the first address
// at or after the hash of its name for which taken is false, skipping the first and last
// address of the range. taken must be false for most addresses; the range is far larger than
// any scope.
func AllocateVIP(namespace, name string, taken func(netip.Addr) bool) netip.Addr {
	sum := sha256.Sum256([]byte("canton service vip\x00" + name + "." + namespace))
	const usable = 1<<(32-5) - 2
	base := binary.BigEndian.Uint32(VIPPrefix.Addr().AsSlice()) + 1
	off := binary.BigEndian.Uint32(sum[:4]) % usable
	for i := uint32(0); ; i++ {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], base+(off+i)%usable)
		if a := netip.AddrFrom4(b); !taken(a) {
			return a
		}
	}
}
