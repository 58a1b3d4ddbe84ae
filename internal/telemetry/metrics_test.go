package telemetry

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func testLabels() Labels {
	return Labels{
		Reporter:                     ReporterDestination,
		SourceWorkload:               "productpage-v1",
		SourceCanonicalService:       "productpage",
		SourceCanonicalRevision:      "v1",
		SourceWorkloadNamespace:      "bookinfo.demo.mesh",
		SourcePrincipal:              "spiffe://bookinfo.demo.mesh/sa/productpage",
		SourceApp:                    "productpage",
		SourceVersion:                "v1",
		DestinationWorkload:          "reviews-v2",
		DestinationWorkloadNamespace: "bookinfo.demo.mesh",
		DestinationPrincipal:         "spiffe://bookinfo.demo.mesh/sa/reviews",
		DestinationApp:               "reviews",
		DestinationVersion:           "v2",
		DestinationService:           "reviews.bookinfo.demo.mesh",
		DestinationCanonicalService:  "reviews",
		DestinationCanonicalRevision: "v2",
		DestinationServiceName:       "reviews",
		DestinationServiceNamespace:  "bookinfo.demo.mesh",
		RequestProtocol:              ProtocolHTTP,
		ConnectionSecurityPolicy:     SecurityMutualTLS,
	}
}

func scrape(t *testing.T, r *Reporter) string {
	t.Helper()
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/stats/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sample finds the exposition line of metric name carrying every label in
// labels and returns its value.
func sample(t *testing.T, out, name string, labels map[string]string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for k, v := range labels {
			if !strings.Contains(line, k+`="`+v+`"`) {
				ok = false
				break
			}
		}
		if ok {
			return line[strings.LastIndexByte(line, ' ')+1:]
		}
	}
	t.Fatalf("no %s sample with %v in:\n%s", name, labels, out)
	return ""
}

func TestHTTPMetrics(t *testing.T) {
	rep := NewReporter()
	l := rep.Intern(testLabels())
	rep.HTTP(l, 200, NoGRPCStatus, 12*time.Millisecond, 100, 2000, "-")
	rep.HTTP(l, 200, NoGRPCStatus, 700*time.Millisecond, 0, 5, "-")
	rep.HTTP(l, 503, NoGRPCStatus, time.Millisecond, 10, 18, "FI")
	g := testLabels()
	g.RequestProtocol = ProtocolGRPC
	rep.HTTP(rep.Intern(g), 200, 14, time.Millisecond, 10, 18, "-")
	out := scrape(t, rep)

	want200 := map[string]string{
		"reporter": "destination", "source_workload": "productpage-v1", "source_workload_namespace": "bookinfo.demo.mesh",
		"source_principal": "spiffe://bookinfo.demo.mesh/sa/productpage", "source_app": "productpage", "source_version": "v1",
		"source_canonical_service": "productpage", "source_canonical_revision": "v1", "source_cluster": "unknown",
		"destination_workload": "reviews-v2", "destination_workload_namespace": "bookinfo.demo.mesh",
		"destination_principal": "spiffe://bookinfo.demo.mesh/sa/reviews", "destination_app": "reviews", "destination_version": "v2",
		"destination_service": "reviews.bookinfo.demo.mesh", "destination_service_name": "reviews",
		"destination_service_namespace": "bookinfo.demo.mesh", "destination_canonical_service": "reviews",
		"destination_canonical_revision": "v2", "destination_cluster": "unknown",
		"request_protocol": "http", "response_code": "200", "grpc_response_status": "", "response_flags": "-",
		"connection_security_policy": "mutual_tls",
	}
	if v := sample(t, out, "istio_requests_total", want200); v != "2" {
		t.Fatalf("istio_requests_total{200} = %s, want 2", v)
	}
	if v := sample(t, out, "istio_requests_total", map[string]string{"response_code": "503", "response_flags": "FI"}); v != "1" {
		t.Fatalf("istio_requests_total{503,FI} = %s, want 1", v)
	}
	if v := sample(t, out, "istio_requests_total", map[string]string{"request_protocol": "grpc", "grpc_response_status": "14"}); v != "1" {
		t.Fatalf("istio_requests_total{grpc 14} = %s, want 1", v)
	}
	// Istio's buckets: 12 ms and 700 ms fall in le=25 once, le=1000 twice.
	if v := sample(t, out, "istio_request_duration_milliseconds_bucket", map[string]string{"response_code": "200", "le": "25"}); v != "1" {
		t.Fatalf("duration le=25 = %s, want 1", v)
	}
	if v := sample(t, out, "istio_request_duration_milliseconds_bucket", map[string]string{"response_code": "200", "le": "1000"}); v != "2" {
		t.Fatalf("duration le=1000 = %s, want 2", v)
	}
	if v := sample(t, out, "istio_request_duration_milliseconds_sum", map[string]string{"response_code": "200"}); v != "712" {
		t.Fatalf("duration sum = %s, want 712", v)
	}
	if v := sample(t, out, "istio_request_bytes_sum", map[string]string{"response_code": "200"}); v != "100" {
		t.Fatalf("request bytes sum = %s, want 100", v)
	}
	if v := sample(t, out, "istio_response_bytes_bucket", map[string]string{"response_code": "200", "le": "10"}); v != "1" {
		t.Fatalf("response bytes le=10 = %s, want 1", v)
	}
	for _, le := range []string{"0.5", "3.6e+06"} {
		sample(t, out, "istio_request_duration_milliseconds_bucket", map[string]string{"le": le})
	}
	for _, le := range []string{"1", "1e+08"} {
		sample(t, out, "istio_response_bytes_bucket", map[string]string{"le": le})
	}
	if strings.Contains(out, "go_goroutines") || strings.Contains(out, "process_") {
		t.Fatal("the registry holds collectors besides Istio's metrics")
	}
}

