package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watchSignals()
	go func() {
		select {
		case <-signals:
			cancel()
		case <-ctx.Done():
		}
	}()
	var err error
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "_") {
		err = runChild(ctx, os.Args[1], os.Args[2:])
	} else {
		err = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	if err != nil {
		if ctx.Err() != nil {
			err = errors.New("interrupted; every child process was stopped")
		}
		fmt.Fprintf(os.Stderr, "dataplane: %v\n", err)
		os.Exit(1)
	}
}

// signals receives Ctrl-C and SIGTERM; they cancel the run, which ends the current load window and
// every child process. (runLoad gives fortio its own Aborter, so fortio installs no signal handler.)
var signals = make(chan os.Signal, 1)

func watchSignals() { signal.Notify(signals, os.Interrupt, syscall.SIGTERM) }

// runChild runs a hidden subcommand: a process the benchmark starts from its own binary.
func runChild(ctx context.Context, name string, args []string) error {
	switch name {
	case "_upstream":
		return runUpstream(ctx)
	}
	return fmt.Errorf("unknown subcommand %q", name)
}

type options struct {
	quick         bool
	json          bool
	reps          int
	duration      time.Duration
	satDuration   time.Duration
	warmup        time.Duration
	upstreamProcs int
	only          string
	maxForeign    float64
	retries       int
	protocols     map[string]bool
	canton        string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("dataplane", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.BoolVar(&o.quick, "quick", false, "short run (3 repetitions of 1s + 0.5s windows), under 2 minutes")
	fs.BoolVar(&o.json, "json", false, "print one JSON object instead of the table")
	fs.IntVar(&o.reps, "reps", 0, "repetitions of every scenario (default 5, 3 with -quick)")
	fs.DurationVar(&o.duration, "duration", 0, "fixed-rate window per scenario and repetition (default 3s, 1s with -quick)")
	fs.DurationVar(&o.satDuration, "sat-duration", 0, "saturated window per scenario and repetition (default 2s, 0.5s with -quick)")
	fs.IntVar(&o.upstreamProcs, "upstream-procs", 1, "GOMAXPROCS of the upstream server process")
	fs.StringVar(&o.only, "only", "", "comma-separated scenario names to run (direct and direct-h2c always run)")
	fs.Float64Var(&o.maxForeign, "max-foreign", 0.15, "CPU cores other processes may use during a window before it is repeated")
	fs.IntVar(&o.retries, "retries", 2, "repeats of a disturbed window (see -max-foreign)")
	fs.StringVar(&o.canton, "canton", "", "canton binary whose proxies are measured (default: go build ./cmd/canton into the scratch directory)")
	protocols := fs.String("protocols", "http1,h2c,grpc", "client protocols to run, comma-separated: http1, h2c, grpc")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.protocols = map[string]bool{}
	for _, p := range strings.Split(*protocols, ",") {
		switch p = strings.TrimSpace(p); p {
		case "http1", "h2c", "grpc":
			o.protocols[p] = true
		default:
			return o, fmt.Errorf("-protocols: unknown protocol %q (http1, h2c, grpc)", p)
		}
	}
	def := func(v *time.Duration, normal, quick time.Duration) {
		if *v == 0 {
			*v = normal
			if o.quick {
				*v = quick
			}
		}
	}
	def(&o.duration, 3*time.Second, time.Second)
	def(&o.satDuration, 2*time.Second, 500*time.Millisecond)
	def(&o.warmup, time.Second, 300*time.Millisecond)
	if o.reps == 0 {
		o.reps = 5
		if o.quick {
			o.reps = 3
		}
	}
	switch {
	case o.reps < 1 || o.reps > 100:
		return o, fmt.Errorf("-reps %d: must be 1..100", o.reps)
	case o.duration < 500*time.Millisecond || o.duration > 10*time.Minute:
		return o, fmt.Errorf("-duration %v: must be 500ms..10m", o.duration)
	case o.satDuration < 500*time.Millisecond || o.satDuration > 10*time.Minute:
		return o, fmt.Errorf("-sat-duration %v: must be 500ms..10m", o.satDuration)
	case o.retries < 0 || o.retries > 10:
		return o, fmt.Errorf("-retries %d: must be 0..10", o.retries)
	case o.upstreamProcs < 1 || o.upstreamProcs > 64:
		return o, fmt.Errorf("-upstream-procs %d: must be 1..64", o.upstreamProcs)
	}
	return o, nil
}

// peerStarter starts the scenarios of one peer; an error skips them with the error as the reason.
type peerStarter struct {
	names []string
	start func(*env) ([]*scenario, error)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	began := time.Now()
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }

	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("own executable: %w", err)
	}
	dir, err := os.MkdirTemp("", "canton-bench-")
	if err != nil {
		return fmt.Errorf("scratch directory: %w", err)
	}
	defer os.RemoveAll(dir)
	if o.canton == "" {
		logf("building canton (go build canton.dev/canton/cmd/canton)")
		if o.canton, err = buildCanton(ctx, dir); err != nil {
			return err
		}
		began = time.Now() // the build is not part of the run's time budget
	}
	kids := &children{}
	defer kids.stopAll()

	p, err := newPKI(dir)
	if err != nil {
		return err
	}
	up, out, err := kids.start("upstream", []string{"GOMAXPROCS=" + strconv.Itoa(o.upstreamProcs)}, self, "_upstream")
	if err != nil {
		return err
	}
	ready, err := readyLine(ctx, up, out, startTimeout)
	if err != nil {
		return err
	}
	upAddr, grpcAddr, ok := strings.Cut(ready, " ")
	if !ok {
		return fmt.Errorf("upstream: ready line %q has no gRPC address", ready)
	}
	xds, err := startXDS(ctx)
	if err != nil {
		return err
	}
	defer xds.stop()
	e := &env{ctx: ctx, kids: kids, self: self, canton: o.canton, dir: dir, upstream: upAddr, grpcUp: grpcAddr, pki: p, xds: xds}

	rep := &report{Date: time.Now().UTC().Format(time.RFC3339), Machine: machineInfo(), Versions: map[string]string{},
		Skipped: []skipped{},
		Params: params{Repetitions: o.reps, FixedQPS: fixedQPS, Connections: connections, FixedWindow: o.duration.String(),
			SaturatedWindow: o.satDuration.String(), ResolutionUS: resolution * 1e6, PayloadBytes: payloadSize, ProxyThreads: 1,
			UpstreamMaxProcs: o.upstreamProcs, MaxForeignCores: o.maxForeign, Retries: o.retries}}

	starters := []peerStarter{
		{[]string{"direct", "direct-h2c", "direct-grpc"}, func(e *env) ([]*scenario, error) {
			return []*scenario{
				{Name: "direct", Peer: "direct", Proto: "http1", addr: e.upstream},
				{Name: "direct-h2c", Peer: "direct", Proto: "h2c", addr: e.upstream},
				{Name: "direct-grpc", Peer: "direct", Proto: "grpc", addr: e.grpcUp},
			}, nil
		}},
		{[]string{"canton-1hop", "canton-1hop-h2c", "canton-1hop-grpc"}, cantonOneHop},
		{[]string{"canton-2hop-mtls"}, cantonTwoHops},
		{[]string{"canton-2hop-mtls-h2c", "canton-2hop-mtls-grpc"}, cantonTwoHopsH2},
	}
	haproxy := []string{"haproxy-1hop", "haproxy-1hop-h2c", "haproxy-1hop-grpc", "haproxy-2hop-mtls", "haproxy-2hop-mtls-h2c",
		"haproxy-2hop-mtls-grpc"}
	if bin, err := exec.LookPath("haproxy"); err == nil {
		rep.Versions["haproxy"] = version(bin, "-v")
		starters = append(starters,
			peerStarter{haproxy[:3], func(e *env) ([]*scenario, error) { return haproxyOneHop(e, bin) }},
			peerStarter{haproxy[3:4], func(e *env) ([]*scenario, error) { return haproxyTwoHops(e, bin, false) }},
			peerStarter{haproxy[4:], func(e *env) ([]*scenario, error) { return haproxyTwoHops(e, bin, true) }})
	} else {
		logf("haproxy not found: run bench/setup.sh")
		for _, n := range haproxy {
			rep.Skipped = append(rep.Skipped, skipped{n, "haproxy not found: run bench/setup.sh"})
		}
	}
	nginx := []string{"nginx-1hop", "nginx-1hop-h2c", "nginx-1hop-grpc"}
	if bin, err := exec.LookPath("nginx"); err == nil {
		rep.Versions["nginx"] = version(bin, "-v")
		starters = append(starters, peerStarter{nginx, func(e *env) ([]*scenario, error) { return nginxOneHop(e, bin) }})
	} else {
		logf("nginx not found: run bench/setup.sh")
		for _, n := range nginx {
			rep.Skipped = append(rep.Skipped, skipped{n, "nginx not found: run bench/setup.sh"})
		}
	}
	want := func(name string) bool {
		if !o.protocols[protoOf(name)] {
			return false
		}
		if o.only == "" || strings.HasPrefix(name, "direct") {
			return true
		}
		for _, n := range strings.Split(o.only, ",") {
			if strings.TrimSpace(n) == name {
				return true
			}
		}
		return false
	}

	var scens []*scenario
	for _, st := range starters {
		if !slices.ContainsFunc(st.names, want) {
			continue
		}
		ss, err := st.start(e)
		for _, s := range ss {
			if err == nil {
				err = check(s.addr, s.Proto)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			for _, n := range st.names {
				rep.Skipped = append(rep.Skipped, skipped{n, err.Error()})
			}
			logf("skipping %s: %v", strings.Join(st.names, ", "), err)
			continue
		}
		for _, s := range ss {
			if want(s.Name) {
				scens = append(scens, s)
			}
		}
	}
	results := make([]*scenarioResult, len(scens))
	for i, s := range scens {
		results[i] = &scenarioResult{Name: s.Name, Peer: s.Peer, Hops: s.Hops, Proto: s.Proto}
		logf("warming up %s (%s %s)", s.Name, s.Proto, s.addr)
		if _, err := runLoad(ctx, s.addr, s.Proto, fixedQPS, o.warmup); err != nil {
			return fmt.Errorf("warm-up of %s: %w", s.Name, err)
		}
	}

	// Repeats of disturbed windows may use what is left of the time limit (9 min 20 s, 115 s with
	// -quick) after the planned windows. A scenario window costs its two load windows plus about half a
	// second of connection setup and fortio's warm-up; a repeat may also wait up to 10 s for quiet.
	limit := 560 * time.Second
	if o.quick {
		limit = 115 * time.Second
	}
	perWindow := o.duration + o.satDuration + 500*time.Millisecond
	perRetry := perWindow + 10*time.Second
	planned := time.Since(began) + time.Duration(o.reps*len(scens))*perWindow
	m := &meter{o: o, logf: logf, retryBudget: max(0, int((limit-planned)/perRetry))}
	logf("%d scenarios x %d repetitions, about %v; up to %d repeats of disturbed windows",
		len(scens), o.reps, planned.Round(time.Second), m.retryBudget)
	for r := 0; r < o.reps; r++ {
		samples := make([]*sample, len(scens))
		direct := map[string]*sample{}
		// Interleave: every scenario once per repetition, the starting point rotating so no scenario
		// always runs first or last.
		for k := range scens {
			i := (k + r) % len(scens)
			if err := ctx.Err(); err != nil {
				return err
			}
			s := scens[i]
			sm, err := m.measure(ctx, s)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				// A window that could not run at all (e.g. every connection refused) is recorded as a
				// failure of the scenario; the run goes on.
				logf("rep %d/%d %-18s FAILED: %v", r+1, o.reps, s.Name, err)
				results[i].Failures++
				if results[i].Failure == "" {
					results[i].Failure = err.Error()
				}
				continue
			}
			noisy := ""
			if sm.Errors > 0 {
				noisy = fmt.Sprintf(" ERRORS %d", sm.Errors)
			}
			if sm.Noisy {
				noisy += " NOISY"
			}
			logf("rep %d/%d %-18s p50 %6.0fµs p99 %6.0fµs cpu %5.0f mcores/1k rps rss %5.1f MiB sat %6.0f rps foreign %.2f cores%s",
				r+1, o.reps, s.Name, sm.P50, sm.P99, sm.CPUPer1k, sm.RSSMB, sm.SatRPS, sm.ForeignCores, noisy)
			samples[i] = sm
			if s.Peer == "direct" {
				direct[s.Proto] = sm
			}
		}
		for i, sm := range samples {
			if sm == nil {
				continue
			}
			if d := direct[scens[i].Proto]; d != nil {
				sm.AddedP50 = sm.P50 - d.P50
				sm.AddedP99 = sm.P99 - d.P99
			}
			results[i].samples = append(results[i].samples, *sm)
		}
	}
	for _, r := range results {
		r.finish()
	}
	if want("canton-1000-clusters") {
		logf("measuring canton proxy RSS with %d clusters", manyClusters)
		if m, err := cantonRSSManyClusters(e, o.duration); err != nil {
			logf("canton RSS with %d clusters: %v", manyClusters, err)
			rep.Skipped = append(rep.Skipped, skipped{"canton-1000-clusters", err.Error()})
		} else {
			mib := func(b int64) *float64 { v := round(float64(b) / (1 << 20)); return &v }
			rep.CantonRSSManyClustersMB, rep.CantonRSSManyClustersAnonMB, rep.CantonRSSManyClustersFileMB = mib(m.rss), mib(m.anon), mib(m.file)
		}
	}
	rep.Scenarios = results
	rep.computeRatios()
	rep.Elapsed = time.Since(began).Round(time.Second).String()
	if o.json {
		return rep.writeJSON(stdout)
	}
	rep.writeTable(stdout)
	return nil
}

// buildCanton builds the canton command into dir and returns the binary's path. The benchmark runs
// from the repository (go run ./bench/dataplane); elsewhere pass -canton.
func buildCanton(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "canton")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "canton.dev/canton/cmd/canton").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build canton.dev/canton/cmd/canton (run from the repository, or pass -canton): %v: %s", err, strings.TrimSpace(string(out)))
	}
	return bin, nil
}

// version returns the first line a peer prints for its version flag.
func version(bin, flag string) string {
	out, err := exec.Command(bin, flag).CombinedOutput()
	if err != nil && len(out) == 0 {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

func machineInfo() machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}
