package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/meshtest"
	"canton.dev/canton/internal/resource"
)

const benchNamespace = "bench.demo.mesh"

// options are the command-line flags.
type options struct {
	clients        []int
	rounds         int
	shape          shape
	roundTimeout   time.Duration
	connectTimeout time.Duration
	identicalNodes bool // clients of one service version send the same node but for the ID
	delta          bool // clients use delta ADS
	anchorProcs    bool // each anchor in a process of its own (default: all three in this one)
	json           bool
	cpuProfile     string // written over the change rounds of the last client count
	memProfile     string // heap profile once the last client count is connected
	samples        string // every latency of the last client count, by round and client, as JSON
}

func main() {
	if os.Getenv(workerEnv) != "" || os.Getenv(anchorEnv) != "" {
		child := workerMain
		if os.Getenv(anchorEnv) != "" {
			child = anchorMain
		}
		if err := child(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	var o options
	clients := flag.String("clients", "100,1000", "comma-separated numbers of simulated xDS clients, one run each")
	flag.IntVar(&o.rounds, "rounds", 5, "changes committed (and measured) per client count")
	flag.IntVar(&o.shape.Services, "services", 50, "services in the scope")
	flag.IntVar(&o.shape.Versions, "versions", 3, "versions (Workloads, subsets) per service")
	flag.IntVar(&o.shape.Egress, "sidecar-egress", 0, "give each service a Sidecar limiting its proxies to this many other services (0: no Sidecars, every proxy sees every service)")
	flag.DurationVar(&o.roundTimeout, "round-timeout", 30*time.Second, "how long a change may take to reach every client")
	flag.DurationVar(&o.connectTimeout, "connect-timeout", 3*time.Minute, "how long all clients may take to connect and get their first configuration")
	flag.BoolVar(&o.identicalNodes, "identical-nodes", false, "give the clients of one service version the same node but for the ID (default: each client has its own addresses and ports, as every real proxy has)")
	flag.BoolVar(&o.delta, "delta", false, "clients use delta (incremental) ADS, as canton proxy does (default: state of the world)")
	flag.BoolVar(&o.anchorProcs, "anchor-procs", false, "run each anchor in a process of its own, as a real deployment runs one anchor per host (default: the three anchors in this process, sharing its Go scheduler)")
	flag.BoolVar(&o.json, "json", false, "print one JSON object")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the change rounds of the last client count to this file")
	flag.StringVar(&o.memProfile, "memprofile", "", "write a heap profile with the last client count connected to this file")
	flag.StringVar(&o.samples, "samples", "", "write every commit-to-ACK latency (ms) of the last client count to this file, as JSON: one array per change, indexed by client (-1: none)")
	flag.Parse()
	for _, s := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 || n > 20000 {
			log.Fatalf("-clients: %q must be a number in 1..20000", s)
		}
		o.clients = append(o.clients, n)
	}
	if o.rounds < 1 || o.rounds > 100 || o.shape.Services < 1 || o.shape.Services > 500 || o.shape.Versions < 1 || o.shape.Versions > 10 ||
		o.shape.Egress < 0 || o.shape.Egress >= o.shape.Services {
		log.Fatal("-rounds must be 1..100, -services 1..500, -versions 1..10, -sidecar-egress 0..services-1")
	}
	rep, err := run(o)
	if err != nil {
		log.Fatal(err)
	}
	if o.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			log.Fatal(err)
		}
		return
	}
	rep.print(os.Stdout)
}

// bench is the running mesh with the benchmark scope.
type bench struct {
	o       options
	c       anchors
	admins  []*api.Client // one per anchor
	token   string
	anchors []string
	flipped bool
	last    bool // measuring the last client count (the one profiled)
}

