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
	"strconv"
	"strings"
	"time"
)

// options are the command-line flags.
type options struct {
	depth         int           // zone cuts below the root
	resolves      int           // uncached Resolve samples per depth (and Status samples)
	cached        int           // cached lookups per depth
	changes       int           // endpoint changes per owning scope
	propDepths    []int         // depths of the scopes whose services x.demo.mesh imports
	changeTimeout time.Duration // how long one change may take to reach the proxy
	deadline      time.Duration // the whole run
	json          bool
	cpuProfile    string // written over the uncached resolution
}

func main() {
	var o options
	quick := flag.Bool("quick", false, "fewer samples (well under a minute)")
	flag.IntVar(&o.depth, "depth", 4, "depth of the scope hierarchy below the root, 1..8")
	flag.IntVar(&o.resolves, "resolves", 0, "uncached Resolve calls per depth (default 1000, -quick 200)")
	flag.IntVar(&o.cached, "cached", 0, "cached lookups per depth (default 100000, -quick 20000)")
	flag.IntVar(&o.changes, "changes", 0, "endpoint changes per owning scope (default 100, -quick 50)")
	props := flag.String("propagation-depths", "", "depths of the owning scopes for propagation, comma-separated (default 1 and -depth; -quick: -depth only); 'none' skips it")
	flag.DurationVar(&o.changeTimeout, "change-timeout", 10*time.Second, "how long one endpoint change may take to reach the proxy")
	flag.BoolVar(&o.json, "json", false, "print one JSON object")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the uncached resolution phase to this file")
	flag.Parse()
	if o.depth < 1 || o.depth > 8 {
		log.Fatal("-depth must be 1..8")
	}
	def := func(v *int, full, q int) {
		if *v == 0 {
			*v = full
			if *quick {
				*v = q
			}
		}
	}
	def(&o.resolves, 1000, 200)
	def(&o.cached, 100000, 20000)
	def(&o.changes, 100, 50)
	o.deadline = 5 * time.Minute
	if *quick {
		o.deadline = 2 * time.Minute
	}
	switch {
	case *props == "none":
	case *props == "" && *quick:
		o.propDepths = []int{o.depth}
	case *props == "":
		o.propDepths = []int{1, o.depth}
		if o.depth == 1 {
			o.propDepths = []int{1}
		}
	default:
		for _, s := range strings.Split(*props, ",") {
			d, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || d < 0 || d > o.depth {
				log.Fatalf("-propagation-depths: %q must be a depth in 0..%d", s, o.depth)
			}
			o.propDepths = append(o.propDepths, d)
		}
	}
	if o.resolves < 1 || o.resolves > 100000 || o.cached < 1 || o.cached > 10000000 || o.changes < 0 || o.changes > 10000 {
		log.Fatal("-resolves must be 1..100000, -cached 1..10000000, -changes 0..10000")
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

// run starts the mesh, measures and returns the report.
func run(o options) (*report, error) {
	start := time.Now()
	dir, err := os.MkdirTemp("", "canton-bench-resolution-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), o.deadline)
	defer cancel()
	m, err := startMesh(ctx, dir, o.depth, o.propDepths)
	if err != nil {
		return nil, fmt.Errorf("start mesh: %w", err)
	}
	defer m.close()
	rep := &report{Depth: o.depth, Anchors: m.c.Len(), GOMAXPROCS: runtime.GOMAXPROCS(0), SetupSecs: time.Since(start).Seconds(), DebounceMs: float64(xdsDebounce) / float64(time.Millisecond)}

	if o.cpuProfile != "" {
		stop, err := startCPUProfile(o.cpuProfile)
		if err != nil {
			return nil, err
		}
		err = measureUncached(ctx, m, o.resolves, rep)
		stop()
		if err != nil {
			return nil, err
		}
	} else if err := measureUncached(ctx, m, o.resolves, rep); err != nil {
		return nil, err
	}
	if err := measureVerified(ctx, m, max(o.resolves/4, 1), rep); err != nil {
		return nil, err
	}
	if err := measureCached(ctx, m, o.cached, rep); err != nil {
		return nil, err
	}
	if len(o.propDepths) > 0 && o.changes > 0 {
		res, err := measurePropagation(ctx, m, o.propDepths, o.changes, o.changeTimeout)
		if err != nil {
			return nil, fmt.Errorf("propagation: %w", err)
		}
		rep.Propagation = res
	}
	rep.TotalSecs = time.Since(start).Seconds()
	return rep, nil
}

func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
