package resolve_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/dns"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/meshtest"
	"canton.dev/canton/internal/resolve"
	"canton.dev/canton/internal/resource"
)

// TestDNSAnswersFromTheAnchors serves DNS from a real mesh: a service in a
// delegated scope resolves to its workload's address, short names work
// through the search domain, unknown names are NXDOMAIN, and with every
// anchor down the last answer is still served.
func TestDNSAnswersFromTheAnchors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := meshtest.Start(ctx, meshtest.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WaitScope(ctx, c.Mesh()); err != nil {
		t.Fatal(err)
	}
	cl, err := c.Client(0)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.CreateScope(ctx, "shop.demo.mesh", []string{"a2", "a3"}); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitScope(ctx, "shop.demo.mesh"); err != nil {
		t.Fatal(err)
	}
	lease, err := cl.Raw().GrantLease(ctx, &apipb.GrantLeaseRequest{Scope: "shop.demo.mesh", TtlSeconds: 60})
	if err != nil {
		t.Fatal(err)
	}
	objs := []resource.Object{
		{Kind: "Service", Namespace: "shop.demo.mesh", Name: "cart", Spec: []byte(`{"ports":[{"name":"http","port":8080,"protocol":"HTTP"}]}`)},
		{Kind: "Workload", Namespace: "shop.demo.mesh", Name: "cart-1", Spec: []byte(fmt.Sprintf(`{"service":"cart","address":"127.0.0.9","port":15006,"lease":%d}`, lease.LeaseId))},
	}
	if _, err := cl.Apply(ctx, objs, false, nil); err != nil {
		t.Fatal(err)
	}
	admin, err := identity.LoadCredentials(c.AdminCredentials())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := dns.New(resolve.New(resolve.FromClient(cl, admin.Bundle...), time.Hour), dns.Options{Listen: "127.0.0.1:0", Mesh: c.Mesh(), SearchDomains: []string{"shop.demo.mesh"}})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ctx)
	ask := func(name string, qtype uint16) *mdns.Msg {
		t.Helper()
		m := new(mdns.Msg)
		m.SetQuestion(mdns.Fqdn(name), qtype)
		r, _, err := (&mdns.Client{Timeout: 3 * time.Second}).Exchange(m, srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := ask("cart.shop.demo.mesh", mdns.TypeA)
	if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*mdns.A).A.String() != "127.0.0.9" {
		t.Fatalf("A cart.shop.demo.mesh: %v", r)
	}
	if r := ask("cart", mdns.TypeA); r.Rcode != mdns.RcodeSuccess || len(r.Answer) < 2 {
		t.Fatalf("short name through the search domain: %v", r)
	}
	if r := ask("_http._tcp.cart.shop.demo.mesh", mdns.TypeSRV); len(r.Answer) != 1 || r.Answer[0].(*mdns.SRV).Port != 8080 {
		t.Fatalf("SRV: %v", r)
	}
	if r := ask("nope.shop.demo.mesh", mdns.TypeA); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("unknown name: %v", r)
	}
	c.Close() // every anchor down: the answer is served from the cache (the unit test covers stale answers past the TTL)
	if r := ask("cart.shop.demo.mesh", mdns.TypeA); r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("with the anchors down: %v", r)
	}
}
