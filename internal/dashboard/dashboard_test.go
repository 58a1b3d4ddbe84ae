package dashboard

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"canton.dev/canton/internal/resource"
)

func mustContain(t *testing.T, page, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s: missing %q", page, w)
		}
	}
}

func TestPagesRender(t *testing.T) {
	b := newBookinfoTraffic(t)
	b.round(1)
	cases := []struct {
		path  string
		wants []string
	}{
		{"/", []string{"<svg class=\"topology\"", "productpage", "reviews", "ratings", "details", "bookinfo.demo.mesh", "demo.mesh",
			"a1 ★", `<span class="role leader">leader</span>`, "reviews-v3", "in sync (4 types)", "/assets/style.css", `data-api="/api/overview.json"`}},
		{"/scope/bookinfo.demo.mesh", []string{"bookinfo.demo.mesh", "leader <strong>a2</strong>", "#12", "genesis", "grant lease",
			"VirtualService bookinfo/reviews", "PeerAuthentication", "reviews-viewer", "127.0.0.1:15004", "9080/GRPC"}},
		{"/scope/demo.mesh", []string{"child <a href=\"/scope/bookinfo.demo.mesh\">"}},
		{"/service/bookinfo/reviews", []string{"jason", "header end-user = jason", "v2 <strong>100%</strong>", "v1 <strong>50%</strong>",
			"v3 <strong>50%</strong>", "fault: delay 7s for 100% of requests", "version=v3", "AuthorizationPolicy", "reviews-viewer"}},
		{"/service/bookinfo.demo.mesh/ratings", []string{"connectionPool.tcp.maxConnections: 1", "outlierDetection.consecutive5xxErrors: 1",
			"No VirtualService routes this host"}},
	}
	for _, c := range cases {
		code, body := get(t, b.h, c.path)
		if code != http.StatusOK {
			t.Errorf("%s: status %d", c.path, code)
		}
		mustContain(t, c.path, body, c.wants...)
	}
	for _, path := range []string{"/api/overview.json", "/api/scope/bookinfo.demo.mesh.json", "/api/service/bookinfo/reviews.json"} {
		code, body := get(t, b.h, path)
		if code != http.StatusOK {
			t.Fatalf("%s: status %d", path, code)
		}
		var p struct {
			Shape string            `json:"shape"`
			Live  map[string]string `json:"live"`
			Mesh  string            `json:"mesh"`
		}
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if p.Shape == "" || p.Live["updated"] == "" || p.Mesh != "demo.mesh" {
			t.Errorf("%s: shape %q live %v mesh %q", path, p.Shape, p.Live, p.Mesh)
		}
	}
	for _, path := range []string{"/assets/style.css", "/assets/app.js"} {
		if code, body := get(t, b.h, path); code != http.StatusOK || len(body) < 500 {
			t.Errorf("%s: status %d, %d bytes", path, code, len(body))
		}
	}
}

func TestPagesWithoutProxiesAndWithUnreachableAnchor(t *testing.T) {
	src := newBookinfoSource(t, true, nil)
	src.proxies = nil
	h := New(src, Options{})
	code, body := get(t, h, "/")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	mustContain(t, "/", body, "No proxy is connected", "unreachable", "connection refused", "1 of 3 anchors not answering",
		"2/3", "No traffic seen yet", "productpage")
	code, body = get(t, h, "/service/bookinfo/reviews")
	if code != http.StatusOK {
		t.Fatalf("service: status %d", code)
	}
	mustContain(t, "service", body, "No inbound traffic seen", "v1 <strong>50%</strong>")
	code, body = get(t, h, "/scope/bookinfo.demo.mesh")
	if code != http.StatusOK {
		t.Fatalf("scope: status %d", code)
	}
	mustContain(t, "scope", body, "a3 · not answering")
}

