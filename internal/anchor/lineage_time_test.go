package anchor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/scope"
)

func TestStampKeepsAGivenTime(t *testing.T) {
	m := stamp(scope.Mutation{Op: scope.OpNoop, Proposer: "p", Time: "2001-01-01T00:00:00.000Z"})
	if m.Time != "2001-01-01T00:00:00.000Z" {
		t.Errorf("stamp replaced the time a mutation had: %q", m.Time)
	}
	before := time.Now().Truncate(time.Millisecond)
	m = stamp(scope.Mutation{Op: scope.OpNoop, Proposer: "p"})
	after := time.Now()
	at, err := scope.ParseTime(m.Time)
	if err != nil || at.Before(before) || at.After(after) {
		t.Errorf("stamp set %q (%v), want a time in [%s, %s]", m.Time, err, before, after)
	}
}

// TestProposedMutationsAreStamped: mutations an anchor proposes for a caller
// (apply, delete, rename, grant, revoke) and those it proposes itself (lease
// expiry, and genesis, the address book and the scope's CA at start) carry
// the proposing anchor's time in the committed lineage record: every record
// of a scope started by this code has one.
func TestProposedMutationsAreStamped(t *testing.T) {
	const mesh = "demo.mesh"
	a, h := startSingleAnchor(t, mesh)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const admin = "spiffe://demo.mesh/admin/test"
	ctx = context.WithValue(ctx, callerKey{}, caller{role: roleAdmin, principal: admin})
	srv := &server{a: a}

	before := time.Now().Truncate(time.Millisecond)
	svc := `[{"kind":"Service","namespace":"default.demo.mesh","name":"reviews","spec":{"ports":[{"name":"http","port":9080}]}}]`
	applied, err := srv.Apply(ctx, &apipb.ApplyRequest{Objects: []byte(svc)})
	if err != nil {
		t.Fatal(err)
	}
	deleted, err := srv.Delete(ctx, &apipb.DeleteRequest{Kind: "Service", Namespace: "default.demo.mesh", Name: "reviews"})
	if err != nil {
		t.Fatal(err)
	}
	ratings := `[{"kind":"Service","namespace":"default.demo.mesh","name":"ratings","spec":{"ports":[{"name":"http","port":9080}]}}]`
	if _, err := srv.Apply(ctx, &apipb.ApplyRequest{Objects: []byte(ratings)}); err != nil {
		t.Fatal(err)
	}
	renamed, err := srv.Rename(ctx, &apipb.RenameRequest{Namespace: "default.demo.mesh", Name: "ratings", NewName: "stars"})
	if err != nil {
		t.Fatal(err)
	}
	toRevoke, err := srv.GrantLease(ctx, &apipb.GrantLeaseRequest{Scope: mesh, TtlSeconds: 30})
	if err != nil {
		t.Fatal(err)
	}
	rev, err := srv.RevokeLease(ctx, &apipb.RevokeLeaseRequest{Scope: mesh, LeaseId: toRevoke.LeaseId})
	if err != nil {
		t.Fatal(err)
	}
	expiring, err := srv.GrantLease(ctx, &apipb.GrantLeaseRequest{Scope: mesh, TtlSeconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Nobody keeps the lease alive: the leader's lessor proposes its expiry.
	var expiry scope.Record
	expires := time.Now().Add(10 * time.Second)
	for expiry.Index == 0 {
		if time.Now().After(expires) {
			t.Fatal("the leader did not commit the lease's expiry")
		}
		for _, r := range h.state.Lineage(expiring.LeaseId+1, 0) {
			if m, err := scope.Decode(r.Mutation); err == nil && m.Op == scope.OpExpireLeases {
				expiry = r
			}
		}
		if expiry.Index == 0 {
			time.Sleep(20 * time.Millisecond) // the lessor's tick is 200ms
		}
	}
	after := time.Now()

	recs := h.state.Lineage(0, 0)
	if err := scope.VerifyLineage(recs); err != nil {
		t.Fatal(err)
	}
	byIndex := map[uint64]scope.Record{}
	for _, r := range recs {
		byIndex[r.Index] = r
	}
	for _, want := range []struct {
		what     string
		index    uint64
		proposer string
	}{
		{"apply", applied.Revision, admin},
		{"delete", deleted.Revision, admin},
		{"rename", renamed.Revision, admin},
		{"grant-lease", toRevoke.LeaseId, admin},
		{"revoke-lease", rev.Revision, admin},
		{"expire-leases", expiry.Index, "anchor/a1"},
	} {
		r, ok := byIndex[want.index]
		if !ok {
			t.Errorf("%s: no lineage record at index %d", want.what, want.index)
			continue
		}
		if err := checkStamp(r, want.proposer, before, after); err != nil {
			t.Errorf("%s: %v", want.what, err)
		}
	}
	for _, r := range recs {
		if _, ok := r.At(); !ok {
			m, _ := scope.Decode(r.Mutation)
			t.Errorf("record at index %d (%s by %s) has no time", r.Index, m.Op, r.Proposer)
		}
	}
}

func checkStamp(r scope.Record, proposer string, before, after time.Time) error {
	if r.Proposer != proposer {
		return fmt.Errorf("record at index %d proposed by %s, want %s", r.Index, r.Proposer, proposer)
	}
	at, ok := r.At()
	if !ok {
		return fmt.Errorf("record at index %d has no time (%q)", r.Index, r.Time)
	}
	if at.Before(before) || at.After(after) {
		return fmt.Errorf("record at index %d stamped %s, outside the test's [%s, %s]", r.Index, r.Time, scope.FormatTime(before), scope.FormatTime(after))
	}
	return nil
}