func TestTCPMetrics(t *testing.T) {
	rep := NewReporter()
	lv := testLabels()
	lv.RequestProtocol = ProtocolTCP
	l := rep.Intern(lv)
	rep.TCPOpened(l)
	rep.TCPOpened(l)
	rep.TCPBytes(l, 100, 40)
	rep.TCPBytes(l, 1, 0)
	rep.TCPClosed(l, "-")
	rep.TCPClosed(l, "UF")
	out := scrape(t, rep)
	base := map[string]string{"request_protocol": "tcp", "reporter": "destination", "connection_security_policy": "mutual_tls"}
	with := func(k, v string) map[string]string {
		m := map[string]string{k: v}
		for kk, vv := range base {
			m[kk] = vv
		}
		return m
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   string
	}{
		{"istio_tcp_connections_opened_total", with("response_flags", "-"), "2"},
		{"istio_tcp_sent_bytes_total", base, "101"},
		{"istio_tcp_received_bytes_total", base, "40"},
		{"istio_tcp_connections_closed_total", with("response_flags", "-"), "1"},
		{"istio_tcp_connections_closed_total", with("response_flags", "UF"), "1"},
	} {
		if v := sample(t, out, c.name, c.labels); v != c.want {
			t.Errorf("%s%v = %s, want %s", c.name, c.labels, v, c.want)
		}
	}
	if strings.Contains(out, `istio_tcp_connections_opened_total{`) && strings.Contains(out, "response_code=") {
		t.Error("TCP metrics carry response_code")
	}
}

func TestLabelsDefaultsAndIntern(t *testing.T) {
	rep := NewReporter()
	a := rep.Intern(Labels{Reporter: ReporterSource, SourceWorkload: "bad\xffutf8"})
	if b := rep.Intern(Labels{Reporter: ReporterSource, SourceWorkload: "bad\xffutf8"}); a != b {
		t.Fatal("Intern returned two pointers for equal labels")
	}
	rep.HTTP(a, 404, NoGRPCStatus, 0, 0, 0, "")
	// A Labels that was not interned works too, and is counted in the same series.
	rep.HTTP(&Labels{Reporter: ReporterSource, SourceWorkload: "bad\xffutf8"}, 404, NoGRPCStatus, 0, 0, 0, "-")
	// A Labels interned by another Reporter is re-interned, not trusted.
	other := NewReporter()
	other.HTTP(a, 404, NoGRPCStatus, 0, 0, 0, "-")
	out := scrape(t, rep)
	if v := sample(t, out, "istio_requests_total", map[string]string{
		"reporter": "source", "source_workload": "bad\uFFFDutf8", "destination_service": "unknown",
		"connection_security_policy": "unknown", "response_flags": "-", "response_code": "404",
	}); v != "2" {
		t.Fatalf("requests = %s, want 2", v)
	}
	if v := sample(t, scrape(t, other), "istio_requests_total", map[string]string{"response_code": "404"}); v != "1" {
		t.Fatalf("other reporter requests = %s, want 1", v)
	}
}

func TestHTTPNoAllocs(t *testing.T) {
	rep := NewReporter()
	l := rep.Intern(testLabels())
	rep.HTTP(l, 200, NoGRPCStatus, time.Millisecond, 1, 1, "-")
	if n := testing.AllocsPerRun(1000, func() {
		rep.HTTP(l, 200, NoGRPCStatus, time.Millisecond, 1, 1, "-")
	}); n != 0 {
		t.Fatalf("HTTP allocates %v times per call on a seen combination", n)
	}
	rep.TCPOpened(l)
	if n := testing.AllocsPerRun(1000, func() { rep.TCPBytes(l, 10, 10) }); n != 0 {
		t.Fatalf("TCPBytes allocates %v times per call", n)
	}
}

func TestHTTPConcurrent(t *testing.T) {
	rep := NewReporter()
	l := rep.Intern(testLabels())
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				rep.HTTP(l, 200+(i+g)%5, NoGRPCStatus, time.Millisecond, 1, 1, "-")
			}
		}()
	}
	wg.Wait()
	out := scrape(t, rep)
	for code := 200; code < 205; code++ {
		if v := sample(t, out, "istio_requests_total", map[string]string{"response_code": strconv.Itoa(code)}); v != "800" {
			t.Fatalf("code %d: %s requests, want 800", code, v)
		}
	}
}

func BenchmarkHTTP(b *testing.B) {
	rep := NewReporter()
	l := rep.Intern(testLabels())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rep.HTTP(l, 200, NoGRPCStatus, 3*time.Millisecond, 512, 1024, "-")
		}
	})
}

func BenchmarkHTTPNotInterned(b *testing.B) {
	rep := NewReporter()
	l := testLabels()
	b.ReportAllocs()
	for b.Loop() {
		rep.HTTP(&l, 200, NoGRPCStatus, 3*time.Millisecond, 512, 1024, "-")
	}
}
