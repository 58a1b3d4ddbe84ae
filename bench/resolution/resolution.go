package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"sync/atomic"
	"time"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/resolve"
	"canton.dev/canton/internal/resolve/proof"
)

// warmups are calls per name made before measuring, so that every anchor-to-anchor
// connection of the chain is open.
const warmups = 20

// measureUncached times n Status calls and n Resolve calls per depth, interleaved round
// by round so that load from elsewhere spreads evenly, and fits the per-hop slope.
func measureUncached(ctx context.Context, m *mesh, n int, rep *report) error {
	cl := m.root
	names := make([]string, len(m.scopes))
	for k, s := range m.scopes {
		names[k] = "svc." + s
	}
	hops := make([]int, len(names))
	resolveOnce := func(k int) (time.Duration, error) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		t := time.Now()
		resp, err := cl.Raw().Resolve(cctx, &apipb.ResolveRequest{Name: names[k]})
		d := time.Since(t)
		if err != nil {
			return 0, fmt.Errorf("resolve %s: %w", names[k], api.Err(err))
		}
		if !resp.Found || resp.Scope != m.scopes[k] {
			return 0, fmt.Errorf("resolve %s: found %v in scope %q (%s), want it found in %s", names[k], resp.Found, resp.Scope, resp.Reason, m.scopes[k])
		}
		hops[k] = len(resp.Referrals)
		return d, nil
	}
	statusOnce := func() (time.Duration, error) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		t := time.Now()
		_, err := cl.Raw().Status(cctx, &apipb.StatusRequest{})
		d := time.Since(t)
		if err != nil {
			return 0, fmt.Errorf("status of a1: %w", api.Err(err))
		}
		return d, nil
	}
	for range warmups {
		if _, err := statusOnce(); err != nil {
			return err
		}
		for k := range names {
			if _, err := resolveOnce(k); err != nil {
				return err
			}
		}
	}
	base := make([]time.Duration, 0, n)
	samples := make([][]time.Duration, len(names))
	for range n {
		d, err := statusOnce()
		if err != nil {
			return err
		}
		base = append(base, d)
		for k := range names {
			d, err := resolveOnce(k)
			if err != nil {
				return err
			}
			samples[k] = append(samples[k], d)
		}
	}
	rep.Baseline = summarize(durations(base, time.Microsecond))
	var xs, p50s, means []float64
	for k := range names {
		r := depthResult{Depth: k, Name: names[k], Hops: hops[k], dist: summarize(durations(samples[k], time.Microsecond))}
		rep.Uncached = append(rep.Uncached, r)
		if k >= 1 {
			xs, p50s, means = append(xs, float64(k)), append(p50s, r.P50), append(means, r.Mean)
		}
	}
	rep.PerHopUs, rep.PerHopMean = slope(xs, p50s), slope(xs, means)
	rep.HopRTTs = rep.PerHopUs / rep.Baseline.P50
	return nil
}

// measureVerified times n lookups per depth through resolve.FromClient with the mesh
// trust bundle: the Resolve RPC plus the client's verification of the answer's proof
// (every signed referral and the answer, against the mesh roots).
func measureVerified(ctx context.Context, m *mesh, n int, rep *report) error {
	creds, err := identity.LoadCredentials(m.c.AdminCredentials())
	if err != nil {
		return fmt.Errorf("admin credentials: %w", err)
	}
	lookup := resolve.FromClient(m.root, creds.Bundle...)
	roots := x509.NewCertPool()
	for _, c := range creds.Bundle {
		roots.AddCert(c)
	}
	samples := make([][]time.Duration, len(m.scopes))
	last := make([]*apipb.ResolveResponse, len(m.scopes))
	for i := range n + warmups {
		for k, s := range m.scopes {
			name := "svc." + s
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			t := time.Now()
			resp, err := lookup(cctx, name)
			d := time.Since(t)
			cancel()
			if err != nil {
				return fmt.Errorf("verified resolution of %s: %w", name, err)
			}
			if !resp.Found {
				return fmt.Errorf("verified resolution of %s: not found (%s)", name, resp.Reason)
			}
			if i >= warmups {
				samples[k] = append(samples[k], d)
			}
			last[k] = resp
		}
	}
	for k, s := range m.scopes {
		rep.Verified = append(rep.Verified, depthResult{Depth: k, Name: "svc." + s, Hops: k, dist: summarize(durations(samples[k], time.Microsecond))})
		// The verification alone, in this process, on the last answer: what a verifier of
		// a proof of this length pays in CPU, without a cache (proof.VerifyResponse) and
		// with a warm cache of verified certificate chains (a proof.Verifier reused, as
		// the anchors and internal/resolve do).
		vf := proof.NewVerifier(roots)
		var cold, warm []time.Duration
		for range min(n, 200) {
			for _, c := range []struct {
				verify func(string, *apipb.ResolveResponse, time.Time) (*proof.Result, error)
				into   *[]time.Duration
			}{{func(name string, r *apipb.ResolveResponse, now time.Time) (*proof.Result, error) {
				return proof.VerifyResponse(roots, name, r, now)
			}, &cold}, {vf.VerifyResponse, &warm}} {
				t := time.Now()
				_, err := c.verify("svc."+s, last[k], time.Now())
				d := time.Since(t)
				if err != nil {
					return fmt.Errorf("verify the proof of svc.%s: %w", s, err)
				}
				*c.into = append(*c.into, d)
			}
		}
		rep.ProofCheck = append(rep.ProofCheck, depthResult{Depth: k, Name: "svc." + s, Hops: k, dist: summarize(durations(cold, time.Microsecond))})
		rep.ProofCheckWarm = append(rep.ProofCheckWarm, depthResult{Depth: k, Name: "svc." + s, Hops: k, dist: summarize(durations(warm[1:], time.Microsecond))})
	}
	return nil
}

// measureCached resolves every depth's name through internal/resolve over the root
// client: one miss, then n answers from the cache, each timed.
func measureCached(ctx context.Context, m *mesh, n int, rep *report) error {
	var asked atomic.Int64
	lookup := resolve.FromClient(m.root)
	cache := resolve.New(func(ctx context.Context, name string) (*apipb.ResolveResponse, error) {
		asked.Add(1)
		return lookup(ctx, name)
	}, time.Hour)
	for k, s := range m.scopes {
		name := "svc." + s
		if _, found, err := cache.Lookup(ctx, name); err != nil || !found {
			return fmt.Errorf("cached resolution of %s: first lookup: found %v, %v", name, found, err)
		}
		before := asked.Load()
		samples := make([]time.Duration, 0, n)
		for range n {
			t := time.Now()
			ans, found, err := cache.Lookup(ctx, name)
			d := time.Since(t)
			if err != nil || !found || ans.Stale {
				return fmt.Errorf("cached resolution of %s: found %v, stale %v, %v", name, found, ans.Stale, err)
			}
			samples = append(samples, d)
		}
		if got := asked.Load() - before; got != 0 {
			return fmt.Errorf("cached resolution of %s: %d of %d lookups went to the anchors (the answer's TTL ran out during the measurement?)", name, got, n)
		}
		rep.Cached = append(rep.Cached, depthResult{Depth: k, Name: name, dist: summarize(durations(samples, time.Microsecond))})
	}
	return nil
}
