package dashboard

import (
	"bytes"
	"math"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"canton.dev/canton/internal/telemetry"
)

func TestParsePromText(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		want    []promSample
		wantErr string
	}{
		{name: "empty", in: "", want: nil},
		{name: "comments and blanks", in: "# HELP x y\n# TYPE x counter\n\n   \n# random\n", want: nil},
		{name: "bare sample", in: "up 1\n", want: []promSample{{Name: "up", Value: 1}}},
		{name: "labels and timestamp", in: `x_total{a="1",b="two"} 3.5 1700000000000`,
			want: []promSample{{Name: "x_total", Labels: map[string]string{"a": "1", "b": "two"}, Value: 3.5}}},
		{name: "escapes", in: `m{v="a\"b\\c\nd"} 2`, want: []promSample{{Name: "m", Labels: map[string]string{"v": "a\"b\\c\nd"}, Value: 2}}},
		{name: "trailing comma and spaces", in: `m{ a = "1" , } 4` + "\r\n", want: []promSample{{Name: "m", Labels: map[string]string{"a": "1"}, Value: 4}}},
		{name: "empty label set", in: `m{} 4`, want: []promSample{{Name: "m", Labels: map[string]string{}, Value: 4}}},
		{name: "special values", in: "a +Inf\nb -Inf\nc NaN\nd 1e3\n", want: []promSample{
			{Name: "a", Value: math.Inf(1)}, {Name: "b", Value: math.Inf(-1)}, {Name: "c", Value: math.NaN()}, {Name: "d", Value: 1000}}},
		{name: "quoted name", in: `{"my.metric",a="1"} 1`, want: []promSample{{Name: "my.metric", Labels: map[string]string{"a": "1"}, Value: 1}}},
		{name: "label value with braces and commas", in: `m{le="+Inf",x="a,b}"} 7`, want: []promSample{{Name: "m", Labels: map[string]string{"le": "+Inf", "x": "a,b}"}, Value: 7}}},
		{name: "no value", in: "m\n", wantErr: "line 1: metric m: expected a space"},
		{name: "bad value", in: "m abc", wantErr: `value "abc"`},
		{name: "hex value refused", in: "m 0x10", wantErr: "not a number"},
		{name: "bad timestamp", in: "m 1 2.5", wantErr: "timestamp"},
		{name: "too many fields", in: "m 1 2 3", wantErr: "optional timestamp"},
		{name: "unterminated labels", in: `m{a="1" 3`, wantErr: "expected ',' or '}'"},
		{name: "unterminated string", in: `m{a="1} 3`, wantErr: "unterminated"},
		{name: "bad escape", in: `m{a="\t"} 3`, wantErr: "invalid escape"},
		{name: "duplicate label", in: `m{a="1",a="2"} 3`, wantErr: "repeated"},
		{name: "label without value", in: `m{a} 3`, wantErr: "expected '='"},
		{name: "digit first", in: "9m 1", wantErr: "expected a metric name"},
		{name: "second line bad", in: "ok 1\n{} 2\n", wantErr: "line 2: a sample without a metric name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parsePromText([]byte(c.in), nil)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %d samples %+v, want %+v", len(got), got, c.want)
			}
			for i := range got {
				g, w := got[i], c.want[i]
				sameValue := g.Value == w.Value || math.IsNaN(g.Value) && math.IsNaN(w.Value)
				if g.Name != w.Name || !sameValue || !reflect.DeepEqual(g.Labels, w.Labels) && (len(g.Labels) != 0 || len(w.Labels) != 0) {
					t.Errorf("sample %d: got %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestParsePromTextKeep(t *testing.T) {
	in := "a{x=\"1\"} 1\nb 2\nistio_requests_total{reporter=\"source\"} 3\n"
	got, err := parsePromText([]byte(in), map[string]bool{metricRequests: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != metricRequests || got[0].Value != 3 {
		t.Errorf("got %+v", got)
	}
}

// TestParsesRealReporterOutput checks the parser against what Canton's own
// proxies expose (the Prometheus client's text encoding).
func TestParsesRealReporterOutput(t *testing.T) {
	p := newFakeProxy(t)
	p.outbound("reviews", "v2", 3, 200, 12*time.Millisecond)
	p.inbound("reviews", "productpage", true, 2, 503, 700*time.Millisecond)
	body := scrapeBody(t, p)
	samples, err := parsePromText(body, nil)
	if err != nil {
		t.Fatal(err)
	}
	var total, buckets float64
	for _, s := range samples {
		if s.Name == metricRequests {
			total += s.Value
		}
		if s.Name == metricDuration && s.Labels["le"] == "+Inf" {
			buckets += s.Value
		}
	}
	if total != 5 || buckets != 5 {
		t.Errorf("requests %v, +Inf buckets %v; want 5 and 5", total, buckets)
	}
	snap := aggregate(samples, proxyIdentity{svc: svcRef{"bookinfo.demo.mesh", "reviews"}, version: "v2"}, "demo.mesh", time.Unix(0, 0))
	out := snap.calls[callKey{reporter: "source", from: svcRef{"bookinfo.demo.mesh", "reviews"}, to: svcRef{"bookinfo.demo.mesh", "reviews"}, version: "v2", security: "unknown"}]
	in := snap.calls[callKey{reporter: "destination", from: svcRef{"bookinfo.demo.mesh", "productpage"}, to: svcRef{"bookinfo.demo.mesh", "reviews"}, version: "v2", security: "mutual_tls"}]
	if out.total != 3 || out.errors != 0 || in.total != 2 || in.errors != 2 {
		t.Errorf("calls %+v", snap.calls)
	}
}

func scrapeBody(t testing.TB, p *fakeProxy) []byte {
	t.Helper()
	resp, err := p.srv.Client().Get(p.srv.URL + "/stats/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	return buf.Bytes()
}

func FuzzParsePromText(f *testing.F) {
	f.Add([]byte("up 1\n"))
	f.Add([]byte(`istio_requests_total{reporter="source",destination_service_name="reviews",destination_service_namespace="bookinfo",response_code="503"} 12` + "\n"))
	f.Add([]byte(`istio_request_duration_milliseconds_bucket{reporter="destination",source_principal="spiffe://bookinfo.demo.mesh/sa/productpage",le="+Inf"} 4 17` + "\n"))
	f.Add([]byte(`{"quoted.name",a="x\"y"} NaN` + "\n# HELP x\n"))
	f.Add([]byte("m{a=\"1\",} -Inf\r\nm2{} 1e-3\n"))
	f.Add([]byte(`m{a="\` + "\n"))
	rep := telemetry.NewReporter()
	l := rep.Intern(telemetry.Labels{Reporter: telemetry.ReporterSource, DestinationService: "a.b", DestinationCluster: "outbound|80|v1|a.b"})
	rep.HTTP(l, 200, telemetry.NoGRPCStatus, 3*time.Millisecond, 1, 1, "-")
	f.Add(mustGather(f, rep))
	f.Fuzz(func(t *testing.T, data []byte) {
		samples, err := parsePromText(data, nil)
		if err != nil {
			return
		}
		want := 0
		for _, s := range samples {
			if s.Name == "" {
				t.Fatalf("sample without a name from %q", data)
			}
			if s.Name == metricRequests || s.Name == metricDuration {
				want++
			}
		}
		// Filtering by name keeps exactly the matching samples of a valid text.
		kept, err := parsePromText(data, map[string]bool{metricRequests: true, metricDuration: true})
		if err != nil || len(kept) != want {
			t.Fatalf("filtered parse: %d samples (err %v), want %d, from %q", len(kept), err, want, data)
		}
		// Whatever parses must aggregate and combine without panicking, and
		// give JSON-safe numbers.
		at := time.Unix(100, 0)
		snap := aggregate(samples, proxyIdentity{svc: svcRef{"ns.mesh", "svc"}}, "mesh", at)
		snap2 := aggregate(samples, proxyIdentity{svc: svcRef{"ns.mesh", "svc"}}, "mesh", at.Add(time.Second))
		tr := combine(map[string][]snapshot{"p": {snap, snap2}}, time.Minute)
		for _, e := range tr.edges {
			for _, v := range []float64{e.RPS, e.ErrorRate, e.P99, e.Requests} {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("non-finite stat %+v from %q", e, data)
				}
			}
		}
	})
}

func mustGather(f *testing.F, rep *telemetry.Reporter) []byte {
	f.Helper()
	rec := httptest.NewRecorder()
	rep.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/stats/prometheus", nil))
	return rec.Body.Bytes()
}
