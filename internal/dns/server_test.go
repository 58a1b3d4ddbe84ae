package dns

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

const soa5 = "demo.mesh. 5 IN SOA ns.demo.mesh. hostmaster.demo.mesh. 1 3600 600 86400 5"

func TestMeshAnswers(t *testing.T) {
	r := bookinfo()
	up := startUpstream(t, answerA)
	o := testOptions()
	o.Upstream = []string{up.addr}
	s := startServer(t, r, o)

	tests := []struct {
		name    string
		qname   string
		qtype   uint16
		class   uint16 // 0: IN
		rcode   int
		answer  []string
		ns      []string
		extra   []string
		noAA    bool
		noAsked bool // the resolver must not be asked
	}{
		{name: "A", qname: "reviews.bookinfo.demo.mesh.", qtype: mdns.TypeA,
			answer: []string{"reviews.bookinfo.demo.mesh. 30 IN A 10.0.0.1", "reviews.bookinfo.demo.mesh. 30 IN A 10.0.0.2"}},
		{name: "AAAA", qname: "reviews.bookinfo.demo.mesh.", qtype: mdns.TypeAAAA,
			answer: []string{"reviews.bookinfo.demo.mesh. 30 IN AAAA fd00::1"}},
		{name: "ANY", qname: "reviews.bookinfo.demo.mesh.", qtype: mdns.TypeANY,
			answer: []string{"reviews.bookinfo.demo.mesh. 30 IN A 10.0.0.1", "reviews.bookinfo.demo.mesh. 30 IN A 10.0.0.2",
				"reviews.bookinfo.demo.mesh. 30 IN AAAA fd00::1"}},
		{name: "case preserved", qname: "ReViews.BookInfo.DEMO.mesh.", qtype: mdns.TypeA,
			answer: []string{"ReViews.BookInfo.DEMO.mesh. 30 IN A 10.0.0.1", "ReViews.BookInfo.DEMO.mesh. 30 IN A 10.0.0.2"}},
		{name: "mapped v4 is A, zone dropped", qname: "v6.bookinfo.demo.mesh.", qtype: mdns.TypeANY,
			answer: []string{"v6.bookinfo.demo.mesh. 10 IN A 10.0.4.1", "v6.bookinfo.demo.mesh. 10 IN AAAA fe80::1"}},
		{name: "TTL at least 1s", qname: "ratings.bookinfo.demo.mesh.", qtype: mdns.TypeA,
			answer: []string{"ratings.bookinfo.demo.mesh. 1 IN A 10.0.1.1"}},
		{name: "SRV", qname: "_http._tcp.reviews.bookinfo.demo.mesh.", qtype: mdns.TypeSRV,
			answer: []string{"_http._tcp.reviews.bookinfo.demo.mesh. 30 IN SRV 0 0 9080 reviews.bookinfo.demo.mesh."},
			extra: []string{"reviews.bookinfo.demo.mesh. 30 IN A 10.0.0.1", "reviews.bookinfo.demo.mesh. 30 IN A 10.0.0.2",
				"reviews.bookinfo.demo.mesh. 30 IN AAAA fd00::1"}},
		{name: "SRV case-insensitive", qname: "_GRPC._TCP.reviews.bookinfo.demo.mesh.", qtype: mdns.TypeSRV,
			answer: []string{"_GRPC._TCP.reviews.bookinfo.demo.mesh. 30 IN SRV 0 0 9090 reviews.bookinfo.demo.mesh."},
			extra: []string{"reviews.bookinfo.demo.mesh. 30 IN A 10.0.0.1", "reviews.bookinfo.demo.mesh. 30 IN A 10.0.0.2",
				"reviews.bookinfo.demo.mesh. 30 IN AAAA fd00::1"}},
		{name: "SRV unknown port is NXDOMAIN", qname: "_dns._udp.reviews.bookinfo.demo.mesh.", qtype: mdns.TypeSRV,
			rcode: mdns.RcodeNameError, ns: []string{soa5}},
		{name: "A on SRV name is NODATA", qname: "_http._tcp.reviews.bookinfo.demo.mesh.", qtype: mdns.TypeA,
			ns: []string{soa5}},
		{name: "SRV on plain name is NODATA", qname: "reviews.bookinfo.demo.mesh.", qtype: mdns.TypeSRV,
			ns: []string{soa5}},
		{name: "AAAA without v6 is NODATA", qname: "ratings.bookinfo.demo.mesh.", qtype: mdns.TypeAAAA,
			ns: []string{soa5}},
		{name: "TXT is NODATA", qname: "reviews.bookinfo.demo.mesh.", qtype: mdns.TypeTXT,
			ns: []string{soa5}},
		{name: "namespace is NODATA", qname: "bookinfo.demo.mesh.", qtype: mdns.TypeA,
			ns: []string{soa5}},
		{name: "unknown name is NXDOMAIN", qname: "nope.bookinfo.demo.mesh.", qtype: mdns.TypeA,
			rcode: mdns.RcodeNameError, ns: []string{soa5}},
		{name: "unknown name any type is NXDOMAIN", qname: "nope.bookinfo.demo.mesh.", qtype: mdns.TypeMX,
			rcode: mdns.RcodeNameError, ns: []string{soa5}},
		{name: "invalid label is NXDOMAIN unasked", qname: "bad!label.demo.mesh.", qtype: mdns.TypeA,
			rcode: mdns.RcodeNameError, ns: []string{soa5}, noAsked: true},
		{name: "apex SOA", qname: "demo.mesh.", qtype: mdns.TypeSOA, answer: []string{soa5}},
		{name: "apex A unknown to resolver is NODATA", qname: "Demo.Mesh.", qtype: mdns.TypeA, ns: []string{soa5}},
		{name: "resolver error is SERVFAIL", qname: "broken.bookinfo.demo.mesh.", qtype: mdns.TypeA,
			rcode: mdns.RcodeServerFailure, noAA: true},
		{name: "stale gets short TTL", qname: "stale.bookinfo.demo.mesh.", qtype: mdns.TypeA,
			answer: []string{"stale.bookinfo.demo.mesh. 2 IN A 10.0.3.1"}},

		{name: "short name, caller's namespace", qname: "reviews.", qtype: mdns.TypeA,
			answer: []string{"reviews. 30 IN CNAME reviews.bookinfo.demo.mesh.",
				"reviews.bookinfo.demo.mesh. 30 IN A 10.0.0.1", "reviews.bookinfo.demo.mesh. 30 IN A 10.0.0.2"}},
		{name: "short name, next search domain", qname: "Details.", qtype: mdns.TypeA,
			answer: []string{"Details. 10 IN CNAME Details.demo.mesh.", "Details.demo.mesh. 10 IN A 10.0.2.1"}},
		{name: "short SRV name", qname: "_http._tcp.reviews.", qtype: mdns.TypeSRV,
			answer: []string{"_http._tcp.reviews. 30 IN CNAME _http._tcp.reviews.bookinfo.demo.mesh.",
				"_http._tcp.reviews.bookinfo.demo.mesh. 30 IN SRV 0 0 9080 reviews.bookinfo.demo.mesh."},
			extra: []string{"reviews.bookinfo.demo.mesh. 30 IN A 10.0.0.1", "reviews.bookinfo.demo.mesh. 30 IN A 10.0.0.2",
				"reviews.bookinfo.demo.mesh. 30 IN AAAA fd00::1"}},
		{name: "short name NODATA keeps CNAME", qname: "ratings.", qtype: mdns.TypeAAAA,
			answer: []string{"ratings. 5 IN CNAME ratings.bookinfo.demo.mesh."}, ns: []string{soa5}},
		{name: "short name nowhere is NXDOMAIN", qname: "nosuch.", qtype: mdns.TypeA,
			rcode: mdns.RcodeNameError, noAA: true},
		{name: "short name resolver error is SERVFAIL", qname: "broken.", qtype: mdns.TypeA,
			rcode: mdns.RcodeServerFailure, noAA: true},

		{name: "CHAOS class refused", qname: "version.bind.", qtype: mdns.TypeTXT, class: mdns.ClassCHAOS,
			rcode: mdns.RcodeRefused, noAA: true, noAsked: true},
		{name: "mesh name in class ANY refused", qname: "reviews.bookinfo.demo.mesh.", qtype: mdns.TypeA, class: mdns.ClassANY,
			rcode: mdns.RcodeRefused, noAA: true, noAsked: true},
		{name: "AXFR refused", qname: "demo.mesh.", qtype: mdns.TypeAXFR,
			rcode: mdns.RcodeRefused, noAA: true, noAsked: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(r.lookups())
			m := &mdns.Msg{}
			m.SetQuestion(tc.qname, tc.qtype)
			if tc.class != 0 {
				m.Question[0].Qclass = tc.class
			}
			resp := exchange(t, s.Addr(), "udp", m)
			if resp.Rcode != tc.rcode {
				t.Fatalf("rcode = %s, want %s", mdns.RcodeToString[resp.Rcode], mdns.RcodeToString[tc.rcode])
			}
			if resp.Question[0].Name != tc.qname {
				t.Errorf("question = %q, want %q as asked", resp.Question[0].Name, tc.qname)
			}
			if got := rrStrings(resp.Answer); !slices.Equal(got, tc.answer) {
				t.Errorf("answer:\n got %q\nwant %q", got, tc.answer)
			}
			if got := rrStrings(resp.Ns); !slices.Equal(got, tc.ns) {
				t.Errorf("authority:\n got %q\nwant %q", got, tc.ns)
			}
			if got := rrStrings(resp.Extra); !slices.Equal(got, tc.extra) {
				t.Errorf("additional:\n got %q\nwant %q", got, tc.extra)
			}
			if resp.Authoritative == tc.noAA {
				t.Errorf("AA = %v, want %v", resp.Authoritative, !tc.noAA)
			}
			if asked := len(r.lookups()) > before; asked == tc.noAsked {
				t.Errorf("resolver asked = %v, want %v", asked, !tc.noAsked)
			}
		})
	}
	if got := up.names(); len(got) != 0 {
		t.Errorf("mesh and short names were sent upstream: %q", got)
	}
}

