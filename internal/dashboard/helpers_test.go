package dashboard

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"canton.dev/canton/internal/resource"
	"canton.dev/canton/internal/scope"
	"canton.dev/canton/internal/telemetry"
)

// fakeSource is a Source over fixed data; every field may be changed
// between requests (under mu).
type fakeSource struct {
	mu       sync.Mutex
	mesh     string
	anchors  []Anchor
	scopes   []Scope
	objects  map[string][]resource.Object
	lineage  map[string][]scope.Record
	proxies  []Proxy
	failWith error // when set, every method but Mesh fails
}

func (s *fakeSource) Mesh() string { return s.mesh }

func (s *fakeSource) Anchors(ctx context.Context) ([]Anchor, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failWith != nil {
		return nil, s.failWith
	}
	return append([]Anchor(nil), s.anchors...), nil
}

func (s *fakeSource) Scopes(ctx context.Context) ([]Scope, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failWith != nil {
		return nil, s.failWith
	}
	return append([]Scope(nil), s.scopes...), nil
}

func (s *fakeSource) Objects(ctx context.Context, domain string) ([]resource.Object, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failWith != nil {
		return nil, s.failWith
	}
	return append([]resource.Object(nil), s.objects[domain]...), nil
}

func (s *fakeSource) Lineage(ctx context.Context, domain string, limit int) ([]scope.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failWith != nil {
		return nil, s.failWith
	}
	recs := s.lineage[domain]
	if limit > 0 && len(recs) > limit {
		recs = recs[len(recs)-limit:]
	}
	return append([]scope.Record(nil), recs...), nil
}

func (s *fakeSource) Proxies(ctx context.Context) ([]Proxy, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failWith != nil {
		return nil, s.failWith
	}
	return append([]Proxy(nil), s.proxies...), nil
}

func (s *fakeSource) setObject(domain string, o resource.Object) {
	s.mu.Lock()
	defer s.mu.Unlock()
	objs := s.objects[domain]
	for i, x := range objs {
		if x.Kind == o.Kind && x.Namespace == o.Namespace && x.Name == o.Name {
			objs[i] = o
			return
		}
	}
	s.objects[domain] = append(objs, o)
}

// parseObjects parses manifests of namespace bookinfo in mesh demo.mesh.
func parseObjects(t testing.TB, yaml string) []resource.Object {
	t.Helper()
	objs, err := resource.Parse("test.yaml", []byte(yaml), "demo.mesh", "bookinfo")
	if err != nil {
		t.Fatal(err)
	}
	for i := range objs {
		objs[i].Version = uint64(10 + i)
		objs[i].UID = fmt.Sprintf("uid-%d", i)
	}
	return objs
}

const bookinfoYAML = `
apiVersion: canton.dev/v1
kind: Service
metadata: {name: productpage, namespace: bookinfo}
spec: {ports: [{name: http, port: 9080, protocol: HTTP}]}
---
apiVersion: canton.dev/v1
kind: Service
metadata: {name: details, namespace: bookinfo}
spec: {ports: [{name: http, port: 9080}]}
---
apiVersion: canton.dev/v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec: {ports: [{name: http, port: 9080}]}
---
apiVersion: canton.dev/v1
kind: Service
metadata: {name: ratings, namespace: bookinfo}
spec: {ports: [{name: grpc, port: 9080, protocol: GRPC}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match:
    - headers: {end-user: {exact: jason}}
    fault: {delay: {fixedDelay: 7s, percentage: {value: 100}}}
    route:
    - destination: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 50
    - destination: {host: reviews, subset: v3}
      weight: 50
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: bookinfo}
spec:
  host: ratings
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 3m}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: bookinfo}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-viewer, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [spiffe://bookinfo.demo.mesh/sa/productpage]}}]
`

// workload returns a Workload object.
func workload(svc, version, addr string, port uint32, proxy string) resource.Object {
	spec, _ := json.Marshal(resource.WorkloadSpec{Service: svc, Address: addr, Port: port,
		Labels: map[string]string{"app": svc, "version": version}, Proxy: proxy, Lease: 7})
	return resource.Object{Kind: "Workload", Namespace: "bookinfo.demo.mesh", Name: proxy, Spec: spec, Version: 30}
}

// record builds a lineage record for m (hashes chained, not the scope's exact formula).
func record(t testing.TB, idx uint64, prev string, m scope.Mutation) scope.Record {
	t.Helper()
	b, err := scope.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(append([]byte(prev), b...))
	return scope.Record{Index: idx, Prev: prev, Hash: hex.EncodeToString(sum[:]), Mutation: b, Proposer: m.Proposer, Time: m.Time}
}

