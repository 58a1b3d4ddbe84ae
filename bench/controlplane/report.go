package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
)

// report is the whole benchmark's result.
type report struct {
	Services       int         `json:"services"`
	Egress         int         `json:"sidecar_egress,omitempty"`
	Versions       int         `json:"versions"`
	IdenticalNodes bool        `json:"identical_nodes,omitempty"` // clients of a service version sent one node but for the ID
	Delta          bool        `json:"delta,omitempty"`           // clients used delta ADS
	AnchorProcs    bool        `json:"anchor_procs,omitempty"`    // each anchor ran in a process of its own
	Anchors        int         `json:"anchors"`
	Rounds         int         `json:"rounds"`
	GOMAXPROCS     int         `json:"gomaxprocs"`
	SetupSecs      float64     `json:"setup_s"`
	Runs           []runResult `json:"runs"`
}

// runResult is one client count.
type runResult struct {
	Clients          int     `json:"clients"`
	Connected        int     `json:"connected"` // clients that ACKed CDS, EDS, LDS and RDS
	ConnectFailed    int     `json:"connect_failed"`
	FirstError       string  `json:"first_error,omitempty"`
	ConnectSecs      float64 `json:"connect_s"`
	ServerStreams    int     `json:"server_streams"` // xDS streams of the scope the anchors report
	ServerNacks      int     `json:"server_nacks"`   // of those, streams whose last answer was a NACK
	StreamErrors     int     `json:"stream_errors"`  // client streams that failed during the rounds
	FirstStreamError string  `json:"first_stream_error,omitempty"`

	HeapPerProxyMB      float64 `json:"anchor_heap_inuse_per_proxy_mb"`
	HeapStackPerProxyMB float64 `json:"anchor_heap_and_stack_per_proxy_mb"`
	GoroutinesPerProxy  float64 `json:"anchor_goroutines_per_proxy"`

	Samples    int `json:"samples"`           // client × round ACKs of a new route version
	Missed     int `json:"missed"`            // client × round without one within the round timeout
	Affected   int `json:"affected_clients"`  // clients whose routes the change concerns
	Unaffected int `json:"unaffected_pushed"` // client × round pushed a new route version the change does not concern
	// Latencies run from the start of the Apply call that commits the change to a client's
	// ACK of the new route version (see flip).
	MinMs float64 `json:"commit_to_ack_min_ms"` // the first client's ACK
	P50ms float64 `json:"commit_to_ack_p50_ms"`
	P99ms float64 `json:"commit_to_ack_p99_ms"`
	MaxMs float64 `json:"commit_to_ack_max_ms"`
	// ByAnchor splits the latencies by the anchor the clients are connected to (the leader
	// applies a commit first).
	ByAnchor       []anchorLatency `json:"commit_to_ack_by_anchor"`
	Leader         int             `json:"leader"`                   // the scope's leader at the end (1-based, as ByAnchor is numbered)
	CPUPerChangeMs float64         `json:"anchor_cpu_ms_per_change"` // CPU of the anchors' process over the rounds, per change
	// ClientCPUPerChangeMs is the CPU of the clients' process per change (receiving, decoding
	// and ACKing): it shares the machine with the anchors.
	ClientCPUPerChangeMs float64 `json:"client_cpu_ms_per_change"`
	CommitP50ms          float64 `json:"apply_p50_ms"` // the Apply call itself (propose → commit acknowledged)
	// RoundMaxMs is each change's slowest client, ApplyMs each change's Apply call.
	RoundMaxMs   []float64 `json:"commit_to_ack_max_ms_by_round"`
	ApplyMs      []float64 `json:"apply_ms_by_round"`
	ApplyRetries int       `json:"apply_retries"` // Apply attempts refused (no leader) before one committed

	InitialBytesPerClient   float64            `json:"initial_bytes_per_client"`
	BytesPerChange          float64            `json:"bytes_pushed_per_change"` // all clients, mean over rounds
	BytesPerClientPerChange float64            `json:"bytes_pushed_per_client_per_change"`
	BytesPerChangeByType    map[string]float64 `json:"bytes_pushed_per_change_by_type"`
	ResponsesPerChange      map[string]float64 `json:"responses_per_change_by_type"`
	Notes                   []string           `json:"notes,omitempty"`
}

