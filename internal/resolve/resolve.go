// Package resolve is the client side of mesh name resolution: a cache in
// front of the anchors' Resolve call, with TTLs from the answers, negative
// answers cached for their own (short) TTL, and serve-stale: when no anchor
// can answer, the last answer is served, marked stale, for up to MaxStale.
//
// It implements internal/dns's Resolver, so `canton dns` answers from it.
// Only internal/cli (canton dns) and internal/workload (the sidecar's DNS) import it.
package resolve

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/dns"
	"canton.dev/canton/internal/resource"
)

// Lookuper asks the anchors (an *api.Client's Resolve, or a fake in tests).
type Lookuper func(ctx context.Context, name string) (*apipb.ResolveResponse, error)

// FromClient adapts an anchor client.
func FromClient(c *api.Client) Lookuper {
	return func(ctx context.Context, name string) (*apipb.ResolveResponse, error) {
		resp, err := c.Raw().Resolve(ctx, &apipb.ResolveRequest{Name: name})
		return resp, api.Err(err)
	}
}

// Cache answers names from the anchors, remembering answers for their TTL.
type Cache struct {
	lookup   Lookuper
	maxStale time.Duration
	now      func() time.Time

	mu      sync.Mutex
	entries map[string]entry
}

type entry struct {
	answer  dns.Answer
	found   bool
	expires time.Time
	fetched time.Time
}

// New returns a cache over lookup. maxStale bounds serve-stale (0: 1 hour).
func New(lookup Lookuper, maxStale time.Duration) *Cache {
	if maxStale == 0 {
		maxStale = time.Hour
	}
	return &Cache{lookup: lookup, maxStale: maxStale, now: time.Now, entries: map[string]entry{}}
}

// Lookup implements dns.Resolver.
func (c *Cache) Lookup(ctx context.Context, name string) (dns.Answer, bool, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[name]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.answer, e.found, nil
	}
	resp, err := c.lookup(ctx, name)
	if err != nil {
		if api.Code(err) == codes.InvalidArgument {
			return dns.Answer{}, false, nil // not a name the mesh could hold
		}
		if ok && now.Sub(e.fetched) < c.maxStale {
			stale := e.answer
			stale.Stale = true
			return stale, e.found, nil
		}
		return dns.Answer{}, false, err
	}
	ans, found := toAnswer(resp)
	c.mu.Lock()
	c.entries[name] = entry{answer: ans, found: found, expires: now.Add(ans.TTL), fetched: now}
	c.mu.Unlock()
	return ans, found, nil
}

// toAnswer turns a resolution into DNS terms: the workloads' addresses and
// the service's named ports.
func toAnswer(r *apipb.ResolveResponse) (dns.Answer, bool) {
	ans := dns.Answer{TTL: time.Duration(r.TtlSeconds) * time.Second}
	if !r.Found {
		return ans, false
	}
	var svc resource.Object
	var wls []resource.Object
	if json.Unmarshal(r.Service, &svc) != nil || json.Unmarshal(r.Workloads, &wls) != nil {
		return ans, false
	}
	seen := map[netip.Addr]bool{}
	for _, o := range wls {
		t, err := resource.Typed(o)
		if err != nil {
			continue
		}
		if a, err := netip.ParseAddr(t.(*resource.WorkloadSpec).Address); err == nil && !seen[a] {
			seen[a] = true
			ans.Addrs = append(ans.Addrs, a)
		}
	}
	if t, err := resource.Typed(svc); err == nil {
		for _, p := range t.(*resource.ServiceSpec).Ports {
			proto := "tcp"
			if strings.EqualFold(p.Protocol, "UDP") {
				proto = "udp"
			}
			ans.Ports = append(ans.Ports, dns.SRVTarget{Name: p.Name, Proto: proto, Port: uint16(p.Port)})
		}
	}
	return ans, true
}