// newBookinfoSource returns the bookinfo mesh: anchors a1..a3 (a3
// unreachable when a3Down), the root scope and the bookinfo scope, the
// objects above, a short lineage, and proxies with the given admin addresses
// (by proxy ID; missing = no admin).
func newBookinfoSource(t testing.TB, a3Down bool, admins map[string]string) *fakeSource {
	t.Helper()
	objs := parseObjects(t, bookinfoYAML)
	wls := []resource.Object{
		workload("productpage", "v1", "127.0.0.1", 15001, "productpage-v1"),
		workload("details", "v1", "127.0.0.1", 15002, "details-v1"),
		workload("reviews", "v1", "127.0.0.1", 15003, "reviews-v1"),
		workload("reviews", "v2", "127.0.0.1", 15004, "reviews-v2"),
		workload("reviews", "v3", "127.0.0.1", 15005, "reviews-v3"),
		workload("ratings", "v1", "127.0.0.1", 15006, "ratings-v1"),
	}
	zero := strings.Repeat("0", 64)
	r1 := record(t, 3, zero, scope.Mutation{Op: scope.OpGenesis, Proposer: "anchor/a1",
		Genesis: &scope.Genesis{Domain: "bookinfo.demo.mesh", Incarnation: "0123abcd", Anchors: []string{"a1", "a2", "a3"}, Parent: "demo.mesh"}})
	// r1 is from before mutations carried a time; the others are stamped
	// (relative to newBookinfoTraffic's clock: 2 h ago, 2 min ago, and 4s
	// ahead of it, as from an anchor whose clock runs ahead).
	r2 := record(t, 9, r1.Hash, scope.Mutation{Op: scope.OpPut, Proposer: "spiffe://demo.mesh/admin/admin", Time: "2026-01-02T01:03:05.250Z", Objects: objs[:4]})
	r3 := record(t, 12, r2.Hash, scope.Mutation{Op: scope.OpPut, Proposer: "spiffe://demo.mesh/admin/admin", Time: "2026-01-02T03:01:35.000Z", Objects: objs[4:]})
	r4 := record(t, 15, r3.Hash, scope.Mutation{Op: scope.OpGrantLease, Proposer: "anchor/a2", Time: "2026-01-02T03:04:09.000Z", Lease: &scope.Lease{TTLSeconds: 10}})
	anchors := []Anchor{
		{ID: "a1", Address: "127.0.0.1:7001", Reachable: true, Scopes: []Replica{
			{Domain: "demo.mesh", Role: RoleLeader, Leader: "a1", Term: 2, Applied: 40, LineageHead: strings.Repeat("ab", 32)},
			{Domain: "bookinfo.demo.mesh", Role: RoleFollower, Leader: "a2", Term: 3, Applied: 15, LineageHead: r4.Hash}}},
		{ID: "a2", Address: "127.0.0.1:7002", Reachable: true, Scopes: []Replica{
			{Domain: "demo.mesh", Role: RoleFollower, Leader: "a1", Term: 2, Applied: 40},
			{Domain: "bookinfo.demo.mesh", Role: RoleLeader, Leader: "a2", Term: 3, Applied: 15, LineageHead: r4.Hash}}},
		{ID: "a3", Address: "127.0.0.1:7003", Reachable: true, Scopes: []Replica{
			{Domain: "demo.mesh", Role: RoleFollower, Leader: "a1", Term: 2, Applied: 40},
			{Domain: "bookinfo.demo.mesh", Role: RoleFollower, Leader: "a2", Term: 3, Applied: 15}}},
	}
	if a3Down {
		anchors[2] = Anchor{ID: "a3", Address: "127.0.0.1:7003", Error: "connection refused"}
	}
	var proxies []Proxy
	for _, w := range wls {
		var spec resource.WorkloadSpec
		json.Unmarshal(w.Spec, &spec)
		proxies = append(proxies, Proxy{ID: spec.Proxy, Service: spec.Service, Namespace: "bookinfo.demo.mesh", Labels: spec.Labels,
			Anchor: "a1", Acked: map[string]string{"lds": "3", "rds": "3", "cds": "3", "eds": "4"}, Admin: admins[spec.Proxy]})
	}
	return &fakeSource{
		mesh:    "demo.mesh",
		anchors: anchors,
		scopes: []Scope{
			{Domain: "demo.mesh", Anchors: []string{"a1", "a2", "a3"}, Leader: "a1", Revision: 40},
			{Domain: "bookinfo.demo.mesh", Parent: "demo.mesh", Anchors: []string{"a1", "a2", "a3"}, Leader: "a2", Revision: 15},
		},
		objects: map[string][]resource.Object{"bookinfo.demo.mesh": append(objs, wls...)},
		lineage: map[string][]scope.Record{"bookinfo.demo.mesh": {r1, r2, r3, r4}},
		proxies: proxies,
	}
}