func TestNoMeshNameLeaksUpstream(t *testing.T) {
	up := startUpstream(t, answerA)
	o := testOptions()
	o.Upstream = []string{up.addr}
	o.NDots = 2 // two-label names are tried under the search domains first
	s := startServer(t, bookinfo(), o)

	// Every mesh name, in any case, existing or not, with any type, and
	// every short name found nowhere, stays inside.
	for _, name := range []string{
		"reviews.bookinfo.demo.mesh.", "NOPE.bookinfo.demo.mesh.", "demo.mesh.", "DEMO.MESH.",
		"x.y.z.demo.mesh.", "_http._tcp.nope.demo.mesh.", "broken.bookinfo.demo.mesh.",
		"nosuch.", "_http._tcp.nosuch.", "reviews.",
	} {
		for _, qt := range []uint16{mdns.TypeA, mdns.TypeAAAA, mdns.TypeSRV, mdns.TypeANY, mdns.TypeTXT, mdns.TypeNS} {
			query(t, s.Addr(), "udp", name, qt, 0)
		}
	}
	if got := up.names(); len(got) != 0 {
		t.Fatalf("names sent upstream: %q", got)
	}

	// A two-label name under a search domain is answered from the mesh.
	resp := query(t, s.Addr(), "udp", "reviews.bookinfo.", mdns.TypeA, 0)
	if want := "reviews.bookinfo. 30 IN CNAME reviews.bookinfo.demo.mesh."; len(resp.Answer) != 3 || rrStrings(resp.Answer)[0] != want {
		t.Fatalf("reviews.bookinfo. answer = %q, want %s and two A", rrStrings(resp.Answer), want)
	}
	// Other names go upstream as asked, never expanded.
	resp = query(t, s.Addr(), "udp", "Example.COM.", mdns.TypeA, 0)
	if got := rrStrings(resp.Answer); !slices.Equal(got, []string{"Example.COM. 60 IN A 192.0.2.1"}) {
		t.Fatalf("example.com answer = %q", got)
	}
	if resp.Authoritative || !resp.RecursionAvailable {
		t.Errorf("forwarded answer: AA = %v RA = %v, want false true", resp.Authoritative, resp.RecursionAvailable)
	}
	if got := up.names(); !slices.Equal(got, []string{"Example.COM."}) {
		t.Fatalf("upstream asked %q, want only Example.COM.", got)
	}
	if st := s.Stats(); st.Forwarded != 1 {
		t.Errorf("Stats.Forwarded = %d, want 1", st.Forwarded)
	}
}

