package demo

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestParsePage(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Page
		err      string
	}{
		{name: "v2 with stars", in: `<html><body data-reviews-version="v2" data-ratings="stars" data-details="ok"><p>`, want: Page{"v2", "stars", true}},
		{name: "reviews down", in: `<body data-reviews-version="" data-ratings="none" data-details="unavailable">`, want: Page{"", "none", false}},
		{name: "no body", in: `<html>`, err: "no <body>"},
		{name: "unterminated", in: `<body data-reviews-version="v1"`, err: "unterminated"},
		{name: "missing attribute", in: `<body data-reviews-version="v1" data-details="ok">`, err: "no data-ratings"},
		{name: "unknown version", in: `<body data-reviews-version="v9" data-ratings="none" data-details="ok">`, err: "unknown reviews version"},
		{name: "unknown ratings", in: `<body data-reviews-version="v1" data-ratings="lots" data-details="ok">`, err: "unknown ratings"},
		{name: "unknown details", in: `<body data-reviews-version="v1" data-ratings="none" data-details="maybe">`, err: "unknown details"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePage([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func FuzzParsePage(f *testing.F) {
	f.Add([]byte(`<body data-reviews-version="v2" data-ratings="stars" data-details="ok">`))
	f.Add([]byte(`<body data-reviews-version="" data-ratings="none" data-details="unavailable">`))
	f.Add([]byte(`<body data-reviews-version="v1`))
	f.Add([]byte(`<body >`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePage(b)
		if err != nil {
			return
		}
		switch p.ReviewsVersion {
		case "", "v1", "v2", "v3":
		default:
			t.Fatalf("accepted version %q", p.ReviewsVersion)
		}
		switch p.Ratings {
		case "stars", "unavailable", "none":
		default:
			t.Fatalf("accepted ratings %q", p.Ratings)
		}
	})
}

func TestSummarizeAndLine(t *testing.T) {
	now := time.Now()
	ok := func(v string, user string, ms int) Result {
		return Result{At: now, User: user, Status: 200, Page: Page{v, "none", true}, Latency: time.Duration(ms) * time.Millisecond}
	}
	rs := []Result{ok("v1", "", 1), ok("v1", "", 2), ok("v2", Jason, 3), {At: now, Status: 503}, {At: now, Err: "refused"}}
	s := summarize(rs)
	if s.Requests != 5 || s.OK != 3 || s.Versions["v1"] != 2 || s.Failures["HTTP 503"] != 1 || s.Failures["no response"] != 1 {
		t.Fatalf("summary %+v", s)
	}
	if s.Share("v1") != 0.4 || s.SuccessRate() != 0.6 || s.Quantile(1) != 3*time.Millisecond {
		t.Fatalf("share %v rate %v max %v", s.Share("v1"), s.SuccessRate(), s.Quantile(1))
	}
	line := summaryLine(rs, 5*time.Second)
	for _, w := range []string{"1.0 req/s", "ok  60.0%", "v1  40%", "jason: v1   0% v2 100%"} {
		if !strings.Contains(line, w) {
			t.Errorf("line %q lacks %q", line, w)
		}
	}
	if got := summaryLine(nil, 5*time.Second); !strings.Contains(got, "no requests") {
		t.Errorf("empty line %q", got)
	}
	if (Result{Status: http.StatusOK, Page: Page{"v3", "unavailable", true}}).OK() {
		t.Error("a page without ratings counts as complete")
	}
}

func TestRecorderKeepsTheLatest(t *testing.T) {
	r := newRecorder(4)
	base := time.Now()
	for i := range 6 {
		r.add(Result{At: base.Add(time.Duration(i) * time.Second), Status: 200 + i})
	}
	got := r.since(base)
	if len(got) != 4 || got[0].Status != 205 || got[3].Status != 202 {
		t.Fatalf("since: %+v", got)
	}
	if got := r.since(base.Add(4 * time.Second)); len(got) != 2 {
		t.Fatalf("since +4s: %d results", len(got))
	}
}

func TestTerminalRewritesTheLiveLine(t *testing.T) {
	var b strings.Builder
	term := &terminal{w: &b}
	term.setLive("aaaa")
	term.setLive("bb")
	term.println("event")
	term.endLive()
	want := "\raaaa\rbb  \r  \revent\nbb\n"
	if b.String() != want {
		t.Fatalf("got %q, want %q", b.String(), want)
	}
}
