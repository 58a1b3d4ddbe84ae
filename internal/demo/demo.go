package demo

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sort"
	"sync"
	"text/tabwriter"
	"time"

	"canton.dev/canton/examples/bookinfo"
	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/meshtest"
	"canton.dev/canton/internal/resource"
)

// Options configures the demo. Zero values are documented defaults.
type Options struct {
	Data string // data directory; "" = a temporary one, removed at exit
	// HTTP is anchor a1's HTTP address (dashboard, /healthz); "" = a free
	// port on 127.0.0.1.
	HTTP      string
	NoTraffic bool    // no background traffic (scenarios still send their own)
	Rate      float64 // background page requests per second; default 20
	// Scenario names Istio task flows to run once the mesh is up: one of
	// Scenarios, a comma-separated list, or "all"; "" = none.
	Scenario string
	// RatingsHTTP makes reviews v2/v3 call ratings with GET /ratings/<id>
	// (JSON over HTTP/1.1) instead of gRPC. false = gRPC: reviews' sidecar
	// sends it over mTLS HTTP/2, and ratings' sidecar hands it to the app as
	// h2c because every port of the ratings Service is protocol GRPC
	// (services.yaml).
	RatingsHTTP bool
	Out         io.Writer    // where the demo prints; default: discard
	Logger      *slog.Logger // anchors' and sidecars' logs; default: discard
	// Ready, when set, is called once the mesh serves pages (tests use it).
	// The Mesh is valid until Run returns.
	Ready func(m *Mesh)
	// Reported, when set, is called after each scenario of Scenario with
	// what Run printed for it: its report, or the error that stopped it
	// (tests use it).
	Reported func(r Report, err error)
}

const (
	scopeName       = "bookinfo"
	defaultRate     = 20
	jasonEvery      = 4 // every 4th background request is jason's
	trafficWorkers  = 32
	summaryWindow   = 5 * time.Second
	summaryInterval = time.Second
)

// Mesh is a running demo: anchors, the bookinfo scope, the sample services
// behind their sidecars and the traffic generator's client.
type Mesh struct {
	cluster   *meshtest.Cluster
	client    *api.Client
	namespace string // bookinfo.<mesh>
	fleet     *fleet
	loadgen   *instance
	load      *client
	rec       *recorder
	dashboard string
	// ratingsHTTP: reviews (and the circuit-breaking scenario) call ratings
	// with HTTP/JSON; otherwise with gRPC.
	ratingsHTTP bool
	// canarySamples overrides how many pages the canary scenario measures
	// (tests); 0 = canarySamples.
	canarySamples int
}

// Cluster is the mesh's anchors.
func (m *Mesh) Cluster() *meshtest.Cluster { return m.cluster }

// Namespace is the bookinfo namespace, e.g. bookinfo.demo.mesh.
func (m *Mesh) Namespace() string { return m.namespace }

// ProductPageURL is productpage's page for browsers: straight to the
// application (outside the mesh); its calls go through its sidecar.
func (m *Mesh) ProductPageURL() string {
	return "http://" + m.fleet.get(bookinfo.ProductPage, "").app.Addr() + "/productpage"
}

// Sample fetches n product pages as user ("" for none) through the traffic
// generator's sidecar, 8 at a time, and summarises them.
func (m *Mesh) Sample(ctx context.Context, n int, user string) Stats {
	return summarize(m.load.sample(ctx, n, user, 8, 400))
}

// Recent summarises the pages of the last d (background traffic and samples).
func (m *Mesh) Recent(d time.Duration) Stats { return summarize(m.rec.since(time.Now().Add(-d))) }

