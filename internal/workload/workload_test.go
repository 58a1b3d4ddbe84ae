package workload_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/meshtest"
	"canton.dev/canton/internal/resource"
	"canton.dev/canton/internal/workload"
)

const ns = "bookinfo.demo.mesh"

// app is a sample service answering its name on 127.0.0.1.
func app(t *testing.T, body string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

type sidecar struct {
	w      *workload.Workload
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func startSidecar(t *testing.T, c *meshtest.Cluster, service, version, appAddr string) *sidecar {
	t.Helper()
	var all []int
	for i := range c.Len() {
		all = append(all, i)
	}
	return startSidecarIn(t, c, ns, all, service, version, appAddr)
}

// startSidecarIn starts a sidecar in namespace ns talking to the given anchors.
func startSidecarIn(t *testing.T, c *meshtest.Cluster, ns string, anchorIdx []int, service, version, appAddr string) *sidecar {
	t.Helper()
	return startSidecarWith(t, c, ns, anchorIdx, service, version, appAddr, nil)
}

// startSidecarWith is startSidecarIn with the workload's options adjusted by
// adjust (when not nil) before it starts.
func startSidecarWith(t *testing.T, c *meshtest.Cluster, ns string, anchorIdx []int, service, version, appAddr string, adjust func(*workload.Options)) *sidecar {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(c.DataDir(0), "join.token"))
	if err != nil {
		t.Fatal(err)
	}
	var anchors []string
	for _, i := range anchorIdx {
		anchors = append(anchors, c.Addr(i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *workload.Workload, 1)
	s := &sidecar{cancel: cancel, done: make(chan error, 1)}
	opts := workload.Options{
		Service: service, Namespace: ns, Version: version, App: appAddr,
		Anchors: anchors, JoinToken: string(tok), LeaseTTL: 2 * time.Second, DrainTime: 200 * time.Millisecond,
		Ready: func(w *workload.Workload) { ready <- w }, Logger: testLogger(),
	}
	if adjust != nil {
		adjust(&opts)
	}
	go func() { s.done <- workload.Run(ctx, opts) }()
	select {
	case s.w = <-ready:
	case err := <-s.done:
		t.Fatalf("sidecar %s %s: %v", service, version, err)
	case <-time.After(20 * time.Second):
		t.Fatalf("sidecar %s %s not ready", service, version)
	}
	t.Cleanup(s.stop)
	return s
}

func (s *sidecar) stop() {
	s.once.Do(func() {
		s.cancel()
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
		}
	})
}

func apply(t *testing.T, cl *api.Client, yaml string) {
	t.Helper()
	objs, err := resource.Parse("test.yaml", []byte(yaml), "demo.mesh", ns)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cl.Apply(ctx, objs, false, nil); err != nil {
		t.Fatal(err)
	}
}

// fetch sends n requests for host through a sidecar's outbound listener and
// counts the bodies.
func fetch(t *testing.T, via *sidecar, host string, n int) map[string]int {
	t.Helper()
	out := map[string]int{}
	client := &http.Client{Timeout: 5 * time.Second}
	for range n {
		req, _ := http.NewRequest("GET", "http://"+via.w.Outbound()+"/reviews/1", nil)
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			out["error: "+err.Error()]++
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			out[fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))]++
			continue
		}
		out[string(b)]++
	}
	return out
}

func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const services = `apiVersion: canton.dev/v1
kind: Service
metadata: {name: reviews}
spec:
  ports: [{name: http, port: 9080, protocol: HTTP}]
---
apiVersion: canton.dev/v1
kind: Service
metadata: {name: productpage}
spec:
  ports: [{name: http, port: 9080, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`

