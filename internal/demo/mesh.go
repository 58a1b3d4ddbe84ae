package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"canton.dev/canton/examples/bookinfo"
	"canton.dev/canton/internal/meshtest"
	"canton.dev/canton/internal/workload"
)

// loadgen is the service name of the traffic generator's sidecar: a
// client-only workload of the bookinfo namespace.
const loadgen = "loadgen"

// instance is what runs for one workload: the application (nil for the
// traffic generator) and its sidecar.
type instance struct {
	service, version string
	app              *bookinfo.App
	w                *workload.Workload
	cancel           context.CancelFunc
	done             chan error // the sidecar's workload.Run result
}

// sample lists the workloads of the demo, in the order of the table.
var sample = []struct{ service, version string }{
	{bookinfo.ProductPage, "v1"},
	{bookinfo.Details, "v1"},
	{bookinfo.Reviews, "v1"},
	{bookinfo.Reviews, "v2"},
	{bookinfo.Reviews, "v3"},
	{bookinfo.Ratings, "v1"},
	{loadgen, ""},
}

// fleetOptions configures startFleet.
type fleetOptions struct {
	namespace       string // absolute, e.g. bookinfo.demo.mesh
	ratingsOverHTTP bool
	leaseTTL        time.Duration
	drainTime       time.Duration
	logger          *slog.Logger
}

// fleet is the sample application with one sidecar per workload.
type fleet struct {
	instances []*instance
}

// startFleet starts every sample service and its sidecar (in parallel) and
// returns once every sidecar is registered and its proxy runs. On error,
// whatever started is stopped.
func startFleet(ctx context.Context, c *meshtest.Cluster, opts fleetOptions) (*fleet, error) {
	tok, err := os.ReadFile(filepath.Join(c.DataDir(0), "join.token"))
	if err != nil {
		return nil, fmt.Errorf("demo: join token: %w", err)
	}
	anchors := make([]string, c.Len())
	for i := range anchors {
		anchors[i] = c.Addr(i)
	}
	f := &fleet{}
	errs := make([]error, len(sample))
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, s := range sample {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in, err := startInstance(ctx, s.service, s.version, anchors, string(tok), opts)
			if err != nil {
				errs[i] = err
				return
			}
			mu.Lock()
			f.instances = append(f.instances, in)
			mu.Unlock()
		}()
	}
	wg.Wait()
	// Keep the table's order.
	order := map[string]int{}
	for i, s := range sample {
		order[s.service+"/"+s.version] = i
	}
	slices.SortFunc(f.instances, func(a, b *instance) int {
		return order[a.service+"/"+a.version] - order[b.service+"/"+b.version]
	})
	if err := errors.Join(errs...); err != nil {
		f.stop(opts.logger)
		return nil, err
	}
	return f, nil
}

func startInstance(ctx context.Context, service, version string, anchors []string, token string, opts fleetOptions) (*instance, error) {
	in := &instance{service: service, version: version, done: make(chan error, 1)}
	appAddr := ""
	if service != loadgen {
		app, err := bookinfo.Start(bookinfo.Config{Service: service, Version: version, RatingsOverHTTP: opts.ratingsOverHTTP,
			Logger: opts.logger.With("app", service)})
		if err != nil {
			return nil, err
		}
		in.app, appAddr = app, app.Addr()
	}
	runCtx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	ready := make(chan *workload.Workload, 1)
	go func() {
		in.done <- workload.Run(runCtx, workload.Options{
			Service: service, Namespace: opts.namespace, Version: version, App: appAddr,
			Anchors: anchors, JoinToken: token, Admin: "127.0.0.1:0", LeaseTTL: opts.leaseTTL, DrainTime: opts.drainTime,
			Logger: opts.logger.With("sidecar", strings.Trim(service+"-"+version, "-")),
			Ready:  func(w *workload.Workload) { ready <- w },
		})
	}()
	fail := func(err error) (*instance, error) {
		cancel()
		if err := <-in.done; err != nil && !errors.Is(err, context.Canceled) {
			opts.logger.Debug("sidecar stopped", "service", service, "err", err)
		}
		if in.app != nil {
			in.app.Close()
		}
		return nil, fmt.Errorf("demo: sidecar of %s %s: %w", service, version, err)
	}
	select {
	case in.w = <-ready:
	case err := <-in.done:
		in.done <- err // for fail's receive
		return fail(err)
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	if in.app != nil {
		if err := in.app.SetOutbound(in.w.Outbound()); err != nil {
			return fail(err)
		}
	}
	return in, nil
}

func (in *instance) name() string { return strings.Trim(in.service+"-"+in.version, "-") }

// get returns the first instance of service (and version, if not empty).
func (f *fleet) get(service, version string) *instance {
	for _, in := range f.instances {
		if in.service == service && (version == "" || in.version == version) {
			return in
		}
	}
	return nil
}

// ready reports whether every proxy has the configuration it needs to serve.
func (f *fleet) ready() error {
	for _, in := range f.instances {
		if ok, why := in.w.Proxy().Ready(); !ok {
			return fmt.Errorf("sidecar %s: %s", in.name(), why)
		}
	}
	return nil
}

// exited returns why a sidecar of the fleet stopped on its own, nil while
// every one runs.
func (f *fleet) exited() error {
	for _, in := range f.instances {
		select {
		case err := <-in.done:
			in.done <- err // stop receives it again
			return fmt.Errorf("sidecar %s stopped: %v", in.name(), err)
		default:
		}
	}
	return nil
}

// stop shuts the fleet down: each sidecar deregisters (its lease is revoked,
// so callers stop picking it) and drains, then its application stops.
func (f *fleet) stop(log *slog.Logger) {
	var wg sync.WaitGroup
	for _, in := range f.instances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.cancel()
			if err := <-in.done; err != nil {
				log.Warn("sidecar stopped with an error", "sidecar", in.name(), "err", err)
			}
			if in.app != nil {
				if err := in.app.Close(); err != nil {
					log.Warn("app stopped with an error", "app", in.name(), "err", err)
				}
			}
		}()
	}
	wg.Wait()
}