func TestUpstreamFailover(t *testing.T) {
	good := startUpstream(t, answerA)
	failing := startUpstream(t, rcodeReply(mdns.RcodeServerFailure))
	refusing := startUpstream(t, rcodeReply(mdns.RcodeRefused))
	silent := startUpstream(t, nil)
	nxdomain := startUpstream(t, rcodeReply(mdns.RcodeNameError))

	t.Run("skips failing, refusing and silent upstreams", func(t *testing.T) {
		o := testOptions()
		o.Upstream = []string{failing.addr, refusing.addr, silent.addr, good.addr}
		s := startServer(t, bookinfo(), o)
		for i := range 3 {
			resp := query(t, s.Addr(), "udp", "example.org.", mdns.TypeA, 0)
			if resp.Rcode != mdns.RcodeSuccess || len(resp.Answer) != 1 {
				t.Fatalf("query %d: rcode %s answer %q", i, mdns.RcodeToString[resp.Rcode], rrStrings(resp.Answer))
			}
		}
		// Later queries start at the upstream that answered.
		for _, u := range []*fakeUpstream{failing, refusing, silent} {
			if n := len(u.names()); n != 1 {
				t.Errorf("upstream %s asked %d times, want 1", u.addr, n)
			}
		}
		if n := len(good.names()); n != 3 {
			t.Errorf("good upstream asked %d times, want 3", n)
		}
	})
	t.Run("NXDOMAIN from upstream is an answer", func(t *testing.T) {
		o := testOptions()
		o.Upstream = []string{nxdomain.addr, good.addr}
		s := startServer(t, bookinfo(), o)
		before := len(good.names())
		resp := query(t, s.Addr(), "udp", "nx.example.", mdns.TypeA, 0)
		if resp.Rcode != mdns.RcodeNameError {
			t.Fatalf("rcode = %s, want NXDOMAIN", mdns.RcodeToString[resp.Rcode])
		}
		if len(good.names()) != before {
			t.Errorf("NXDOMAIN was retried on the next upstream")
		}
	})
	t.Run("all failing is SERVFAIL", func(t *testing.T) {
		o := testOptions()
		o.Upstream = []string{failing.addr, silent.addr, deadAddr(t)}
		s := startServer(t, bookinfo(), o)
		start := time.Now()
		resp := query(t, s.Addr(), "udp", "example.net.", mdns.TypeA, 0)
		if resp.Rcode != mdns.RcodeServerFailure {
			t.Fatalf("rcode = %s, want SERVFAIL", mdns.RcodeToString[resp.Rcode])
		}
		if el := time.Since(start); el > o.QueryTimeout+500*time.Millisecond {
			t.Errorf("took %v, want bounded by the query timeout %v", el, o.QueryTimeout)
		}
	})
	t.Run("no upstream is SERVFAIL", func(t *testing.T) {
		s := startServer(t, bookinfo(), testOptions())
		resp := query(t, s.Addr(), "udp", "example.net.", mdns.TypeA, 0)
		if resp.Rcode != mdns.RcodeServerFailure || resp.RecursionAvailable {
			t.Fatalf("rcode = %s RA = %v, want SERVFAIL without RA", mdns.RcodeToString[resp.Rcode], resp.RecursionAvailable)
		}
	})
}

