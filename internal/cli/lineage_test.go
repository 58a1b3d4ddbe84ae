package cli

import (
	"bytes"
	"testing"

	"canton.dev/canton/internal/resource"
	"canton.dev/canton/internal/scope"
)

// TestPrintLineage pins `canton lineage` output: a TIME column (RFC 3339, UTC,
// milliseconds) before CHANGE, "-" for records committed before mutations
// carried a time.
func TestPrintLineage(t *testing.T) {
	s := scope.New("demo.mesh")
	for i, m := range []scope.Mutation{
		{Op: scope.OpGenesis, Proposer: "anchor/a1", Genesis: &scope.Genesis{Domain: "demo.mesh", Incarnation: "00c0ffee", Anchors: []string{"a1"}}},
		{Op: scope.OpPut, Proposer: "spiffe://demo.mesh/admin/admin", Time: "2026-03-14T09:26:53.589Z",
			Objects: []resource.Object{{Kind: "Service", Namespace: "bookinfo.demo.mesh", Name: "reviews", Spec: []byte(`{"ports":[{"name":"http","port":9080}]}`)}}},
		{Op: scope.OpDelete, Proposer: "spiffe://demo.mesh/admin/admin", Time: "2026-03-14T09:27:00.000Z", Kind: "Service", Namespace: "bookinfo.demo.mesh", Name: "reviews"},
	} {
		b, err := scope.Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		if r := s.Apply(uint64(i+1), b).(scope.Result); r.Err != nil {
			t.Fatalf("%s: %v", m.Op, r.Err)
		}
	}
	recs := s.Lineage(0, 0)
	var out bytes.Buffer
	if err := printLineage(&out, recs); err != nil {
		t.Fatal(err)
	}
	want := "INDEX   HASH           PROPOSER                         TIME                       CHANGE\n" +
		"1       " + short(recs[0].Hash) + "   anchor/a1                        -                          genesis demo.mesh (parent \"\", anchors [a1])\n" +
		"2       " + short(recs[1].Hash) + "   spiffe://demo.mesh/admin/admin   2026-03-14T09:26:53.589Z   put Service bookinfo.demo.mesh/reviews\n" +
		"3       " + short(recs[2].Hash) + "   spiffe://demo.mesh/admin/admin   2026-03-14T09:27:00.000Z   delete Service bookinfo.demo.mesh/reviews\n"
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}

	// A record whose time is not in the one spelling (it fails --verify) cannot
	// garble the table.
	recs[1].Time = "2026-03-14\t09:26:53Z\nX"
	if got := recordTime(recs[1]); got != "(invalid)" {
		t.Errorf("recordTime of a malformed time = %q", got)
	}
}
