package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"canton.dev/canton/examples/bookinfo"
)

// chromiumPath is Debian's chromium. .ci/run installs it and sets
// CANTON_REQUIRE_CHROMIUM, which turns the skip without it into a failure.
const chromiumPath = "/usr/bin/chromium"

// screenshotDir is where TestDashboardInChromium leaves the pages as the
// browser drew them (ignored by git).
const screenshotDir = "testdata/output"

// TestDashboardInChromium drives headless Chromium against a running demo
// (three anchors, bookinfo behind its sidecars, background traffic at
// 20 pages/s): the overview's topology graph must show the bookinfo
// services; the dashboard must scrape every sidecar's admin listener and
// draw the calls between the services, each labelled with its rate, error
// rate, p99 latency and the mutual TLS lock; then, with the service page of
// reviews open, the 50/50 v1/v3 canary VirtualService is applied and the
// page must redraw the routing split from 100% v1 to 50% / 50% without
// being reloaded; back on the overview, reviews → ratings (gRPC) is drawn.
// Screenshots go to testdata/output.
func TestDashboardInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a whole mesh and a browser")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CANTON_REQUIRE_CHROMIUM") != "" { // .ci/run
			t.Fatalf("chromium not found at %s (CANTON_REQUIRE_CHROMIUM is set): %v", chromiumPath, err)
		}
		t.Skipf("chromium not found at %s: apt-get install chromium", chromiumPath)
	}
	start := time.Now()
	since := func() time.Duration { return time.Since(start).Round(time.Millisecond) }
	m, stop := startDemo(t, Options{Rate: 20})
	defer stop()
	t.Logf("demo up after %s", since())
	base := "http://" + m.dashboard

	// The browser. As root it needs --no-sandbox; the other flags keep it
	// from opening connections of its own (refused here). A fresh profile
	// per run.
	actx, acancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 1000),
	)...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	// Bound the whole browser session; the first Run starts the browser.
	go func() {
		select {
		case <-bctx.Done():
		case <-time.After(50 * time.Second):
			bcancel()
		}
	}()
	if err := chromedp.Do(bctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatalf("chromium: load %s/: %v", base, err)
	}
	t.Logf("chromium loaded the overview after %s", since())

	// The graph: a node per bookinfo service (from the scope's Services,
	// before any traffic is seen).
	ns := m.Namespace()
	wantNodes := []string{loadgen, bookinfo.ProductPage, bookinfo.Details, bookinfo.Reviews, bookinfo.Ratings}
	ov := waitDOM(t, bctx, "the topology graph's nodes", overviewJS, 15*time.Second, func(s overviewState) bool {
		for _, n := range wantNodes {
			if !slices.Contains(s.Nodes, n+"."+ns) {
				return false
			}
		}
		return len(s.Proxies) == len(sample)
	})
	t.Logf("graph nodes after %s: %v", since(), ov.Nodes)

	// Every sidecar has an admin listener (mesh.go), so the dashboard must
	// scrape them all.
	ov = waitDOM(t, bctx, "every proxy scraped", overviewJS, 15*time.Second, func(s overviewState) bool {
		return len(s.Proxies) == len(sample) && allEqual(s.Proxies, "scraped")
	})
	t.Logf("proxies scraped after %s", since())

	// The edges, with rates scraped from the proxies: each labelled with its
	// rate, error rate, p99 latency and the mutual TLS lock.
	edge := func(from, to string) string { return from + "." + ns + " → " + to + "." + ns }
	wantEdges := []string{edge(loadgen, bookinfo.ProductPage), edge(bookinfo.ProductPage, bookinfo.Details), edge(bookinfo.ProductPage, bookinfo.Reviews)}
	ov = waitDOM(t, bctx, "edges with scraped rates, error rates, p99 and mTLS", overviewJS, 20*time.Second, func(s overviewState) bool {
		for _, e := range wantEdges {
			if rps, ok := s.Rates[e]; !ok || rps <= 0 || !errRE.MatchString(s.ErrText[e]) || !p99RE.MatchString(s.P99Text[e]) || !s.Lock[e] {
				return false
			}
		}
		return true
	})
	for _, e := range wantEdges {
		t.Logf("edge %s: %s, %s, %s, mTLS lock %v", e, ov.RateText[e], ov.ErrText[e], ov.P99Text[e], ov.Lock[e])
	}
	// loadgen sends 20 pages/s; the graph's rate is measured over a few
	// scrapes, so only a wide band is checked.
	if rps := ov.Rates[wantEdges[0]]; rps < 5 || rps > 60 {
		t.Errorf("%s drawn at %v/s; the generator sends 20/s", wantEdges[0], rps)
	}
	// Every page is complete (TestDemo), so no edge may show errors.
	for _, e := range wantEdges {
		if txt := ov.ErrText[e]; txt != "0% err" {
			t.Errorf("%s drawn with error rate %q; every call succeeds", e, txt)
		}
	}
	if slices.Contains(ov.Edges, edge(bookinfo.Reviews, bookinfo.Ratings)) {
		t.Errorf("reviews → ratings drawn while every request goes to reviews v1 (which does not call ratings): %v", ov.Edges)
	}

	// The service page of reviews, reached from its node in the graph.
	if err := chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS(`svg.topology g.node a[href$="/reviews"]`)),
		chromedp.WaitVisible(chromedp.CSS(`ol.rules`)),
	); err != nil {
		t.Fatalf("chromium: open reviews from the graph: %v", err)
	}
	before := waitDOM(t, bctx, "the routing split under the base YAML", serviceJS, 10*time.Second, func(s serviceState) bool {
		return s.Heading == bookinfo.Reviews && slices.Equal(s.split(), []string{"v1 100% 100"})
	})
	t.Logf("reviews page at %s after %s: %v", before.URL, since(), before.split())
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[chromedp.Void](`window.cantonNoReload = true`)); err != nil {
		t.Fatal(err)
	}

	objs, err := parseFile(bookinfo.Scenarios, "scenarios/virtual-service-reviews-50-v3.yaml", m.cluster.Mesh(), m.namespace)
	if err != nil {
		t.Fatal(err)
	}
	actx2, acancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer acancel2()
	if _, err := applyRetry(actx2, m.client, objs); err != nil {
		t.Fatalf("apply the canary: %v", err)
	}
	applied := time.Now()
	after := waitDOM(t, bctx, "the canary split drawn", serviceJS, 15*time.Second, func(s serviceState) bool {
		return slices.Equal(s.split(), []string{"v1 50% 50", "v3 50% 50"})
	})
	t.Logf("split redrawn %s after the apply: %v", time.Since(applied).Round(time.Millisecond), after.split())
	if !after.NoReload {
		t.Errorf("the page was reloaded to show the new split; it should redraw in place")
	}
	if after.URL != before.URL {
		t.Errorf("the page moved from %s to %s", before.URL, after.URL)
	}
	screenshot(t, bctx, "dashboard-reviews.png")

	// Back on the overview: with v3 taking half the traffic, reviews now
	// calls ratings, and the graph grows that edge.
	if err := chromedp.Do(bctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatalf("chromium: load %s/: %v", base, err)
	}
	rr := edge(bookinfo.Reviews, bookinfo.Ratings)
	ov = waitDOM(t, bctx, "reviews → ratings drawn after the canary", overviewJS, 20*time.Second, func(s overviewState) bool {
		return s.Rates[rr] > 0 && p99RE.MatchString(s.P99Text[rr]) && s.Lock[rr]
	})
	t.Logf("reviews → ratings (gRPC) drawn after %s: %s, %s, %s, mTLS lock %v", since(), ov.RateText[rr], ov.ErrText[rr], ov.P99Text[rr], ov.Lock[rr])
	waitDOM(t, bctx, "the overview", overviewJS, 5*time.Second, func(s overviewState) bool { return len(s.Nodes) >= len(wantNodes) })
	screenshot(t, bctx, "dashboard.png")

	bcancel()
	acancel()
	stop()
	t.Logf("done after %s", since())
}

