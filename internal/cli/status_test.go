package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"canton.dev/canton/internal/api/apipb"
)

// TestStatusListsStaleImports: `canton status` lists, per anchor, the
// imports that are stale, since when and what is still served; fresh imports
// are not listed, and without stale imports nothing is added.
func TestStatusListsStaleImports(t *testing.T) {
	now := time.Date(2026, 3, 14, 9, 31, 14, 0, time.UTC)
	since := now.Add(-72 * time.Second).Unix()
	answered := now.Add(-76 * time.Second).Unix()
	anchors := []*apipb.StatusResponse{
		{AnchorId: "a1"},
		{AnchorId: "a2", Imports: []*apipb.ImportStatus{
			{Scope: "web.demo.mesh", Name: "cart.shop.demo.mesh", Owner: "shop.demo.mesh", Found: true, AnsweredUnix: answered,
				Stale: true, StaleSinceUnix: since, Error: "rpc error: code = Unavailable\n desc = no anchor could be reached"},
			{Scope: "web.demo.mesh", Name: "orders.shop.demo.mesh", Owner: "shop.demo.mesh", Found: true, AnsweredUnix: answered},
			{Scope: "web.demo.mesh", Name: "old.shop.demo.mesh", Owner: "shop.demo.mesh", AnsweredUnix: answered, Stale: true, StaleSinceUnix: since, Dropped: true, Error: "down"},
			{Scope: "web.demo.mesh", Name: "new.pay.demo.mesh", Stale: true, StaleSinceUnix: since, Error: "down"},
		}},
	}
	var out bytes.Buffer
	if err := printStaleImports(&out, anchors, now); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"STALE IMPORTS",
		"a2       web.demo.mesh   cart.shop.demo.mesh   shop.demo.mesh   2026-03-14T09:30:02Z (1m12s ago)   last answer of 2026-03-14T09:29:58Z (1m16s ago)   rpc error: code = Unavailable desc = no anchor could be reached",
		"old.shop.demo.mesh    shop.demo.mesh   2026-03-14T09:30:02Z (1m12s ago)   nothing (dropped: older than --max-stale)",
		"new.pay.demo.mesh     -                2026-03-14T09:30:02Z (1m12s ago)   nothing (never answered)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("status lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "orders") {
		t.Errorf("a fresh import is listed as stale:\n%s", got)
	}

	out.Reset()
	anchors[1].Imports = anchors[1].Imports[1:2]
	if err := printStaleImports(&out, anchors, now); err != nil || out.Len() != 0 {
		t.Fatalf("without stale imports: %q %v, want nothing", out.String(), err)
	}
}

func TestAnchorRefusesANonPositiveMaxStale(t *testing.T) {
	for _, v := range []string{"0s", "-1m"} {
		var out, errb bytes.Buffer
		code := Main([]string{"anchor", "--id", "a1", "--data", t.TempDir(), "--max-stale", v}, strings.NewReader(""), &out, &errb)
		if code == 0 || !strings.Contains(errb.String(), "--max-stale") {
			t.Errorf("--max-stale %s: exit %d, stderr %q; want a refusal naming --max-stale", v, code, errb.String())
		}
	}
}
