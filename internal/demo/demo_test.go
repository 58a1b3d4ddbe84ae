package demo

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is the demo's terminal in tests.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDemo runs the whole demo in process (three anchors, six services and
// the traffic generator, each behind its own sidecar) and checks, with
// numbers measured from the pages: the split under the base YAML
// (everything to v1) and under the jason rule; the other task flows (each
// check passes or names a known gap); the live summary; and that Ctrl-C
// (ctx) leaves no listener behind.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a whole mesh")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	ready := make(chan *Mesh, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Data: t.TempDir(), Out: &out, Rate: 20, Ready: func(m *Mesh) { ready <- m }})
	}()
	var m *Mesh
	select {
	case m = <-ready:
	case err := <-done:
		t.Fatalf("demo stopped: %v\n%s", err, out.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("demo not ready:\n%s", out.String())
	}
	// The canary measures canarySamples (1,000) pages, as the issue asks:
	// about 2 s here.
	tctx, tcancel := context.WithTimeout(ctx, 120*time.Second)
	defer tcancel()

	t.Run("route-all-v1", func(t *testing.T) {
		for _, user := range []string{"", Jason} {
			s := m.Sample(tctx, 100, user)
			if s.Requests != 100 || s.Versions["v1"] != 100 || s.OK != 100 {
				t.Errorf("user %q: %d requests, %d complete, versions %v, failures %v", user, s.Requests, s.OK, s.Versions, s.Failures)
			}
		}
		// The background generator is measured too, and sees the same.
		deadline := time.Now().Add(15 * time.Second)
		for m.Recent(time.Minute).Requests-200 < 20 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if bg := m.Recent(time.Minute); bg.Requests < 220 || bg.Versions["v1"] != bg.Requests {
			t.Errorf("background traffic: %d requests, versions %v, failures %v", bg.Requests, bg.Versions, bg.Failures)
			for _, r := range m.rec.since(time.Now().Add(-time.Minute)) {
				if !r.OK() {
					t.Logf("failed: %+v", r)
				}
			}
		}
	})
	t.Run("jason-to-v2", func(t *testing.T) {
		r, err := m.RunScenario(tctx, "routing")
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Checks) < 2 {
			t.Errorf("checks %v", r.Checks)
		}
		for _, c := range r.Checks {
			if !c.Pass {
				t.Errorf("%s: expected %s, measured %s", c.What, c.Expected, c.Measured)
			}
		}
		if s := m.Sample(tctx, 50, Jason); s.Versions["v2"] != 50 {
			t.Errorf("jason after the scenario: %v", s.Versions)
		}
	})
	// The other task flows: every check passes, or says why it cannot yet.
	for _, name := range []string{"canary", "fault", "circuit-breaking", "security"} {
		t.Run(name, func(t *testing.T) {
			r, err := m.RunScenario(tctx, name)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("settled after %s", r.Settled.Round(time.Millisecond))
			if name == "canary" {
				if len(r.Checks) == 0 || !strings.HasSuffix(r.Checks[0].Measured, fmt.Sprintf(" of %d", canarySamples)) || canarySamples < 1000 {
					t.Errorf("the canary split is not measured over %d ≥ 1000 pages: %+v", canarySamples, r.Checks)
				} else {
					t.Logf("%s: %s (expected %s)", r.Checks[0].What, r.Checks[0].Measured, r.Checks[0].Expected)
				}
			}
			for _, c := range r.Checks {
				switch {
				case !c.Pass && c.Note == "":
					t.Errorf("%s: expected %s, measured %s", c.What, c.Expected, c.Measured)
				case !c.Pass:
					t.Logf("%s: expected %s, measured %s: known gap: %s", c.What, c.Expected, c.Measured, c.Note)
				}
			}
		})
	}
	t.Run("reset", func(t *testing.T) {
		if err := m.Reset(tctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, func() bool { return m.Sample(tctx, 10, Jason).Versions["v1"] == 10 })
	})
	if !strings.Contains(out.String(), "req/s") {
		t.Errorf("no live summary line:\n%s", out.String())
	}

	var addrs []string
	for _, in := range m.fleet.instances {
		addrs = append(addrs, in.w.Outbound())
		if in.app != nil {
			addrs = append(addrs, in.app.Addr(), in.w.Inbound())
		}
	}
	for i := range m.cluster.Len() {
		addrs = append(addrs, m.cluster.Addr(i))
	}
	addrs = append(addrs, m.dashboard)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("demo did not stop within 15s")
	}
	for _, a := range addrs {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after the demo stopped", a)
		}
	}
	if !strings.Contains(out.String(), "stopping: sidecars deregister") {
		t.Errorf("no shutdown message:\n%s", out.String())
	}
}

func waitFor(t *testing.T, d time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestParseScenarios(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		err  bool
	}{
		{"", 0, false}, {"routing", 1, false}, {"all", len(Scenarios), false},
		{"canary,fault", 2, false}, {"nope", 0, true}, {"routing,", 0, true},
	} {
		got, err := parseScenarios(tc.in)
		if (err != nil) != tc.err || len(got) != tc.want {
			t.Errorf("parseScenarios(%q) = %d scenarios, %v", tc.in, len(got), err)
		}
	}
	for _, n := range Scenarios {
		if _, ok := scenarios[n]; !ok {
			t.Errorf("scenario %s listed but not defined", n)
		}
	}
}
