package dashboard

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"canton.dev/canton/internal/telemetry"
)

// BenchmarkParsePromText parses one proxy's metrics with 40 call series
// (each with its 20-bucket duration histogram and the other Istio metrics).
func BenchmarkParsePromText(b *testing.B) {
	rep := telemetry.NewReporter()
	for i := 0; i < 20; i++ {
		for _, code := range []int{200, 503} {
			l := rep.Intern(telemetry.Labels{Reporter: telemetry.ReporterSource, DestinationService: fmt.Sprintf("svc%d.bookinfo.demo.mesh", i),
				DestinationServiceName: fmt.Sprintf("svc%d", i), DestinationServiceNamespace: "bookinfo.demo.mesh",
				DestinationCluster: fmt.Sprintf("outbound|9080|v1|svc%d.bookinfo.demo.mesh", i)})
			rep.HTTP(l, code, telemetry.NoGRPCStatus, 5*time.Millisecond, 100, 1000, "-")
		}
	}
	rec := httptest.NewRecorder()
	rep.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/stats/prometheus", nil))
	body := rec.Body.Bytes()
	keep := map[string]bool{metricRequests: true, metricDuration: true}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parsePromText(body, keep); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOverview renders the overview of the bookinfo mesh (6 proxies
// with traffic; telemetry cached, so this is the page's own cost).
func BenchmarkOverview(b *testing.B) {
	bt := newBookinfoTraffic(b)
	bt.round(1)
	get(b, bt.h, "/")
	bt.clock.advance(500 * time.Millisecond) // within the scrape interval: cached
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		bt.h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}

// BenchmarkScrapeRound scrapes 6 proxies over loopback and recomputes the traffic.
func BenchmarkScrapeRound(b *testing.B) {
	bt := newBookinfoTraffic(b)
	bt.round(1)
	b.ReportAllocs()
	for b.Loop() {
		bt.clock.advance(2 * time.Second) // past the interval: every request scrapes
		rec := httptest.NewRecorder()
		bt.h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/overview.json", nil))
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}