func TestNoLeaderIsBad(t *testing.T) {
	src := newBookinfoSource(t, false, nil)
	src.scopes[1].Leader = ""
	rows := scopeRows(&meshData{scopes: src.scopes, anchors: src.anchors})
	if len(rows) != 2 || rows[1].Domain != "bookinfo.demo.mesh" || rows[1].Depth != 1 {
		t.Fatalf("tree: %+v", rows)
	}
	if rows[1].Health != healthBad || rows[1].Status != "no leader" || rows[0].Health != healthOK {
		t.Errorf("health: %+v / %+v", rows[0], rows[1])
	}
}

func TestSourceFailuresStillRender(t *testing.T) {
	src := newBookinfoSource(t, false, nil)
	src.failWith = errFake
	h := New(src, Options{})
	for _, path := range []string{"/", "/api/overview.json"} {
		code, body := get(t, h, path)
		if code != http.StatusOK {
			t.Fatalf("%s: status %d", path, code)
		}
		mustContain(t, path, body, "anchors: fake source: unavailable", "proxies: fake source: unavailable")
	}
	if code, _ := get(t, h, "/scope/bookinfo.demo.mesh"); code != http.StatusNotFound {
		t.Errorf("scope of a failed source: status %d, want 404", code)
	}
}

func TestNotFound(t *testing.T) {
	h := New(newBookinfoSource(t, false, nil), Options{})
	for _, path := range []string{"/nope", "/scope/unknown.mesh", "/service/bookinfo/nosuch", "/api/scope/x", "/api/service/bookinfo/nosuch.json"} {
		if code, _ := get(t, h, path); code != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", path, code)
		}
	}
}

func TestHostileNamesAreEscaped(t *testing.T) {
	const evil = `<script>alert(1)</script>`
	src := newBookinfoSource(t, false, map[string]string{"reviews-v1": "127.0.0.1:1"})
	vs := src.objects["bookinfo.demo.mesh"][4]
	if vs.Kind != "VirtualService" {
		t.Fatalf("fixture: object 4 is %s", vs.Kind)
	}
	vs.Name = evil
	vs.Labels = map[string]string{"x": evil}
	src.setObject("bookinfo.demo.mesh", vs)
	src.proxies[0].ID = evil
	src.proxies[0].Nack = evil
	src.anchors[0].Error = evil
	src.anchors[0].Reachable = false
	src.scopes = append(src.scopes, Scope{Domain: `"><img src=x onerror=alert(1)>`, Parent: "demo.mesh", Leader: evil})
	h := New(src, Options{})
	for _, path := range []string{"/", "/scope/bookinfo.demo.mesh", "/service/bookinfo/reviews", "/scope/%22%3E%3Cimg%20src=x%20onerror=alert(1)%3E"} {
		code, body := get(t, h, path)
		if code != http.StatusOK {
			t.Errorf("%s: status %d", path, code)
		}
		for _, bad := range []string{evil, "<img src=x"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s: unescaped %q in the page", path, bad)
			}
		}
	}
	_, body := get(t, h, "/service/bookinfo/reviews")
	mustContain(t, "service", body, "&lt;script&gt;alert(1)&lt;/script&gt;")
	// The JSON endpoint escapes too (encoding/json escapes <, > and &).
	_, js := get(t, h, "/api/service/bookinfo/reviews.json")
	if strings.Contains(js, "<script>") {
		t.Errorf("json: unescaped script tag")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("CSP header %q", csp)
	}
}

func findEdge(t *testing.T, edges []EdgeView, from, to string) EdgeView {
	t.Helper()
	for _, e := range edges {
		if e.From == from && e.To == to {
			return e
		}
	}
	t.Fatalf("no edge %s -> %s in %d edges", from, to, len(edges))
	return EdgeView{}
}