// startDemo runs the demo in process until stop is called (stop waits for
// it to shut down and fails the test if it does not within 15 s).
func startDemo(t *testing.T, opts Options) (*Mesh, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, logs syncBuffer
	ready := make(chan *Mesh, 1)
	done := make(chan error, 1)
	opts.Data, opts.Out = t.TempDir(), &out
	opts.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts.Ready = func(m *Mesh) { ready <- m }
	go func() { done <- Run(ctx, opts) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("demo: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("demo did not stop within 15s")
		}
	}
	select {
	case m := <-ready:
		return m, stop
	case err := <-done:
		cancel()
		t.Fatalf("demo stopped: %v\n%s", err, out.String())
	case <-time.After(30 * time.Second):
		stop()
		t.Fatalf("demo not ready:\n%s\nwarnings and errors:\n%s", out.String(), logs.String())
	}
	return nil, nil
}

// overviewState is what the overview page shows, read from its DOM.
type overviewState struct {
	Nodes    []string          `json:"nodes"`    // node titles: service IDs
	Edges    []string          `json:"edges"`    // edge titles: "from → to"
	RateText map[string]string `json:"rateText"` // edge title -> its drawn rate, e.g. "20/s"
	ErrText  map[string]string `json:"errText"`  // edge title -> its drawn error rate, e.g. "0% err"
	P99Text  map[string]string `json:"p99Text"`  // edge title -> its drawn p99, e.g. "p99 4.2 ms"
	Lock     map[string]bool   `json:"lock"`     // edge title -> the label shows the mutual TLS lock and the edge its mtls class
	// Proxies is the metrics column of the proxies table ("scraped", or
	// "not scraped: why").
	Proxies []string `json:"proxies"`
	Rates   map[string]float64
}

// The texts of an edge label's error rate and p99 (internal/dashboard
// views.go errText, p99Text).
var (
	errRE = regexp.MustCompile(`^(0|<0\.1|[0-9.]+)% err$`)
	p99RE = regexp.MustCompile(`^p99 [0-9.]+ (ms|s)$`)
)

