package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"
)

// report is the whole benchmark's result. Latencies are in microseconds.
type report struct {
	Depth      int     `json:"depth"`
	Anchors    int     `json:"anchors"`
	GOMAXPROCS int     `json:"gomaxprocs"`
	SetupSecs  float64 `json:"setup_s"`
	TotalSecs  float64 `json:"total_s"`

	Baseline   dist          `json:"baseline_status_rpc_us"`
	Uncached   []depthResult `json:"uncached_resolve"`
	PerHopUs   float64       `json:"per_hop_us"`          // slope of p50 over depth 1..D
	PerHopMean float64       `json:"per_hop_mean_us"`     // slope of the mean over depth 1..D
	HopRTTs    float64       `json:"per_hop_round_trips"` // per_hop_us / baseline p50
	Verified   []depthResult `json:"verified_resolve"`    // Resolve + the client's proof verification
	ProofCheck []depthResult `json:"proof_verify_cold"`   // proof.VerifyResponse alone, on a depth's answer
	// ProofCheckWarm is the same with a proof.Verifier whose chain cache is warm (the first
	// call, which fills it, is left out).
	ProofCheckWarm []depthResult `json:"proof_verify_warm"`
	Cached         []depthResult `json:"cached_resolve"`

	DebounceMs  float64             `json:"xds_debounce_ms"` // the anchors' xDS debounce (configuration, not measured)
	Propagation []propagationResult `json:"propagation"`
}

// depthResult is one name's latency distribution.
type depthResult struct {
	Depth int    `json:"depth"`
	Name  string `json:"name"`
	Hops  int    `json:"referrals"` // zone cuts the answer says it followed (one forward each)
	dist
}

// propagationResult is the endpoint changes of one owning scope as seen by the importer's
// proxy. All in milliseconds from the start of the Apply (or Delete) call.
type propagationResult struct {
	Owner      string `json:"owner_scope"`
	OwnerDepth int    `json:"owner_depth"`
	Changes    int    `json:"changes"`
	Missed     int    `json:"missed"` // changes the proxy did not see within the change timeout
	FirstError string `json:"first_error,omitempty"`
	Commit     dist   `json:"commit_ms"`      // the Apply/Delete call
	Watch      dist   `json:"watch_event_ms"` // the change's event at a watcher through a1
	Proxy      dist   `json:"proxy_ms"`       // the proxy holding the new endpoint set
	AfterWatch dist   `json:"watch_to_proxy_ms"`
}

// dist summarises samples.
type dist struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

// percentile returns the p-th percentile (nearest rank) of sorted; NaN when empty.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func summarize(v []float64) dist {
	if len(v) == 0 {
		return dist{Mean: math.NaN(), P50: math.NaN(), P90: math.NaN(), P99: math.NaN(), Max: math.NaN()}
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	return dist{N: len(s), Mean: sum / float64(len(s)), P50: percentile(s, 50), P90: percentile(s, 90), P99: percentile(s, 99), Max: s[len(s)-1]}
}

// durations converts to float64 in unit.
func durations(ds []time.Duration, unit time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / float64(unit)
	}
	return out
}

// slope fits y = a + b·x by least squares and returns b; NaN with fewer than two
// distinct x.
func slope(x, y []float64) float64 {
	if len(x) != len(y) || len(x) < 2 {
		return math.NaN()
	}
	var mx, my float64
	for i := range x {
		mx += x[i]
		my += y[i]
	}
	mx /= float64(len(x))
	my /= float64(len(y))
	var num, den float64
	for i := range x {
		num += (x[i] - mx) * (y[i] - my)
		den += (x[i] - mx) * (x[i] - mx)
	}
	if den == 0 {
		return math.NaN()
	}
	return num / den
}

