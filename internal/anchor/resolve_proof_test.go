package anchor_test

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/meshtest"
	"canton.dev/canton/internal/resolve"
	"canton.dev/canton/internal/resolve/proof"
	"canton.dev/canton/internal/resource"
)

// evilAnchor is a member of the mesh (a genuine anchor certificate) that
// belongs to no scope and answers Resolve with whatever answer() returns.
type evilAnchor struct {
	apipb.UnimplementedAnchorServer
	mu     sync.Mutex
	answer func(name string) *apipb.ResolveResponse
	calls  int
}

func (e *evilAnchor) Resolve(_ context.Context, req *apipb.ResolveRequest) (*apipb.ResolveResponse, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls++
	return e.answer(req.Name), nil
}

func (e *evilAnchor) set(f func(string) *apipb.ResolveResponse) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.answer, e.calls = f, 0
}

func (e *evilAnchor) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls
}

// TestSignedResolutionRejectsAnAnchorOutsideTheScope runs resolution with
// proofs through a mesh of depth 3 (demo.mesh on a1-a3, shop on a2,
// pay.shop on a3): answers verify against the admin's trust bundle with the
// referral chain from wherever the walk entered. Then the root's Delegation
// of shop is pointed at "evil", an anchor of the mesh that is not a member
// of shop, pinning shop's real CA: whatever evil answers (a replay of a
// genuine answer of shop, an answer signed by another valid CA for shop, or
// by another scope's CA) a1 refuses to pass it on, and a client asking evil
// directly rejects what it says.
func TestSignedResolutionRejectsAnAnchorOutsideTheScope(t *testing.T) {
	c := startCluster(t, meshtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := client(t, c, 0)
	shop, pay := "shop."+mesh, "pay.shop."+mesh
	if _, err := cl.CreateScope(ctx, shop, []string{"a2"}); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitScope(ctx, shop); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error { // a2 learns a3's address from the root scope
		_, err := client(t, c, 1).CreateScope(ctx, pay, []string{"a3"})
		return err
	})
	if err := c.WaitScope(ctx, pay); err != nil {
		t.Fatal(err)
	}
	svc := func(ns, name string) resource.Object {
		return resource.Object{Kind: "Service", Namespace: ns, Name: name, Spec: []byte(`{"ports":[{"name":"http","port":8080,"protocol":"HTTP"}]}`)}
	}
	if _, err := cl.Apply(ctx, []resource.Object{svc(shop, "cart")}, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Apply(ctx, []resource.Object{svc(pay, "card")}, false, nil); err != nil {
		t.Fatal(err)
	}
	admin, err := identity.LoadCredentials(c.AdminCredentials())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	for _, r := range admin.Bundle {
		roots.AddCert(r)
	}
	resolveOn := func(i int, name string) (*apipb.ResolveResponse, error) {
		return client(t, c, i).Raw().Resolve(ctx, &apipb.ResolveRequest{Name: name})
	}
	for _, tc := range []struct {
		anchor int
		name   string
		chain  []string
	}{
		{0, "card.pay.shop.demo.mesh", []string{mesh, shop, pay}}, // a1 -> a2 -> a3
		{0, "cart.shop.demo.mesh", []string{mesh, shop}},
		{2, "card.pay.shop.demo.mesh", []string{pay}},             // a3 hosts pay.shop but not shop: its walk starts there
		{2, "cart.shop.demo.mesh", []string{mesh, shop}},          // a3 forwards across the root's cut
		{1, "nope.pay.shop.demo.mesh", []string{mesh, shop, pay}}, // a negative answer: a2 hosts root and shop, and forwards
	} {
		resp, err := resolveOn(tc.anchor, tc.name)
		if err != nil {
			t.Fatalf("%s on %s: %v", tc.name, c.Name(tc.anchor), err)
		}
		res, err := proof.VerifyResponse(roots, tc.name, resp, time.Now())
		if err != nil {
			t.Fatalf("%s on %s: %v", tc.name, c.Name(tc.anchor), err)
		}
		if got := res.Hops[0].Scopes; !slices.Equal(got, tc.chain) || res.Scope != tc.chain[len(tc.chain)-1] {
			t.Fatalf("%s on %s: vouched by %v (scope %s), want %v", tc.name, c.Name(tc.anchor), got, res.Scope, tc.chain)
		}
	}
	genuine, err := resolveOn(1, "cart.shop.demo.mesh")
	if err != nil {
		t.Fatal(err)
	}

	// evil: a genuine anchor certificate of the mesh, in the address book.
	rootCA, err := identity.LoadCA(c.DataDir(0))
	if err != nil {
		t.Fatal(err)
	}
	evil, evilAddr := startEvilAnchor(t, rootCA)
	book := fmt.Sprintf(`{"address":%q,"nodeId":4242}`, evilAddr)
	if _, err := cl.Apply(ctx, []resource.Object{{Kind: "Anchor", Namespace: mesh, Name: "evil", Spec: []byte(book)}}, false, nil); err != nil {
		t.Fatal(err)
	}
	// The root delegates shop to evil, pinning shop's real CA.
	res, err := cl.Get(ctx, "ca", shop, "ca", "")
	if err != nil {
		t.Fatal(err)
	}
	var caSpec resource.CertificateAuthoritySpec
	if err := json.Unmarshal(res.Objects[0].Spec, &caSpec); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(caSpec.Certificates))
	deleg, _ := json.Marshal(resource.DelegationSpec{Domain: shop, Anchors: []string{"evil"}, CACert: string(pem.EncodeToMemory(block))})
	if _, err := cl.Apply(ctx, []resource.Object{{Kind: "Delegation", Namespace: mesh, Name: shop, Spec: deleg}}, false, nil); err != nil {
		t.Fatal(err)
	}

	rogueShop, err := rootCA.NewIntermediate(shop, time.Hour, time.Now()) // a valid CA for shop, not the delegated one
	if err != nil {
		t.Fatal(err)
	}
	otherScope, err := rootCA.NewIntermediate("evil."+mesh, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	signedBy := func(ca *identity.CA, scope string) func(string) *apipb.ResolveResponse {
		return func(name string) *apipb.ResolveResponse {
			r := &apipb.ResolveResponse{Name: name, Canonical: name, Scope: shop, Found: true, Service: genuine.Service,
				Workloads: []byte(`[{"kind":"Workload","metadata":{"name":"x","namespace":"shop.demo.mesh"},"spec":{"service":"cart","address":"10.6.6.6","port":1}}]`),
				Identity:  genuine.Identity, TtlSeconds: 30}
			f, err := proof.Sign(ca, proof.Statement{Kind: proof.KindAnswer, Scope: scope, Name: name, Anchor: "evil", Digest: proof.PayloadOf(r).Digest(), TTL: 30}, time.Now())
			if err != nil {
				panic(err)
			}
			r.Proof = (&proof.Proof{Steps: []proof.Step{{Final: f}}}).Marshal()
			return r
		}
	}
	for _, tc := range []struct {
		what   string
		answer func(string) *apipb.ResolveResponse
		want   string
	}{
		{"replays a genuine answer of shop", func(string) *apipb.ResolveResponse { return genuine },
			`made by anchor "a2", which is not one of the anchors [evil] the referral to shop.demo.mesh named`},
		{"signs with another valid CA for shop", signedBy(rogueShop, shop),
			`but the referral to shop.demo.mesh named CA canton scope CA shop.demo.mesh (serial`},
		{"signs with another scope's CA", signedBy(otherScope, shop),
			`answer signed by CA canton scope CA evil.demo.mesh (serial`},
	} {
		evil.set(tc.answer)
		var err error
		eventually(t, 10*time.Second, func() error {
			_, err = resolveOn(0, "cart.shop.demo.mesh")
			if evil.count() == 0 {
				return errors.New("a1 has not asked evil yet (delegation not applied yet)")
			}
			return nil
		})
		if api.Code(api.Err(err)) != codes.PermissionDenied || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("evil %s: a1 answered with error %v, want PermissionDenied containing %q", tc.what, err, tc.want)
		}
		t.Logf("evil %s: %v", tc.what, err)
	}

	// Unpinned (no caCert in the Delegation), a1 names in its referral only a
	// CA constrained to exactly shop: another scope's CA is refused still.
	deleg, _ = json.Marshal(resource.DelegationSpec{Domain: shop, Anchors: []string{"evil"}})
	if _, err := cl.Apply(ctx, []resource.Object{{Kind: "Delegation", Namespace: mesh, Name: shop, Spec: deleg}}, false, nil); err != nil {
		t.Fatal(err)
	}
	evil.set(signedBy(otherScope, shop))
	eventually(t, 10*time.Second, func() error {
		_, err := resolveOn(0, "cart.shop.demo.mesh")
		if want := `not a CA of exactly shop.demo.mesh`; api.Code(api.Err(err)) != codes.PermissionDenied || !strings.Contains(err.Error(), want) {
			return fmt.Errorf("unpinned delegation, evil signs with another scope's CA: %v, want PermissionDenied containing %q", err, want)
		}
		return nil
	})

	// A client that talks to evil directly verifies what it says.
	direct, err := api.Dial(evilAddr, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	lookup := resolve.FromClient(direct, admin.Bundle...)
	for what, answer := range map[string]func(string) *apipb.ResolveResponse{
		"another scope's CA": signedBy(otherScope, shop),
		"a genuine answer with its endpoints swapped": func(string) *apipb.ResolveResponse {
			r := signedBy(otherScope, shop)("cart.shop.demo.mesh")
			g := proto.Clone(genuine).(*apipb.ResolveResponse)
			g.Workloads = r.Workloads
			return g
		},
	} {
		evil.set(answer)
		var ue *resolve.UnverifiedError
		if _, err := lookup(ctx, "cart.shop.demo.mesh"); !errors.As(err, &ue) {
			t.Fatalf("client asking evil (%s): %v, want the answer rejected", what, err)
		} else {
			t.Logf("client asking evil (%s): %v", what, err)
		}
	}
}

func startEvilAnchor(t *testing.T, ca *identity.CA) (*evilAnchor, string) {
	t.Helper()
	creds, err := ca.NewCredentials(identity.AnchorID(mesh, "evil"), time.Hour, time.Now(), nil, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &evilAnchor{answer: func(string) *apipb.ResolveResponse { return &apipb.ResolveResponse{} }}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(identity.ServerTLS(creds))))
	apipb.RegisterAnchorServer(srv, e)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return e, l.Addr().String()
}

