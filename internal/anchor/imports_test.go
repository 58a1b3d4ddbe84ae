package anchor_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/meshtest"
	"canton.dev/canton/internal/resolve"
	"canton.dev/canton/internal/resource"
)

const web, shop = "web." + mesh, "shop." + mesh

// startSiblings starts a mesh whose root scope runs on a1 alone, with two
// sibling scopes on disjoint anchors: web on a2, shop on a3 (a2 joined
// before a3, so it does not know a3's address at first).
func startSiblings(t *testing.T) *meshtest.Cluster {
	t.Helper()
	c := startCluster(t, meshtest.Options{RootVoters: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := client(t, c, 0)
	for _, s := range []struct{ domain, anchor string }{{web, "a2"}, {shop, "a3"}} {
		eventually(t, 15*time.Second, func() error {
			_, err := cl.CreateScope(ctx, s.domain, []string{s.anchor})
			if err != nil && strings.Contains(err.Error(), "exists") { // an earlier try was committed
				return nil
			}
			return err
		})
		if err := c.WaitScope(ctx, s.domain); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func service(ns, name string) resource.Object {
	return resource.Object{Kind: "Service", Namespace: ns, Name: name, Spec: []byte(`{"ports":[{"name":"http","port":8080,"protocol":"HTTP"}]}`)}
}

// exportAll exports every service of shop to web.
func exportAll() resource.Object {
	return resource.Object{Kind: "Export", Namespace: shop, Name: "to-web", Spec: []byte(`{"services":["*"],"to":["` + web + `"]}`)}
}

// routeTo is a VirtualService of web sending traffic for host to it.
func routeTo(host string) resource.Object {
	name, _, _ := strings.Cut(host, ".")
	spec := fmt.Sprintf(`{"hosts":[%q],"http":[{"route":[{"destination":{"host":%q}}]}]}`, host, host)
	return resource.Object{Kind: "VirtualService", Namespace: web, Name: name, Spec: []byte(spec)}
}

// registrar registers workloads of shop under one lease, through cl.
type registrar struct {
	t     *testing.T
	cl    *api.Client
	lease uint64
}

func newRegistrar(t *testing.T, cl *api.Client) *registrar {
	t.Helper()
	r := &registrar{t: t, cl: cl}
	eventually(t, 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		resp, err := cl.Raw().GrantLease(ctx, &apipb.GrantLeaseRequest{Scope: shop, TtlSeconds: 300})
		if err != nil {
			return err
		}
		r.lease = resp.LeaseId
		return nil
	})
	return r
}

// register commits a workload of service svc in shop; it may run on any goroutine.
func (r *registrar) register(svc, name, addr string) error {
	spec := fmt.Sprintf(`{"service":%q,"address":%q,"port":15006,"lease":%d}`, svc, addr, r.lease)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := r.cl.Apply(ctx, []resource.Object{{Kind: "Workload", Namespace: shop, Name: name, Spec: []byte(spec)}}, false, nil)
	return err
}

// imported waits until anchor i's scope imports every object named in want
// ("Kind/name") and returns its import status of name.
func imported(t *testing.T, c *meshtest.Cluster, i int, scope string, want ...string) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		a := c.Anchor(i)
		if a == nil {
			return fmt.Errorf("%s is stopped", c.Name(i))
		}
		var have []string
		for _, o := range a.ImportedObjects(scope) {
			have = append(have, o.Kind+"/"+o.Name)
		}
		for _, w := range want {
			if !slices.Contains(have, w) {
				return fmt.Errorf("%s imports %v into %s, not %s", c.Name(i), have, scope, w)
			}
		}
		return nil
	})
}

// importStatus is anchor i's Status entry for the import of name by scope.
func importStatus(t *testing.T, c *meshtest.Cluster, i int, scope, name string) (*apipb.ImportStatus, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := client(t, c, i).Status(ctx)
	if err != nil {
		return nil, err
	}
	for _, im := range st.Imports {
		if im.Scope == scope && im.Name == name {
			return im, nil
		}
	}
	return nil, fmt.Errorf("%s lists no import of %s by %s (imports: %v)", c.Name(i), name, scope, st.Imports)
}