func run(o options) (*report, error) {
	dir, err := os.MkdirTemp("", "canton-bench-controlplane-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	setupStart := time.Now()
	const tick, requestTimeout = 100 * time.Millisecond, 10 * time.Second
	var c anchors
	if o.anchorProcs {
		c, err = startProcesses(ctx, dir, 3, tick, requestTimeout)
	} else {
		var mc *meshtest.Cluster
		mc, err = meshtest.Start(ctx, meshtest.Options{Dir: dir, TickInterval: tick, RequestTimeout: requestTimeout})
		c = inProcess{mc}
	}
	if err != nil {
		return nil, err
	}
	defer c.Close()
	b := &bench{o: o, c: c}
	if err := b.setup(ctx); err != nil {
		return nil, err
	}
	defer func() {
		for _, a := range b.admins {
			a.Close()
		}
	}()
	rep := &report{Services: o.shape.Services, Versions: o.shape.Versions, Egress: o.shape.Egress, IdenticalNodes: o.identicalNodes, Delta: o.delta, AnchorProcs: o.anchorProcs, Anchors: c.Len(), Rounds: o.rounds,
		GOMAXPROCS: runtime.GOMAXPROCS(0), SetupSecs: time.Since(setupStart).Seconds()}
	for i, n := range o.clients {
		b.last = i == len(o.clients)-1
		r, err := b.measure(n)
		if err != nil {
			return nil, fmt.Errorf("%d clients: %w", n, err)
		}
		rep.Runs = append(rep.Runs, r)
	}
	return rep, nil
}

// setup creates the scope and its content.
func (b *bench) setup(ctx context.Context) error {
	if err := b.c.WaitScope(ctx, b.c.Mesh()); err != nil {
		return err
	}
	for i := range b.c.Len() {
		cl, err := b.c.Client(i)
		if err != nil {
			return err
		}
		b.admins = append(b.admins, cl)
		b.anchors = append(b.anchors, b.c.Addr(i))
	}
	tok, err := os.ReadFile(filepath.Join(b.c.DataDir(0), "join.token"))
	if err != nil {
		return fmt.Errorf("join token: %w", err)
	}
	b.token = strings.TrimSpace(string(tok))
	if _, err := b.admins[0].CreateScope(ctx, benchNamespace, []string{"a1", "a2", "a3"}); err != nil {
		return fmt.Errorf("create scope %s: %w", benchNamespace, err)
	}
	if err := b.c.WaitScope(ctx, benchNamespace); err != nil {
		return err
	}
	objs, err := resource.Parse("bench.yaml", []byte(policyYAML(b.o.shape, false)), b.c.Mesh(), benchNamespace)
	if err != nil {
		return fmt.Errorf("scope content: %w", err)
	}
	if _, err := b.admins[0].Apply(ctx, objs, false, nil); err != nil {
		return fmt.Errorf("apply scope content: %w", err)
	}
	// The workloads live under one long lease (the benchmark ends well before it).
	lease, err := b.admins[0].Raw().GrantLease(ctx, &apipb.GrantLeaseRequest{Scope: benchNamespace, TtlSeconds: 3600})
	if err != nil {
		return fmt.Errorf("grant lease: %w", api.Err(err))
	}
	ws, err := workloads(b.o.shape, benchNamespace, lease.GetLeaseId())
	if err != nil {
		return err
	}
	if _, err := b.admins[0].Apply(ctx, ws, false, nil); err != nil {
		return fmt.Errorf("apply workloads: %w", err)
	}
	return nil
}

// flip commits the weight flip of one VirtualService and returns when the successful Apply
// call started, how long it took, and how many attempts failed before it (a scope electing a
// leader under load refuses writes; the benchmark retries for up to timeout).
//
// Latencies are taken from the start of the call, not from its return: anchors that push a
// change as soon as they apply it reach proxies before the call returns (the response to the
// Apply shares the CPU with the pushes), which the return would hide.
func (b *bench) flip(ctx context.Context, timeout time.Duration) (time.Time, time.Duration, int, error) {
	b.flipped = !b.flipped
	objs, err := resource.Parse("flip.yaml", []byte(virtualServiceYAML(flipService, b.o.shape, b.flipped)), b.c.Mesh(), benchNamespace)
	if err != nil {
		return time.Time{}, 0, 0, err
	}
	deadline := time.Now().Add(timeout)
	for failed := 0; ; failed++ {
		start := time.Now()
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := b.admins[0].Apply(actx, objs, false, nil)
		cancel()
		if err == nil {
			return start, time.Since(start), failed, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, 0, failed, fmt.Errorf("apply flip (%d attempts): %w", failed+1, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// register applies the Workloads of the first n clients (clientWorkloads) under a lease of
// their own, as every proxy registers itself before it connects, and returns the lease.
func (b *bench) register(ctx context.Context, n int) (uint64, error) {
	lease, err := b.admins[0].Raw().GrantLease(ctx, &apipb.GrantLeaseRequest{Scope: benchNamespace, TtlSeconds: 3600})
	if err != nil {
		return 0, fmt.Errorf("grant lease: %w", api.Err(err))
	}
	ws, err := clientWorkloads(benchNamespace, b.o.shape, b.o.identicalNodes, n, lease.GetLeaseId())
	if err != nil {
		return 0, err
	}
	const batch = 500 // Workloads per commit, well below the Raft message limit
	for len(ws) > 0 {
		k := min(batch, len(ws))
		if _, err := b.admins[0].Apply(ctx, ws[:k], false, nil); err != nil {
			return 0, fmt.Errorf("register client workloads: %w", err)
		}
		ws = ws[k:]
	}
	return lease.GetLeaseId(), nil
}

// unregister revokes the lease of a run's client Workloads, deleting them.
func (b *bench) unregister(lease uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := b.admins[0].Raw().RevokeLease(ctx, &apipb.RevokeLeaseRequest{Scope: benchNamespace, LeaseId: lease}); err != nil {
		log.Printf("revoke the lease of the client workloads: %v", api.Err(err))
	}
}

// streams counts the xDS streams the anchors report, and those whose last answer was a NACK.
func (b *bench) streams(ctx context.Context) (n, nacks int, err error) {
	for i, cl := range b.admins {
		// The status lists every proxy with its versions and skipped config: beyond about a
		// thousand proxies per anchor it outgrows gRPC's default 4 MB message limit.
		st, err := cl.Raw().Status(ctx, &apipb.StatusRequest{}, grpc.MaxCallRecvMsgSize(256<<20))
		if err != nil {
			return 0, 0, fmt.Errorf("status of %s: %w", b.c.Name(i), err)
		}
		for _, p := range st.GetProxies() {
			if p.GetNamespace() != benchNamespace {
				continue
			}
			n++
			if p.GetNackType() != "" {
				nacks++
			}
		}
	}
	return n, nacks, nil
}

// waitStreams polls until the number of streams the anchors report satisfies ok.
func (b *bench) waitStreams(ctx context.Context, ok func(int) bool) (int, int, error) {
	for {
		n, nacks, err := b.streams(ctx)
		if err != nil || ok(n) {
			return n, nacks, err
		}
		select {
		case <-ctx.Done():
			return n, nacks, fmt.Errorf("anchors report %d xds streams: %w", n, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// worker is a running child process.
type worker struct {
	cmd   *exec.Cmd
	stdin *os.File
	lines chan string
	done  chan struct{} // closed when the process has exited
	err   error         // its exit status, valid after done
	tail  *tail
}

func (b *bench) startWorker(n int) (*worker, error) {
	cfg, err := json.Marshal(workerConfig{Anchors: b.anchors, JoinToken: b.token, Namespace: benchNamespace,
		Shape: b.o.shape, Clients: n, ConnectTimeout: b.o.connectTimeout, IdenticalNodes: b.o.identicalNodes, Delta: b.o.delta})
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), workerEnv+"="+string(cfg))
	cmd.SysProcAttr = childAttr()
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdin = pr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	w := &worker{cmd: cmd, stdin: pw, lines: make(chan string, 4), done: make(chan struct{}), tail: &tail{}}
	cmd.Stderr = w.tail
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	pr.Close()
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		w.err = cmd.Wait()
		close(w.done)
	}()
	return w, nil
}

// recv decodes the worker's next message into v.
func (w *worker) recv(v any, timeout time.Duration) error {
	select {
	case line := <-w.lines:
		return json.Unmarshal([]byte(line), v)
	case <-w.done:
		return fmt.Errorf("worker exited (%v): %s", w.err, w.tail.String())
	case <-time.After(timeout):
		return fmt.Errorf("worker: no answer within %s: %s", timeout, w.tail.String())
	}
}

func (w *worker) send(cmd string) error {
	_, err := fmt.Fprintln(w.stdin, cmd)
	return err
}

// stop asks the worker to quit and waits for it (killing it after a grace period).
func (w *worker) stop() {
	w.send("quit")
	w.stdin.Close()
	select {
	case <-w.done:
	case <-time.After(20 * time.Second):
		w.cmd.Process.Kill()
		<-w.done
	}
}

// measure runs one client count: connect, memory, rounds of changes.
func (b *bench) measure(n int) (runResult, error) {
	r := runResult{Clients: n}
	ctx, cancel := context.WithTimeout(context.Background(), b.o.connectTimeout+time.Duration(b.o.rounds)*(b.o.roundTimeout+20*time.Second)+time.Minute)
	defer cancel()
	leader0 := b.c.Leader(benchNamespace)
	heap0, stack0, g0 := b.c.Memory()
	lease, err := b.register(ctx, n)
	if err != nil {
		return r, err
	}
	defer b.unregister(lease)
	w, err := b.startWorker(n)
	if err != nil {
		return r, err
	}
	defer func() {
		w.stop()
		// The next run starts from an anchor without these streams.
		wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer wcancel()
		b.waitStreams(wctx, func(n int) bool { return n == 0 })
	}()
	var ready readyMsg
	if err := w.recv(&ready, b.o.connectTimeout+time.Minute); err != nil {
		return r, err
	}
	r.Connected, r.ConnectFailed, r.FirstError, r.ConnectSecs = ready.Ready, ready.Failed, ready.FirstError, ready.ConnectSecs
	r.InitialBytesPerClient = float64(ready.InitialBytes) / float64(max(ready.Ready, 1))
	for i := range n {
		if b.o.shape.affected(i % b.o.shape.Services) {
			r.Affected++
		}
	}
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	r.ServerStreams, r.ServerNacks, err = b.waitStreams(sctx, func(n int) bool { return n >= ready.Ready })
	scancel()
	if err != nil {
		// Report what the anchors see rather than fail: the numbers say what happened.
		r.Notes = append(r.Notes, err.Error())
	}
	heap1, stack1, g1 := b.c.Memory()
	perProxy := func(after, before uint64) float64 {
		return (float64(after) - float64(before)) / float64(max(ready.Ready, 1)) / (1 << 20)
	}
	r.HeapPerProxyMB = perProxy(heap1, heap0)
	r.HeapStackPerProxyMB = perProxy(heap1+stack1, heap0+stack0)
	r.GoroutinesPerProxy = float64(g1-g0) / float64(max(ready.Ready, 1))
	if b.last && b.o.memProfile != "" {
		if err := b.c.WriteHeapProfile(b.o.memProfile); err != nil {
			return r, err
		}
	}
	if b.last && b.o.cpuProfile != "" {
		stop, err := b.c.StartCPUProfile(b.o.cpuProfile)
		if err != nil {
			return r, err
		}
		defer stop()
	}
	cpu0 := b.c.CPU()
	var lat, commits []float64
	var samples [][]float64                       // by round, by client; -1: no ACK of the change
	byAnchor := make([][]float64, len(b.anchors)) // latencies of the clients of each anchor
	var bytes, perClient float64
	responses := map[string]float64{}
	bytesByType := map[string]float64{}
	for range b.o.rounds {
		if err := w.send("mark"); err != nil {
			return r, err
		}
		var marked roundMsg
		if err := w.recv(&marked, 30*time.Second); err != nil {
			return r, err
		}
		applied, took, retries, err := b.flip(ctx, b.o.roundTimeout)
		if err != nil {
			return r, err
		}
		r.ApplyRetries += retries
		commits = append(commits, took.Seconds()*1000)
		roundMax := 0.0
		if err := w.send("wait " + b.o.roundTimeout.String()); err != nil {
			return r, err
		}
		var round roundMsg
		if err := w.recv(&round, b.o.roundTimeout+30*time.Second); err != nil {
			return r, err
		}
		var total int64
		for t, v := range round.Bytes {
			total += v
			bytesByType[t] += float64(v) / float64(b.o.rounds)
		}
		for t, v := range round.Responses {
			responses[t] += float64(v) / float64(b.o.rounds)
		}
		bytes += float64(total) / float64(b.o.rounds)
		perClient += float64(total) / float64(max(ready.Ready, 1)) / float64(b.o.rounds)
		byClient := make([]float64, len(round.AckedAt))
		for i := range byClient {
			byClient[i] = -1
		}
		for i, at := range round.AckedAt {
			if !b.o.shape.affected(i % b.o.shape.Services) {
				if at != 0 {
					r.Unaffected++ // a client the change does not concern got a new route version
				}
				continue
			}
			if at == 0 {
				r.Missed++
				continue
			}
			ms := float64(at-applied.UnixNano()) / 1e6
			lat = append(lat, ms)
			byAnchor[i%len(b.anchors)] = append(byAnchor[i%len(b.anchors)], ms) // the worker's round robin
			roundMax = max(roundMax, ms)
			byClient[i] = ms
		}
		r.RoundMaxMs = append(r.RoundMaxMs, roundMax)
		samples = append(samples, byClient)
		r.ApplyMs = append(r.ApplyMs, took.Seconds()*1000)
		r.ClientCPUPerChangeMs += float64(round.CPUNanos) / 1e6 / float64(b.o.rounds)
		r.StreamErrors = max(r.StreamErrors, round.Errors)
		if round.FirstErr != "" && r.FirstStreamError == "" {
			r.FirstStreamError = round.FirstErr
		}
	}
	r.CPUPerChangeMs = (b.c.CPU() - cpu0).Seconds() * 1000 / float64(b.o.rounds)
	r.Leader = b.c.Leader(benchNamespace) + 1
	if l := b.c.Leader(benchNamespace); l != leader0 {
		r.Notes = append(r.Notes, fmt.Sprintf("scope leader moved from anchor %d to %d during the run", leader0+1, l+1))
	}
	r.Samples = len(lat)
	if b.last && b.o.samples != "" {
		data, err := json.Marshal(samples)
		if err != nil {
			return r, err
		}
		if err := os.WriteFile(b.o.samples, data, 0o644); err != nil {
			return r, err
		}
	}
	r.MinMs, r.P50ms, r.P99ms, r.MaxMs = percentile(lat, 0), percentile(lat, 50), percentile(lat, 99), percentile(lat, 100)
	for _, l := range byAnchor {
		r.ByAnchor = append(r.ByAnchor, anchorLatency{P50ms: percentile(l, 50), P99ms: percentile(l, 99)})
	}
	r.CommitP50ms = percentile(commits, 50)
	r.BytesPerChange, r.BytesPerClientPerChange = bytes, perClient
	r.ResponsesPerChange, r.BytesPerChangeByType = responses, bytesByType
	if _, nacks, err := b.streams(ctx); err == nil {
		r.ServerNacks = max(r.ServerNacks, nacks)
	}
	return r, nil
}

// cpuTime is the CPU (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// tail keeps the last bytes a child wrote to stderr, for error messages.
type tail struct {
	mu sync.Mutex
	b  []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = t.b[len(t.b)-4096:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.b) == 0 {
		return "(no stderr)"
	}
	return strings.TrimSpace(string(t.b))
}
