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
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/dns"
	"canton.dev/canton/internal/resolve/proof"
	"canton.dev/canton/internal/resource"
)

// Lookuper asks the anchors (an *api.Client's Resolve, or a fake in tests).
type Lookuper func(ctx context.Context, name string) (*apipb.ResolveResponse, error)

// FromClient adapts an anchor client. With bundle (the mesh trust bundle:
// the Bundle of the client's credentials), every answer is verified with
// Verified before it is used. Without it answers are taken as the anchor
// sends them, authenticated only by the connection to that anchor.
func FromClient(c *api.Client, bundle ...*x509.Certificate) Lookuper {
	lookup := func(ctx context.Context, name string) (*apipb.ResolveResponse, error) {
		resp, err := c.Raw().Resolve(ctx, &apipb.ResolveRequest{Name: name})
		return resp, api.Err(err)
	}
	if len(bundle) == 0 {
		return lookup
	}
	return Verified(lookup, bundle)
}

// Verified wraps lookup so that every answer's proof is verified against
// bundle (proof.VerifyResponse: signed by the scope owning the name, each
// zone cut signed by the scope that delegated it, unexpired). An answer that
// does not verify is an error (*UnverifiedError), never an answer; the Cache
// then serves the last verified answer while it is within MaxStale.
func Verified(lookup Lookuper, bundle []*x509.Certificate) Lookuper {
	roots := x509.NewCertPool()
	for _, c := range bundle {
		roots.AddCert(c)
	}
	vf := proof.NewVerifier(roots)
	return func(ctx context.Context, name string) (*apipb.ResolveResponse, error) {
		resp, err := lookup(ctx, name)
		if err != nil {
			return nil, err
		}
		if _, err := vf.VerifyResponse(name, resp, time.Now()); err != nil {
			return nil, &UnverifiedError{Name: name, Err: err}
		}
		return resp, nil
	}
}

// UnverifiedError is an answer whose proof did not verify.
type UnverifiedError struct {
	Name string
	Err  error
}

func (e *UnverifiedError) Error() string {
	return fmt.Sprintf("answer for %s rejected: %v", e.Name, e.Err)
}

func (e *UnverifiedError) Unwrap() error { return e.Err }

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