func TestTruncationThenTCP(t *testing.T) {
	bigUpstream := startUpstream(t, func(q mdns.Question) *mdns.Msg {
		m := &mdns.Msg{}
		for i := range 100 {
			rr, _ := mdns.NewRR(q.Name + " 60 IN A 192.0.2." + string(rune('0'+i%10)))
			m.Answer = append(m.Answer, rr)
		}
		return m
	})
	o := testOptions()
	o.Upstream = []string{bigUpstream.addr}
	s := startServer(t, bookinfo(), o)

	for _, name := range []string{"big.bookinfo.demo.mesh.", "big.example."} {
		t.Run(name, func(t *testing.T) {
			udp := query(t, s.Addr(), "udp", name, mdns.TypeA, 0)
			edns := query(t, s.Addr(), "udp", name, mdns.TypeA, 4096)
			if !udp.Truncated || len(udp.Answer) >= 100 {
				t.Fatalf("UDP without EDNS0: TC = %v with %d answers, want TC and fewer than 100", udp.Truncated, len(udp.Answer))
			}
			udp.Compress, edns.Compress = true, true // Len of the wire form
			if n := udp.Len(); n > mdns.MinMsgSize {
				t.Errorf("UDP response is %d bytes, want at most 512", n)
			}
			if !edns.Truncated {
				t.Errorf("UDP with EDNS0 4096 (server max 1232): not truncated")
			}
			if n := edns.Len(); n > 1232 || n <= mdns.MinMsgSize {
				t.Errorf("EDNS0 UDP response is %d bytes, want 513..1232", n)
			}
			if o := edns.IsEdns0(); o == nil || o.UDPSize() != 1232 {
				t.Errorf("response OPT = %v, want UDP size 1232", o)
			}
			tcp := query(t, s.Addr(), "tcp", name, mdns.TypeA, 0)
			if tcp.Truncated || len(tcp.Answer) != 100 {
				t.Fatalf("TCP: TC = %v with %d answers, want all 100", tcp.Truncated, len(tcp.Answer))
			}
		})
	}
	if st := s.Stats(); st.Truncated != 4 {
		t.Errorf("Stats.Truncated = %d, want 4", st.Truncated)
	}
}