// TestImportBetweenSiblingsSurvivesTheRoot: web (on a2) imports cart from
// its sibling shop (on a3). With the root scope's only anchor stopped, a
// workload of cart registered in shop still reaches web's imports (what
// web's proxies are configured from), within seconds: a2 goes to shop's
// anchors through the referral it learned, not through the root. When shop
// goes down too, web keeps the last answer, and the Status RPC shows the
// import stale and since when.
func TestImportBetweenSiblingsSurvivesTheRoot(t *testing.T) {
	c := startSiblings(t)
	shopCl := client(t, c, 2)
	put(t, shopCl, service(shop, "cart"))
	put(t, shopCl, exportAll())
	reg := newRegistrar(t, shopCl)
	if err := reg.register("cart", "cart-1", "127.0.0.11"); err != nil {
		t.Fatal(err)
	}
	put(t, client(t, c, 1), routeTo("cart."+shop))
	imported(t, c, 1, web, "Service/cart", "Workload/cart-1")

	if err := c.Stop(0); err != nil { // the root scope is down
		t.Fatal(err)
	}
	if err := reg.register("cart", "cart-2", "127.0.0.12"); err != nil {
		t.Fatal(err)
	}
	imported(t, c, 1, web, "Service/cart", "Workload/cart-1", "Workload/cart-2")
	st, err := importStatus(t, c, 1, web, "cart."+shop)
	if err != nil {
		t.Fatal(err)
	}
	if st.Stale || !st.Found || st.Owner != shop {
		t.Fatalf("import with the root down and shop up: %+v, want fresh, found, owned by %s", st, shop)
	}

	// shop goes down as well: the last answer stays, marked stale.
	stopped := time.Now().Add(-time.Second).Unix()
	if err := c.Stop(2); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		st, err := importStatus(t, c, 1, web, "cart."+shop)
		if err != nil {
			return err
		}
		if !st.Stale || st.StaleSinceUnix < stopped || st.Error == "" || st.Dropped {
			return fmt.Errorf("import with shop down: %+v, want stale since %d with an error", st, stopped)
		}
		return nil
	})
	imported(t, c, 1, web, "Service/cart", "Workload/cart-1", "Workload/cart-2")
}

// TestImportMissesNoChangeAfterTheAnswer: a workload registered right after
// web's anchor resolved cart, before its watch of shop starts, still
// reaches web's imports, although nothing changes afterwards.
func TestImportMissesNoChangeAfterTheAnswer(t *testing.T) {
	c := startSiblings(t)
	shopCl := client(t, c, 2)
	put(t, shopCl, service(shop, "cart"))
	put(t, shopCl, exportAll())
	reg := newRegistrar(t, shopCl)
	var once sync.Once
	hookErr := make(chan error, 1)
	c.Anchor(1).OnImportResolved(func(scope, name string) {
		if scope == web && name == "cart."+shop {
			once.Do(func() { hookErr <- reg.register("cart", "cart-1", "127.0.0.11") })
		}
	})
	put(t, client(t, c, 1), routeTo("cart."+shop))
	select {
	case err := <-hookErr:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("web's anchor never resolved cart")
	}
	imported(t, c, 1, web, "Service/cart", "Workload/cart-1")
}

// TestImportFollowsAliasesAndNamesNotCreatedYet: web imports cart, renamed
// to basket in shop (cart is now an Alias), and later, which does not exist
// yet. Both are watched rather than polled as failures: neither is stale,
// the alias resolves to basket, whose new workloads reach web, and later
// reaches web as soon as shop creates it.
func TestImportFollowsAliasesAndNamesNotCreatedYet(t *testing.T) {
	c := startSiblings(t)
	shopCl := client(t, c, 2)
	put(t, shopCl, service(shop, "cart"))
	put(t, shopCl, exportAll())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := shopCl.Raw().Rename(ctx, &apipb.RenameRequest{Namespace: shop, Name: "cart", NewName: "basket"}); err != nil {
		t.Fatal(err)
	}
	webCl := client(t, c, 1)
	put(t, webCl, routeTo("cart."+shop))
	put(t, webCl, routeTo("later."+shop))
	imported(t, c, 1, web, "Service/basket")

	watched := func(name string, found bool) {
		t.Helper()
		eventually(t, 10*time.Second, func() error {
			st, err := importStatus(t, c, 1, web, name)
			if err != nil {
				return err
			}
			if st.Stale || !st.Watching || st.Found != found || st.AnsweredUnix == 0 {
				return fmt.Errorf("import of %s: %+v, want answered (found %v), watched, not stale", name, st, found)
			}
			return nil
		})
	}
	watched("cart."+shop, true)
	watched("later."+shop, false)
	if st, _ := importStatus(t, c, 1, web, "cart."+shop); st.Canonical != "basket."+shop {
		t.Fatalf("cart resolved to %q, want basket.%s", st.Canonical, shop)
	}

	reg := newRegistrar(t, shopCl)
	if err := reg.register("basket", "basket-1", "127.0.0.21"); err != nil {
		t.Fatal(err)
	}
	imported(t, c, 1, web, "Service/basket", "Workload/basket-1")
	put(t, shopCl, service(shop, "later"))
	imported(t, c, 1, web, "Service/basket", "Workload/basket-1", "Service/later")
	watched("later."+shop, true)
}

