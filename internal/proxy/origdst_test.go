package proxy

import (
	"encoding/binary"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	origdstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"canton.dev/canton/internal/proxy/rawsock"
	"canton.dev/canton/internal/proxy/subset"
)

// sockaddrIn builds the bytes of a Linux sockaddr_in as getsockopt(SO_ORIGINAL_DST) returns them.
func sockaddrIn(fam uint16, port uint16, ip []byte, size int) []byte {
	b := make([]byte, size)
	binary.NativeEndian.PutUint16(b, fam)
	if size >= 4 {
		binary.BigEndian.PutUint16(b[2:], port)
	}
	off := 4
	if fam == afInet6 {
		off = 8 // after sin6_flowinfo
	}
	copy(b[min(off, size):], ip)
	return b
}

func TestParseOrigDst(t *testing.T) {
	v6 := netip.MustParseAddr("2001:db8::1").As16()
	mapped := netip.MustParseAddr("::ffff:10.1.2.3").As16()
	loop6 := netip.IPv6Loopback().As16()
	withScope := sockaddrIn(afInet6, 443, loop6[:], 28)
	binary.NativeEndian.PutUint32(withScope[24:], 7)
	flow := sockaddrIn(afInet6, 8080, v6[:], 28)
	binary.BigEndian.PutUint32(flow[4:], 0xabcde)
	for _, tc := range []struct {
		name string
		b    []byte
		want string // "" means an error containing err
		err  string
	}{
		{"ipv4", sockaddrIn(afInet, 8080, []byte{10, 96, 0, 5}, 16), "10.96.0.5:8080", ""},
		{"ipv4 loopback high port", sockaddrIn(afInet, 65535, []byte{127, 0, 0, 1}, 16), "127.0.0.1:65535", ""},
		{"ipv4 port byte order", sockaddrIn(afInet, 0x1f90, []byte{1, 2, 3, 4}, 16), "1.2.3.4:8080", ""},
		{"ipv6", sockaddrIn(afInet6, 443, v6[:], 28), "[2001:db8::1]:443", ""},
		{"ipv6 flowinfo ignored", flow, "[2001:db8::1]:8080", ""},
		{"ipv6 scope id not kept", withScope, "[::1]:443", ""},
		{"ipv4-mapped ipv6 unmapped", sockaddrIn(afInet6, 80, mapped[:], 28), "10.1.2.3:80", ""},
		{"empty", nil, "", "too short"},
		{"one byte", []byte{2}, "", "too short"},
		{"ipv4 truncated", sockaddrIn(afInet, 80, []byte{1, 2, 3}, 7), "", "sockaddr_in of 7 bytes"},
		{"ipv6 truncated", sockaddrIn(afInet6, 80, v6[:], 23), "", "sockaddr_in6 of 23 bytes"},
		{"unknown family", sockaddrIn(1, 80, []byte{1, 2, 3, 4}, 16), "", "address family 1"},
		{"family in wrong byte order", func() []byte {
			b := sockaddrIn(afInet, 80, []byte{1, 2, 3, 4}, 16)
			b[0], b[1] = b[1], b[0]
			return b
		}(), "", "address family"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseOrigDst(tc.b)
			if tc.want == "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parseOrigDst(% x) = %v, %v; want error containing %q", tc.b, got, err, tc.err)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("parseOrigDst(% x) = %v, %v; want %s", tc.b, got, err, tc.want)
			}
		})
	}
}

func FuzzParseOrigDst(f *testing.F) {
	v6 := netip.MustParseAddr("2001:db8::1").As16()
	f.Add(sockaddrIn(afInet, 8080, []byte{10, 0, 0, 1}, 16))
	f.Add(sockaddrIn(afInet6, 443, v6[:], 28))
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		ap, err := parseOrigDst(b)
		if err != nil {
			return
		}
		// A decoded address encodes back to the same port and address bytes.
		if got := binary.BigEndian.Uint16(b[2:4]); got != ap.Port() {
			t.Fatalf("port %d, bytes say %d", ap.Port(), got)
		}
		switch binary.NativeEndian.Uint16(b) {
		case afInet:
			if ap.Addr().As4() != [4]byte(b[4:8]) {
				t.Fatalf("address %v, bytes % x", ap.Addr(), b[4:8])
			}
		case afInet6:
			if netip.AddrFrom16([16]byte(b[8:24])).Unmap() != ap.Addr() {
				t.Fatalf("address %v, bytes % x", ap.Addr(), b[8:24])
			}
		default:
			t.Fatalf("accepted family %d", binary.NativeEndian.Uint16(b))
		}
	})
}