// TestResolveAcrossFourLevelsOfZoneCuts resolves through a live hierarchy
// of depth 4 with a zone cut at every level, each scope on its own anchor:
// demo.mesh (a1) → a.demo.mesh (a2) → b.a.demo.mesh (a3) → c.b.a.demo.mesh
// (a4). An answer, a negative answer and aliases at depth 4 (one within
// c.b.a, one up to a service of a) verify against the trust bundle with
// the walk from each entry anchor's outermost scope: from the root through
// every cut, from a2 from a down, from a4 within c.b.a (and from the root
// for the alias target it does not host, through the root then through the
// cut it learned). An alias target is proved from the anchor that resolved
// it (a4 for both aliases), not from the entry. The client-side resolver (the
// DNS cache, verifying every answer) gets the workload's address through
// the four levels and the alias, and NXDOMAIN for the missing name.
func TestResolveAcrossFourLevelsOfZoneCuts(t *testing.T) {
	c := startCluster(t, meshtest.Options{Anchors: 4, RootVoters: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := client(t, c, 0)
	const (
		a   = "a." + mesh
		ba  = "b.a." + mesh
		cba = "c.b.a." + mesh
	)
	for i, d := range []string{a, ba, cba} {
		eventually(t, 10*time.Second, func() error { // the parent's anchor learns the child's address
			_, err := cl.CreateScope(ctx, d, []string{c.Name(i + 1)})
			if err != nil && strings.Contains(err.Error(), "exists") { // an earlier try was committed
				return nil
			}
			return err
		})
		if err := c.WaitScope(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	svc := func(ns, name string) resource.Object {
		return resource.Object{Kind: "Service", Namespace: ns, Name: name, Spec: []byte(`{"ports":[{"name":"http","port":8080,"protocol":"HTTP"}]}`)}
	}
	alias := func(ns, name, target string) resource.Object {
		return resource.Object{Kind: "Alias", Namespace: ns, Name: name, Spec: []byte(fmt.Sprintf(`{"target":%q,"actions":["resolve"]}`, target))}
	}
	for _, o := range []resource.Object{svc(a, "front"), svc(cba, "api"), alias(cba, "old", "api."+cba), alias(cba, "up", "front."+a)} {
		put(t, cl, o)
	}
	var lease *apipb.GrantLeaseResponse
	eventually(t, 10*time.Second, func() (err error) {
		lease, err = cl.Raw().GrantLease(ctx, &apipb.GrantLeaseRequest{Scope: cba, TtlSeconds: 60})
		return err
	})
	put(t, cl, resource.Object{Kind: "Workload", Namespace: cba, Name: "api-1",
		Spec: []byte(fmt.Sprintf(`{"service":"api","address":"127.0.0.41","port":15006,"lease":%d}`, lease.LeaseId))})

	admin, err := identity.LoadCredentials(c.AdminCredentials())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	for _, r := range admin.Bundle {
		roots.AddCert(r)
	}
	root, viaA, viaCBA := []string{mesh, a, ba, cba}, []string{a, ba, cba}, []string{cba}
	for _, tc := range []struct {
		anchor    int
		name      string
		canonical string     // "" for a negative answer
		chains    [][]string // the scopes vouching for each name looked up
	}{
		{0, "api." + cba, "api." + cba, [][]string{root}},
		{0, "nope." + cba, "", [][]string{root}},
		// An alias target resolved by the owner's anchor is proved from
		// there: forwarding anchors vouch for the first name's walk only.
		{0, "old." + cba, "api." + cba, [][]string{root, viaCBA}},
		{0, "up." + cba, "front." + a, [][]string{root, {mesh, a}}},
		{1, "api." + cba, "api." + cba, [][]string{viaA}},
		{1, "nope." + cba, "", [][]string{viaA}},
		{3, "api." + cba, "api." + cba, [][]string{viaCBA}},
		// a4 learned a's zone cut resolving up for a1 above: it asks a2
		// directly, and that answer is proved from a (see 0004, Learned
		// referrals).
		{3, "up." + cba, "front." + a, [][]string{viaCBA, {a}}},
	} {
		what := fmt.Sprintf("%s on %s", tc.name, c.Name(tc.anchor))
		resp, err := client(t, c, tc.anchor).Raw().Resolve(ctx, &apipb.ResolveRequest{Name: tc.name})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		res, err := proof.VerifyResponse(roots, tc.name, resp, time.Now())
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if resp.Found != (tc.canonical != "") || tc.canonical != "" && resp.Canonical != tc.canonical {
			t.Fatalf("%s: found %v, canonical %q; want canonical %q", what, resp.Found, resp.Canonical, tc.canonical)
		}
		var chains [][]string
		for _, h := range res.Hops {
			chains = append(chains, h.Scopes)
		}
		if fmt.Sprint(chains) != fmt.Sprint(tc.chains) {
			t.Fatalf("%s: vouched for by %v, want %v", what, chains, tc.chains)
		}
		if want := len(tc.chains) - 1; len(resp.Aliases) != want {
			t.Fatalf("%s: aliases %v, want %d", what, resp.Aliases, want)
		}
	}

	cache := resolve.New(resolve.FromClient(cl, admin.Bundle...), time.Hour)
	for name, want := range map[string]string{"api." + cba: "[127.0.0.41]", "old." + cba: "[127.0.0.41]", "nope." + cba: ""} {
		ans, found, err := cache.Lookup(ctx, name)
		if err != nil {
			t.Fatalf("client-side lookup of %s: %v", name, err)
		}
		if found != (want != "") || found && fmt.Sprint(ans.Addrs) != want {
			t.Fatalf("client-side lookup of %s: found %v, addresses %v; want %s", name, found, ans.Addrs, cmp.Or(want, "not found"))
		}
	}
}