func TestEDNS(t *testing.T) {
	s := startServer(t, bookinfo(), testOptions())

	resp := query(t, s.Addr(), "udp", "stale.bookinfo.demo.mesh.", mdns.TypeA, 1232)
	if e := ede(resp); e == nil || e.InfoCode != mdns.ExtendedErrorCodeStaleAnswer {
		t.Errorf("stale answer EDE = %v, want Stale Answer", e)
	}
	if got := rrStrings(resp.Answer); !slices.Equal(got, []string{"stale.bookinfo.demo.mesh. 2 IN A 10.0.3.1"}) {
		t.Errorf("stale answer = %q", got)
	}
	resp = query(t, s.Addr(), "udp", "reviews.bookinfo.demo.mesh.", mdns.TypeA, 1232)
	if e := ede(resp); e != nil {
		t.Errorf("fresh answer has EDE %v", e)
	}
	if resp.IsEdns0() == nil {
		t.Errorf("EDNS0 query answered without OPT")
	}
	if resp := query(t, s.Addr(), "udp", "reviews.bookinfo.demo.mesh.", mdns.TypeA, 0); resp.IsEdns0() != nil {
		t.Errorf("plain query answered with OPT")
	}

	m := &mdns.Msg{}
	m.SetQuestion("reviews.bookinfo.demo.mesh.", mdns.TypeA)
	m.SetEdns0(1232, true)
	m.IsEdns0().SetVersion(1)
	if resp := exchange(t, s.Addr(), "udp", m); resp.Rcode != mdns.RcodeBadVers || len(resp.Answer) != 0 {
		t.Errorf("EDNS version 1: rcode %s with %d answers, want BADVERS and none", mdns.RcodeToString[resp.Rcode], len(resp.Answer))
	}

	m = &mdns.Msg{}
	m.SetQuestion("reviews.bookinfo.demo.mesh.", mdns.TypeA)
	m.SetEdns0(1232, false)
	m.SetEdns0(1232, false)
	m.Extra = append(m.Extra, m.Extra[0])
	if resp := exchange(t, s.Addr(), "udp", m); resp.Rcode != mdns.RcodeFormatError {
		t.Errorf("two OPT records: rcode %s, want FORMERR", mdns.RcodeToString[resp.Rcode])
	}

	m = &mdns.Msg{}
	m.SetNotify("demo.mesh.")
	if resp := exchange(t, s.Addr(), "udp", m); resp.Rcode != mdns.RcodeNotImplemented {
		t.Errorf("NOTIFY: rcode %s, want NOTIMP", mdns.RcodeToString[resp.Rcode])
	}
}

func TestStaleNegative(t *testing.T) {
	r := &fakeResolver{names: map[string]Answer{
		"old.demo.mesh": {Addrs: addrs("10.1.0.1"), Ports: []SRVTarget{{Name: "http", Proto: "tcp", Port: 80}}, TTL: time.Hour, Stale: true},
	}}
	s := startServer(t, r, testOptions())
	resp := query(t, s.Addr(), "udp", "old.demo.mesh.", mdns.TypeAAAA, 1232)
	want := "demo.mesh. 2 IN SOA ns.demo.mesh. hostmaster.demo.mesh. 1 3600 600 86400 2"
	if got := rrStrings(resp.Ns); resp.Rcode != 0 || !slices.Equal(got, []string{want}) {
		t.Errorf("stale NODATA: rcode %d authority %q, want NOERROR and %q", resp.Rcode, got, want)
	}
	if e := ede(resp); e == nil || e.InfoCode != mdns.ExtendedErrorCodeStaleAnswer {
		t.Errorf("stale NODATA EDE = %v", e)
	}
	resp = query(t, s.Addr(), "udp", "_grpc._tcp.old.demo.mesh.", mdns.TypeSRV, 1232)
	if e := ede(resp); resp.Rcode != mdns.RcodeNameError || e == nil || e.InfoCode != mdns.ExtendedErrorCodeStaleNXDOMAINAnswer {
		t.Errorf("stale NXDOMAIN: rcode %s EDE %v", mdns.RcodeToString[resp.Rcode], e)
	}
}

