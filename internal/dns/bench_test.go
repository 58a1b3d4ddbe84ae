package dns

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// mapResolver answers from memory without recording, like a warm cache.
type mapResolver map[string]Answer

func (m mapResolver) Lookup(_ context.Context, name string) (Answer, bool, error) {
	a, ok := m[name]
	return a, ok, nil
}

// BenchmarkHandleCachedA measures one A query for a name the Resolver has in
// memory, in process: unpack the query, answer it, pack the response.
func BenchmarkHandleCachedA(b *testing.B) {
	s, err := New(mapResolver(bookinfo().names), testOptions())
	if err != nil {
		b.Fatal(err)
	}
	s.Close()
	m := &mdns.Msg{}
	m.SetQuestion("reviews.bookinfo.demo.mesh.", mdns.TypeA)
	m.SetEdns0(1232, false)
	wire, err := m.Pack()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req := &mdns.Msg{}
		if err := req.Unpack(wire); err != nil {
			b.Fatal(err)
		}
		resp := s.handle(ctx, req, false)
		if _, err := resp.Pack(); err != nil || len(resp.Answer) != 2 {
			b.Fatalf("pack: %v, %d answers", err, len(resp.Answer))
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
}

// BenchmarkServeUDPCachedA measures queries/s over loopback UDP for a name
// the Resolver has in memory, with parallel clients each holding one socket.
func BenchmarkServeUDPCachedA(b *testing.B) {
	s := startServer(b, mapResolver(bookinfo().names), testOptions())
	m := &mdns.Msg{}
	m.SetQuestion("reviews.bookinfo.demo.mesh.", mdns.TypeA)
	var failed atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(4)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		co, err := mdns.Dial("udp", s.Addr())
		if err != nil {
			b.Error(err)
			return
		}
		defer co.Close()
		q := m.Copy()
		for pb.Next() {
			q.Id = mdns.Id()
			co.SetDeadline(time.Now().Add(2 * time.Second))
			if err := co.WriteMsg(q); err != nil {
				failed.Add(1)
				continue
			}
			r, err := co.ReadMsg()
			if err != nil || r.Id != q.Id || len(r.Answer) != 2 {
				failed.Add(1)
			}
		}
	})
	el := time.Since(start)
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d queries failed", n, b.N)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "queries/s")
}