func routeTo(subset string) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: %s}
`, subset)
}

// TestMeshTrafficFollowsIstioYAML runs three anchors, sidecars for reviews
// v1 and v2 and productpage, and checks that traffic from productpage's
// sidecar over mTLS to the reviews sidecars follows the VirtualService, that
// a change under load fails no request, and that a sidecar shutting down
// leaves the endpoints at once.
func TestMeshTrafficFollowsIstioYAML(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, cl := startBookinfo(ctx, t)

	v1 := startSidecar(t, c, "reviews", "v1", app(t, "reviews-v1"))
	v2 := startSidecar(t, c, "reviews", "v2", app(t, "reviews-v2"))
	pp := startSidecar(t, c, "productpage", "v1", app(t, "productpage"))

	eventually(t, 15*time.Second, func() error {
		if got := fetch(t, pp, "reviews:9080", 10); got["reviews-v1"] != 10 {
			return fmt.Errorf("route-all-v1: %v", got)
		}
		return nil
	})

	// The path above crossed mTLS: reviews' inbound refuses plaintext.
	if resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + v1.w.Inbound() + "/"); err == nil {
		resp.Body.Close()
		t.Fatalf("reviews' inbound answered plaintext HTTP with %s", resp.Status)
	}

	// A dry run of the change shows productpage's proxy which route would change, and commits nothing.
	objs, err := resource.Parse("vs.yaml", []byte(routeTo("v2")), "demo.mesh", ns)
	if err != nil {
		t.Fatal(err)
	}
	var routeDiff string
	for i := range c.Len() {
		ac, err := c.Client(i)
		if err != nil {
			t.Fatal(err)
		}
		res, err := ac.Apply(ctx, objs, true, nil)
		ac.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range res.ProxyDiffs {
			if strings.HasPrefix(d.Proxy, "productpage") {
				for _, ch := range d.Changes {
					if ch.Type == "RouteConfiguration" && ch.Change == "modified" {
						routeDiff = ch.Diff
					}
				}
			}
		}
	}
	if !strings.Contains(routeDiff, "+ ") || !strings.Contains(routeDiff, "v2|reviews") {
		t.Fatalf("dry run: productpage's route diff %q does not show the v2 cluster", routeDiff)
	}
	if got := fetch(t, pp, "reviews:9080", 5); got["reviews-v1"] != 5 {
		t.Fatalf("the dry run changed traffic: %v", got)
	}

	// Change the route under load: every request answers, first v1 then v2.
	var mu sync.Mutex
	failures := map[string]int{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for body, n := range fetch(t, pp, "reviews:9080", 5) {
				if body != "reviews-v1" && body != "reviews-v2" {
					mu.Lock()
					failures[body] += n
					mu.Unlock()
				}
			}
		}
	}()
	apply(t, cl, routeTo("v2"))
	eventually(t, 10*time.Second, func() error {
		if got := fetch(t, pp, "reviews:9080", 10); got["reviews-v2"] != 10 {
			return fmt.Errorf("after switching to v2: %v", got)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("requests failed while the route changed: %v", failures)
	}

	// The v2 sidecar shuts down cleanly: its Workload is gone at once.
	v2.stop()
	eventually(t, 3*time.Second, func() error {
		res, err := cl.Get(ctx, "Workload", ns, "", "")
		if err != nil {
			return err
		}
		for _, o := range res.Objects {
			if strings.Contains(o.Name, "reviews-v2") {
				return fmt.Errorf("workload %s still registered", o.Name)
			}
		}
		return nil
	})
}

func testLogger() *slog.Logger {
	if os.Getenv("CANTON_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestSidecarsSurviveAnchorLoss: a proxy whose anchor dies reconnects to
// another and keeps receiving updates; with every anchor down, traffic keeps
// flowing on the last configuration (static stability).
func TestSidecarsSurviveAnchorLoss(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, _ := startBookinfo(ctx, t)
	startSidecar(t, c, "reviews", "v1", app(t, "reviews-v1"))
	startSidecar(t, c, "reviews", "v2", app(t, "reviews-v2"))
	pp := startSidecar(t, c, "productpage", "v1", app(t, "productpage"))
	eventually(t, 15*time.Second, func() error {
		if got := fetch(t, pp, "reviews:9080", 5); got["reviews-v1"] != 5 {
			return fmt.Errorf("route-all-v1: %v", got)
		}
		return nil
	})

	// Stop the anchor productpage's proxy streams from.
	var served int = -1
	for i := range c.Len() {
		st, err := statusOf(ctx, c, i)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range st.Proxies {
			if p.Service == "productpage" {
				served = i
			}
		}
	}
	if served < 0 {
		t.Fatal("no anchor reports productpage's proxy")
	}
	if err := c.Stop(served); err != nil {
		t.Fatal(err)
	}
	other, err := c.Client((served + 1) % c.Len())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	eventually(t, 10*time.Second, func() error {
		objs, err := resource.Parse("vs.yaml", []byte(routeTo("v2")), "demo.mesh", ns)
		if err != nil {
			return err
		}
		_, err = other.Apply(ctx, objs, false, nil)
		return err
	})
	eventually(t, 15*time.Second, func() error {
		if got := fetch(t, pp, "reviews:9080", 5); got["reviews-v2"] != 5 {
			return fmt.Errorf("after anchor %s died and the route changed: %v", c.Name(served), got)
		}
		return nil
	})

	// Every anchor down: the data plane keeps its last configuration.
	for i := range c.Len() {
		c.Stop(i)
	}
	for range 3 {
		if got := fetch(t, pp, "reviews:9080", 5); got["reviews-v2"] != 5 {
			t.Fatalf("with every anchor down: %v", got)
		}
		time.Sleep(300 * time.Millisecond) // several xDS reconnect attempts fail meanwhile
	}
	if ready, why := pp.w.Proxy().Ready(); !strings.Contains(why, "stale") {
		t.Errorf("proxy readiness with no anchor: %v %q, want it to say stale", ready, why)
	}
}

func statusOf(ctx context.Context, c *meshtest.Cluster, i int) (*apipb.StatusResponse, error) {
	cl, err := c.Client(i)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	return cl.Status(ctx)
}

// cartForWeb is scope shop's cart service, exported to scope web; frontendService is web's
// frontend. Cross-scope tests apply them in their namespaces.
const (
	cartForWeb = `apiVersion: canton.dev/v1