// anchorLatency is the commit-to-ACK latency of the clients of one anchor.
type anchorLatency struct {
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
}

// percentile returns the p-th percentile (nearest rank) of v; NaN when v is empty.
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

func (r *report) print(w io.Writer) {
	scoping := "no Sidecars (every proxy routes every service)"
	if r.Egress > 0 {
		scoping = fmt.Sprintf("Sidecars limit each proxy to %d services", r.Egress)
	}
	nodes := "every client its own node (addresses and ports)"
	if r.IdenticalNodes {
		nodes = "clients of a service version share one node but for the ID"
	}
	if r.Delta {
		nodes += ", delta ADS"
	}
	if r.AnchorProcs {
		nodes += ", one process per anchor"
	}
	fmt.Fprintf(w, "control plane: %d anchors, scope of %d services × %d versions, %s, %s, %d changes per run, GOMAXPROCS=%d (setup %.1fs)\n",
		r.Anchors, r.Services, r.Versions, scoping, nodes, r.Rounds, r.GOMAXPROCS, r.SetupSecs)
	fmt.Fprintf(w, "%8s %9s %9s %8s %8s %8s %8s %10s %10s %11s %11s %8s\n",
		"clients", "connected", "connect", "p50", "p99", "max", "missed", "MB/proxy", "+stack", "B/change", "B/client", "nacks")
	for _, x := range r.Runs {
		fmt.Fprintf(w, "%8d %9d %8.1fs %6.0fms %6.0fms %6.0fms %8d %10.3f %10.3f %11.0f %11.0f %8d\n",
			x.Clients, x.Connected, x.ConnectSecs, x.P50ms, x.P99ms, x.MaxMs, x.Missed,
			x.HeapPerProxyMB, x.HeapStackPerProxyMB, x.BytesPerChange, x.BytesPerClientPerChange, x.ServerNacks)
	}
	for _, x := range r.Runs {
		var types []string
		for _, t := range typeShort {
			if x.ResponsesPerChange[t] > 0 {
				types = append(types, fmt.Sprintf("%s %.0f responses/%.0f B", t, x.ResponsesPerChange[t], x.BytesPerChangeByType[t]))
			}
		}
		fmt.Fprintf(w, "  %d clients: per change %s, anchor CPU %.0fms (%.2fms/proxy), clients' CPU %.0fms; apply p50 %.1fms; first config %.0f B/client; %.1f goroutines/proxy; anchors see %d streams",
			x.Clients, strings.Join(types, ", "), x.CPUPerChangeMs, x.CPUPerChangeMs/float64(max(x.Connected, 1)), x.ClientCPUPerChangeMs, x.CommitP50ms, x.InitialBytesPerClient, x.GoroutinesPerProxy, x.ServerStreams)
		if len(x.ByAnchor) > 0 {
			var parts []string
			for i, a := range x.ByAnchor {
				parts = append(parts, fmt.Sprintf("anchor %d p50 %.0fms p99 %.0fms", i+1, a.P50ms, a.P99ms))
			}
			fmt.Fprintf(w, "; first ACK %.0fms; %s (leader: anchor %d)", x.MinMs, strings.Join(parts, ", "), x.Leader)
		}
		if x.Affected != x.Connected || x.Unaffected > 0 {
			fmt.Fprintf(w, "; the change concerns %d clients; %d pushes went to others", x.Affected, x.Unaffected)
		}
		if x.ApplyRetries > 0 {
			fmt.Fprintf(w, "; %d apply attempts refused (no leader)", x.ApplyRetries)
		}
		if x.ConnectFailed > 0 || x.StreamErrors > 0 {
			fmt.Fprintf(w, "; %d failed to connect (%s), %d streams failed (%s)", x.ConnectFailed, x.FirstError, x.StreamErrors, x.FirstStreamError)
		}
		fmt.Fprintln(w)
		for _, n := range x.Notes {
			fmt.Fprintf(w, "    note: %s\n", n)
		}
	}
	fmt.Fprintln(w, "aim: p99 <= 250 ms at 1,000 proxies; <= 0.25 MB of anchor memory per proxy")
}
