package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// fakeResolver answers from a map and records what it was asked.
type fakeResolver struct {
	mu      sync.Mutex
	names   map[string]Answer
	errs    map[string]error
	block   map[string]chan struct{} // lookups of these names wait for close or ctx
	entered chan string              // receives blocked names as their lookups start
	asked   []string
}

func (f *fakeResolver) Lookup(ctx context.Context, name string) (Answer, bool, error) {
	f.mu.Lock()
	f.asked = append(f.asked, name)
	a, ok := f.names[name]
	err := f.errs[name]
	wait := f.block[name]
	f.mu.Unlock()
	if wait != nil {
		if f.entered != nil {
			f.entered <- name
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return Answer{}, false, ctx.Err()
		}
	}
	return a, ok, err
}

func (f *fakeResolver) lookups() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.asked...)
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// bookinfo is the mesh the tests ask about.
func bookinfo() *fakeResolver {
	big := make([]netip.Addr, 100)
	for i := range big {
		big[i] = netip.AddrFrom4([4]byte{10, 9, 0, byte(i)})
	}
	return &fakeResolver{
		names: map[string]Answer{
			"reviews.bookinfo.demo.mesh": {
				Addrs: addrs("10.0.0.1", "10.0.0.2", "fd00::1"),
				Ports: []SRVTarget{{Name: "http", Proto: "tcp", Port: 9080}, {Name: "grpc", Proto: "tcp", Port: 9090}},
				TTL:   30 * time.Second,
			},
			"ratings.bookinfo.demo.mesh": {Addrs: addrs("10.0.1.1"), TTL: 200 * time.Millisecond},
			"bookinfo.demo.mesh":         {},
			"details.demo.mesh":          {Addrs: addrs("10.0.2.1"), TTL: 10 * time.Second},
			"stale.bookinfo.demo.mesh":   {Addrs: addrs("10.0.3.1"), TTL: time.Minute, Stale: true},
			"big.bookinfo.demo.mesh":     {Addrs: big, TTL: 10 * time.Second},
			"v6.bookinfo.demo.mesh":      {Addrs: addrs("::ffff:10.0.4.1", "fe80::1%eth0"), TTL: 10 * time.Second},
		},
		errs: map[string]error{"broken.bookinfo.demo.mesh": errors.New("scope unreachable")},
	}
}

// fakeUpstream is a DNS server on 127.0.0.1 that records the names it is
// asked and answers with reply (nil: never answers).
type fakeUpstream struct {
	addr  string
	reply func(q mdns.Question) *mdns.Msg

	mu    sync.Mutex
	asked []string
}

func (u *fakeUpstream) names() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.asked...)
}

// answerA answers every A query with 192.0.2.1 and everything else NODATA.
func answerA(q mdns.Question) *mdns.Msg {
	m := &mdns.Msg{}
	if q.Qtype == mdns.TypeA {
		rr, _ := mdns.NewRR(q.Name + " 60 IN A 192.0.2.1")
		m.Answer = append(m.Answer, rr)
	}
	return m
}

func rcodeReply(rcode int) func(mdns.Question) *mdns.Msg {
	return func(mdns.Question) *mdns.Msg { return &mdns.Msg{MsgHdr: mdns.MsgHdr{Rcode: rcode}} }
}

func startUpstream(t *testing.T, reply func(mdns.Question) *mdns.Msg) *fakeUpstream {
	t.Helper()
	pc, ln, err := listenBoth("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &fakeUpstream{addr: ln.Addr().String(), reply: reply}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) {
		q := req.Question[0]
		u.mu.Lock()
		u.asked = append(u.asked, q.Name)
		u.mu.Unlock()
		if u.reply == nil {
			return
		}
		m := u.reply(q)
		m.SetRcode(req, m.Rcode)
		m.RecursionAvailable = true
		if _, tcp := w.LocalAddr().(*net.TCPAddr); !tcp {
			size := mdns.MinMsgSize
			if o := req.IsEdns0(); o != nil {
				size = int(o.UDPSize())
			}
			m.Truncate(size)
		}
		w.WriteMsg(m)
	})
	var wg sync.WaitGroup
	servers := []*mdns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}}
	for _, srv := range servers {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		wg.Add(1)
		go func() { defer wg.Done(); srv.ActivateAndServe() }()
		<-started
	}
	t.Cleanup(func() {
		for _, srv := range servers {
			srv.Shutdown()
		}
		wg.Wait()
	})
	return u
}

// deadAddr returns a loopback UDP address where nothing answers: the socket
// is bound (so no ICMP error comes back) but never read.
func deadAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

func testOptions() Options {
	return Options{
		Listen:          "127.0.0.1:0",
		Mesh:            "demo.mesh",
		SearchDomains:   []string{"bookinfo.demo.mesh", "demo.mesh"},
		UpstreamTimeout: 150 * time.Millisecond,
		QueryTimeout:    time.Second,
		StaleTTL:        2 * time.Second,
	}
}

// startServer runs a Server until the test ends.
func startServer(t testing.TB, r Resolver, o Options) *Server {
	t.Helper()
	s, err := New(r, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
	})
	return s
}

// query asks addr over network ("udp" or "tcp"); ednsSize 0 means no EDNS0.
func query(t testing.TB, addr, network, name string, qtype uint16, ednsSize uint16) *mdns.Msg {
	t.Helper()
	m := &mdns.Msg{}
	m.SetQuestion(name, qtype)
	if ednsSize > 0 {
		m.SetEdns0(ednsSize, false)
	}
	return exchange(t, addr, network, m)
}

func exchange(t testing.TB, addr, network string, m *mdns.Msg) *mdns.Msg {
	t.Helper()
	c := &mdns.Client{Net: network, Timeout: 3 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, m.Question[0].Name, mdns.TypeToString[m.Question[0].Qtype], err)
	}
	return r
}

// rrStrings renders records with single spaces: "a.demo.mesh. 30 IN A 10.0.0.1".
func rrStrings(rrs []mdns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if rr.Header().Rrtype == mdns.TypeOPT {
			continue
		}
		out = append(out, strings.Join(strings.Fields(rr.String()), " "))
	}
	return out
}

func ede(m *mdns.Msg) *mdns.EDNS0_EDE {
	if o := m.IsEdns0(); o != nil {
		for _, opt := range o.Option {
			if e, ok := opt.(*mdns.EDNS0_EDE); ok {
				return e
			}
		}
	}
	return nil
}