// us formats microseconds with a readable unit.
func us(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v < 1:
		return fmt.Sprintf("%.0fns", v*1000)
	case v < 1000:
		return fmt.Sprintf("%.1fµs", v)
	default:
		return fmt.Sprintf("%.2fms", v/1000)
	}
}

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "resolution: hierarchy of depth %d (each child scope on its own anchor, root on 3), %d anchors in one process, GOMAXPROCS=%d, setup %.1fs, total %.1fs\n",
		r.Depth, r.Anchors, r.GOMAXPROCS, r.SetupSecs, r.TotalSecs)
	fmt.Fprintf(w, "\n%-34s %6s %8s %10s %10s %10s %10s %10s\n", "uncached (Resolve RPC via a1)", "hops", "n", "mean", "p50", "p90", "p99", "max")
	row := func(label string, hops any, d dist) {
		fmt.Fprintf(w, "%-34s %6v %8d %10s %10s %10s %10s %10s\n", label, hops, d.N, us(d.Mean), us(d.P50), us(d.P90), us(d.P99), us(d.Max))
	}
	row("baseline: Status RPC (1 round trip)", "-", r.Baseline)
	for _, d := range r.Uncached {
		row(fmt.Sprintf("depth %d %s", d.Depth, d.Name), d.Hops, d.dist)
	}
	fmt.Fprintf(w, "per referral hop (slope of p50 over depth 1..%d): %s (mean: %s) = %.1f baseline round trips; aim <= 1ms\n",
		r.Depth, us(r.PerHopUs), us(r.PerHopMean), r.HopRTTs)
	if len(r.Verified) > 0 {
		fmt.Fprintf(w, "\n%-34s %6s %8s %10s %10s %10s %10s %10s\n", "verified (+ client proof check)", "hops", "n", "mean", "p50", "p90", "p99", "max")
		for _, d := range r.Verified {
			row(fmt.Sprintf("depth %d %s", d.Depth, d.Name), d.Hops, d.dist)
		}
		for _, pc := range []struct {
			label string
			ds    []depthResult
		}{{"proof check alone, no cache", r.ProofCheck}, {"proof check, warm chain cache", r.ProofCheckWarm}} {
			fmt.Fprintf(w, "%-34s %6s %8s %10s %10s %10s %10s %10s\n", pc.label, "", "n", "mean", "p50", "p90", "p99", "max")
			for _, d := range pc.ds {
				row(fmt.Sprintf("depth %d %s", d.Depth, d.Name), "", d.dist)
			}
		}
	}
	fmt.Fprintf(w, "\n%-34s %6s %8s %10s %10s %10s %10s %10s\n", "cached (internal/resolve)", "", "n", "mean", "p50", "p90", "p99", "max")
	for _, d := range r.Cached {
		row(fmt.Sprintf("depth %d %s", d.Depth, d.Name), "", d.dist)
	}
	fmt.Fprintln(w, "cached timings include two time.Now calls per sample; aim <= 1µs")
	if len(r.Propagation) > 0 {
		fmt.Fprintf(w, "\ncross-scope endpoint change -> proxy of x.demo.mesh (ms from the start of the Apply/Delete; xDS debounce %.0fms between pushes, none for a lone change)\n", r.DebounceMs)
		fmt.Fprintf(w, "%-26s %7s %7s %-16s %8s %8s %8s %8s %8s\n", "owner scope", "changes", "missed", "component", "mean", "p50", "p90", "p99", "max")
		ms := func(v float64) string {
			if math.IsNaN(v) {
				return "-"
			}
			return fmt.Sprintf("%.1f", v)
		}
		for _, p := range r.Propagation {
			for i, c := range []struct {
				name string
				d    dist
			}{{"commit (apply)", p.Commit}, {"watch event", p.Watch}, {"watch -> proxy", p.AfterWatch}, {"proxy updated", p.Proxy}} {
				owner, changes, missed := "", "", ""
				if i == 0 {
					owner, changes, missed = fmt.Sprintf("%s (d%d)", p.Owner, p.OwnerDepth), fmt.Sprint(p.Changes), fmt.Sprint(p.Missed)
				}
				fmt.Fprintf(w, "%-26s %7s %7s %-16s %8s %8s %8s %8s %8s\n", owner, changes, missed, c.name, ms(c.d.Mean), ms(c.d.P50), ms(c.d.P90), ms(c.d.P99), ms(c.d.Max))
			}
			if p.FirstError != "" {
				fmt.Fprintf(w, "  first error: %s\n", strings.TrimSpace(p.FirstError))
			}
		}
		fmt.Fprintln(w, "aim: proxy updated p99 <= 500ms on loopback")
	}
}