func TestTrafficFromProxies(t *testing.T) {
	b := newBookinfoTraffic(t)
	b.round(1)
	var p OverviewPage
	_, body := get(t, b.h, "/api/overview.json")
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	// One scrape: counts, no rate yet.
	e := findEdge(t, p.Graph.Edges, "productpage.bookinfo.demo.mesh", "reviews.bookinfo.demo.mesh")
	if e.Stats.HasRate || e.Stats.Requests != 10 || e.RPS != "10 req" {
		t.Errorf("first scrape: %+v %q", e.Stats, e.RPS)
	}

	b.clock.advance(10 * time.Second)
	for i := 0; i < 10; i++ {
		b.round(3)
	}
	_, body = get(t, b.h, "/api/overview.json")
	p = OverviewPage{}
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	e = findEdge(t, p.Graph.Edges, "productpage.bookinfo.demo.mesh", "reviews.bookinfo.demo.mesh")
	st := e.Stats
	if !st.HasRate || math.Abs(st.RPS-30) > 1e-9 || math.Abs(st.ErrorRate-0.1) > 1e-9 || st.Requests != 300 {
		t.Errorf("productpage->reviews: %+v", st)
	}
	// 150 requests at 8 ms (bucket <=10), 150 at 20 ms (10..25]: rank 297 interpolates to 24.7 ms.
	if math.Abs(st.P99-24.7) > 1e-6 {
		t.Errorf("p99 = %v, want 24.7", st.P99)
	}
	if st.MTLS != "mutual_tls" || e.MTLS != "mtls" {
		t.Errorf("mtls = %q/%q, want mutual_tls from the destination side", st.MTLS, e.MTLS)
	}
	if st.Versions["v1"] != 150 || st.Versions["v3"] != 150 {
		t.Errorf("versions %v", st.Versions)
	}
	if e.Health != healthBad || e.RPS != "30/s" || e.Errors != "10% err" || e.P99 != "p99 25 ms" {
		t.Errorf("view %+v", e)
	}
	ext := findEdge(t, p.Graph.Edges, "unknown", "productpage.bookinfo.demo.mesh")
	if ext.Stats.MTLS != "none" || ext.MTLS != "plain" || math.Abs(ext.Stats.RPS-30) > 1e-9 {
		t.Errorf("outside -> productpage: %+v", ext)
	}
	rr := findEdge(t, p.Graph.Edges, "reviews.bookinfo.demo.mesh", "ratings.bookinfo.demo.mesh")
	if math.Abs(rr.Stats.RPS-15) > 1e-9 || rr.Stats.ErrorRate != 0 {
		t.Errorf("reviews -> ratings: %+v", rr.Stats)
	}
	if len(p.Graph.Edges) != 4 {
		t.Errorf("%d edges, want 4 (no double counting of client and server sides)", len(p.Graph.Edges))
	}
	if p.Live["e:productpage.bookinfo.demo.mesh>reviews.bookinfo.demo.mesh:rps"] != "30/s" {
		t.Errorf("live values %v", p.Live)
	}

	var sp ServicePage
	_, body = get(t, b.h, "/api/service/bookinfo/reviews.json")
	if err := json.Unmarshal([]byte(body), &sp); err != nil {
		t.Fatal(err)
	}
	if len(sp.Versions) != 2 || sp.Versions[0].Version != "v1" || sp.Versions[0].Text != "50%" || sp.Versions[1].Version != "v3" {
		t.Errorf("observed split %+v", sp.Versions)
	}
}

