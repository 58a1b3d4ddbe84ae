package resolve_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/resolve"
	"canton.dev/canton/internal/resource"
)

// The cache's hot path: a name answered from memory, as the DNS server and
// the sidecar's DNS ask it. The issue aims at <= 1 µs per cached answer.
//
//	go test ./internal/resolve -run '^$' -bench . -benchmem
//
// Every benchmark counts the calls reaching the fake anchors and fails if a
// "cached" benchmark asked them more than once per name, so it cannot
// silently measure misses.

// benchAnswer is a positive answer for cart.shop.demo.mesh with workloads
// endpoints and ttl.
func benchAnswer(tb testing.TB, workloads int, ttl uint32) *apipb.ResolveResponse {
	tb.Helper()
	svc, err := json.Marshal(resource.Object{Kind: "Service", Namespace: "shop.demo.mesh", Name: "cart",
		Spec: []byte(`{"ports":[{"name":"http","port":8080,"protocol":"HTTP"},{"name":"grpc","port":9090,"protocol":"GRPC"}]}`)})
	if err != nil {
		tb.Fatal(err)
	}
	var objs []resource.Object
	for i := range workloads {
		objs = append(objs, resource.Object{Kind: "Workload", Namespace: "shop.demo.mesh", Name: fmt.Sprintf("cart-%d", i),
			Spec: []byte(fmt.Sprintf(`{"service":"cart","address":"127.0.%d.%d","port":15006,"lease":5}`, i/250, i%250+1))})
	}
	wls, err := json.Marshal(objs)
	if err != nil {
		tb.Fatal(err)
	}
	return &apipb.ResolveResponse{Found: true, Service: svc, Workloads: wls, TtlSeconds: ttl}
}

// countingLookup answers every name with resp and counts the calls.
func countingLookup(resp *apipb.ResolveResponse, calls *atomic.Int64) resolve.Lookuper {
	return func(ctx context.Context, name string) (*apipb.ResolveResponse, error) {
		calls.Add(1)
		return resp, nil
	}
}

// warm looks every name up once and checks the answers.
func warm(b *testing.B, c *resolve.Cache, names []string, wantFound bool) {
	b.Helper()
	for _, n := range names {
		if _, found, err := c.Lookup(context.Background(), n); err != nil || found != wantFound {
			b.Fatalf("warm %s: found %v, %v; want found %v", n, found, err, wantFound)
		}
	}
}

func checkCalls(b *testing.B, calls *atomic.Int64, names int) {
	b.Helper()
	if got := calls.Load(); got != int64(names) {
		b.Fatalf("the anchors were asked %d times for %d names: the benchmark measured misses, not cached answers", got, names)
	}
}

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("svc-%d.shop.demo.mesh", i)
	}
	return out
}

// BenchmarkCachedLookup: one positive answer (3 endpoints, 2 ports) served
// from the cache.
func BenchmarkCachedLookup(b *testing.B) {
	var calls atomic.Int64
	c := resolve.New(countingLookup(benchAnswer(b, 3, 3600), &calls), time.Hour)
	warm(b, c, []string{"cart.shop.demo.mesh"}, true)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		ans, found, err := c.Lookup(ctx, "cart.shop.demo.mesh")
		if err != nil || !found || len(ans.Addrs) != 3 {
			b.Fatalf("cached answer: %+v %v %v", ans, found, err)
		}
	}
	b.StopTimer()
	checkCalls(b, &calls, 1)
}

// BenchmarkCachedLookupNegative: a negative answer served from the cache.
func BenchmarkCachedLookupNegative(b *testing.B) {
	var calls atomic.Int64
	c := resolve.New(countingLookup(&apipb.ResolveResponse{Found: false, TtlSeconds: 3600}, &calls), time.Hour)
	warm(b, c, []string{"nope.shop.demo.mesh"}, false)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, found, err := c.Lookup(ctx, "nope.shop.demo.mesh"); err != nil || found {
			b.Fatalf("cached negative answer: %v %v", found, err)
		}
	}
	b.StopTimer()
	checkCalls(b, &calls, 1)
}

