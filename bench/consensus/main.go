// Command consensus measures Canton's control-plane consensus end to end:
// three anchors in one process on loopback, real mTLS gRPC replication and
// bbolt storage with fsync, driven through the anchor API.
//
//	go run ./bench/consensus                 # latency, throughput, idle cost of 1,000 scopes
//	go run ./bench/consensus -scopes 0 -json # skip the idle measurement, print JSON
//
// It reports commit latency (p50/p99, one writer), throughput (many writers,
// batched by Raft), and the CPU the process spends per second while N idle
// scopes are hosted on the three anchors.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/meshtest"
	"canton.dev/canton/internal/resource"
)

type result struct {
	LatencyP50ms     float64 `json:"commit_latency_p50_ms"`
	LatencyP99ms     float64 `json:"commit_latency_p99_ms"`
	LatencyOps       int     `json:"latency_ops"`
	Throughput       float64 `json:"throughput_ops_per_s"`
	ThroughputOps    int     `json:"throughput_ops"`
	Writers          int     `json:"writers"`
	IdleScopes       int     `json:"idle_scopes"`
	IdleCPUPercent   float64 `json:"idle_cpu_percent_of_one_core"`
	BaselineCPU      float64 `json:"baseline_cpu_percent_of_one_core"`
	IdleWindowSecond float64 `json:"idle_window_s"`
}

func main() {
	var (
		latOps  = flag.Int("latency-ops", 500, "sequential commits for the latency figures")
		thrOps  = flag.Int("ops", 10000, "commits for the throughput figure")
		writers = flag.Int("writers", 64, "concurrent writers for throughput")
		scopes  = flag.Int("scopes", 1000, "idle scopes to host for the idle-cost figure (0 skips it)")
		window  = flag.Duration("idle", 10*time.Second, "how long to measure idle CPU")
		asJSON  = flag.Bool("json", false, "print one JSON object")
		profile = flag.String("idle-cpuprofile", "", "write a CPU profile of the idle window to this file")
		thrProf = flag.String("cpuprofile", "", "write a CPU profile of the throughput phase to this file")
	)
	flag.Parse()
	dir, err := os.MkdirTemp("", "canton-bench-consensus-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	c, err := meshtest.Start(ctx, meshtest.Options{Dir: dir, TickInterval: 100 * time.Millisecond, RequestTimeout: 10 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.WaitScope(wctx, c.Mesh()); err != nil {
		log.Fatal(err)
	}
	leader := c.Leader(c.Mesh())
	cl, err := c.Client(leader)
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	var r result

	baseline := cpuOver(3 * time.Second)
	r.BaselineCPU = baseline

	// Latency: one writer, one commit at a time.
	lat := make([]time.Duration, 0, *latOps)
	for i := range *latOps {
		start := time.Now()
		if err := commit(ctx, cl, c.Mesh(), "lat-"+strconv.Itoa(i), i); err != nil {
			log.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r.LatencyOps = len(lat)
	r.LatencyP50ms = ms(lat[len(lat)/2])
	r.LatencyP99ms = ms(lat[len(lat)*99/100])

	// Throughput: many writers; Raft batches their entries into shared appends
	// and fsyncs. Writes cycle through a bounded set of names (so the scope's
	// size stays bounded), and every write gives its alias a target it never
	// had, so that each one is a real change: a put of an unchanged object
	// would measure a cheaper path.
	var next atomic.Int64
	var wg sync.WaitGroup
	if *thrProf != "" {
		f, err := os.Create(*thrProf)
		if err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
	}
	start := time.Now()
	for range *writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i > *thrOps {
					return
				}
				name, target := throughputWrite(i)
				if err := commit(ctx, cl, c.Mesh(), name, target); err != nil {
					log.Fatal(err)
				}
			}
		}()
	}
	wg.Wait()
	r.ThroughputOps, r.Writers = *thrOps, *writers
	r.Throughput = float64(*thrOps) / time.Since(start).Seconds()
	if *thrProf != "" {
		pprof.StopCPUProfile()
	}

	if *scopes > 0 {
		if err := createScopes(ctx, cl, c, *scopes); err != nil {
			log.Fatal(err)
		}
		time.Sleep(3 * time.Second) // let every new group elect and go quiet
		r.IdleScopes = *scopes
		r.IdleWindowSecond = window.Seconds()
		if *profile != "" {
			f, err := os.Create(*profile)
			if err != nil {
				log.Fatal(err)
			}
			pprof.StartCPUProfile(f)
			defer f.Close()
		}
		r.IdleCPUPercent = cpuOver(*window)
		pprof.StopCPUProfile()
	}
	if *asJSON {
		json.NewEncoder(os.Stdout).Encode(r)
		return
	}
	fmt.Printf("consensus, 3 anchors on loopback, mTLS gRPC, bbolt with fsync\n")
	fmt.Printf("  commit latency (1 writer, %d ops):  p50 %.2f ms   p99 %.2f ms\n", r.LatencyOps, r.LatencyP50ms, r.LatencyP99ms)
	fmt.Printf("  throughput (%d writers, %d ops):   %.0f commits/s\n", r.Writers, r.ThroughputOps, r.Throughput)
	fmt.Printf("  baseline CPU (root scope only):     %.1f%% of one core\n", r.BaselineCPU)
	if r.IdleScopes > 0 {
		fmt.Printf("  idle CPU with %d scopes x 3 replicas: %.1f%% of one core (over %.0fs)\n", r.IdleScopes, r.IdleCPUPercent, r.IdleWindowSecond)
	}
}

// thrNames is how many aliases the throughput writers cycle through.
const thrNames = 512

// throughputWrite is the i-th write of the throughput phase: which alias it
// puts and the target it gives it (never the one the alias has).
func throughputWrite(i int) (name string, target int) {
	return "thr-" + strconv.Itoa(i%thrNames), i
}

// commit puts the alias name with target t<target>.default.<mesh>.
func commit(ctx context.Context, cl *api.Client, mesh, name string, target int) error {
	spec := fmt.Sprintf(`{"target":"t%d.default.%s","actions":["resolve"]}`, target, mesh)
	o := resource.Object{Kind: "Alias", Namespace: "default." + mesh, Name: name, Spec: []byte(spec)}
	_, err := cl.Apply(ctx, []resource.Object{o}, false, nil)
	return err
}

func createScopes(ctx context.Context, cl *api.Client, c *meshtest.Cluster, n int) error {
	anchors := []string{c.Name(0), c.Name(1), c.Name(2)}
	for i := range n {
		d := fmt.Sprintf("s%d.%s", i, c.Mesh())
		if _, err := cl.CreateScope(ctx, d, anchors); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	// Wait until the last one has a leader.
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err := c.WaitScope(wctx, fmt.Sprintf("s%d.%s", n-1, c.Mesh()))
	return err
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// cpuOver returns the CPU this process used over d, in percent of one core.
func cpuOver(d time.Duration) float64 {
	before := procCPU()
	time.Sleep(d)
	return (procCPU() - before).Seconds() / d.Seconds() * 100
}

func procCPU() time.Duration {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
}