func TestLiveUpdateAndShape(t *testing.T) {
	b := newBookinfoTraffic(t)
	b.round(1)
	shapeOf := func() (string, ServicePage) {
		var sp ServicePage
		_, body := get(t, b.h, "/api/service/bookinfo/reviews.json")
		if err := json.Unmarshal([]byte(body), &sp); err != nil {
			t.Fatal(err)
		}
		return sp.Shape, sp
	}
	s1, _ := shapeOf()
	s2, _ := shapeOf()
	if s1 != s2 {
		t.Fatalf("shape changed without a change: %s %s", s1, s2)
	}
	// Traffic alone changes live values, not the shape.
	b.clock.advance(5 * time.Second)
	b.round(2)
	s3, sp := shapeOf()
	if s3 != s1 {
		t.Errorf("shape changed with traffic only")
	}
	if sp.Live["i:productpage.bookinfo.demo.mesh>reviews.bookinfo.demo.mesh:rps"] != "4.0/s" {
		t.Errorf("live %v", sp.Live)
	}
	// Changing the VirtualService changes the split and the shape.
	vs := parseObjects(t, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews.bookinfo.svc.cluster.local]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 80
    - destination: {host: reviews, subset: v2}
      weight: 20
`)[0]
	b.src.setObject("bookinfo.demo.mesh", vs)
	s4, sp := shapeOf()
	if s4 == s1 {
		t.Errorf("shape did not change with the VirtualService")
	}
	if len(sp.Routes) != 1 || len(sp.Routes[0].Splits) != 2 || sp.Routes[0].Splits[0].Percent != 80 || sp.Routes[0].Splits[1].Percent != 20 {
		t.Errorf("routes %+v", sp.Routes)
	}
}

func TestScrapeIsCachedAndBounded(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte("istio_requests_total{reporter=\"source\",destination_service=\"a.b\",response_code=\"200\"} 1\n"))
	}))
	defer srv.Close()
	clock := &fakeClock{t: time.Unix(1000, 0)}
	src := newBookinfoSource(t, false, map[string]string{
		"productpage-v1": strings.TrimPrefix(srv.URL, "http://"),
		"details-v1":     "10.1.2.3:15000", // not loopback: never contacted
		"reviews-v1":     "localhost:15000",
	})
	h := New(src, Options{Now: clock.now, ScrapeInterval: 5 * time.Second})
	get(t, h, "/")
	get(t, h, "/api/overview.json")
	if n := hits.Load(); n != 1 {
		t.Errorf("%d scrapes within the interval, want 1", n)
	}
	clock.advance(6 * time.Second)
	get(t, h, "/")
	if n := hits.Load(); n != 2 {
		t.Errorf("%d scrapes after the interval, want 2", n)
	}
	var p OverviewPage
	_, body := get(t, h, "/api/overview.json")
	json.Unmarshal([]byte(body), &p)
	status := map[string]string{}
	for _, r := range p.Proxies {
		status[r.ID] = r.Scrape
	}
	if status["productpage-v1"] != "" || !strings.Contains(status["details-v1"], "not loopback") ||
		!strings.Contains(status["reviews-v1"], "not an IP:port") || status["ratings-v1"] != "no admin address" {
		t.Errorf("scrape status %v", status)
	}
}

func TestScrapeFailureIsReported(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("istio_requests_total{reporter=\"source\" 1\n"))
	}))
	defer srv.Close()
	src := newBookinfoSource(t, false, map[string]string{"productpage-v1": strings.TrimPrefix(srv.URL, "http://")})
	h := New(src, Options{})
	var p OverviewPage
	_, body := get(t, h, "/api/overview.json")
	json.Unmarshal([]byte(body), &p)
	if !strings.Contains(p.Proxies[1].Scrape, "line 1") || p.Proxies[1].ID != "productpage-v1" {
		t.Errorf("scrape status %+v", p.Proxies[1])
	}
}

func TestRelativeAndAbsoluteServicePaths(t *testing.T) {
	h := New(newBookinfoSource(t, false, nil), Options{})
	_, a := get(t, h, "/api/service/bookinfo/reviews.json")
	_, b := get(t, h, "/api/service/bookinfo.demo.mesh/reviews.json")
	var pa, pb ServicePage
	json.Unmarshal([]byte(a), &pa)
	json.Unmarshal([]byte(b), &pb)
	if !pa.Found || pa.Namespace != "bookinfo.demo.mesh" || pa.Scope != "bookinfo.demo.mesh" || pa.Shape != pb.Shape {
		t.Errorf("relative %+v / absolute %+v", pa.Page, pb.Page)
	}
}

func TestServicesFromProxiesOnly(t *testing.T) {
	src := newBookinfoSource(t, false, nil)
	src.objects = map[string][]resource.Object{}
	h := New(src, Options{})
	_, body := get(t, h, "/api/overview.json")
	var p OverviewPage
	json.Unmarshal([]byte(body), &p)
	if len(p.Graph.Nodes) != 4 {
		t.Errorf("%d nodes from proxies alone, want 4", len(p.Graph.Nodes))
	}
}