func TestConcurrencyBoundAndTimeout(t *testing.T) {
	release := make(chan struct{})
	r := bookinfo()
	r.block = map[string]chan struct{}{
		"slow.bookinfo.demo.mesh": release,
		"hung.bookinfo.demo.mesh": make(chan struct{}), // never released
	}
	r.names["slow.bookinfo.demo.mesh"] = Answer{Addrs: addrs("10.5.0.1"), TTL: time.Second}
	r.entered = make(chan string, 4)
	o := testOptions()
	o.MaxConcurrent = 1
	o.QueryTimeout = 200 * time.Millisecond
	s := startServer(t, r, o)

	var wg sync.WaitGroup
	var slow *mdns.Msg
	var slowErr error
	wg.Go(func() {
		m := &mdns.Msg{}
		m.SetQuestion("slow.bookinfo.demo.mesh.", mdns.TypeA)
		slow, _, slowErr = (&mdns.Client{Timeout: 3 * time.Second}).Exchange(m, s.Addr())
	})
	<-r.entered
	resp := query(t, s.Addr(), "udp", "reviews.bookinfo.demo.mesh.", mdns.TypeA, 0)
	if resp.Rcode != mdns.RcodeServerFailure {
		t.Errorf("query beyond MaxConcurrent: rcode %s, want SERVFAIL", mdns.RcodeToString[resp.Rcode])
	}
	close(release)
	wg.Wait()
	if slowErr != nil {
		t.Fatalf("slow query: %v", slowErr)
	}
	if slow.Rcode != 0 || len(slow.Answer) != 1 {
		t.Errorf("slow query: rcode %s answer %q", mdns.RcodeToString[slow.Rcode], rrStrings(slow.Answer))
	}
	if st := s.Stats(); st.Overload != 1 {
		t.Errorf("Stats.Overload = %d, want 1", st.Overload)
	}

	start := time.Now()
	resp = query(t, s.Addr(), "tcp", "hung.bookinfo.demo.mesh.", mdns.TypeA, 0)
	<-r.entered
	if resp.Rcode != mdns.RcodeServerFailure {
		t.Errorf("hung lookup: rcode %s, want SERVFAIL", mdns.RcodeToString[resp.Rcode])
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("hung lookup answered after %v, want about the 200ms query timeout", el)
	}
	// The slot is free again.
	if resp := query(t, s.Addr(), "udp", "reviews.bookinfo.demo.mesh.", mdns.TypeA, 0); resp.Rcode != 0 {
		t.Errorf("after timeout: rcode %s", mdns.RcodeToString[resp.Rcode])
	}
}

func TestMalformedPacketsDoNotCrash(t *testing.T) {
	s := startServer(t, bookinfo(), testOptions())
	valid := &mdns.Msg{}
	valid.SetQuestion("reviews.bookinfo.demo.mesh.", mdns.TypeA)
	packed, err := valid.Pack()
	if err != nil {
		t.Fatal(err)
	}
	garbage := [][]byte{
		{},
		{0x00},
		[]byte("hello, this is not dns"),
		packed[:13], // cut inside the question
		append(slices.Clone(packed[:4]), 0xff, 0xff, 0, 0, 0, 0, 0, 0),                         // 65535 questions, none present
		append(append(slices.Clone(packed[:12]), 0xc0, 0x0c), packed[12+len("reviews")+2:]...), // compression loop
		func() []byte { b := slices.Clone(packed); b[2] |= 0x80; return b }(),                  // a response
		func() []byte { b := slices.Clone(packed); b[2] |= 0x28; return b }(),                  // opcode UPDATE
		make([]byte, 4000),
	}
	for i := range 50 { // pseudo-random bytes, deterministic
		b := make([]byte, 12+i*7)
		for j := range b {
			b[j] = byte((i*131 + j*197 + 7) % 251)
		}
		garbage = append(garbage, b)
	}

	uc, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	for _, g := range garbage {
		if _, err := uc.Write(g); err != nil && len(g) > 0 {
			t.Fatalf("udp write: %v", err)
		}
	}
	for _, g := range garbage {
		tc, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		frame := append([]byte{byte(len(g) >> 8), byte(len(g))}, g...)
		tc.SetDeadline(time.Now().Add(time.Second))
		tc.Write(frame)
		tc.Close()
	}
	// A length prefix promising more than is sent, then close.
	if tc, err := net.Dial("tcp", s.Addr()); err == nil {
		tc.Write([]byte{0xff, 0xff, 1, 2, 3})
		tc.Close()
	}

	for _, network := range []string{"udp", "tcp"} {
		resp := query(t, s.Addr(), network, "reviews.bookinfo.demo.mesh.", mdns.TypeA, 0)
		if resp.Rcode != 0 || len(resp.Answer) != 2 {
			t.Fatalf("%s after garbage: rcode %s answer %q", network, mdns.RcodeToString[resp.Rcode], rrStrings(resp.Answer))
		}
	}
}

