package proxy

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"canton.dev/canton/internal/xds"
)

// TestLocalityFailoverEndToEnd: productpage's proxy in us-east/zone-a, configured by internal/xds
// for a DestinationRule with locality failover and outlier detection, sends every request to the
// reviews workloads of its own zone while one of them is healthy; once both are ejected, to the
// other zone of its region; once that one is ejected too, to the other region.
func TestLocalityFailoverEndToEnd(t *testing.T) {
	type workload struct {
		name, region, zone string
		up                 *upstream
		failing            atomic.Bool
	}
	ws := []*workload{{name: "a1", region: "us-east", zone: "zone-a"}, {name: "a2", region: "us-east", zone: "zone-a"},
		{name: "b", region: "us-east", zone: "zone-b"}, {name: "west", region: "us-west", zone: "zone-a"}}
	c := &secCase{t: t, pki: testPKI(t), callers: map[string]string{}}
	objs := secMeshBase + `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  trafficPolicy:
    tls: {mode: DISABLE}
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 10m, maxEjectionPercent: 100}
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting: {enabled: true}
`
	for _, w := range ws {
		w.up = startUpstream(t, w.name, func(rw http.ResponseWriter, r *http.Request) {
			if w.failing.Load() {
				rw.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			fmt.Fprint(rw, w.name)
		})
		_, port, _ := net.SplitHostPort(w.up.Addr())
		objs += fmt.Sprintf(`---
apiVersion: canton.dev/v1
kind: Workload
metadata: {name: reviews-%s, namespace: bookinfo}
spec:
  service: reviews
  address: 127.0.0.1
  port: %s
  labels: {app: reviews, %s: %s, %s: %s}
  lease: 1
`, w.name, port, xds.LabelRegion, w.region, xds.LabelZone, w.zone)
	}
	c.objects = parseObjects(t, objs)
	caps := map[string]bool{}
	for _, f := range strings.Split(Capabilities, ",") {
		caps[f] = true
	}
	e := startEnv(t, func(o *Options) { o.NodeID = "productpage-1" })
	c.push(e, xds.Node{ID: "productpage-1", Service: "productpage", Namespace: secNamespace, OutboundPort: 15001, Capabilities: caps,
		Labels: map[string]string{"app": "productpage", xds.LabelRegion: "us-east", xds.LabelZone: "zone-a"}})
	addr := e.listenerAddr(xds.OutboundListenerName)

	// served sends n requests and returns which workload answered each time.
	served := func(n int) map[string]int {
		t.Helper()
		got := map[string]int{}
		for i := 0; i < n; i++ {
			code, body := do(t, addr, reviewsHost, "GET", "/")
			if code != http.StatusOK {
				t.Fatalf("request %d: %d %q", i, code, body)
			}
			got[body]++
		}
		return got
	}
	if got := served(40); got["a1"] == 0 || got["a2"] == 0 || got["a1"]+got["a2"] != 40 {
		t.Fatalf("all healthy: answered by %v, want a1 and a2 (the caller's zone) only", got)
	}

	// fail makes w answer 503 and returns a check that it received exactly one request since: the
	// one that ejected it (that request is retried on another host).
	fail := func(w *workload) func() {
		before := w.up.count.Load()
		w.failing.Store(true)
		return func() {
			t.Helper()
			if n := w.up.count.Load() - before; n != 1 {
				t.Errorf("%s received %d requests after it began to fail, want 1 (then ejected)", w.name, n)
			}
		}
	}
	// a1 fails: a2 of the same zone takes every request.
	var checks []func()
	checks = append(checks, fail(ws[0]))
	if got := served(40); got["a2"] != 40 {
		t.Fatalf("a1 failing: answered by %v, want a2 (the caller's zone, still healthy) only", got)
	}
	// The whole zone fails: the other zone of the region (priority 1), not the other region.
	checks = append(checks, fail(ws[1]))
	if got := served(40); got["b"] != 40 {
		t.Fatalf("zone-a failing: answered by %v, want b (same region, priority 1) only", got)
	}
	checks = append(checks, fail(ws[2]))
	if got := served(40); got["west"] != 40 {
		t.Fatalf("us-east failing: answered by %v, want west (other region, priority 2) only", got)
	}
	for _, check := range checks {
		check()
	}
}