kind: Service
metadata: {name: cart}
spec:
  ports: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: canton.dev/v1
kind: Export
metadata: {name: cart-to-web}
spec: {services: [cart], to: [web.demo.mesh]}
`
	frontendService = `apiVersion: canton.dev/v1
kind: Service
metadata: {name: frontend}
spec:
  ports: [{name: http, port: 8080, protocol: HTTP}]
`
)

// TestCrossScopeTrafficSurvivesRootAndCalleeLoss: a proxy in scope web calls
// a service of scope shop (imported by web's anchor through resolution and a
// watch); the traffic goes on when the root scope loses quorum and when
// shop's only anchor dies (web serves shop's last endpoints, stale).
func TestCrossScopeTrafficSurvivesRootAndCalleeLoss(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const web, shop = "web.demo.mesh", "shop.demo.mesh"
	c, _, applyIn := startScopes(ctx, t, meshtest.Options{Anchors: 5, RootVoters: 3}, map[string]string{web: "a4", shop: "a5"})
	applyIn(shop, cartForWeb)
	applyIn(web, frontendService+`---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cart}
spec:
  hosts: [cart.shop.demo.mesh]
  http:
  - route:
    - destination: {host: cart.shop.demo.mesh}
`)
	startSidecarIn(t, c, shop, []int{4}, "cart", "v1", app(t, "cart"))
	front := startSidecarIn(t, c, web, []int{3}, "frontend", "v1", app(t, "frontend"))
	call := func() map[string]int { return fetch(t, front, "cart.shop.demo.mesh:8080", 5) }
	eventually(t, 20*time.Second, func() error {
		if got := call(); got["cart"] != 5 {
			return fmt.Errorf("web -> shop: %v", got)
		}
		return nil
	})
	// The root scope loses quorum: nothing between web and shop needs it.
	for i := range 3 {
		c.Stop(i)
	}
	if got := call(); got["cart"] != 5 {
		t.Fatalf("with the root scope down: %v", got)
	}
	// shop's only anchor dies: web keeps shop's last answer (stale).
	c.Stop(4)
	for range 3 {
		if got := call(); got["cart"] != 5 {
			t.Fatalf("with the callee scope down: %v", got)
		}
		time.Sleep(200 * time.Millisecond) // web's importer retries meanwhile
	}
}

// TestCrossScopeImportNeedsAnExport: scope shop exports orders to web but not
// cart. web's anchors resolve cart as web and get a negative answer, so
// web's proxies get no route to it, while orders flows; the admin (no
// importing scope) still resolves cart. Exporting cart (one of its two
// ports) lets traffic through with only that port in the answer; deleting
// the Export takes the route away again.
func TestCrossScopeImportNeedsAnExport(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const web, shop = "web.demo.mesh", "shop.demo.mesh"
	c, cl, applyIn := startScopes(ctx, t, meshtest.Options{Anchors: 3, RootVoters: 1}, map[string]string{web: "a2", shop: "a3"})
	applyIn(shop, `apiVersion: canton.dev/v1
kind: Service
metadata: {name: cart}
spec:
  ports: [{name: http, port: 8080, protocol: HTTP}, {name: admin, port: 9090, protocol: HTTP}]
