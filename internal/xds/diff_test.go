package xds

import (
	"strings"
	"testing"
)

func TestLineDiff(t *testing.T) {
	a := []string{"{", `"a": 1,`, `"b": 2,`, `"c": 3,`, `"d": 4,`, `"e": 5`, "}"}
	b := []string{"{", `"a": 1,`, `"b": 20,`, `"c": 3,`, `"d": 4,`, `"e": 5,`, `"f": 6`, "}"}
	got := lineDiff(a, b, 1)
	want := "  \"a\": 1,\n- \"b\": 2,\n+ \"b\": 20,\n  \"c\": 3,\n  \"d\": 4,\n- \"e\": 5\n+ \"e\": 5,\n+ \"f\": 6\n  }\n"
	if got != want {
		t.Fatalf("diff:\n%s\nwant:\n%s", got, want)
	}
	// Far-apart changes are separated by an elision mark.
	long := []string{"1", "2", "3", "4", "5", "6", "7", "8"}
	long2 := []string{"1x", "2", "3", "4", "5", "6", "7", "8x"}
	if got := lineDiff(long, long2, 1); got != "- 1\n+ 1x\n  2\n  ...\n  7\n- 8\n+ 8x\n" {
		t.Fatalf("elided diff:\n%s", got)
	}
	if d := lineDiff(a, a, 2); d != "" {
		t.Fatalf("identical inputs diff to %q", d)
	}
}

func TestDiffReportsChangedRoutesOnly(t *testing.T) {
	base := loadInput(t, "testdata/reviews-jason")
	node := loadNode(t, "testdata/reviews-jason")
	old, err := Generate(base, node)
	if err != nil {
		t.Fatal(err)
	}
	new, err := Generate(withJasonSubset(base, "v3"), node)
	if err != nil {
		t.Fatal(err)
	}
	changes := Diff(old, new)
	if len(changes) != 1 || changes[0].Type != "RouteConfiguration" || changes[0].Change != "modified" {
		t.Fatalf("changes: %+v", changes)
	}
	if !strings.Contains(changes[0].Diff, "+ ") || !strings.Contains(changes[0].Diff, "v3|reviews") {
		t.Fatalf("diff does not show the new subset:\n%s", changes[0].Diff)
	}
	if got := Diff(old, old); len(got) != 0 {
		t.Fatalf("no change diffs to %+v", got)
	}
}