// TestImportBetweenSiblingsSurvivesARestartWithoutTheRoot: web's anchor
// (a2) learned shop's zone cut while importing cart and saved it in its
// data directory. With the root scope's only anchor stopped, a2 restarts:
// it reloads the cut (verified again against the trust bundle), so it
// imports cart from shop's anchors again, follows a workload registered
// after the restart, and answers Resolve for shop's names (an answer and a
// negative answer, both verifying) without the root.
func TestImportBetweenSiblingsSurvivesARestartWithoutTheRoot(t *testing.T) {
	c := startSiblings(t)
	shopCl := client(t, c, 2)
	put(t, shopCl, service(shop, "cart"))
	put(t, shopCl, exportAll())
	reg := newRegistrar(t, shopCl)
	if err := reg.register("cart", "cart-1", "127.0.0.11"); err != nil {
		t.Fatal(err)
	}
	put(t, client(t, c, 1), routeTo("cart."+shop))
	imported(t, c, 1, web, "Service/cart", "Workload/cart-1")
	// Saved as soon as learned, not only when the anchor closes.
	saved := filepath.Join(c.DataDir(1), "referrals.json")
	eventually(t, 5*time.Second, func() error {
		b, err := os.ReadFile(saved)
		if err != nil || !strings.Contains(string(b), `"name":"`+shop+`"`) {
			return fmt.Errorf("%s does not hold the zone cut of %s yet (err %v)", saved, shop, err)
		}
		return nil
	})

	if err := c.Stop(0); err != nil { // the root scope is down
		t.Fatal(err)
	}
	if err := c.Stop(1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Restart(ctx, 1); err != nil {
		t.Fatal(err)
	}
	imported(t, c, 1, web, "Service/cart", "Workload/cart-1")
	if err := reg.register("cart", "cart-2", "127.0.0.12"); err != nil {
		t.Fatal(err)
	}
	imported(t, c, 1, web, "Service/cart", "Workload/cart-1", "Workload/cart-2")
	st, err := importStatus(t, c, 1, web, "cart."+shop)
	if err != nil {
		t.Fatal(err)
	}
	if st.Stale || !st.Found || st.Owner != shop {
		t.Fatalf("import after the restart with the root down: %+v, want fresh, found, owned by %s", st, shop)
	}

	admin, err := identity.LoadCredentials(c.AdminCredentials())
	if err != nil {
		t.Fatal(err)
	}
	lookup := resolve.FromClient(client(t, c, 1), admin.Bundle...)
	for name, found := range map[string]bool{"cart." + shop: true, "nope." + shop: false} {
		resp, err := lookup(ctx, name)
		if err != nil {
			t.Fatalf("resolve %s on the restarted a2 with the root down: %v", name, err)
		}
		if resp.Found != found || resp.Scope != shop {
			t.Fatalf("resolve %s on the restarted a2: found %v in %s, want found %v in %s", name, resp.Found, resp.Scope, found, shop)
		}
	}
}

// cutter is a dialer whose links can be cut, as by a network partition:
// while an address is cut, dials to it fail and the connections open to it
// are closed.
type cutter struct {
	mu    sync.Mutex
	cut   map[string]bool
	conns map[string][]net.Conn
}

func newCutter() *cutter {
	return &cutter{cut: map[string]bool{}, conns: map[string][]net.Conn{}}
}

func (c *cutter) dial(ctx context.Context, addr string) (net.Conn, error) {
	if c.isCut(addr) {
		return nil, fmt.Errorf("partitioned from %s", addr)
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut[addr] { // cut while dialling
		conn.Close()
		return nil, fmt.Errorf("partitioned from %s", addr)
	}
	c.conns[addr] = append(c.conns[addr], conn)
	return conn, nil
}

func (c *cutter) isCut(addr string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cut[addr]
}

// partition cuts the links to addrs.
func (c *cutter) partition(addrs ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range addrs {
		c.cut[a] = true
		for _, conn := range c.conns[a] {
			conn.Close()
		}
		delete(c.conns, a)
	}
}

// heal restores every link.
func (c *cutter) heal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.cut)
}

