package anchor

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/scope"
)

// TestKeepAliveWaitsForTheNewLeadersLessor: Raft makes a replica leader a
// moment before its lessor starts. A keep-alive reaching it in between must
// not be "forwarded" to the leader — itself — and fail; it waits for the
// lessor and is answered.
func TestKeepAliveWaitsForTheNewLeadersLessor(t *testing.T) {
	const mesh = "demo.mesh"
	a, h := startSingleAnchor(t, mesh)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = context.WithValue(ctx, callerKey{}, caller{role: roleAdmin, principal: "spiffe://demo.mesh/admin/test"})
	srv := &server{a: a}
	lease, err := srv.GrantLease(ctx, &apipb.GrantLeaseRequest{Scope: mesh, TtlSeconds: 30})
	if err != nil {
		t.Fatal(err)
	}

	// As between the election and the lessor's start.
	h.lessor.mu.Lock()
	gen := h.lessor.gen
	h.lessor.mu.Unlock()
	h.lessor.stop(gen)
	type answer struct {
		resp *apipb.KeepAliveResponse
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		resp, err := srv.KeepAlive(ctx, &apipb.KeepAliveRequest{Scope: mesh, LeaseId: lease.LeaseId})
		done <- answer{resp, err}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for h.lessor.waiting.Load() == 0 {
		select {
		case got := <-done:
			t.Fatalf("keep-alive answered before the lessor started: %v, %v", got.resp, got.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("keep-alive neither answered nor waited")
		}
		time.Sleep(time.Millisecond)
	}
	h.lessor.start()
	select {
	case got := <-done:
		if got.err != nil || got.resp.TtlSeconds != 30 {
			t.Fatalf("keep-alive once the lessor started: %v, %v", got.resp, got.err)
		}
	case <-ctx.Done():
		t.Fatal("keep-alive not answered after the lessor started")
	}
}

// TestGrantLeaseTTLIsOneLimit: the anchor API grants leases up to the TTL
// the state machine accepts, scope.MaxLeaseTTLSeconds, and refuses longer
// (and zero) ones before proposing them.
func TestGrantLeaseTTLIsOneLimit(t *testing.T) {
	const mesh = "demo.mesh"
	a, err := Start(context.Background(), Config{
		ID: "a1", DataDir: t.TempDir(), Listen: "127.0.0.1:0", Bootstrap: true, Mesh: mesh,
		TickInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for !a.Leads(mesh) || !a.Initialised(mesh) {
		if time.Now().After(deadline) {
			t.Fatal("the single root voter did not lead and initialise the root scope")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = context.WithValue(ctx, callerKey{}, caller{role: roleAdmin, principal: "spiffe://demo.mesh/admin/test"})
	srv := &server{a: a}
	resp, err := srv.GrantLease(ctx, &apipb.GrantLeaseRequest{Scope: mesh, TtlSeconds: scope.MaxLeaseTTLSeconds})
	if err != nil || resp.TtlSeconds != scope.MaxLeaseTTLSeconds {
		t.Fatalf("grant of the longest TTL, %d s: %v, %v", scope.MaxLeaseTTLSeconds, resp, err)
	}
	h, _ := a.scope(mesh)
	if l, ok := h.state.Lease(resp.LeaseId); !ok || l.TTLSeconds != scope.MaxLeaseTTLSeconds {
		t.Fatalf("lease %d in the scope: %+v %v", resp.LeaseId, l, ok)
	}
	for _, ttl := range []uint32{0, scope.MaxLeaseTTLSeconds + 1} {
		if _, err := srv.GrantLease(ctx, &apipb.GrantLeaseRequest{Scope: mesh, TtlSeconds: ttl}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("grant of %d s: %v, want InvalidArgument", ttl, err)
		}
	}
}

// startSingleAnchor bootstraps one anchor of mesh, the only voter of its root
// scope, and returns it once it leads and has initialised the root scope.
func startSingleAnchor(t *testing.T, mesh string) (*Anchor, *hosted) {
	t.Helper()
	a, err := Start(context.Background(), Config{
		ID: "a1", DataDir: t.TempDir(), Listen: "127.0.0.1:0", Bootstrap: true, Mesh: mesh,
		TickInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	h, ok := a.scope(mesh)
	if !ok {
		t.Fatal("the bootstrap anchor hosts no root scope")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !a.Leads(mesh) || !a.Initialised(mesh) {
		if time.Now().After(deadline) {
			t.Fatal("the single root voter did not lead and initialise the root scope")
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
	return a, h
}