// Run starts the demo mesh and keeps it running until ctx ends, then shuts
// it down: the traffic stops, sidecars deregister and drain, applications
// and anchors stop.
func Run(ctx context.Context, opts Options) error {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Rate == 0 {
		opts.Rate = defaultRate
	}
	if opts.Rate < 0 || opts.Rate > 1000 {
		return fmt.Errorf("demo: --rate %v: must be 0..1000 requests per second", opts.Rate)
	}
	flows, err := parseScenarios(opts.Scenario)
	if err != nil {
		return err
	}
	dir := opts.Data
	if dir == "" {
		tmp, err := os.MkdirTemp("", "canton-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	start := time.Now()
	c, err := meshtest.Start(ctx, meshtest.Options{Dir: dir, TickInterval: 100 * time.Millisecond, RequestTimeout: 5 * time.Second, Logger: opts.Logger,
		HTTP: cmp.Or(opts.HTTP, "127.0.0.1:0")})
	if err != nil {
		return err
	}
	defer c.Close()
	httpAddr := c.Anchor(0).HTTPAddr()
	client, err := c.Client(0)
	if err != nil {
		return err
	}
	defer client.Close()

	wait, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := c.WaitScope(wait, c.Mesh()); err != nil {
		return err
	}
	domain := scopeName + "." + c.Mesh()
	if _, err := client.Get(wait, "Delegation", c.Mesh(), domain, ""); api.Code(err) != 0 {
		anchors := make([]string, c.Len())
		for i := range anchors {
			anchors[i] = c.Name(i)
		}
		if err := retry(wait, func() error { _, err := client.CreateScope(wait, domain, anchors); return err }); err != nil {
			return fmt.Errorf("demo: create scope %s: %w", domain, err)
		}
	}
	if err := c.WaitScope(wait, domain); err != nil {
		return err
	}
	objs, err := manifests(c.Mesh(), domain)
	if err != nil {
		return err
	}
	res, err := applyRetry(wait, client, objs)
	if err != nil {
		return fmt.Errorf("demo: apply the bookinfo sample: %w", err)
	}
	f, err := startFleet(wait, c, fleetOptions{namespace: domain, ratingsOverHTTP: opts.RatingsHTTP,
		leaseTTL: 10 * time.Second, drainTime: time.Second, logger: opts.Logger})
	if err != nil {
		return err
	}
	defer func() {
		t0 := time.Now()
		fmt.Fprintln(opts.Out, "stopping: sidecars deregister and drain, then the anchors stop")
		f.stop(opts.Logger)
		client.Close()
		if err := c.Close(); err != nil {
			opts.Logger.Warn("anchors stopped with an error", "err", err)
		}
		fmt.Fprintf(opts.Out, "stopped in %s: %d sidecars and %d apps, %d anchors\n",
			time.Since(t0).Round(time.Millisecond), len(f.instances), len(f.instances)-1, c.Len())
	}()
	rec := newRecorder(1 << 14)
	m := &Mesh{cluster: c, client: client, namespace: domain, fleet: f, loadgen: f.get(loadgen, ""), rec: rec, dashboard: httpAddr, ratingsHTTP: opts.RatingsHTTP}
	m.load = newClient(m.loadgen.w.Outbound(), rec)
	if err := m.waitServing(wait); err != nil {
		return err
	}
	printBanner(opts.Out, m, dir, len(res.Objects), time.Since(start), opts)
	if opts.Ready != nil {
		opts.Ready(m)
	}

	t := &terminal{w: opts.Out}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stop()
		wg.Wait()
		t.endLive()
	}()
	if !opts.NoTraffic {
		wg.Add(1)
		go func() { defer wg.Done(); m.load.generate(runCtx, opts.Rate, jasonEvery, trafficWorkers) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); m.live(runCtx, t) }()
	for _, sc := range flows {
		t.println(fmt.Sprintf("scenario %s: %s", sc.name, sc.summary))
		r, err := m.RunScenario(ctx, sc.name)
		switch {
		case err != nil && ctx.Err() != nil:
		case err != nil:
			t.println(fmt.Sprintf("  error: %v", err))
		default:
			t.println(formatReport(r))
		}
		if ctx.Err() != nil {
			break
		}
		if opts.Reported != nil {
			opts.Reported(r, err)
		}
	}
	<-ctx.Done()
	return nil
}

// waitServing waits until every sidecar has its configuration and a product
// page arrives complete through the mesh.
func (m *Mesh) waitServing(ctx context.Context) error {
	probe := newClient(m.loadgen.w.Outbound(), newRecorder(1)) // not part of the traffic summary
	defer probe.http.CloseIdleConnections()
	var last error
	for {
		if err := m.fleet.exited(); err != nil {
			return fmt.Errorf("demo: the sample does not serve: %w", err)
		}
		last = m.fleet.ready()
		if last == nil {
			r := probe.fetch(ctx, "")
			if r.OK() {
				return nil
			}
			last = fmt.Errorf("product page through the mesh: status %d %s %+v", r.Status, r.Err, r.Page)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("demo: the sample does not serve: %v: %w", last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// live prints the one-line traffic summary every second until ctx ends.
func (m *Mesh) live(ctx context.Context, t *terminal) {
	tick := time.NewTicker(summaryInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		t.setLive(summaryLine(m.rec.since(time.Now().Add(-summaryWindow)), summaryWindow))
	}
}

// summaryLine is the live line: requests/s, success rate, the split across
// reviews versions (all users, then jason's), latency.
func summaryLine(results []Result, window time.Duration) string {
	if len(results) == 0 {
		return "no requests in the last " + window.String()
	}
	all := summarize(results)
	var jason []Result
	for _, r := range results {
		if r.User == Jason {
			jason = append(jason, r)
		}
	}
	j := summarize(jason)
	line := fmt.Sprintf("%5.1f req/s  ok %5.1f%%  reviews v1 %3.0f%% v2 %3.0f%% v3 %3.0f%%",
		float64(all.Requests)/window.Seconds(), 100*all.SuccessRate(), 100*all.Share("v1"), 100*all.Share("v2"), 100*all.Share("v3"))
	if j.Requests > 0 {
		line += fmt.Sprintf("  jason: v1 %3.0f%% v2 %3.0f%% v3 %3.0f%%", 100*j.Share("v1"), 100*j.Share("v2"), 100*j.Share("v3"))
	}
	return line + fmt.Sprintf("  p50 %s p99 %s", all.Quantile(0.5).Round(100*time.Microsecond), all.Quantile(0.99).Round(100*time.Microsecond))
}

func formatReport(r Report) string {
	var b []byte
	b = fmt.Appendf(b, "  applied %v; the new behaviour showed after %s\n", r.Applied, r.Settled.Round(time.Millisecond))
	tw := tabwriter.NewWriter(&sliceWriter{&b}, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  \tCHECK\tEXPECTED\tMEASURED\t")
	for _, c := range r.Checks {
		mark := "ok"
		if !c.Pass {
			mark = "FAIL"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t\n", mark, c.What, c.Expected, c.Measured)
	}
	tw.Flush()
	return string(b[:len(b)-1])
}

type sliceWriter struct{ b *[]byte }

func (w *sliceWriter) Write(p []byte) (int, error) { *w.b = append(*w.b, p...); return len(p), nil }

// terminal prints lines above a live status line that is rewritten in place.
type terminal struct {
	mu   sync.Mutex
	w    io.Writer
	live string
}

func (t *terminal) clear() {
	if t.live != "" {
		fmt.Fprintf(t.w, "\r%*s\r", len([]rune(t.live)), "")
	}
}

func (t *terminal) setLive(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pad := len([]rune(t.live)) - len([]rune(s))
	fmt.Fprintf(t.w, "\r%s%*s", s, max(pad, 0), "")
	t.live = s
}

func (t *terminal) println(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.clear()
	fmt.Fprintln(t.w, s)
	if t.live != "" {
		fmt.Fprint(t.w, t.live)
	}
}

// endLive leaves the last live line on screen and moves below it.
func (t *terminal) endLive() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.live != "" {
		fmt.Fprintln(t.w)
		t.live = ""
	}
}

// manifests parses the sample's base YAML files in name order.
func manifests(mesh, defaultNS string) ([]resource.Object, error) {
	names, err := fs.Glob(bookinfo.Manifests, "*.yaml")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []resource.Object
	for _, n := range names {
		objs, err := parseFile(bookinfo.Manifests, n, mesh, defaultNS)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

func parseFile(fsys fs.FS, name, mesh, defaultNS string) ([]resource.Object, error) {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, err
	}
	return resource.Parse("examples/bookinfo/"+name, b, mesh, defaultNS)
}

// applyRetry applies objs, retrying while the new scope's replicas are still
// electing their first leader.
func applyRetry(ctx context.Context, c *api.Client, objs []resource.Object) (api.ApplyResult, error) {
	var res api.ApplyResult
	err := retry(ctx, func() error {
		var err error
		res, err = c.Apply(ctx, objs, false, nil)
		return err
	})
	return res, err
}

// retry calls f until it succeeds, fails for good, or ctx ends.
func retry(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil || !retryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func retryable(err error) bool {
	code := api.Code(err)
	return code == 14 /* Unavailable */ || code == 4 /* DeadlineExceeded */
}

func printBanner(w io.Writer, m *Mesh, dir string, applied int, took time.Duration, opts Options) {
	c := m.cluster
	fmt.Fprintf(w, "Canton demo: mesh %s is up (%s)\n\n", c.Mesh(), took.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ANCHOR\tADDRESS\tSCOPES\tDATA")
	for i := range c.Len() {
		fmt.Fprintf(tw, "%s\t%s\t%s, %s\t%s\n", c.Name(i), c.Addr(i), c.Mesh(), m.namespace, c.DataDir(i))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tAPP\tSIDECAR INBOUND (mTLS)\tSIDECAR OUTBOUND\tIDENTITY")
	for _, in := range m.fleet.instances {
		app, inbound := "-", "-"
		if in.app != nil {
			app, inbound = in.app.Addr(), in.w.Inbound()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\tspiffe://%s/sa/%s\n", in.name(), app, inbound, in.w.Outbound(), m.namespace, in.service)
	}
	tw.Flush()
	ratings := "gRPC (--ratings-http for HTTP/JSON)"
	if opts.RatingsHTTP {
		ratings = "HTTP/JSON"
	}
	fmt.Fprintf(w, "\nScope %s (anchors a1,a2,a3) holds the bookinfo sample: %d resources, every reviews request to v1.\n", m.namespace, applied)
	fmt.Fprintf(w, "Apps talk only through their sidecars (reviews v2/v3 → ratings over %s); sidecars talk mTLS.\n\n", ratings)
	fmt.Fprintf(w, "  product page  %s\n", m.ProductPageURL())
	fmt.Fprintf(w, "                (straight to the productpage app, outside the mesh; its calls go through its sidecar)\n")
	fmt.Fprintf(w, "  dashboard     http://%s/  (anchor a1's HTTP side)\n", m.dashboard)
	if opts.NoTraffic {
		fmt.Fprintf(w, "  traffic       none (--no-traffic)\n")
	} else {
		fmt.Fprintf(w, "  traffic       %g pages/s through loadgen's sidecar (mTLS to productpage), every %dth as end-user jason\n", opts.Rate, jasonEvery)
	}
	fmt.Fprintf(w, "\nUse the CLI from another terminal:\n\n")
	fmt.Fprintf(w, "  export CANTON_SERVER=%s CANTON_CREDENTIALS=%s\n", c.Addr(0), c.AdminCredentials())
	fmt.Fprintf(w, "  go run ./cmd/canton get workloads -n %s\n", scopeName)
	fmt.Fprintf(w, "  go run ./cmd/canton apply -f examples/bookinfo/scenarios/virtual-service-reviews-test-v2.yaml\n")
	fmt.Fprintf(w, "  go run ./cmd/canton lineage --scope %s --verify\n\n", scopeName)
	fmt.Fprintf(w, "Data: %s. Press Ctrl-C to stop.\n\n", dir)
}
