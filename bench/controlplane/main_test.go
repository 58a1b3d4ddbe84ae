package main

import (
	"fmt"
	"maps"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"canton.dev/canton/internal/resource"
	"canton.dev/canton/internal/xds"
)

// TestMain lets the test binary act as the benchmark's child processes (the worker, and with
// -anchor-procs each anchor).
func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) != "" || os.Getenv(anchorEnv) != "" {
		child := workerMain
		if os.Getenv(anchorEnv) != "" {
			child = anchorMain
		}
		if err := child(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestPercentile(t *testing.T) {
	v := []float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	for _, c := range []struct{ p, want float64 }{{50, 5}, {99, 10}, {100, 10}, {10, 1}, {0, 1}} {
		if got := percentile(v, c.p); got != c.want {
			t.Errorf("percentile(1..10, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	if !math.IsNaN(percentile(nil, 50)) {
		t.Error("percentile of nothing must be NaN")
	}
}

// TestScopeContentIsValid parses the benchmark scope as the anchors will, and checks that a
// flip changes exactly the one VirtualService.
func TestScopeContentIsValid(t *testing.T) {
	sh := shape{Services: 4, Versions: 3}
	objs, err := resource.Parse("bench.yaml", []byte(policyYAML(sh, false)), "demo.mesh", benchNamespace)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, o := range objs {
		if _, err := resource.Typed(o); err != nil {
			t.Errorf("%s: %v", o.Ref(), err)
		}
		kinds[o.Kind]++
	}
	if kinds["Service"] != 4 || kinds["DestinationRule"] != 4 || kinds["VirtualService"] != 4 {
		t.Errorf("kinds %v, want 4 of Service, DestinationRule and VirtualService", kinds)
	}
	ws, err := workloads(sh, benchNamespace, 7)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 12 {
		t.Errorf("%d workloads, want 12", len(ws))
	}
	for _, w := range ws {
		if _, err := resource.Typed(w); err != nil {
			t.Errorf("%s: %v", w.Ref(), err)
		}
	}
	a, b := virtualServiceYAML(flipService, sh, false), virtualServiceYAML(flipService, sh, true)
	if a == b || !strings.Contains(a, "weight: 90") || !strings.Contains(b, "weight: 10\n    - destination: {host: svc-00, subset: v2}\n      weight: 90") {
		t.Errorf("flip does not swap the weights:\n%s\n%s", a, b)
	}
}

// TestBenchmarkSmall runs the whole benchmark with a few clients, without and with Sidecar
// scoping, and with each anchor in its own process: every client the change concerns must get
// its configuration and every change, over the anchors' real mTLS xDS, and no other client may
// be pushed anything; the anchors' CPU and memory must be measured in either layout.
func TestBenchmarkSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three anchors and a child process")
	}
	const clients, rounds = 6, 2
	for _, c := range []struct {
		egress, affected int
		delta, procs     bool
	}{{0, 6, false, false}, {1, 2, false, false}, {0, 6, true, false}, {0, 6, false, true}} { // egress 1 of 3 services: only svc-02 (clients 2 and 5) routes svc-00
		t.Run(fmt.Sprintf("egress=%d,delta=%t,anchor-procs=%t", c.egress, c.delta, c.procs), func(t *testing.T) {
			rep, err := run(options{clients: []int{clients}, rounds: rounds, shape: shape{Services: 3, Versions: 2, Egress: c.egress},
				roundTimeout: 10 * time.Second, connectTimeout: 20 * time.Second, delta: c.delta, anchorProcs: c.procs})
			if err != nil {
				t.Fatal(err)
			}
			r := rep.Runs[0]
			if r.Connected != clients || r.ServerStreams != clients || r.ServerNacks != 0 {
				t.Errorf("connected %d, anchors see %d streams with %d NACKs; want %d, %d, 0", r.Connected, r.ServerStreams, r.ServerNacks, clients, clients)
			}
			if r.Affected != c.affected || r.Samples != c.affected*rounds || r.Missed != 0 || r.Unaffected != 0 {
				t.Errorf("%d affected, %d samples, %d missed, %d pushed without cause; want %d, %d, 0, 0",
					r.Affected, r.Samples, r.Missed, r.Unaffected, c.affected, c.affected*rounds)
			}
			if r.ResponsesPerChange["rds"] != float64(c.affected) || r.BytesPerChangeByType["rds"] <= 0 {
				t.Errorf("per change: %v responses, %v bytes; want %d RDS responses with bytes", r.ResponsesPerChange, r.BytesPerChangeByType, c.affected)
			}
			for _, typ := range []string{"cds", "eds", "lds"} {
				if r.ResponsesPerChange[typ] != 0 {
					t.Errorf("a route change pushed %v %s responses; only RDS changed", r.ResponsesPerChange[typ], typ)
				}
			}
			if r.P50ms <= 0 || r.P99ms < r.P50ms || r.MaxMs > 10000 {
				t.Errorf("latencies p50 %v p99 %v max %v ms are not plausible", r.P50ms, r.P99ms, r.MaxMs)
			}
			if r.CPUPerChangeMs <= 0 || r.HeapPerProxyMB == 0 || r.GoroutinesPerProxy < 1 || r.Leader < 1 || r.Leader > 3 {
				t.Errorf("anchor CPU %v ms per change, heap %v MB and %v goroutines per proxy, leader %d: not measured",
					r.CPUPerChangeMs, r.HeapPerProxyMB, r.GoroutinesPerProxy, r.Leader)
			}
		})
	}
}

// TestNodesAreDistinctLikeRealProxies checks that every simulated client describes a node of
// its own (addresses and ports, as `canton proxy` sidecars do) that the anchors accept, with the
// Workload that registers it, and that -identical-nodes gives the clients of one service
// version one node but for the ID.
func TestNodesAreDistinctLikeRealProxies(t *testing.T) {
	sh := shape{Services: 3, Versions: 2}
	for _, identical := range []bool{false, true} {
		cfg := workerConfig{Namespace: benchNamespace, Shape: sh, IdenticalNodes: identical}
		seen := map[string]bool{}
		ws, err := clientWorkloads(cfg.Namespace, sh, identical, 1500, 7)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 1500 {
			n, err := xds.NodeFromProto(nodeFor(cfg, i))
			if err != nil {
				t.Fatalf("client %d: %v", i, err)
			}
			if n.AppAddress == "" || n.AdminAddress == "" || n.InboundPort == 0 || n.OutboundPort == 0 {
				t.Fatalf("client %d: node %+v lacks an address a proxy has", i, n)
			}
			// The anchors admit a proxy only as its Workload registers it.
			w := ws[i]
			spec, err := resource.Typed(w)
			if err != nil {
				t.Fatalf("%s: %v", w.Ref(), err)
			}
			ws := spec.(*resource.WorkloadSpec)
			if w.Name != n.ID || ws.Proxy != n.ID || ws.Service != n.Service || !maps.Equal(ws.Labels, n.Labels) ||
				ws.Address != n.InboundAddress || ws.Port != n.InboundPort {
				t.Fatalf("client %d: Workload %s %+v does not register node %+v", i, w.Name, ws, n)
			}
			n.ID = ""
			seen[fmt.Sprintf("%+v", n)] = true
		}
		want := 1500
		if identical {
			want = sh.Services * sh.Versions
		}
		if len(seen) != want {
			t.Errorf("identical=%v: %d distinct nodes (but for the ID), want %d", identical, len(seen), want)
		}
	}
}