// TestImportWhileTheCallerScopeIsPartitionedFromTheCallee: web (on a2)
// imports cart from shop (on a3); then a2 is cut off from the root's anchor
// and shop's, while shop keeps working on its side. web keeps serving the
// last endpoints, marked stale in Status with the error and since when, and
// its own scope keeps accepting changes; a workload registered in shop
// meanwhile does not reach it. Once the links are back web catches up
// (the workload registered during the partition arrives, the import is
// fresh again) and follows new changes.
func TestImportWhileTheCallerScopeIsPartitionedFromTheCallee(t *testing.T) {
	c := startSiblings(t)
	links := newCutter()
	c.Anchor(1).SetPeerDialer(links.dial)
	shopCl, webCl := client(t, c, 2), client(t, c, 1)
	put(t, shopCl, service(shop, "cart"))
	put(t, shopCl, exportAll())
	reg := newRegistrar(t, shopCl)
	if err := reg.register("cart", "cart-1", "127.0.0.11"); err != nil {
		t.Fatal(err)
	}
	put(t, webCl, routeTo("cart."+shop))
	imported(t, c, 1, web, "Service/cart", "Workload/cart-1")
	eventually(t, 10*time.Second, func() error {
		st, err := importStatus(t, c, 1, web, "cart."+shop)
		if err != nil {
			return err
		}
		if st.Stale || !st.Watching {
			return fmt.Errorf("import before the partition: %+v, want fresh and watched", st)
		}
		return nil
	})

	cutAt := time.Now().Add(-time.Second).Unix()
	links.partition(c.Addr(0), c.Addr(2))
	eventually(t, 10*time.Second, func() error {
		st, err := importStatus(t, c, 1, web, "cart."+shop)
		if err != nil {
			return err
		}
		if !st.Stale || st.StaleSinceUnix < cutAt || st.Error == "" || st.Dropped || !st.Found {
			return fmt.Errorf("import while partitioned: %+v, want stale since %d with an error, still found", st, cutAt)
		}
		return nil
	})
	if err := reg.register("cart", "cart-2", "127.0.0.12"); err != nil { // shop's side keeps working
		t.Fatalf("register in shop during the partition: %v", err)
	}
	put(t, webCl, routeTo("reviews."+web)) // so does web's own scope
	if have := c.Anchor(1).ImportedObjects(web); len(have) != 2 {
		t.Fatalf("while partitioned web imports %v, want the last answer (cart and cart-1)", have)
	}
	imported(t, c, 1, web, "Service/cart", "Workload/cart-1")
	if st, err := importStatus(t, c, 1, web, "cart."+shop); err != nil || !st.Stale {
		t.Fatalf("import while partitioned, after cart-2 was registered: %+v (%v), want still stale", st, err)
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	if _, err := webCl.Raw().Resolve(rctx, &apipb.ResolveRequest{Name: "cart." + shop}); api.Code(api.Err(err)) != codes.Unavailable {
		t.Fatalf("resolve cart on a2 while partitioned: %v, want Unavailable", err)
	}

	links.heal()
	imported(t, c, 1, web, "Service/cart", "Workload/cart-1", "Workload/cart-2")
	eventually(t, 20*time.Second, func() error {
		st, err := importStatus(t, c, 1, web, "cart."+shop)
		if err != nil {
			return err
		}
		if st.Stale || !st.Watching || st.Error != "" {
			return fmt.Errorf("import after the partition healed: %+v, want fresh and watched", st)
		}
		return nil
	})
	if err := reg.register("cart", "cart-3", "127.0.0.13"); err != nil {
		t.Fatal(err)
	}
	imported(t, c, 1, web, "Service/cart", "Workload/cart-1", "Workload/cart-2", "Workload/cart-3")
}
