package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// sample is what one repetition measured for one scenario.
type sample struct {
	P50, P90, P99, P999 float64 // latency at 1,000 requests/s, µs
	AddedP50, AddedP99  float64 // the same minus the direct scenario's in the same repetition, µs
	FixedQPS            float64 // achieved rate of the fixed-rate window
	CPUPer1k            float64 // proxy CPU in millicores per 1,000 requests/s (CPU ms per 1,000 requests)
	RSSMB               float64 // proxy RSS after the fixed-rate window, MiB (sum over the path's proxies)
	SatRPS              float64 // closed-loop saturated throughput, requests/s
	SatCPUus            float64 // proxy CPU per request in the saturated window, µs (sum over the path's proxies)
	Errors              int64   // non-200 responses and socket errors, both windows
	ForeignCores        float64 // CPU used by other processes on the machine during the windows (max of both)
	Noisy               bool    // still disturbed after the allowed repeats
}

// stat is the median and spread of one figure over the repetitions.
type stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func statOf(xs []float64) *stat {
	if len(xs) == 0 {
		return nil
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return &stat{Median: round(m), Min: round(s[0]), Max: round(s[len(s)-1])}
}

func round(x float64) float64 { return math.Round(x*100) / 100 }

// scenarioResult is the JSON form of one scenario.
type scenarioResult struct {
	Name       string `json:"name"`
	Peer       string `json:"peer"`
	Hops       int    `json:"hops"`
	Proto      string `json:"protocol"`
	Reps       int    `json:"repetitions"`
	P50us      *stat  `json:"p50_us"`
	P90us      *stat  `json:"p90_us"`
	P99us      *stat  `json:"p99_us"`
	P999us     *stat  `json:"p99_9_us"`
	AddedP50us *stat  `json:"added_p50_us"`
	AddedP99us *stat  `json:"added_p99_us"`
	FixedQPS   *stat  `json:"fixed_rate_achieved_rps"`
	CPUPer1k   *stat  `json:"cpu_millicores_per_1k_rps"`
	RSSMB      *stat  `json:"rss_mib"`
	SatRPS     *stat  `json:"saturated_rps"`
	SatCPUus   *stat  `json:"saturated_cpu_us_per_request"`
	Errors     int64  `json:"errors"`
	Foreign    *stat  `json:"foreign_cpu_cores"`
	Noisy      int    `json:"noisy_repetitions"`
	Failures   int    `json:"failed_repetitions"`
	Failure    string `json:"first_failure,omitempty"`
	samples    []sample
}

type skipped struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// ratios are canton/haproxy for one path length; nil where either side is missing or either median is
// not positive (an added latency at or below zero is within the noise of the direct path).
type ratios struct {
	AddedP50 *float64 `json:"added_p50"`
	AddedP99 *float64 `json:"added_p99"`
	CPUPer1k *float64 `json:"cpu_per_1k_rps"`
	RSS      *float64 `json:"rss"`
	SatRPS   *float64 `json:"saturated_throughput"`
	SatCPU   *float64 `json:"saturated_cpu_per_request"`
}

type params struct {
	Repetitions      int     `json:"repetitions"`
	FixedQPS         int     `json:"fixed_rate_rps"`
	Connections      int     `json:"connections"`
	FixedWindow      string  `json:"fixed_rate_window"`
	SaturatedWindow  string  `json:"saturated_window"`
	ResolutionUS     float64 `json:"histogram_resolution_us"`
	PayloadBytes     int     `json:"payload_bytes"`
	ProxyThreads     int     `json:"proxy_threads"`
	UpstreamMaxProcs int     `json:"upstream_gomaxprocs"`
	MaxForeignCores  float64 `json:"max_foreign_cpu_cores"`
	Retries          int     `json:"retries"`
}

type machine struct {
	CPUs   int    `json:"cpus"`
	Go     string `json:"go"`
	OS     string `json:"os"`
	Kernel string `json:"kernel,omitempty"`
	Model  string `json:"cpu_model,omitempty"`
}

// report is the whole result (the -json output).
type report struct {
	Date      string            `json:"date"`
	Machine   machine           `json:"machine"`
	Params    params            `json:"params"`
	Versions  map[string]string `json:"peer_versions"`
	Scenarios []*scenarioResult `json:"scenarios"`
	Skipped   []skipped         `json:"skipped"`
	Ratios    map[string]ratios `json:"ratios_canton_over_haproxy"`
	// CantonRSSManyClustersMB is the RSS of a Canton proxy with 1,000 clusters configured after a
	// fixed-rate window through it (at least 10 s), and the anonymous and file-backed parts of it
	// (the proxy's own memory, and the pages of the canton binary and libraries, shared by every
	// process that maps them); nil if it could not be measured.
	CantonRSSManyClustersMB     *float64 `json:"canton_rss_1000_clusters_mib"`
	CantonRSSManyClustersAnonMB *float64 `json:"canton_rss_anon_1000_clusters_mib"`
	CantonRSSManyClustersFileMB *float64 `json:"canton_rss_file_1000_clusters_mib"`
	Elapsed                     string   `json:"elapsed"`
}

func (r *scenarioResult) finish() {
	pick := func(f func(sample) float64) *stat {
		var xs []float64
		for _, s := range r.samples {
			xs = append(xs, f(s))
		}
		return statOf(xs)
	}
	r.Reps = len(r.samples)
	r.P50us = pick(func(s sample) float64 { return s.P50 })
	r.P90us = pick(func(s sample) float64 { return s.P90 })
	r.P99us = pick(func(s sample) float64 { return s.P99 })
	r.P999us = pick(func(s sample) float64 { return s.P999 })
	r.AddedP50us = pick(func(s sample) float64 { return s.AddedP50 })
	r.AddedP99us = pick(func(s sample) float64 { return s.AddedP99 })
	r.FixedQPS = pick(func(s sample) float64 { return s.FixedQPS })
	r.SatRPS = pick(func(s sample) float64 { return s.SatRPS })
	if r.Hops > 0 {
		r.CPUPer1k = pick(func(s sample) float64 { return s.CPUPer1k })
		r.RSSMB = pick(func(s sample) float64 { return s.RSSMB })
		r.SatCPUus = pick(func(s sample) float64 { return s.SatCPUus })
	} else {
		r.AddedP50us, r.AddedP99us = nil, nil
	}
	r.Foreign = pick(func(s sample) float64 { return s.ForeignCores })
	r.Errors, r.Noisy = 0, 0
	for _, s := range r.samples {
		r.Errors += s.Errors
		if s.Noisy {
			r.Noisy++
		}
	}
}

func ratio(a, b *stat) *float64 {
	if a == nil || b == nil || a.Median <= 0 || b.Median <= 0 {
		return nil
	}
	v := math.Round(a.Median/b.Median*1000) / 1000
	return &v
}

// ratioKeys are the paths compared canton/haproxy.
var ratioKeys = []struct {
	name  string
	hops  int
	proto string
}{{"1hop", 1, "http1"}, {"2hop", 2, "http1"}, {"1hop-h2c", 1, "h2c"}, {"1hop-grpc", 1, "grpc"}, {"2hop-h2c", 2, "h2c"},
	{"2hop-grpc", 2, "grpc"}}

// computeRatios fills r.Ratios for 1 and 2 hops.
func (r *report) computeRatios() {
	find := func(peer string, hops int, proto string) *scenarioResult {
		for _, s := range r.Scenarios {
			if s.Peer == peer && s.Hops == hops && s.Proto == proto && s.Reps > 0 {
				return s
			}
		}
		return nil
	}
	r.Ratios = map[string]ratios{}
	for _, k := range ratioKeys {
		c, h := find("canton", k.hops, k.proto), find("haproxy", k.hops, k.proto)
		var out ratios
		if c != nil && h != nil {
			out = ratios{AddedP50: ratio(c.AddedP50us, h.AddedP50us), AddedP99: ratio(c.AddedP99us, h.AddedP99us),
				CPUPer1k: ratio(c.CPUPer1k, h.CPUPer1k), RSS: ratio(c.RSSMB, h.RSSMB), SatRPS: ratio(c.SatRPS, h.SatRPS),
				SatCPU: ratio(c.SatCPUus, h.SatCPUus)}
		}
		r.Ratios[k.name] = out
	}
}

func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// fmtStat prints a median with the half-range of the repetitions, e.g. "212 ±8".
func fmtStat(s *stat, format string) string {
	if s == nil {
		return "-"
	}
	return fmt.Sprintf(format+" ±"+format, s.Median, (s.Max-s.Min)/2)
}

func fmtRatio(f *float64) string {
	if f == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", *f)
}

func (r *report) writeTable(w io.Writer) {
	fmt.Fprintf(w, "Canton data-plane benchmark, %s, %d CPUs (%s), %s\n", r.Date, r.Machine.CPUs, r.Machine.Model, r.Machine.Go)
	fmt.Fprintf(w, "%d B responses, %d connections; latency at %d req/s open loop (%s x %d reps, uniform, no catch-up, %g µs buckets);\n",
		r.Params.PayloadBytes, r.Params.Connections, r.Params.FixedQPS, r.Params.FixedWindow, r.Params.Repetitions, r.Params.ResolutionUS)
	fmt.Fprintf(w, "saturated throughput closed loop (%s); every proxy process limited to %d thread / GOMAXPROCS=1. Median ±half-range.\n\n",
		r.Params.SaturatedWindow, r.Params.ProxyThreads)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tp50 µs\tp90 µs\tp99 µs\tp99.9 µs\tadded p50 µs\tadded p99 µs\tCPU mcores/1k rps\tRSS MiB\tsaturated rps\tsat CPU µs/req\terrors\tnoisy\tfailed\t")
	for _, s := range r.Scenarios {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d/%d\t%d\t\n", s.Name,
			fmtStat(s.P50us, "%.0f"), fmtStat(s.P90us, "%.0f"), fmtStat(s.P99us, "%.0f"), fmtStat(s.P999us, "%.0f"),
			fmtStat(s.AddedP50us, "%.0f"), fmtStat(s.AddedP99us, "%.0f"), fmtStat(s.CPUPer1k, "%.0f"), fmtStat(s.RSSMB, "%.1f"),
			fmtStat(s.SatRPS, "%.0f"), fmtStat(s.SatCPUus, "%.1f"), s.Errors, s.Noisy, s.Reps, s.Failures)
	}
	tw.Flush()
	for _, s := range r.Scenarios {
		if s.Failures > 0 {
			fmt.Fprintf(w, "%s failed %d time(s), first: %s\n", s.Name, s.Failures, s.Failure)
		}
	}
	if len(r.Skipped) > 0 {
		fmt.Fprintln(w)
		for _, s := range r.Skipped {
			fmt.Fprintf(w, "skipped %s: %s\n", s.Name, s.Reason)
		}
	}
	fmt.Fprintln(w, "\nratios canton/haproxy (lower is better except throughput):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tadded p50\tadded p99\tCPU per 1k rps\tRSS\tsaturated throughput\tsaturated CPU per request\t")
	for _, k := range ratioKeys {
		x := r.Ratios[k.name]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", k.name, fmtRatio(x.AddedP50), fmtRatio(x.AddedP99), fmtRatio(x.CPUPer1k), fmtRatio(x.RSS),
			fmtRatio(x.SatRPS), fmtRatio(x.SatCPU))
	}
	tw.Flush()
	if r.CantonRSSManyClustersMB != nil {
		fmt.Fprintf(w, "\ncanton proxy RSS with %d clusters configured: %.1f MiB", manyClusters, *r.CantonRSSManyClustersMB)
		if r.CantonRSSManyClustersAnonMB != nil && r.CantonRSSManyClustersFileMB != nil {
			fmt.Fprintf(w, " (anonymous %.1f MiB, file-backed %.1f MiB)", *r.CantonRSSManyClustersAnonMB, *r.CantonRSSManyClustersFileMB)
		}
		fmt.Fprintln(w)
	}
	if len(r.Versions) > 0 {
		var vs []string
		for k, v := range r.Versions {
			vs = append(vs, k+" "+v)
		}
		slices.Sort(vs)
		fmt.Fprintf(w, "\npeers: %s\n", strings.Join(vs, "; "))
	}
	fmt.Fprintf(w, "elapsed %s\n", r.Elapsed)
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
