package workload

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/meshtest"
	"canton.dev/canton/internal/resolve"
	"canton.dev/canton/internal/resource"
)

// forger is an anchor of the mesh (its certificate is genuine) that answers
// Resolve with what forge makes of the genuine answer.
type forger struct {
	apipb.UnimplementedAnchorServer
	genuine *apipb.ResolveResponse
	forge   func(*apipb.ResolveResponse)
}

func (f *forger) Resolve(context.Context, *apipb.ResolveRequest) (*apipb.ResolveResponse, error) {
	r := proto.Clone(f.genuine).(*apipb.ResolveResponse)
	f.forge(r)
	return r, nil
}

// TestDNSLookupsVerifyAnswers: the lookups under a sidecar's DNS cache
// (verifiedLookup) accept a genuine answer and reject, as
// *resolve.UnverifiedError, what an anchor of the mesh that does not govern
// the name alters — the endpoints, or the proof left off — although an
// unverified lookup takes it; an answer is also rejected against another
// mesh's root or no bundle at all, and the verifier follows the workload's
// bundle when it changes (root rotation).
func TestDNSLookupsVerifyAnswers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := meshtest.Start(ctx, meshtest.Options{Dir: t.TempDir(), Anchors: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.WaitScope(ctx, c.Mesh()); err != nil {
		t.Fatal(err)
	}
	admin, err := identity.LoadCredentials(c.AdminCredentials())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := c.Client(0)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const name = "reviews.bookinfo.demo.mesh"
	svc := resource.Object{Kind: "Service", Namespace: "bookinfo.demo.mesh", Name: "reviews", Spec: []byte(`{"ports":[{"name":"http","port":9080,"protocol":"HTTP"}]}`)}
	if _, err := cl.Apply(ctx, []resource.Object{svc}, false, nil); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	bundle := admin.Bundle
	setBundle := func(b []*x509.Certificate) { mu.Lock(); bundle = b; mu.Unlock() }
	current := func() []*x509.Certificate { mu.Lock(); defer mu.Unlock(); return bundle }
	lookup := verifiedLookup(cl, current)

	genuine, err := lookup(ctx, name)
	if err != nil || !genuine.Found {
		t.Fatalf("a genuine answer for %s: %v %v", name, genuine, err)
	}

	// The forger: a genuine anchor certificate of the mesh, so the client's
	// handshake accepts it; only the proofs can tell.
	ca, err := identity.LoadCA(c.DataDir(0))
	if err != nil {
		t.Fatal(err)
	}
	fc, err := ca.NewCredentials(identity.AnchorID(c.Mesh(), "forger"), time.Hour, time.Now(), nil, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &forger{genuine: genuine}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(identity.ServerTLS(fc))))
	apipb.RegisterAnchorServer(srv, f)
	go srv.Serve(l)
	defer srv.Stop()
	forged, err := api.Dial(l.Addr().String(), admin)
	if err != nil {
		t.Fatal(err)
	}
	defer forged.Close()

	for _, tc := range []struct {
		what  string
		forge func(*apipb.ResolveResponse)
	}{
		{"endpoints swapped", func(r *apipb.ResolveResponse) {
			r.Workloads = []byte(`[{"kind":"Workload","namespace":"bookinfo.demo.mesh","name":"evil","spec":{"service":"reviews","address":"10.6.6.6","port":9080}}]`)
		}},
		{"proof left off", func(r *apipb.ResolveResponse) { r.Proof = nil }},
		{"a negative answer made up", func(r *apipb.ResolveResponse) { r.Found, r.Service, r.Workloads = false, nil, nil }},
	} {
		f.forge = tc.forge
		if _, err := resolve.FromClient(forged)(ctx, name); err != nil {
			t.Fatalf("%s: an unverified lookup refused it too (%v): the case shows nothing", tc.what, err)
		}
		var unverified *resolve.UnverifiedError
		if r, err := verifiedLookup(forged, current)(ctx, name); !errors.As(err, &unverified) {
			t.Errorf("%s: verified lookup returned %v, %v; want *resolve.UnverifiedError", tc.what, r, err)
		}
	}

	other, err := identity.NewRootCA(c.Mesh(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what   string
		bundle []*x509.Certificate
		ok     bool
	}{
		{"another mesh's root", []*x509.Certificate{other.Cert}, false},
		{"no bundle", nil, false},
		{"the mesh's root again", admin.Bundle, true},
		{"both roots, as during a rotation", []*x509.Certificate{other.Cert, admin.Bundle[0]}, true},
	} {
		setBundle(tc.bundle)
		r, err := lookup(ctx, name)
		var unverified *resolve.UnverifiedError
		switch {
		case tc.ok && (err != nil || !r.Found):
			t.Errorf("bundle %s: %v %v, want the answer", tc.what, r, err)
		case !tc.ok && !errors.As(err, &unverified):
			t.Errorf("bundle %s: %v %v, want *resolve.UnverifiedError", tc.what, r, err)
		}
	}
}