const overviewJS = `(() => {
  const q = (s) => Array.from(document.querySelectorAll(s));
  const rateText = {}, errText = {}, p99Text = {}, lock = {};
  const mtlsEdges = new Set(q("svg.topology g.edge.mtls > title").map((e) => e.textContent.trim()));
  for (const e of q("svg.topology g.elabel tspan[data-live$=':rps']")) {
    const id = e.getAttribute("data-live").replace(/^e:/, "").replace(/:rps$/, "");
    const [from, to] = id.split(">");
    const title = from + " → " + to;
    const label = e.closest("g.elabel");
    const text = (key) => {
      const t = label.querySelector("tspan[data-live='e:" + id + ":" + key + "']");
      return t ? t.textContent.trim() : "";
    };
    rateText[title] = e.textContent.trim();
    errText[title] = text("err");
    p99Text[title] = text("p99");
    lock[title] = mtlsEdges.has(title) && label.querySelector("g.lock > title") !== null &&
      label.querySelector("g.lock > title").textContent.trim() === "mutual TLS";
  }
  let proxies = [];
  for (const s of q("main section.card")) {
    const h = s.querySelector("h2");
    if (h && h.textContent.trim().startsWith("Proxies")) {
      proxies = Array.from(s.querySelectorAll("tbody tr")).map((tr) => {
        const td = tr.lastElementChild, why = td.querySelector("[title]");
        return td.textContent.trim() + (why ? ": " + why.getAttribute("title") : "");
      });
    }
  }
  return {
    nodes: q("svg.topology g.node title").map((e) => e.textContent.trim()),
    edges: q("svg.topology g.edge > title").map((e) => e.textContent.trim()),
    rateText: rateText, errText: errText, p99Text: p99Text, lock: lock,
    proxies: proxies,
  };
})()`

var rateRE = regexp.MustCompile(`^([0-9.]+)(k?)/s$`)

func (s *overviewState) parse() {
	s.Rates = map[string]float64{}
	for e, txt := range s.RateText {
		if !slices.Contains(s.Edges, e) {
			continue
		}
		if m := rateRE.FindStringSubmatch(txt); m != nil {
			v, err := strconv.ParseFloat(m[1], 64)
			if err == nil && m[2] == "k" {
				v *= 1000
			}
			if err == nil {
				s.Rates[e] = v
			}
		}
	}
}

// serviceState is what a service page shows, read from its DOM.
type serviceState struct {
	URL      string `json:"url"`
	Heading  string `json:"heading"`
	NoReload bool   `json:"noReload"` // the marker set before the change is still there
	Rules    []struct {
		Legend []string  `json:"legend"` // "v1 50%" per split
		Bars   []float64 `json:"bars"`   // the widths of the split bar's parts, in percent
	} `json:"rules"`
}

const serviceJS = `(() => {
  const h1 = document.querySelector("main h1");
  return {
    url: location.href,
    heading: h1 ? h1.firstChild.textContent.trim() : "",
    noReload: window.cantonNoReload === true,
    rules: Array.from(document.querySelectorAll("ol.rules li.rule")).map((li) => ({
      legend: Array.from(li.querySelectorAll(".barlegend > span")).map((s) => s.textContent.replace(/\s+/g, " ").trim()),
      bars: Array.from(li.querySelectorAll("svg.bar rect")).map((r) => parseFloat(r.getAttribute("width"))),
    })),
  };
})()`

// split is the first routing rule as "legend width" per destination, e.g.
// ["v1 50% 50", "v3 50% 50"]; nil when the page shows no single rule with
// one bar part per destination.
func (s serviceState) split() []string {
	if len(s.Rules) != 1 || len(s.Rules[0].Legend) != len(s.Rules[0].Bars) {
		return nil
	}
	var out []string
	for i, l := range s.Rules[0].Legend {
		out = append(out, fmt.Sprintf("%s %g", l, s.Rules[0].Bars[i]))
	}
	return out
}

// waitDOM evaluates js in the page until ok holds for its result or timeout
// passes, polling every 100ms, and fails the test with the last state seen.
func waitDOM[T any](t *testing.T, ctx context.Context, what, js string, timeout time.Duration, ok func(T) bool) T {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last T
	var lastErr error
	for {
		raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](js))
		if err == nil {
			var v T
			if err = json.Unmarshal(raw, &v); err == nil {
				if p, isOV := any(&v).(*overviewState); isOV {
					p.parse()
				}
				last = v
				if ok(v) {
					return v
				}
			}
		}
		lastErr = err
		if ctx.Err() != nil || time.Now().After(deadline) {
			b, _ := json.MarshalIndent(last, "", "  ")
			t.Fatalf("%s: not within %s (last error %v); the page showed:\n%s", what, timeout, lastErr, b)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// screenshot saves the viewport's full page as a PNG under screenshotDir.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(screenshotDir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: internal/demo/%s (%d bytes)", p, len(png))
}

// allEqual reports whether xs is not empty and every element is v.
func allEqual(xs []string, v string) bool {
	for _, x := range xs {
		if x != v {
			return false
		}
	}
	return len(xs) > 0
}
