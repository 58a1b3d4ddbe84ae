package telemetry

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

func testEntry() *Entry {
	return &Entry{
		StartTime:               time.Date(2026, 3, 4, 5, 6, 7, 890_000_000, time.FixedZone("x", 3600)),
		Method:                  "GET",
		Path:                    "/reviews/0?x=\"1\"",
		Protocol:                "HTTP/1.1",
		ResponseCode:            200,
		ResponseFlags:           "-",
		BytesReceived:           12,
		BytesSent:               345,
		Duration:                1500 * time.Microsecond,
		UpstreamServiceTime:     time.Millisecond,
		UserAgent:               "curl/8\n<script>",
		RequestID:               "5f1c0e1e-1111-2222-3333-444455556666",
		Authority:               "reviews.bookinfo.demo.mesh",
		UpstreamHost:            "127.0.0.1:9080",
		UpstreamCluster:         "outbound|9080|v2|reviews.bookinfo.demo.mesh",
		DownstreamRemoteAddress: "127.0.0.1:50000",
	}
}

func TestAccessLogDefaultFields(t *testing.T) {
	var buf bytes.Buffer
	a, err := NewAccessLog(&buf, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Log(testEntry()); err != nil {
		t.Fatal(err)
	}
	line := buf.String()
	if !strings.HasSuffix(line, "}\n") || strings.Count(line, "\n") != 1 {
		t.Fatalf("not one line: %q", line)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("invalid JSON %q: %v", line, err)
	}
	want := map[string]any{
		"start_time": "2026-03-04T04:06:07.890Z", "method": "GET", "path": `/reviews/0?x="1"`, "protocol": "HTTP/1.1",
		"response_code": 200.0, "response_flags": "-", "bytes_received": 12.0, "bytes_sent": 345.0,
		"duration": 1.0, "upstream_service_time": 1.0, "x_forwarded_for": nil, "user_agent": "curl/8\n<script>",
		"request_id": "5f1c0e1e-1111-2222-3333-444455556666", "authority": "reviews.bookinfo.demo.mesh",
		"upstream_host": "127.0.0.1:9080", "upstream_cluster": "outbound|9080|v2|reviews.bookinfo.demo.mesh",
		"downstream_remote_address": "127.0.0.1:50000", "route_name": nil,
	}
	for k, v := range want {
		if got, ok := m[k]; !ok || got != v {
			t.Errorf("%s = %#v (present %v), want %#v", k, got, ok, v)
		}
	}
	if len(m) != len(DefaultFields()) {
		t.Errorf("%d fields, want %d", len(m), len(DefaultFields()))
	}
	if strings.Contains(line, "<script>") {
		t.Error("< and > not escaped")
	}
}

func TestAccessLogSelectedFields(t *testing.T) {
	var buf bytes.Buffer
	a, err := NewAccessLog(&buf, []string{"response_code", "method", "upstream_service_time"})
	if err != nil {
		t.Fatal(err)
	}
	e := testEntry()
	e.UpstreamServiceTime = -1
	if err := a.Log(e); err != nil {
		t.Fatal(err)
	}
	if got, want := buf.String(), `{"response_code":200,"method":"GET","upstream_service_time":null}`+"\n"; got != want {
		t.Fatalf("line = %q, want %q", got, want)
	}
}

func TestAccessLogConfigErrors(t *testing.T) {
	for _, tt := range []struct {
		fields []string
		want   string
	}{
		{[]string{"method", "nope"}, `fields[1]: unknown field "nope"`},
		{[]string{"method", "method"}, `fields[1]: "method" repeated`},
	} {
		if _, err := NewAccessLog(&bytes.Buffer{}, tt.fields); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewAccessLog(%v) error = %v, want %q", tt.fields, err, tt.want)
		}
	}
	if _, err := NewAccessLog(nil, nil); err == nil {
		t.Error("nil writer accepted")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestAccessLogWriterError(t *testing.T) {
	a, _ := NewAccessLog(failWriter{}, nil)
	if err := a.Log(testEntry()); err == nil || err.Error() != "disk full" {
		t.Fatalf("Log error = %v", err)
	}
}

// TestAccessLogConcurrent checks lines never interleave.
func TestAccessLogConcurrent(t *testing.T) {
	var buf bytes.Buffer
	a, _ := NewAccessLog(&buf, nil)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				_ = a.Log(testEntry())
			}
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 800 {
		t.Fatalf("%d lines, want 800", len(lines))
	}
	for _, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Fatalf("invalid line %q", l)
		}
	}
}

func TestAccessLogNoAllocs(t *testing.T) {
	a, _ := NewAccessLog(discard{}, nil)
	e := testEntry()
	_ = a.Log(e)
	if n := testing.AllocsPerRun(500, func() { _ = a.Log(e) }); n > 0 {
		t.Fatalf("Log allocates %v times per call", n)
	}
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

// FuzzJSONString checks the JSON string encoder: always valid JSON, and the
// decoded value equals the input when the input is valid UTF-8.
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", `quote " back \ slash`, "ctl \x00\x01\x1f\x7f", "nl\n\r\t", "<>&", "\u2028\u2029", "bad \xff\xfe utf8", "é中🙂"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("invalid JSON %q for %q: %v", b, s, err)
		}
		if utf8.ValidString(s) && got != s {
			t.Fatalf("round trip of %q gave %q", s, got)
		}
		if !utf8.ValidString(got) {
			t.Fatalf("%q decoded to invalid UTF-8 %q", s, got)
		}
	})
}

func BenchmarkAccessLog(b *testing.B) {
	a, _ := NewAccessLog(discard{}, nil)
	e := testEntry()
	b.ReportAllocs()
	for b.Loop() {
		_ = a.Log(e)
	}
}
