// Command consensus measures Canton's control-plane consensus end to end:
// three anchors in one process on loopback, real mTLS gRPC replication and
// bbolt storage with fsync, driven through the anchor API.
//
//	go run ./bench/consensus                 # latency, throughput, idle cost of 1,000 scopes
//	go run ./bench/consensus -scopes 0 -json # skip the idle measurement, print JSON
//
// It reports commit latency (p50/p99, one writer), throughput (many writers,
// batched by Raft) for each -writers count, and the CPU the process spends
// per second while N idle scopes are hosted on the three anchors.
//
// The machine may be shared: every phase also reports the CPU this process
// spent per commit (all three anchors and the client together), how many
// commits the leader's disk syncs carried, and how many cores other
// processes used meanwhile (foreign CPU), so that a figure measured while
// something else ran can be told apart.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/meshtest"
	"canton.dev/canton/internal/resource"
)

// phase is what one measured phase gives.
type phase struct {
	Writers        int     `json:"writers"`
	Ops            int     `json:"ops"`
	OpsPerSecond   float64 `json:"ops_per_s"`
	P50ms          float64 `json:"commit_p50_ms"`
	P99ms          float64 `json:"commit_p99_ms"`
	CPUPerCommitMs float64 `json:"cpu_ms_per_commit"`    // this process: three anchors and the client
	CommitsPerSync float64 `json:"commits_per_fsync"`    // on the leader: commits per durable write on the commit path (a WAL append)
	Checkpoints    float64 `json:"checkpoints_per_1000"` // on the leader: bbolt transactions copying the WAL, per 1,000 commits
	ForeignCores   float64 `json:"foreign_cpu_cores"`    // used by other processes meanwhile
	GCPauseMaxMs   float64 `json:"gc_pause_max_ms"`      // the longest GC pause of the phase
	GCPer1000      float64 `json:"gc_cycles_per_1000"`   // GC cycles per 1,000 commits
}

type result struct {
	Latency          phase   `json:"latency"`
	Throughput       []phase `json:"throughput"`
	IdleScopes       int     `json:"idle_scopes"`
	CreateSeconds    float64 `json:"create_scopes_s"` // to create the idle scopes, one at a time, until the last elected
	IdleCPUPercent   float64 `json:"idle_cpu_percent_of_one_core"`
	BaselineCPU      float64 `json:"baseline_cpu_percent_of_one_core"`
	IdleWindowSecond float64 `json:"idle_window_s"`
}

func main() {
	var (
		latOps  = flag.Int("latency-ops", 500, "sequential commits for the latency figures")
		thrOps  = flag.Int("ops", 10000, "commits for each throughput figure")
		writers = flag.String("writers", "16,64", "concurrent writers of the throughput phases, comma-separated")
		scopes  = flag.Int("scopes", 1000, "idle scopes to host for the idle-cost figure (0 skips it)")
		window  = flag.Duration("idle", 10*time.Second, "how long to measure idle CPU")
		asJSON  = flag.Bool("json", false, "print one JSON object")
		profile = flag.String("idle-cpuprofile", "", "write a CPU profile of the idle window to this file")
		thrProf = flag.String("cpuprofile", "", "write a CPU profile of the throughput phases to this file")
		blkProf = flag.String("blockprofile", "", "write a block profile of the throughput phases to this file")
		mtxProf = flag.String("mutexprofile", "", "write a mutex contention profile of the throughput phases to this file")
		trcFile = flag.String("trace", "", "write an execution trace of the throughput phases to this file")
		memProf = flag.String("memprofile", "", "write an allocation profile of the throughput phases to this file")
	)
	flag.Parse()
	var counts []int
	for f := range strings.SplitSeq(*writers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			log.Fatalf("-writers: %q is not a positive number", f)
		}
		counts = append(counts, n)
	}
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
	b := &bench{c: c, cl: cl, leader: leader}
	var r result

	r.BaselineCPU = cpuOver(3 * time.Second)

	// Latency: one writer, one commit at a time.
	r.Latency = b.run(ctx, 1, *latOps, func(i int) (string, int) { return "lat-" + strconv.Itoa(i), i })

	// Throughput: many writers; Raft batches their entries into shared appends
	// and fsyncs.
	stop := startProfiles(*thrProf, *blkProf, *mtxProf, *memProf, *trcFile)
	for _, w := range counts {
		r.Throughput = append(r.Throughput, b.run(ctx, w, *thrOps, b.throughputWrite))
	}
	stop()

	if *scopes > 0 {
		start := time.Now()
		if err := createScopes(ctx, cl, c, *scopes); err != nil {
			log.Fatal(err)
		}
		r.CreateSeconds = time.Since(start).Seconds()
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
	fmt.Printf("consensus, 3 anchors on loopback, mTLS gRPC, WAL + bbolt with fsync\n")
	l := r.Latency
	fmt.Printf("  commit latency (1 writer, %d ops):  p50 %.2f ms   p99 %.2f ms   (%.2f ms CPU/commit, foreign CPU %.2f cores)\n",
		l.Ops, l.P50ms, l.P99ms, l.CPUPerCommitMs, l.ForeignCores)
	for _, t := range r.Throughput {
		fmt.Printf("  throughput (%d writers, %d ops):   %.0f commits/s   p50 %.2f ms   p99 %.2f ms   %.1f commits/fsync   %.1f checkpoints/1000   %.2f ms CPU/commit   foreign CPU %.2f cores\n",
			t.Writers, t.Ops, t.OpsPerSecond, t.P50ms, t.P99ms, t.CommitsPerSync, t.Checkpoints, t.CPUPerCommitMs, t.ForeignCores)
	}
	fmt.Printf("  baseline CPU (root scope only):     %.1f%% of one core\n", r.BaselineCPU)
	if r.IdleScopes > 0 {
		fmt.Printf("  idle CPU with %d scopes x 3 replicas: %.1f%% of one core (over %.0fs; creating them took %.1fs)\n", r.IdleScopes, r.IdleCPUPercent, r.IdleWindowSecond, r.CreateSeconds)
	}
}