func TestPickListener(t *testing.T) {
	by := map[netip.AddrPort]string{}
	for _, a := range []string{"10.96.0.5:80", "0.0.0.0:80", "0.0.0.0:9090", "[::]:9443", "[2001:db8::5]:80", "[::]:8080", "0.0.0.0:8080"} {
		by[netip.MustParseAddrPort(a)] = a
	}
	for _, tc := range []struct{ orig, want string }{
		{"10.96.0.5:80", "10.96.0.5:80"},          // exact first
		{"10.96.0.6:80", "0.0.0.0:80"},            // then the IPv4 wildcard of the port
		{"[::ffff:10.96.0.5]:80", "10.96.0.5:80"}, // mapped is IPv4
		{"10.1.1.1:9090", "0.0.0.0:9090"},         //
		{"10.1.1.1:9443", "[::]:9443"},            // IPv4 falls back to a dual-stack wildcard
		{"10.1.1.1:8080", "0.0.0.0:8080"},         // IPv4 wildcard before dual-stack
		{"[2001:db8::5]:80", "[2001:db8::5]:80"},  // IPv6 exact
		{"[2001:db8::6]:8080", "[::]:8080"},       // IPv6 wildcard
		{"[2001:db8::6]:9090", ""},                // an IPv6 destination never goes to 0.0.0.0
		{"10.96.0.5:81", ""},                      // no listener for the port
		{"[2001:db8::6]:80", ""},                  // 0.0.0.0:80 is IPv4 only
	} {
		got, ok := pickListener(netip.MustParseAddrPort(tc.orig), by)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("pickListener(%s) = %q, %v; want %q", tc.orig, got, ok, tc.want)
		}
	}
}

func TestCompileCapture(t *testing.T) {
	tp := &tcpproxyv3.TcpProxy{StatPrefix: "t", ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: "c"}}
	origDst := &listenerv3.ListenerFilter{Name: "envoy.filters.listener.original_dst",
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(t, &origdstv3.OriginalDst{})}}
	for _, tc := range []struct {
		name                      string
		mod                       func(*listenerv3.Listener)
		restore, handOff, virtual bool
		err                       string
	}{
		{"plain", func(*listenerv3.Listener) {}, false, false, false, ""},
		{"use_original_dst", func(l *listenerv3.Listener) { l.UseOriginalDst = wrapperspb.Bool(true) }, true, true, false, ""},
		{"use_original_dst false", func(l *listenerv3.Listener) { l.UseOriginalDst = wrapperspb.Bool(false) }, false, false, false, ""},
		{"original_dst filter", func(l *listenerv3.Listener) { l.ListenerFilters = []*listenerv3.ListenerFilter{origDst} }, true, false, false, ""},
		{"bind_to_port false", func(l *listenerv3.Listener) {
			l.Address = sockAddr("10.96.0.5", 80)
			l.BindToPort = wrapperspb.Bool(false)
		}, false, false, true, ""},
		{"bind_to_port true", func(l *listenerv3.Listener) { l.BindToPort = wrapperspb.Bool(true) }, false, false, false, ""},
		{"bind_to_port false without port", func(l *listenerv3.Listener) { l.BindToPort = wrapperspb.Bool(false) }, false, false, false,
			"bind_to_port: a listener that does not bind needs a port"},
		{"other listener filter", func(l *listenerv3.Listener) {
			l.ListenerFilters = []*listenerv3.ListenerFilter{{Name: "x",
				ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(t, tp)}}}
		}, false, false, false, "listener_filters[0]: only envoy.filters.listener.tls_inspector and original_dst are supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := tcpListener(t, "l", tp)
			tc.mod(l)
			if err := subset.Check(l); err != nil && tc.name != "other listener filter" {
				t.Fatalf("subset.Check: %v", err)
			}
			spec, err := (&Proxy{}).compileListener(l)
			if !origDstSupported && (tc.restore || tc.handOff) {
				if err == nil || !strings.Contains(err.Error(), "transparent capture needs Linux") {
					t.Fatalf("on %s: %v, want the not-supported error", runtime.GOOS, err)
				}
				return
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if spec.restoreDst != tc.restore || spec.handOff != tc.handOff || spec.virtual != tc.virtual {
				t.Errorf("restore %v handOff %v virtual %v, want %v %v %v", spec.restoreDst, spec.handOff, spec.virtual,
					tc.restore, tc.handOff, tc.virtual)
			}
		})
	}
}

// TestRawConnForSplice: a TCP proxy chain copies between the net package's own connections (splice),
// whatever wraps a downstream connection for the HTTP paths.
func TestRawConnForSplice(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := c.(*net.TCPConn)
	for name, wrapped := range map[string]net.Conn{
		"plain":              tc,
		"rawsock":            rawsock.New(tc),
		"origdst":            &origDstConn{Conn: tc},
		"origdst of rawsock": &origDstConn{Conn: rawsock.New(tc)},
	} {
		if got := rawConn(wrapped); got != net.Conn(tc) {
			t.Errorf("%s: rawConn = %T, want the *net.TCPConn", name, got)
		}
	}
}
