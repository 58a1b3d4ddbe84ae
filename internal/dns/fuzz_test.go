package dns

import (
	"context"
	"errors"
	"sync"
	"testing"

	mdns "github.com/miekg/dns"
)

// FuzzHandle feeds raw messages to the query handler: it must never panic,
// must answer every query with a packable response that fits the transport,
// and must never send a mesh name upstream.
func FuzzHandle(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
		edns  uint16
	}{
		{"reviews.bookinfo.demo.mesh.", mdns.TypeA, 0},
		{"ReViews.BookInfo.demo.MESH.", mdns.TypeAAAA, 1232},
		{"_http._tcp.reviews.bookinfo.demo.mesh.", mdns.TypeSRV, 4096},
		{"_http._tcp.reviews.", mdns.TypeSRV, 0},
		{"reviews.", mdns.TypeANY, 0},
		{"big.bookinfo.demo.mesh.", mdns.TypeA, 0},
		{"big.", mdns.TypeA, 600},
		{"stale.bookinfo.demo.mesh.", mdns.TypeA, 1232},
		{"nope.demo.mesh.", mdns.TypeA, 0},
		{"demo.mesh.", mdns.TypeSOA, 0},
		{"broken.", mdns.TypeA, 0},
		{"example.com.", mdns.TypeA, 1232},
		{"example.com.", mdns.TypeMX, 0},
		{".", mdns.TypeNS, 0},
		{"demo.mesh.", mdns.TypeAXFR, 0},
	} {
		m := &mdns.Msg{}
		m.SetQuestion(q.name, q.qtype)
		if q.edns > 0 {
			m.SetEdns0(q.edns, true)
		}
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte("\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01\xc0\x0c\x00\x01\x00\x01"))
	f.Add(make([]byte, 600))

	o := testOptions()
	o.Upstream = []string{"127.0.0.1:1"} // never dialled: exchange is replaced below
	s, err := New(bookinfo(), o)
	if err != nil {
		f.Fatal(err)
	}
	s.Close() // the handler is called directly
	var mu sync.Mutex
	var leaked []string
	s.exchange = func(_ context.Context, m *mdns.Msg, _ string) (*mdns.Msg, error) {
		q := m.Question[0]
		if _, lower := queryLabels(q.Name); isUnder(lower, s.mesh) {
			mu.Lock()
			leaked = append(leaked, q.Name)
			mu.Unlock()
			return nil, errors.New("leak")
		}
		r := answerA(q)
		r.SetReply(m)
		return r, nil
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		req := &mdns.Msg{}
		if req.Unpack(data) != nil {
			return
		}
		for _, tcp := range []bool{false, true} {
			resp := s.handle(context.Background(), req.Copy(), tcp)
			if resp == nil {
				if !req.Response {
					t.Fatalf("query not answered")
				}
				continue
			}
			if resp.Id != req.Id || !resp.Response {
				t.Fatalf("response id %d response %v, want id %d", resp.Id, resp.Response, req.Id)
			}
			b, err := resp.Pack()
			if err != nil {
				t.Fatalf("response does not pack: %v\n%v", err, resp)
			}
			limit := mdns.MaxMsgSize
			if !tcp {
				limit = mdns.MinMsgSize
				if o, n := ednsOf(req); n == 1 && o.Version() == 0 {
					limit = max(limit, min(int(o.UDPSize()), s.udpSize))
				}
			}
			if len(b) > limit {
				t.Fatalf("response is %d bytes, limit %d (tcp %v)", len(b), limit, tcp)
			}
			if err := new(mdns.Msg).Unpack(b); err != nil {
				t.Fatalf("response does not unpack: %v", err)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if len(leaked) > 0 {
			t.Fatalf("mesh names forwarded upstream: %q", leaked)
		}
	})
}