type bench struct {
	c      *meshtest.Cluster
	cl     *api.Client
	leader int
	next   atomic.Int64 // throughput writes so far, over all phases
}

// run makes ops commits with w concurrent writers; write(i) names the i-th
// commit's alias and target.
func (b *bench) run(ctx context.Context, w, ops int, write func(i int) (string, int)) phase {
	var next atomic.Int64
	lat := make([][]time.Duration, w)
	var wg sync.WaitGroup
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	st0 := b.c.Anchor(b.leader).ReplicaStats()
	cpu0, busy0 := procCPU(), machineBusy()
	start := time.Now()
	for k := range w {
		wg.Go(func() {
			for {
				i := int(next.Add(1))
				if i > ops {
					return
				}
				name, target := write(i)
				t0 := time.Now()
				if err := commit(ctx, b.cl, b.c.Mesh(), name, target); err != nil {
					log.Fatal(err)
				}
				lat[k] = append(lat[k], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu, busy := procCPU()-cpu0, machineBusy()-busy0
	st1 := b.c.Anchor(b.leader).ReplicaStats()
	runtime.ReadMemStats(&ms1)
	all := slices.Concat(lat...)
	slices.Sort(all)
	p := phase{
		Writers:        w,
		Ops:            ops,
		OpsPerSecond:   float64(ops) / elapsed.Seconds(),
		P50ms:          ms(all[len(all)/2]),
		P99ms:          ms(all[len(all)*99/100]),
		CPUPerCommitMs: ms(cpu) / float64(ops),
		ForeignCores:   max(0, (busy-cpu).Seconds()/elapsed.Seconds()),
		GCPauseMaxMs:   ms(maxPause(&ms0, &ms1)),
		GCPer1000:      float64(ms1.NumGC-ms0.NumGC) * 1000 / float64(ops),
	}
	p.Checkpoints = float64(st1.Checkpoints-st0.Checkpoints) * 1000 / float64(ops)
	if s := st1.Syncs - st0.Syncs; s > 0 {
		p.CommitsPerSync = float64(ops) / float64(s)
	}
	return p
}

// maxPause is the longest GC pause between two MemStats readings (of the
// last 256 pauses).
func maxPause(a, b *runtime.MemStats) time.Duration {
	var m uint64
	for n := max(a.NumGC, b.NumGC-min(b.NumGC, 256)) + 1; n <= b.NumGC; n++ {
		m = max(m, b.PauseNs[(n+255)%256])
	}
	return time.Duration(m)
}

// thrNames is how many aliases the throughput writers cycle through.
const thrNames = 512

// throughputWrite is the next write of the throughput phases: which alias it
// puts and the target it gives it (never the one the alias has). Writes
// cycle through a bounded set of names (so the scope's size stays bounded),
// and every write gives its alias a target it never had, so that each one
// is a real change: a put of an unchanged object would measure a cheaper
// path.
func (b *bench) throughputWrite(int) (string, int) {
	return throughputWrite(int(b.next.Add(1)))
}

// throughputWrite is the i-th write of the throughput phases.
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

// startProfiles starts the profiles and trace whose file is named; the
// returned function stops them and writes the files.
func startProfiles(cpu, block, mutex, allocs, tr string) (stop func()) {
	var files []*os.File
	create := func(name string) *os.File {
		f, err := os.Create(name)
		if err != nil {
			log.Fatal(err)
		}
		files = append(files, f)
		return f
	}
	if cpu != "" {
		if err := pprof.StartCPUProfile(create(cpu)); err != nil {
			log.Fatal(err)
		}
	}
	if block != "" {
		runtime.SetBlockProfileRate(1)
	}
	if mutex != "" {
		runtime.SetMutexProfileFraction(1)
	}
	if tr != "" {
		if err := trace.Start(create(tr)); err != nil {
			log.Fatal(err)
		}
	}
	return func() {
		if cpu != "" {
			pprof.StopCPUProfile()
		}
		if tr != "" {
			trace.Stop()
		}
		for _, p := range []struct{ name, file string }{{"block", block}, {"mutex", mutex}, {"allocs", allocs}} {
			if p.file != "" {
				if err := pprof.Lookup(p.name).WriteTo(create(p.file), 0); err != nil {
					log.Fatal(err)
				}
			}
		}
		runtime.SetBlockProfileRate(0)
		runtime.SetMutexProfileFraction(0)
		for _, f := range files {
			if err := f.Close(); err != nil {
				log.Fatal(err)
			}
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// cpuOver returns the CPU this process used over d, in percent of one core.
func cpuOver(d time.Duration) float64 {
	before := procCPU()
	time.Sleep(d)
	return (procCPU() - before).Seconds() / d.Seconds() * 100
}

// procCPU is the CPU time this process used so far.
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

// machineBusy is the CPU time all processes of the machine used so far
// (/proc/stat: every state but idle and iowait).
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 {
			continue // idle, iowait; guest time is counted in user already
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return time.Duration(busy) * time.Second / 100
}
