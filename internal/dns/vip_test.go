package dns

import (
	"slices"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// TestVIPAnswers: with Options.VIPs a service's A records are its VIP (the only address the
// capturing proxy routes by the service's rules); without it, or for names without VIPs, the
// endpoints' addresses. VIPs are IPv4, so AAAA is NODATA for a service that has one: a
// dual-stack client then connects to the VIP instead of bypassing the proxy over IPv6.
func TestVIPAnswers(t *testing.T) {
	r := bookinfo()
	r.names["reviews.bookinfo.demo.mesh"] = Answer{
		Addrs: addrs("10.0.0.1", "fd00::1"),
		VIPs:  addrs("241.2.3.4"),
		Ports: []SRVTarget{{Name: "http", Proto: "tcp", Port: 9080}},
		TTL:   30 * time.Second,
	}
	plain := startServer(t, r, testOptions())
	o := testOptions()
	o.VIPs = true
	vip := startServer(t, r, o)

	rrs := func(m *mdns.Msg, section []mdns.RR) []string {
		var out []string
		for _, rr := range section {
			out = append(out, rr.String())
		}
		return out
	}
	tests := []struct {
		server *Server
		name   string
		qtype  uint16
		answer []string
		extra  []string
	}{
		{plain, "reviews.bookinfo.demo.mesh.", mdns.TypeA, []string{"reviews.bookinfo.demo.mesh.\t30\tIN\tA\t10.0.0.1"}, nil},
		{vip, "reviews.bookinfo.demo.mesh.", mdns.TypeA, []string{"reviews.bookinfo.demo.mesh.\t30\tIN\tA\t241.2.3.4"}, nil},
		{vip, "reviews.", mdns.TypeA, []string{"reviews.\t30\tIN\tCNAME\treviews.bookinfo.demo.mesh.", "reviews.bookinfo.demo.mesh.\t30\tIN\tA\t241.2.3.4"}, nil},
		{plain, "reviews.bookinfo.demo.mesh.", mdns.TypeAAAA, []string{"reviews.bookinfo.demo.mesh.\t30\tIN\tAAAA\tfd00::1"}, nil},
		{vip, "reviews.bookinfo.demo.mesh.", mdns.TypeAAAA, nil, nil},
		{vip, "_http._tcp.reviews.bookinfo.demo.mesh.", mdns.TypeSRV,
			[]string{"_http._tcp.reviews.bookinfo.demo.mesh.\t30\tIN\tSRV\t0 0 9080 reviews.bookinfo.demo.mesh."},
			[]string{"reviews.bookinfo.demo.mesh.\t30\tIN\tA\t241.2.3.4"}},
		// A name without VIPs keeps its addresses.
		{vip, "ratings.bookinfo.demo.mesh.", mdns.TypeA, []string{"ratings.bookinfo.demo.mesh.\t1\tIN\tA\t10.0.1.1"}, nil},
	}
	for _, tc := range tests {
		m := query(t, tc.server.Addr(), "udp", tc.name, tc.qtype, 0)
		if m.Rcode != mdns.RcodeSuccess {
			t.Errorf("%s %s (vips=%v): rcode %s", tc.name, mdns.TypeToString[tc.qtype], tc.server == vip, mdns.RcodeToString[m.Rcode])
			continue
		}
		if got := rrs(m, m.Answer); !slices.Equal(got, tc.answer) {
			t.Errorf("%s %s (vips=%v): answer %q, want %q", tc.name, mdns.TypeToString[tc.qtype], tc.server == vip, got, tc.answer)
		}
		if tc.extra != nil {
			if got := rrs(m, m.Extra); !slices.Equal(got, tc.extra) {
				t.Errorf("%s SRV: extra %q, want %q", tc.name, got, tc.extra)
			}
		}
	}
}
