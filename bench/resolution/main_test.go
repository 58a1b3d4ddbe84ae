package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

func TestPercentileAndSlope(t *testing.T) {
	d := summarize([]float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10})
	if d.N != 10 || d.P50 != 5 || d.P90 != 9 || d.P99 != 10 || d.Max != 10 || d.Mean != 5.5 {
		t.Errorf("summarize(1..10) = %+v", d)
	}
	if e := summarize(nil); e.N != 0 || !math.IsNaN(e.P50) {
		t.Errorf("summarize(nothing) = %+v, want NaN percentiles", e)
	}
	if got := slope([]float64{1, 2, 3, 4}, []float64{3, 5, 7, 9}); got != 2 {
		t.Errorf("slope of y = 1 + 2x: %v", got)
	}
	if got := slope([]float64{1, 1}, []float64{3, 5}); !math.IsNaN(got) {
		t.Errorf("slope with one distinct x: %v, want NaN", got)
	}
	if a, b := churnAddress(0), churnAddress(250); a == b || a != "127.1.0.1" || b != "127.1.1.1" {
		t.Errorf("churn addresses %s %s", a, b)
	}
}

// TestBenchmarkTiny runs the whole benchmark with a few samples over a hierarchy of depth
// 4: every depth must resolve through one referral per zone cut, deeper names must take
// longer, cached answers must be faster than any RPC, and every endpoint change must reach
// the importer's proxy over the anchors' real mTLS xDS.
func TestBenchmarkTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("starts eight anchors")
	}
	const depth, changes = 4, 6
	rep, err := run(options{depth: depth, resolves: 30, cached: 200, changes: changes, propDepths: []int{depth},
		changeTimeout: 10 * time.Second, deadline: 90 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Uncached) != depth+1 || len(rep.Cached) != depth+1 || len(rep.Verified) != depth+1 || len(rep.ProofCheck) != depth+1 || len(rep.ProofCheckWarm) != depth+1 {
		t.Fatalf("%d uncached, %d verified, %d proof checks and %d cached results, want %d of each",
			len(rep.Uncached), len(rep.Verified), len(rep.ProofCheck), len(rep.Cached), depth+1)
	}
	if deep, root := rep.ProofCheck[depth], rep.ProofCheck[0]; deep.P50 <= root.P50 {
		t.Errorf("checking a proof of %d referrals (p50 %v µs) is not slower than one of none (%v µs)", depth, deep.P50, root.P50)
	}
	for _, u := range rep.Uncached {
		if u.Hops != u.Depth || u.N != 30 {
			t.Errorf("depth %d: %d referrals, %d samples; want %d, 30", u.Depth, u.Hops, u.N, u.Depth)
		}
	}
	if deep, shallow := rep.Uncached[depth], rep.Uncached[1]; deep.P50 <= shallow.P50 {
		t.Errorf("depth %d p50 %v µs is not above depth 1 p50 %v µs: hops cost nothing?", depth, deep.P50, shallow.P50)
	}
	if rep.Baseline.N != 30 || rep.Baseline.P50 <= 0 || math.IsNaN(rep.PerHopUs) {
		t.Errorf("baseline %+v, per hop %v", rep.Baseline, rep.PerHopUs)
	}
	for _, c := range rep.Cached {
		if c.N != 200 || c.P50 >= rep.Baseline.P50 {
			t.Errorf("cached %s: %d samples, p50 %v µs (a loopback RPC: %v µs)", c.Name, c.N, c.P50, rep.Baseline.P50)
		}
	}
	if len(rep.Propagation) != 1 {
		t.Fatalf("%d propagation results, want 1", len(rep.Propagation))
	}
	p := rep.Propagation[0]
	if p.Changes != changes || p.Missed != 0 || p.Proxy.N != changes {
		t.Fatalf("propagation: %d changes, %d missed, %d timed (%s); want %d, 0, %d", p.Changes, p.Missed, p.Proxy.N, p.FirstError, changes, changes)
	}
	if p.Watch.N != changes || p.Proxy.Mean <= p.Commit.Mean || p.Proxy.Max > 10000 {
		t.Errorf("propagation components implausible: commit %+v watch %+v proxy %+v", p.Commit, p.Watch, p.Proxy)
	}
	var out bytes.Buffer
	rep.print(&out)
	for _, want := range []string{"per referral hop", "svc.d.c.b.a.demo.mesh", "proxy updated"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}
