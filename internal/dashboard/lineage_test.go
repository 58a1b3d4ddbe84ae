package dashboard

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// TestLineageShowsTime: the scope page's timeline shows each record's time,
// relative (live, so it ages without reloading the page) and absolute, and
// says so when a record has none; the JSON API carries both.
func TestLineageShowsTime(t *testing.T) {
	b := newBookinfoTraffic(t) // its clock reads 2026-01-02T03:04:05Z
	code, body := get(t, b.h, "/scope/bookinfo.demo.mesh")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	mustContain(t, "scope page", body,
		`<span data-live="lt:12">2 min ago</span> · <time datetime="2026-01-02T03:01:35.000Z" title="by the proposing anchor's clock, as it claims">2026-01-02T03:01:35.000Z</time>`,
		`<span data-live="lt:9">2 h ago</span>`, `<time datetime="2026-01-02T01:03:05.250Z"`,
		`<span data-live="lt:15">4s in the future</span>`,
		"by anchor/a1</span> <span class=\"when\">· time not recorded</span>")

	scopeJSON := func() ScopePage {
		t.Helper()
		var p ScopePage
		_, body := get(t, b.h, "/api/scope/bookinfo.demo.mesh.json")
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := scopeJSON()
	byIndex := map[uint64]LineageRow{}
	for _, r := range p.Lineage {
		byIndex[r.Index] = r
	}
	if r := byIndex[12]; r.Time != "2026-01-02T03:01:35.000Z" || r.Ago != "2 min ago" || r.Who != "spiffe://demo.mesh/admin/admin" || r.Hash == "" {
		t.Errorf("JSON record 12: %+v", r)
	}
	if r := byIndex[3]; r.Time != "" || r.Ago != "" {
		t.Errorf("JSON record 3 (untimed): time %q ago %q", r.Time, r.Ago)
	}
	if p.Live["lt:12"] != "2 min ago" {
		t.Errorf("live lt:12 = %q", p.Live["lt:12"])
	}

	// An hour later the relative times changed and the page's shape did not:
	// the script patches them in place.
	b.clock.advance(time.Hour)
	later := scopeJSON()
	if later.Shape != p.Shape {
		t.Errorf("the shape changed with time alone: %s -> %s", p.Shape, later.Shape)
	}
	if later.Live["lt:12"] != "1 h ago" || later.Live["lt:15"] != "59 min ago" {
		t.Errorf("live after an hour: lt:12 %q, lt:15 %q", later.Live["lt:12"], later.Live["lt:15"])
	}
}

func TestAgoText(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, "just now"},
		{999 * time.Millisecond, "just now"},
		{-999 * time.Millisecond, "just now"},
		{time.Second, "1s ago"},
		{59*time.Second + 999*time.Millisecond, "59s ago"},
		{time.Minute, "1 min ago"},
		{59 * time.Minute, "59 min ago"},
		{time.Hour, "1 h ago"},
		{47 * time.Hour, "47 h ago"},
		{48 * time.Hour, "2 days ago"},
		{400 * 24 * time.Hour, "400 days ago"},
		{-12 * time.Second, "12s in the future"},
		{-3 * time.Hour, "3 h in the future"},
	} {
		if got := agoText(now.Add(-c.d), now); got != c.want {
			t.Errorf("agoText(now - %s) = %q, want %q", c.d, got, c.want)
		}
	}
}
