package anchor

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
)

// fakePeer is an anchor API server with an anchor identity that counts the
// calls that reach it.
type fakePeer struct {
	apipb.UnimplementedAnchorServer
	id    string
	mu    sync.Mutex
	calls int
}

func (f *fakePeer) Status(context.Context, *apipb.StatusRequest) (*apipb.StatusResponse, error) {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	return &apipb.StatusResponse{AnchorId: f.id}, nil
}

func (f *fakePeer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func startFakePeer(t *testing.T, ca *identity.CA, mesh, id string) (*fakePeer, string) {
	t.Helper()
	creds, err := ca.NewCredentials(identity.AnchorID(mesh, id), time.Hour, time.Now(), nil, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakePeer{id: id}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(identity.ServerTLS(creds))))
	apipb.RegisterAnchorServer(srv, f)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return f, l.Addr().String()
}

// TestForwardRefusesAnotherAnchorAtTheAddress: the address book says a1 is
// at the address where a2 listens (a misconfiguration, or a2 trying to
// answer for a scope it does not belong to). Although a2 is a genuine
// anchor of the mesh, forwarding to a1 refuses it during the handshake and
// the call never reaches it; a correct entry works, and forwarding moves on
// from the refused anchor to the next one.
func TestForwardRefusesAnotherAnchorAtTheAddress(t *testing.T) {
	const mesh = "demo.mesh"
	ca, err := identity.NewRootCA(mesh, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a2, addr2 := startFakePeer(t, ca, mesh, "a2")
	a3, addr3 := startFakePeer(t, ca, mesh, "a3")
	self, err := ca.NewCredentials(identity.AnchorID(mesh, "a0"), time.Hour, time.Now(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := &Anchor{
		meta:  &meta{ID: "a0", Mesh: mesh},
		book:  newBook(map[string]string{"a1": addr2, "a2": addr2, "a3": addr3}),
		peers: newPeerPool(identity.ClientTLS(self, func(id identity.ID) error { return requireAnchor(mesh, id) })),
	}
	t.Cleanup(a.peers.close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call := func(ids ...string) (*apipb.StatusResponse, error) {
		return forwardTo(ctx, a, ids, func(ctx context.Context, c apipb.AnchorClient) (*apipb.StatusResponse, error) {
			return c.Status(ctx, &apipb.StatusRequest{})
		})
	}

	_, err = call("a1")
	if code := grpcCode(err); code != codes.Unavailable || !strings.Contains(err.Error(), "spiffe://demo.mesh/anchor/a2, not spiffe://demo.mesh/anchor/a1") {
		t.Fatalf("forward to a1 at a2's address: %v (code %v), want it refused as the wrong anchor", err, code)
	}
	if n := a2.count(); n != 0 {
		t.Fatalf("the wrong anchor received %d calls", n)
	}

	resp, err := call("a2")
	if err != nil || resp.AnchorId != "a2" {
		t.Fatalf("forward to a2 at its own address: %v %v", resp, err)
	}
	// The refused connection does not poison the one to the right anchor at
	// the same address, and a refused anchor is skipped like an unreachable one.
	resp, err = call("a1", "a3")
	if err != nil || resp.AnchorId != "a3" {
		t.Fatalf("forward to a1 (wrong) then a3: %v %v", resp, err)
	}
	if a2.count() != 1 || a3.count() != 1 {
		t.Fatalf("calls: a2 %d, a3 %d; want 1 and 1", a2.count(), a3.count())
	}
}

func TestAcceptOnlyWithoutVerificationRefuses(t *testing.T) {
	cfg := acceptOnly(&tls.Config{InsecureSkipVerify: true}, identity.AnchorID("demo.mesh", "a1"), "127.0.0.1:1")
	if err := cfg.VerifyConnection(tls.ConnectionState{}); err == nil {
		t.Fatal("a configuration without chain verification accepted a server")
	}
}

func grpcCode(err error) codes.Code { return status.Code(err) }