func TestServeLifecycle(t *testing.T) {
	s, err := New(bookinfo(), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	if resp := query(t, s.Addr(), "tcp", "reviews.bookinfo.demo.mesh.", mdns.TypeA, 0); resp.Rcode != 0 {
		t.Fatalf("rcode %s", mdns.RcodeToString[resp.Rcode])
	}
	if err := s.Serve(context.Background()); err == nil {
		t.Errorf("second Serve: no error")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	// The port is free again.
	pc, ln, err := listenBoth(s.Addr())
	if err != nil {
		t.Fatalf("port still held after Serve returned: %v", err)
	}
	pc.Close()
	ln.Close()

	s2, err := New(bookinfo(), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s2.Serve(context.Background()); err == nil {
		t.Errorf("Serve after Close: no error")
	}
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Options)
		want string // substring of the error; empty: no error
	}{
		{"valid", func(*Options) {}, ""},
		{"mesh with trailing dot", func(o *Options) { o.Mesh = "Demo.Mesh." }, ""},
		{"upstream without port", func(o *Options) { o.Upstream = []string{"127.0.0.1", "[::1]"} }, ""},
		{"no mesh", func(o *Options) { o.Mesh = "" }, "Options.Mesh"},
		{"bad mesh", func(o *Options) { o.Mesh = "demo mesh" }, "Options.Mesh"},
		{"search outside mesh", func(o *Options) { o.SearchDomains = []string{"corp.example.com"} }, "SearchDomains[0]"},
		{"bad upstream", func(o *Options) { o.Upstream = []string{"resolver"} }, "Upstream[0]"},
		{"negative timeout", func(o *Options) { o.QueryTimeout = -time.Second }, "negative"},
		{"bad listen", func(o *Options) { o.Listen = "nowhere" }, "listen"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions()
			tc.edit(&o)
			s, err := New(bookinfo(), o)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				s.Close()
				return
			}
			if err == nil {
				s.Close()
				t.Fatalf("New: no error, want one about %s", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want it to mention %s", err, tc.want)
			}
		})
	}
	if _, err := New(nil, testOptions()); err == nil {
		t.Errorf("New(nil): no error")
	}
}

func TestUpstreamReplyMustAnswerTheQuestion(t *testing.T) {
	o := testOptions()
	o.Upstream = []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}
	s, err := New(bookinfo(), o)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	var asked []string
	s.exchange = func(_ context.Context, m *mdns.Msg, up string) (*mdns.Msg, error) {
		asked = append(asked, up)
		r := answerA(m.Question[0])
		r.SetReply(m)
		switch up {
		case "127.0.0.1:1": // answers another name
			r.Question[0].Name = "evil.example."
		case "127.0.0.1:2": // answers with another ID
			r.Id = m.Id + 1
		}
		return r, nil
	}
	req := &mdns.Msg{}
	req.SetQuestion("www.example.", mdns.TypeA)
	resp := s.handle(context.Background(), req, false)
	if resp.Rcode != 0 || len(resp.Answer) != 1 {
		t.Fatalf("rcode %s answer %q", mdns.RcodeToString[resp.Rcode], rrStrings(resp.Answer))
	}
	if want := []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}; !slices.Equal(asked, want) {
		t.Fatalf("asked %q, want %q: mismatched replies must be skipped", asked, want)
	}
}
