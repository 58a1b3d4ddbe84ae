package resolve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/resource"
)

func answerFor(t *testing.T, addr string) *apipb.ResolveResponse {
	t.Helper()
	svc, _ := json.Marshal(resource.Object{Kind: "Service", Namespace: "shop.demo.mesh", Name: "cart", Spec: []byte(`{"ports":[{"name":"http","port":8080,"protocol":"HTTP"}]}`)})
	wls, _ := json.Marshal([]resource.Object{{Kind: "Workload", Namespace: "shop.demo.mesh", Name: "cart-1", Spec: []byte(fmt.Sprintf(`{"service":"cart","address":%q,"port":15006,"lease":5}`, addr))}})
	return &apipb.ResolveResponse{Found: true, Service: svc, Workloads: wls, TtlSeconds: 30}
}

func TestCacheTTLNegativeAndStale(t *testing.T) {
	now := time.Unix(1000, 0)
	calls := 0
	var next *apipb.ResolveResponse
	var fail error
	c := New(func(ctx context.Context, name string) (*apipb.ResolveResponse, error) {
		calls++
		return next, fail
	}, time.Minute)
	c.now = func() time.Time { return now }

	next = answerFor(t, "127.0.0.7")
	ans, found, err := c.Lookup(context.Background(), "cart.shop.demo.mesh")
	if err != nil || !found || fmt.Sprint(ans.Addrs) != "[127.0.0.7]" || len(ans.Ports) != 1 || ans.Ports[0].Port != 8080 || ans.Stale {
		t.Fatalf("first answer: %+v %v %v", ans, found, err)
	}
	c.Lookup(context.Background(), "cart.shop.demo.mesh")
	if calls != 1 {
		t.Fatalf("answer not cached within its TTL: %d lookups", calls)
	}
	// After the TTL with the anchors unreachable: the last answer, stale.
	now = now.Add(31 * time.Second)
	fail = errors.New("no anchor reachable")
	ans, found, err = c.Lookup(context.Background(), "cart.shop.demo.mesh")
	if err != nil || !found || !ans.Stale || fmt.Sprint(ans.Addrs) != "[127.0.0.7]" {
		t.Fatalf("serve-stale: %+v %v %v", ans, found, err)
	}
	// Past MaxStale: an error, never an answer that old.
	now = now.Add(2 * time.Minute)
	if _, _, err := c.Lookup(context.Background(), "cart.shop.demo.mesh"); err == nil {
		t.Fatal("an answer older than MaxStale was served")
	}
	// Negative answers are cached for their own TTL.
	fail = nil
	next = &apipb.ResolveResponse{Found: false, TtlSeconds: 5}
	calls = 0
	for range 3 {
		if _, found, err := c.Lookup(context.Background(), "nope.shop.demo.mesh"); found || err != nil {
			t.Fatalf("negative: %v %v", found, err)
		}
	}
	if calls != 1 {
		t.Fatalf("negative answer not cached: %d lookups", calls)
	}
}

// negativeAnswer is a negative answer with ttl seconds.
func negativeAnswer(ttl uint32) *apipb.ResolveResponse {
	return &apipb.ResolveResponse{Found: false, TtlSeconds: ttl}
}