// BenchmarkCachedLookupManyNames: positive answers for 10,000 cached names,
// asked round robin (map lookups that miss the CPU caches).
func BenchmarkCachedLookupManyNames(b *testing.B) {
	var calls atomic.Int64
	c := resolve.New(countingLookup(benchAnswer(b, 3, 3600), &calls), time.Hour)
	ns := names(10000)
	warm(b, c, ns, true)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, found, err := c.Lookup(ctx, ns[i%len(ns)]); err != nil || !found {
			b.Fatalf("cached answer: %v %v", found, err)
		}
		i++
	}
	b.StopTimer()
	checkCalls(b, &calls, len(ns))
}

// BenchmarkCachedLookupParallel: every goroutine (GOMAXPROCS of them, -cpu
// to vary) asks the same cached name: the cache's lock is contended.
func BenchmarkCachedLookupParallel(b *testing.B) {
	var calls atomic.Int64
	c := resolve.New(countingLookup(benchAnswer(b, 3, 3600), &calls), time.Hour)
	warm(b, c, []string{"cart.shop.demo.mesh"}, true)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, found, err := c.Lookup(ctx, "cart.shop.demo.mesh"); err != nil || !found {
				b.Errorf("cached answer: %v %v", found, err)
				return
			}
		}
	})
	b.StopTimer()
	checkCalls(b, &calls, 1)
}

// BenchmarkCachedLookupParallelNegative: the same with a negative answer.
func BenchmarkCachedLookupParallelNegative(b *testing.B) {
	var calls atomic.Int64
	c := resolve.New(countingLookup(&apipb.ResolveResponse{Found: false, TtlSeconds: 3600}, &calls), time.Hour)
	warm(b, c, []string{"nope.shop.demo.mesh"}, false)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, found, err := c.Lookup(ctx, "nope.shop.demo.mesh"); err != nil || found {
				b.Errorf("cached negative answer: %v %v", found, err)
				return
			}
		}
	})
	b.StopTimer()
	checkCalls(b, &calls, 1)
}

// BenchmarkCachedLookupParallelManyNames: goroutines ask different cached
// names (1,000), so only the lock is shared, not the entry.
func BenchmarkCachedLookupParallelManyNames(b *testing.B) {
	var calls atomic.Int64
	c := resolve.New(countingLookup(benchAnswer(b, 3, 3600), &calls), time.Hour)
	ns := names(1000)
	warm(b, c, ns, true)
	var seed atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		i := int(seed.Add(397))
		for pb.Next() {
			if _, found, err := c.Lookup(ctx, ns[i%len(ns)]); err != nil || !found {
				b.Errorf("cached answer: %v %v", found, err)
				return
			}
			i++
		}
	})
	b.StopTimer()
	checkCalls(b, &calls, len(ns))
}

// BenchmarkExpiredLookup: the answer's TTL is 0, so every Lookup asks the
// (in-memory, free) anchors again and decodes the answer: the cost of a miss
// without the network, for 3 and 100 endpoints.
func BenchmarkExpiredLookup(b *testing.B) {
	for _, n := range []int{3, 100} {
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			var calls atomic.Int64
			c := resolve.New(countingLookup(benchAnswer(b, n, 0), &calls), time.Hour)
			ctx := context.Background()
			b.ReportAllocs()
			iters := int64(0)
			for b.Loop() {
				ans, found, err := c.Lookup(ctx, "cart.shop.demo.mesh")
				if err != nil || !found || len(ans.Addrs) != n {
					b.Fatalf("answer: %d addresses, %v %v", len(ans.Addrs), found, err)
				}
				iters++
			}
			b.StopTimer()
			if calls.Load() != iters {
				b.Fatalf("%d lookups reached the anchors for %d iterations: expired answers were served from the cache", calls.Load(), iters)
			}
		})
	}
}
