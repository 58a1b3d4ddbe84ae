// Package resolve is the client side of mesh name resolution: a cache in
// front of the anchors' Resolve call, with TTLs from the answers, negative
// answers cached for their own (short) TTL, and serve-stale: when no anchor
// can answer, the last answer is served, marked stale, for up to MaxStale.
// The cache is bounded (least recently used names are forgotten, negative
// answers first) and concurrent misses for one name ask the anchors once.
//
// It implements internal/dns's Resolver, so `canton dns` answers from it.
// Only internal/cli (canton dns) and internal/workload (the sidecar's DNS) import it.
package resolve

import (
	"container/list"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
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
// It remembers a bounded number of names (Options.MaxEntries, negative
// answers with their own smaller bound), forgetting the least recently used
// first, so a client asking random names through the DNS port cannot fill
// memory; and concurrent misses for one name share one question to the
// anchors. It is safe for concurrent use.
type Cache struct {
	lookup      Lookuper
	maxStale    time.Duration
	maxEntries  int
	maxNegative int
	now         func() time.Time
	flight      singleflight.Group

	mu      sync.Mutex
	entries map[string]*list.Element // of *entry, in pos or neg
	pos     list.List                // positive answers, most recently used first
	neg     list.List                // negative answers, most recently used first
}

// Options configure a Cache. Zero values are the defaults.
type Options struct {
	// MaxStale bounds serve-stale: how long after it was fetched an answer
	// is still served (marked stale) while no anchor answers. 0: 1 hour.
	MaxStale time.Duration
	// MaxEntries bounds how many names the cache remembers, positive and
	// negative answers together. Past it the least recently used negative
	// answer is forgotten, or, when there is none, the least recently used
	// positive one. 0: 10,000.
	MaxEntries int
	// MaxNegative bounds the negative answers (names that do not exist,
	// which is what asking random names produces) among them, least
	// recently used forgotten first. 0: MaxEntries/10, at least 1.
	MaxNegative int
}

// Defaults of Options.
const (
	DefaultMaxStale   = time.Hour
	DefaultMaxEntries = 10000
)

// sharedLookupTimeout bounds one question to the anchors shared by
// concurrent callers, when the caller that started it set no deadline.
const sharedLookupTimeout = 10 * time.Second

type entry struct {
	name    string
	answer  dns.Answer
	found   bool
	expires time.Time
	fetched time.Time
}

// New returns a cache over lookup with the default bounds; maxStale bounds
// serve-stale (0: 1 hour). It is NewCache(lookup, Options{MaxStale: maxStale}).
func New(lookup Lookuper, maxStale time.Duration) *Cache {
	return NewCache(lookup, Options{MaxStale: maxStale})
}

// NewCache returns a cache over lookup configured by opts.
func NewCache(lookup Lookuper, opts Options) *Cache {
	if opts.MaxStale <= 0 {
		opts.MaxStale = DefaultMaxStale
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	if opts.MaxNegative <= 0 {
		opts.MaxNegative = max(opts.MaxEntries/10, 1)
	}
	opts.MaxNegative = min(opts.MaxNegative, opts.MaxEntries)
	return &Cache{
		lookup: lookup, maxStale: opts.MaxStale, maxEntries: opts.MaxEntries, maxNegative: opts.MaxNegative,
		now: time.Now, entries: map[string]*list.Element{},
	}
}

// Lookup implements dns.Resolver.
func (c *Cache) Lookup(ctx context.Context, name string) (dns.Answer, bool, error) {
	now := c.now()
	c.mu.Lock()
	if el, ok := c.entries[name]; ok {
		e := el.Value.(*entry)
		if now.Before(e.expires) {
			c.listOf(e).MoveToFront(el)
			ans, found := e.answer, e.found
			c.mu.Unlock()
			return ans, found, nil
		}
	}
	c.mu.Unlock()
	ch := c.flight.DoChan(name, func() (any, error) { return c.fetch(ctx, name) })
	select {
	case r := <-ch:
		if r.Err != nil {
			return dns.Answer{}, false, r.Err
		}
		res := r.Val.(result)
		return res.answer, res.found, nil
	case <-ctx.Done():
		return dns.Answer{}, false, ctx.Err()
	}
}

type result struct {
	answer dns.Answer
	found  bool
}

// fetch asks the anchors for name once for every caller waiting on it: with
// ctx's deadline (or sharedLookupTimeout) but not its cancellation, so one
// caller giving up does not fail the others.
func (c *Cache) fetch(ctx context.Context, name string) (result, error) {
	// A question that ended between the caller's look at the cache and
	// this one stored its answer: use it.
	c.mu.Lock()
	if el, ok := c.entries[name]; ok {
		if e := el.Value.(*entry); c.now().Before(e.expires) {
			c.mu.Unlock()
			return result{e.answer, e.found}, nil
		}
	}
	c.mu.Unlock()
	lctx := context.WithoutCancel(ctx)
	var cancel context.CancelFunc
	if dl, ok := ctx.Deadline(); ok {
		lctx, cancel = context.WithDeadline(lctx, dl)
	} else {
		lctx, cancel = context.WithTimeout(lctx, sharedLookupTimeout)
	}
	defer cancel()
	resp, err := c.lookup(lctx, name)
	now := c.now()
	if err != nil {
		if api.Code(err) == codes.InvalidArgument {
			return result{}, nil // not a name the mesh could hold
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if el, ok := c.entries[name]; ok {
			e := el.Value.(*entry)
			if now.Sub(e.fetched) < c.maxStale {
				stale := e.answer
				stale.Stale = true
				return result{stale, e.found}, nil
			}
			c.remove(el) // too old to serve: forget it
		}
		return result{}, err
	}
	ans, found := toAnswer(resp)
	c.store(&entry{name: name, answer: ans, found: found, expires: now.Add(ans.TTL), fetched: now})
	return result{ans, found}, nil
}

// store remembers e as the most recently used answer for its name, then
// forgets names past the bounds.
func (c *Cache) store(e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[e.name]; ok {
		c.remove(el)
	}
	c.entries[e.name] = c.listOf(e).PushFront(e)
	for c.neg.Len() > c.maxNegative {
		c.remove(c.neg.Back())
	}
	for len(c.entries) > c.maxEntries {
		if c.neg.Len() > 0 {
			c.remove(c.neg.Back())
		} else {
			c.remove(c.pos.Back())
		}
	}
}

func (c *Cache) listOf(e *entry) *list.List {
	if e.found {
		return &c.pos
	}
	return &c.neg
}

func (c *Cache) remove(el *list.Element) {
	e := el.Value.(*entry)
	c.listOf(e).Remove(el)
	delete(c.entries, e.name)
}

// toAnswer turns a resolution into DNS terms: the workloads' addresses, the
// service's VIPs and its named ports.
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
	for _, v := range svc.VIPs {
		if a, err := netip.ParseAddr(v); err == nil && resource.IsVIP(a) {
			ans.VIPs = append(ans.VIPs, a)
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