---
apiVersion: canton.dev/v1
kind: Service
metadata: {name: orders}
spec:
  ports: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: canton.dev/v1
kind: Export
metadata: {name: orders}
spec: {services: [orders], to: [web.demo.mesh]}
`)
	applyIn(web, `apiVersion: canton.dev/v1
kind: Service
metadata: {name: frontend}
spec:
  ports: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cart}
spec:
  hosts: [cart.shop.demo.mesh]
  http:
  - route:
    - destination: {host: cart.shop.demo.mesh}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: orders}
spec:
  hosts: [orders.shop.demo.mesh]
  http:
  - route:
    - destination: {host: orders.shop.demo.mesh}
`)
	startSidecarIn(t, c, shop, []int{2}, "cart", "v1", app(t, "cart"))
	startSidecarIn(t, c, shop, []int{2}, "orders", "v1", app(t, "orders"))
	front := startSidecarIn(t, c, web, []int{1}, "frontend", "v1", app(t, "frontend"))

	resolveAs := func(from, name string) *apipb.ResolveResponse {
		t.Helper()
		resp, err := cl.Raw().Resolve(ctx, &apipb.ResolveRequest{Name: name, FromScope: from})
		if err != nil {
			t.Fatalf("resolve %s from %q: %v", name, from, err)
		}
		return resp
	}
	if r := resolveAs(web, "cart.shop.demo.mesh"); r.Found || r.Scope != shop || r.Reason != "not exported to web.demo.mesh" {
		t.Fatalf("cart resolved from web without an Export: found %v, scope %s, reason %q", r.Found, r.Scope, r.Reason)
	}
	if r := resolveAs("", "cart.shop.demo.mesh"); !r.Found {
		t.Fatalf("the admin does not see cart: %+v", r)
	}
	if r := resolveAs(shop, "cart.shop.demo.mesh"); !r.Found {
		t.Fatalf("cart's own scope does not see it: %+v", r)
	}
	// A workload asking directly resolves as its own scope, whatever it claims.
	for _, tc := range []struct {
		ns, claim string
		anchor    int
		found     bool
	}{
		{web, "", 1, false}, {web, shop, 1, false}, {web, "", 0, false}, {shop, web, 2, true},
	} {
		r := resolveAsWorkload(ctx, t, c, tc.anchor, tc.ns, tc.claim, "cart.shop.demo.mesh")
		if r.Found != tc.found {
			t.Fatalf("a workload of %s claiming %q asks %s: found %v (%s), want %v", tc.ns, tc.claim, c.Name(tc.anchor), r.Found, r.Reason, tc.found)
		}
	}

	// orders (exported) flows; both names were imported by the same sync,
	// and cart still has no route.
	eventually(t, 20*time.Second, func() error {
		if got := fetch(t, front, "orders.shop.demo.mesh:8080", 3); got["orders"] != 3 {
			return fmt.Errorf("web -> orders: %v", got)
		}
		return nil
	})
	for range 3 {
		if got := fetch(t, front, "cart.shop.demo.mesh:8080", 3); got["cart"] != 0 {
			r := resolveAs(web, "cart.shop.demo.mesh")
			t.Fatalf("web reached cart, which shop does not export to it: %v (cart resolved from web now: found %v, reason %q)", got, r.Found, r.Reason)
		}
	}

	// Export cart's http port only.
	applyIn(shop, `apiVersion: canton.dev/v1