// TestCacheBoundsNamesNegativeFirst: the cache remembers at most MaxEntries
// names and MaxNegative negative answers, forgetting the least recently used
// (negative ones first), so random names asked through the DNS port cannot
// grow it; a recently used positive answer survives a flood of random names.
func TestCacheBoundsNamesNegativeFirst(t *testing.T) {
	calls := map[string]int{}
	c := NewCache(func(ctx context.Context, name string) (*apipb.ResolveResponse, error) {
		calls[name]++
		if strings.HasPrefix(name, "svc-") {
			return answerFor(t, "127.0.0.7"), nil
		}
		return negativeAnswer(60), nil
	}, Options{MaxEntries: 4, MaxNegative: 2})
	ctx := context.Background()
	lookup := func(name string) {
		t.Helper()
		if _, _, err := c.Lookup(ctx, name); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	for _, n := range []string{"svc-a.shop.demo.mesh", "svc-b.shop.demo.mesh", "svc-c.shop.demo.mesh"} {
		lookup(n)
	}
	// A flood of random names: never more than 2 negative answers, 4 names.
	for i := range 1000 {
		lookup(fmt.Sprintf("rnd-%d.shop.demo.mesh", i))
		if c.neg.Len() > 2 || len(c.entries) > 4 {
			t.Fatalf("after %d random names: %d negative answers, %d names; want <= 2 and <= 4", i+1, c.neg.Len(), len(c.entries))
		}
	}
	// The positive answers were kept: negative ones went first.
	for _, n := range []string{"svc-a.shop.demo.mesh", "svc-b.shop.demo.mesh", "svc-c.shop.demo.mesh"} {
		lookup(n)
		if calls[n] != 1 {
			t.Fatalf("%s asked %d times: evicted by negative answers", n, calls[n])
		}
	}
	// Positive answers past the bound: the least recently used goes.
	lookup("svc-a.shop.demo.mesh") // a is now the most recently used
	lookup("svc-d.shop.demo.mesh")
	lookup("svc-e.shop.demo.mesh")
	if len(c.entries) != 4 || c.neg.Len() != 0 {
		t.Fatalf("%d names, %d negative; want 4 positive", len(c.entries), c.neg.Len())
	}
	lookup("svc-a.shop.demo.mesh")
	if calls["svc-a.shop.demo.mesh"] != 1 {
		t.Fatal("the most recently used name was evicted")
	}
	lookup("svc-b.shop.demo.mesh")
	if calls["svc-b.shop.demo.mesh"] != 2 {
		t.Fatalf("the least recently used name was kept (asked %d times)", calls["svc-b.shop.demo.mesh"])
	}
}

func TestCacheDefaultBounds(t *testing.T) {
	c := New(nil, 0)
	if c.maxEntries != 10000 || c.maxNegative != 1000 || c.maxStale != time.Hour {
		t.Fatalf("defaults: %d entries, %d negative, max stale %s", c.maxEntries, c.maxNegative, c.maxStale)
	}
}

// TestCacheCoalescesConcurrentMisses: many concurrent lookups of one
// uncached name ask the anchors once and all get the answer; a caller that
// gives up does not fail the others. Run with -race.
func TestCacheCoalescesConcurrentMisses(t *testing.T) {
	var calls atomic.Int64
	release := make(chan struct{})
	c := New(func(ctx context.Context, name string) (*apipb.ResolveResponse, error) {
		calls.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return answerFor(t, "127.0.0.9"), nil
	}, time.Minute)

	// The first caller gives up while the question is in flight.
	first, cancelFirst := context.WithCancel(context.Background())
	firstDone := make(chan error, 1)
	go func() {
		_, _, err := c.Lookup(first, "cart.shop.demo.mesh")
		firstDone <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first lookup never reached the anchors")
		}
		time.Sleep(time.Millisecond)
	}
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ans, found, err := c.Lookup(context.Background(), "cart.shop.demo.mesh")
			if err == nil && (!found || fmt.Sprint(ans.Addrs) != "[127.0.0.9]") {
				err = fmt.Errorf("answer %+v found %v", ans, found)
			}
			errs <- err
		}()
	}
	cancelFirst()
	if err := <-firstDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("the caller that gave up: %v, want context.Canceled", err)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := calls.Load(); got != 1 {
		t.Fatalf("%d concurrent lookups of one name asked the anchors %d times, want once", n+1, got)
	}
}

// TestCacheConcurrentRandomNames: concurrent lookups of distinct names (a
// flood) stay within the bounds, under -race.
func TestCacheConcurrentRandomNames(t *testing.T) {
	c := NewCache(func(ctx context.Context, name string) (*apipb.ResolveResponse, error) {
		return negativeAnswer(5), nil
	}, Options{MaxEntries: 100})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				if _, found, err := c.Lookup(context.Background(), fmt.Sprintf("r%d-%d.shop.demo.mesh", g, i)); err != nil || found {
					t.Errorf("lookup: %v %v", found, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) > 10 || c.neg.Len() != len(c.entries) {
		t.Fatalf("%d names (%d negative) after 4000 random names, want at most 10 (MaxEntries/10)", len(c.entries), c.neg.Len())
	}
}
