package resolve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