kind: Export
metadata: {name: cart}
spec: {services: [cart], to: [web.demo.mesh], ports: [http]}
`)
	r := resolveAs(web, "cart.shop.demo.mesh")
	var svc resource.Object
	if err := json.Unmarshal(r.Service, &svc); err != nil || !r.Found {
		t.Fatalf("cart from web after the Export: found %v, %v", r.Found, err)
	}
	if got := string(svc.Spec); strings.Contains(got, "admin") || !strings.Contains(got, `"name":"http"`) {
		t.Fatalf("cart's answer to web shows ports %s, want only http", got)
	}
	eventually(t, 20*time.Second, func() error {
		if got := fetch(t, front, "cart.shop.demo.mesh:8080", 3); got["cart"] != 3 {
			return fmt.Errorf("web -> cart after the Export: %v", got)
		}
		return nil
	})

	// Withdraw the export: web's proxies lose the route.
	if _, err := cl.Delete(ctx, "Export", shop, "cart", nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		if got := fetch(t, front, "cart.shop.demo.mesh:8080", 3); got["cart"] != 0 {
			return fmt.Errorf("web still reaches cart after the Export was deleted: %v", got)
		}
		return nil
	})
}

// resolveAsWorkload resolves name on anchor i with the credentials of a
// workload of namespace ns, claiming to ask from scope claim.
func resolveAsWorkload(ctx context.Context, t *testing.T, c *meshtest.Cluster, i int, ns, claim, name string) *apipb.ResolveResponse {
	t.Helper()
	ca, err := identity.LoadCA(c.DataDir(0))
	if err != nil {
		t.Fatal(err)
	}
	creds, err := ca.NewCredentials(identity.WorkloadID(ns, "probe"), time.Hour, time.Now(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(c.Addr(i), grpc.WithTransportCredentials(credentials.NewTLS(identity.ClientTLS(creds, identity.AcceptAnchors(c.Mesh())))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := apipb.NewAnchorClient(conn).Resolve(ctx, &apipb.ResolveRequest{Name: name, FromScope: claim})
	if err != nil {
		t.Fatalf("resolve %s as a workload of %s on %s: %v", name, ns, c.Name(i), err)
	}
	return resp
}

// startBookinfo starts three anchors, delegates the bookinfo scope to them
// and applies the services, the reviews subsets and route-all-v1.
func startBookinfo(ctx context.Context, t *testing.T) (*meshtest.Cluster, *api.Client) {
	t.Helper()
	c, err := meshtest.Start(ctx, meshtest.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.WaitScope(ctx, "demo.mesh"); err != nil {
		t.Fatal(err)
	}
	cl, err := c.Client(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	if _, err := cl.CreateScope(ctx, ns, []string{"a1", "a2", "a3"}); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitScope(ctx, ns); err != nil {
		t.Fatal(err)
	}
	apply(t, cl, services)
	apply(t, cl, routeTo("v1"))
	return c, cl
}

// startScopes starts a mesh with opts, delegates each scope to its one
// anchor, and returns an admin client and a function that applies YAML in a
// namespace (retrying while scopes settle).
func startScopes(ctx context.Context, t *testing.T, opts meshtest.Options, scopes map[string]string) (*meshtest.Cluster, *api.Client, func(namespace, yaml string)) {
	t.Helper()
	var tree []scopeOn
	for domain, anchor := range scopes {
		tree = append(tree, scopeOn{domain, []string{anchor}})
	}
	// Parents before their children.
	slices.SortFunc(tree, func(a, b scopeOn) int {
		return cmp.Or(cmp.Compare(strings.Count(a.domain, "."), strings.Count(b.domain, ".")), cmp.Compare(a.domain, b.domain))
	})
	return startScopeTree(ctx, t, opts, tree)
}

// scopeOn is a scope and the anchors (by name, "a4") that replicate it.
type scopeOn struct {
	domain  string
	anchors []string
}

// startScopeTree starts a mesh with opts, delegates the scopes of tree in
// order (a parent before its children) to their anchors, and returns an admin
// client and a function that applies YAML in a namespace (retrying while
// scopes settle).
func startScopeTree(ctx context.Context, t *testing.T, opts meshtest.Options, tree []scopeOn) (*meshtest.Cluster, *api.Client, func(namespace, yaml string)) {
	t.Helper()
	opts.Dir = t.TempDir()
	if opts.Logger == nil {
		opts.Logger = testLogger()
	}
	c, err := meshtest.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.WaitScope(ctx, "demo.mesh"); err != nil {
		t.Fatal(err)
	}
	cl, err := c.Client(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	for _, s := range tree {
		// A child scope is a mutation of its parent, whose anchors may still be
		// learning the child's anchors' addresses: retry until it is committed.
		eventually(t, 15*time.Second, func() error {
			_, err := cl.CreateScope(ctx, s.domain, s.anchors)
			if err != nil && strings.Contains(err.Error(), "exists") { // an earlier try was committed after all
				return nil
			}
			return err
		})
		if err := c.WaitScope(ctx, s.domain); err != nil {
			t.Fatal(err)
		}
	}
	applyIn := func(namespace, yaml string) {
		t.Helper()
		objs, err := resource.Parse("x.yaml", []byte(yaml), "demo.mesh", namespace)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, func() error { _, err := cl.Apply(ctx, objs, false, nil); return err })
	}
	return c, cl, applyIn
}