// fakeProxy is an admin endpoint serving Istio metrics from a real
// telemetry.Reporter.
type fakeProxy struct {
	rep *telemetry.Reporter
	srv *httptest.Server
}

func newFakeProxy(t testing.TB) *fakeProxy {
	t.Helper()
	p := &fakeProxy{rep: telemetry.NewReporter()}
	mux := http.NewServeMux()
	mux.Handle("/stats/prometheus", p.rep.Handler())
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *fakeProxy) addr() string { return strings.TrimPrefix(p.srv.URL, "http://") }

// outbound records n client-side requests to svc (subset) with the given code and latency.
func (p *fakeProxy) outbound(svc, subset string, n, code int, dur time.Duration) {
	l := p.rep.Intern(telemetry.Labels{Reporter: telemetry.ReporterSource, RequestProtocol: telemetry.ProtocolHTTP,
		ConnectionSecurityPolicy: telemetry.SecurityUnknown, DestinationCluster: "outbound|9080|" + subset + "|" + svc + ".bookinfo.demo.mesh",
		DestinationService: svc + ".bookinfo.demo.mesh", DestinationServiceName: svc, DestinationServiceNamespace: "bookinfo.demo.mesh"})
	for i := 0; i < n; i++ {
		p.rep.HTTP(l, code, telemetry.NoGRPCStatus, dur, 100, 1000, "-")
	}
}

// inbound records n server-side requests from caller (a service of bookinfo, "" = no identity).
func (p *fakeProxy) inbound(self, caller string, mtls bool, n, code int, dur time.Duration) {
	l := telemetry.Labels{Reporter: telemetry.ReporterDestination, RequestProtocol: telemetry.ProtocolHTTP,
		ConnectionSecurityPolicy: telemetry.SecurityNone, DestinationService: self + ".bookinfo.demo.mesh",
		DestinationServiceName: self, DestinationServiceNamespace: "bookinfo.demo.mesh"}
	if mtls {
		l.ConnectionSecurityPolicy = telemetry.SecurityMutualTLS
	}
	if caller != "" {
		l.SourcePrincipal = "spiffe://bookinfo.demo.mesh/sa/" + caller
	}
	il := p.rep.Intern(l)
	for i := 0; i < n; i++ {
		p.rep.HTTP(il, code, telemetry.NoGRPCStatus, dur, 100, 1000, "-")
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// get fetches path from h and returns status and body.
func get(t testing.TB, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

var errFake = errors.New("fake source: unavailable")

// bookinfoTraffic is a running bookinfo mesh's telemetry: one fake proxy per
// workload, a traffic pattern recorded in rounds, and a dashboard over it.
type bookinfoTraffic struct {
	src     *fakeSource
	clock   *fakeClock
	h       http.Handler
	proxies map[string]*fakeProxy
}

func newBookinfoTraffic(t testing.TB) *bookinfoTraffic {
	t.Helper()
	b := &bookinfoTraffic{clock: &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, proxies: map[string]*fakeProxy{}}
	admins := map[string]string{}
	for _, id := range []string{"productpage-v1", "details-v1", "reviews-v1", "reviews-v2", "reviews-v3", "ratings-v1"} {
		b.proxies[id] = newFakeProxy(t)
		admins[id] = b.proxies[id].addr()
	}
	b.src = newBookinfoSource(t, false, admins)
	b.h = New(b.src, Options{Now: b.clock.now, ScrapeInterval: time.Second, RateWindow: time.Minute})
	return b
}

// round records one second's worth of bookinfo traffic (scaled by n).
func (b *bookinfoTraffic) round(n int) {
	pp := b.proxies["productpage-v1"]
	pp.inbound("productpage", "", false, 10*n, 200, 30*time.Millisecond)
	pp.outbound("details", "", 10*n, 200, 3*time.Millisecond)
	pp.outbound("reviews", "v1", 5*n, 200, 8*time.Millisecond)
	pp.outbound("reviews", "v3", 4*n, 200, 20*time.Millisecond)
	pp.outbound("reviews", "v3", 1*n, 503, 20*time.Millisecond)
	b.proxies["details-v1"].inbound("details", "productpage", true, 10*n, 200, 2*time.Millisecond)
	b.proxies["reviews-v1"].inbound("reviews", "productpage", true, 5*n, 200, 7*time.Millisecond)
	b.proxies["reviews-v3"].inbound("reviews", "productpage", true, 5*n, 200, 18*time.Millisecond)
	b.proxies["reviews-v3"].outbound("ratings", "", 5*n, 200, 4*time.Millisecond)
	b.proxies["ratings-v1"].inbound("ratings", "reviews", true, 5*n, 200, 3*time.Millisecond)
}
