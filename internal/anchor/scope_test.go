package anchor_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/meshtest"
	"canton.dev/canton/internal/resource"
)

func TestCreateScopeDelegatesAndForwards(t *testing.T) {
	c := startCluster(t, meshtest.Options{})
	cl := client(t, c, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	child := "shop." + mesh
	resp, err := cl.CreateScope(ctx, child, []string{"a1", "a2", "a3"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Parent != mesh {
		t.Fatalf("parent %q, want %q", resp.Parent, mesh)
	}
	if _, err := c.WaitLeader(ctx, child); err != nil {
		t.Fatal(err)
	}
	o := vs("cart", "v2")
	o.Namespace = "payments." + child // a namespace below the cut belongs to the child
	created := put(t, client(t, c, 2), o)

	res, err := client(t, c, 1).Get(ctx, "vs", o.Namespace, "cart", "")
	if err != nil {
		t.Fatal(err)
	}
	if res.Scope != child || res.Objects[0].Version != created.Version {
		t.Fatalf("get answered by scope %q at version %d, want %q at %d", res.Scope, res.Objects[0].Version, child, created.Version)
	}
	// The parent no longer governs the delegated subtree.
	if root, err := cl.Get(ctx, "vs", "", "", mesh); err != nil || len(root.Objects) != 0 {
		t.Fatalf("root scope lists %d virtual services (err %v), want none", len(root.Objects), err)
	}
	// Creating it twice is refused.
	if _, err := cl.CreateScope(ctx, child, []string{"a1"}); err == nil {
		t.Fatal("second create of the same scope succeeded")
	}
}

func TestMembershipAddLearnerPromoteRemove(t *testing.T) {
	c := startCluster(t, meshtest.Options{Anchors: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := client(t, c, 0)
	child := "team." + mesh
	if _, err := cl.CreateScope(ctx, child, []string{"a1", "a2", "a3"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitLeader(ctx, child); err != nil {
		t.Fatal(err)
	}
	o := vs("web", "v1")
	o.Namespace = child
	created := put(t, cl, o)

	resp, err := cl.ChangeMembership(ctx, child, "a4", apipb.MembershipRequest_ADD_LEARNER)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(resp.Learners) != "[a4]" {
		t.Fatalf("learners %v", resp.Learners)
	}
	eventually(t, 10*time.Second, func() error {
		if a := c.Anchor(3); a.Revision(child) < created.Version {
			return fmt.Errorf("learner a4 at revision %d, want >= %d", a.Revision(child), created.Version)
		}
		return nil
	})
	if resp, err = cl.ChangeMembership(ctx, child, "a4", apipb.MembershipRequest_PROMOTE); err != nil {
		t.Fatal(err)
	}
	if len(resp.Voters) != 4 || len(resp.Learners) != 0 {
		t.Fatalf("after promote: voters %v learners %v", resp.Voters, resp.Learners)
	}
	// Replace a dead anchor: stop a2, remove it, and the scope still commits with a1,a3,a4.
	if err := c.Stop(1); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		r, err := cl.ChangeMembership(ctx, child, "a2", apipb.MembershipRequest_REMOVE)
		if err != nil {
			return err
		}
		if len(r.Voters) != 3 {
			return fmt.Errorf("voters %v", r.Voters)
		}
		return nil
	})
	o2 := vs("api", "v1")
	o2.Namespace = child
	o2 = put(t, client(t, c, 3), o2)
	if got := delegatedAnchors(t, cl, child); got != "[a1 a3 a4]" {
		t.Fatalf("the Delegation of %s names %s after the replacement, want [a1 a3 a4]", child, got)
	}

	// a2 comes back with its stale replica: a member tells it it was removed
	// when it tries to rejoin, and it drops the replica.
	if err := c.Restart(ctx, 1); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if c.Anchor(1).Hosts(child) {
			return fmt.Errorf("a2, removed from %s while down, still hosts a replica of it", child)
		}
		return nil
	})
	promptGet(t, client(t, c, 1), o2)
}

// delegatedAnchors is the anchor list of the Delegation of child in the root scope.
func delegatedAnchors(t *testing.T, cl *api.Client, child string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := cl.Get(ctx, "Delegation", "", "", mesh)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range res.Objects {
		var spec struct {
			Domain  string
			Anchors []string
		}
		if err := json.Unmarshal(d.Spec, &spec); err != nil {
			t.Fatal(err)
		}
		if spec.Domain == child {
			return fmt.Sprint(spec.Anchors)
		}
	}
	t.Fatalf("no Delegation of %s in %s", child, mesh)
	return ""
}

// waitRevision waits until every running anchor applied scope up to rev.
func waitRevision(t *testing.T, c *meshtest.Cluster, scope string, rev uint64) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		for i := range c.Len() {
			if a := c.Anchor(i); a != nil && a.Revision(scope) < rev {
				return fmt.Errorf("%s applied %s up to %d, want %d", c.Name(i), scope, a.Revision(scope), rev)
			}
		}
		return nil
	})
}

// promptGet reads o through cl and fails unless the answer is o's version,
// from o's scope, well before a request timeout (8s): a request reaching an
// anchor that does not host the scope is forwarded, not left to time out.
func promptGet(t *testing.T, cl *api.Client, o resource.Object) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	res, err := cl.Get(ctx, o.Kind, o.Namespace, o.Name, "")
	if err != nil {
		t.Fatalf("get %s/%s: %v", o.Namespace, o.Name, err)
	}
	if got := res.Objects[0]; got.Version != o.Version {
		t.Fatalf("get %s/%s: version %d, want %d", o.Namespace, o.Name, got.Version, o.Version)
	}
}

// TestRemovedAnchorDropsItsReplica: replacing a scope's only anchor (a1) by
// another (a2) leaves no replica on a1 — not even after a1 restarts — and the
// parent's Delegation names a2 alone, so requests reaching a1 or an anchor
// outside the scope (a3) are forwarded to a2 and answered at once.
func TestRemovedAnchorDropsItsReplica(t *testing.T) {
	c := startCluster(t, meshtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := client(t, c, 0)
	child := "team." + mesh
	if _, err := cl.CreateScope(ctx, child, []string{"a1"}); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitScope(ctx, child); err != nil {
		t.Fatal(err)
	}
	o := vs("web", "v1")
	o.Namespace = child
	created := put(t, cl, o)

	if _, err := cl.ChangeMembership(ctx, child, "a2", apipb.MembershipRequest_ADD_LEARNER); err != nil {
		t.Fatal(err)
	}
	if got := delegatedAnchors(t, cl, child); got != "[a1 a2]" {
		t.Fatalf("the Delegation names %s after adding a2, want [a1 a2]", got)
	}
	eventually(t, 10*time.Second, func() error {
		if rev := c.Anchor(1).Revision(child); rev < created.Version {
			return fmt.Errorf("learner a2 at revision %d, want >= %d", rev, created.Version)
		}
		return nil
	})
	if _, err := cl.ChangeMembership(ctx, child, "a2", apipb.MembershipRequest_PROMOTE); err != nil {
		t.Fatal(err)
	}
	// Asked of a1 itself: a1's replica goes away with the change, so a2 carries it out.
	resp, err := cl.ChangeMembership(ctx, child, "a1", apipb.MembershipRequest_REMOVE)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(resp.Voters) != "[a2]" || len(resp.Learners) != 0 {
		t.Fatalf("after removing a1: voters %v learners %v", resp.Voters, resp.Learners)
	}
	if got := delegatedAnchors(t, cl, child); got != "[a2]" {
		t.Fatalf("the Delegation names %s after removing a1, want [a2]", got)
	}
	eventually(t, 10*time.Second, func() error {
		if c.Anchor(0).Hosts(child) {
			return fmt.Errorf("a1 still hosts a replica of %s after its removal", child)
		}
		return nil
	})
	// Every anchor routes by its own replica of the root scope: let each
	// apply the updated Delegation, then ask through each.
	rootRev := c.Anchor(1).Revision(mesh)
	waitRevision(t, c, mesh, rootRev)
	for i := range c.Len() {
		promptGet(t, client(t, c, i), created)
	}
	o2 := vs("api", "v1")
	o2.Namespace = child
	applyCtx, applyCancel := context.WithTimeout(ctx, 3*time.Second)
	defer applyCancel()
	res, err := cl.Apply(applyCtx, []resource.Object{o2}, false, nil)
	if err != nil {
		t.Fatalf("apply through the removed anchor a1: %v", err)
	}
	created2 := res.Objects[0]

	// The replica stays gone when a1 restarts (init resumes every stored group).
	if err := c.Stop(0); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if c.Anchor(0).Hosts(child) {
		t.Fatalf("a1 resumed a replica of %s after a restart", child)
	}
	waitRevision(t, c, mesh, rootRev) // a1 replays its root replica's log
	promptGet(t, client(t, c, 0), created2)
	if c.Anchor(0).Hosts(child) {
		t.Fatalf("a1 started a replica of %s again", child)
	}
}

func TestLeaseExpiryRemovesWorkload(t *testing.T) {
	c := startCluster(t, meshtest.Options{})
	cl := client(t, c, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns := "default." + mesh
	put(t, cl, resource.Object{Kind: "Service", Namespace: ns, Name: "reviews", Spec: []byte(`{"ports":[{"name":"http","port":9080,"protocol":"HTTP"}]}`)})
	// A 2 s TTL against 200 ms keep-alives: a keep-alive forwarded through a follower may be slow
	// under -race on a loaded machine (with a 1 s TTL the lease expired once while kept alive).
	lease, err := cl.Raw().GrantLease(ctx, &apipb.GrantLeaseRequest{Scope: mesh, TtlSeconds: 2})
	if err != nil {
		t.Fatal(err)
	}
	wl := resource.Object{Kind: "Workload", Namespace: ns, Name: "reviews-1", Spec: []byte(fmt.Sprintf(`{"service":"reviews","address":"127.0.0.1","port":9081,"labels":{"version":"v1"},"lease":%d}`, lease.LeaseId))}
	put(t, cl, wl)

	// Kept alive (through a follower, which forwards to the leader) it stays for several TTLs.
	keep := time.Now().Add(5 * time.Second)
	for time.Now().Before(keep) {
		if _, err := cl.Raw().KeepAlive(ctx, &apipb.KeepAliveRequest{Scope: mesh, LeaseId: lease.LeaseId}); err != nil {
			t.Fatalf("keepalive: %v", err)
		}
		time.Sleep(200 * time.Millisecond) // the client's heartbeat period, not synchronisation
	}
	if _, err := get(cl, "Workload", ns, "reviews-1"); err != nil {
		t.Fatalf("workload gone while its lease was kept alive: %v", err)
	}
	// Without keep-alives the leader commits the expiry and the workload disappears everywhere.
	eventually(t, 10*time.Second, func() error {
		_, err := get(client(t, c, 2), "Workload", ns, "reviews-1")
		if api.Code(err) == 5 {
			return nil
		}
		return fmt.Errorf("workload still there (err %v)", err)
	})
	if _, err := cl.Raw().KeepAlive(ctx, &apipb.KeepAliveRequest{Scope: mesh, LeaseId: lease.LeaseId}); api.Code(api.Err(err)) != 5 {
		t.Fatalf("keepalive of an expired lease: %v, want NotFound", err)
	}
}

func TestWatchStreamsAndResumes(t *testing.T) {
	c := startCluster(t, meshtest.Options{})
	cl := client(t, c, 0)
	first := put(t, cl, vs("a", "v1"))
	second := put(t, cl, vs("b", "v1"))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var seen []api.Event
	errDone := errors.New("done")
	err := client(t, c, 2).Watch(ctx, mesh, first.Version-1, func(ev api.Event) error {
		if ev.Object.Kind != "VirtualService" {
			return nil
		}
		seen = append(seen, ev)
		if len(seen) == 2 {
			return errDone
		}
		return nil
	})
	if !errors.Is(err, errDone) {
		t.Fatal(err)
	}
	if seen[0].Object.Name != "a" || seen[1].Object.Name != "b" || seen[1].Revision != second.Version {
		t.Fatalf("events %+v", seen)
	}
	// Resume after the first event: only b.
	var resumed []string
	err = cl.Watch(ctx, mesh, first.Version, func(ev api.Event) error {
		if ev.Object.Kind == "VirtualService" {
			resumed = append(resumed, ev.Object.Name)
			return errDone
		}
		return nil
	})
	if !errors.Is(err, errDone) || fmt.Sprint(resumed) != "[b]" {
		t.Fatalf("resumed watch: %v %v", resumed, err)
	}
}

// TestForwardedWatchResumesAfterFailover: a4 hosts no replica and forwards
// a watch of the root scope to its first voter, a1. When a1 dies in the
// middle of the stream, a4 goes on with the next voter from where the
// stream was: no event is delivered twice and revisions never go back.
func TestForwardedWatchResumesAfterFailover(t *testing.T) {
	c := startCluster(t, meshtest.Options{Anchors: 4, RootVoters: 3})
	cl := client(t, c, 1)
	first := put(t, cl, vs("w1", "v1"))
	second := put(t, cl, vs("w2", "v1"))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	events := make(chan api.Event, 256)
	watchErr := make(chan error, 1)
	go func() {
		watchErr <- client(t, c, 3).Watch(ctx, mesh, first.Version-1, func(ev api.Event) error {
			events <- ev
			return nil
		})
	}()
	var seen []api.Event
	next := func(what string) api.Event {
		t.Helper()
		for {
			select {
			case ev := <-events:
				if n := len(seen); n > 0 && ev.Revision < seen[n-1].Revision {
					t.Fatalf("revision went back from %d to %d (%s %s)", seen[n-1].Revision, ev.Revision, ev.Object.Kind, ev.Object.Name)
				}
				for _, s := range seen {
					if s.Revision == ev.Revision && s.Object.Kind == ev.Object.Kind && s.Object.Namespace == ev.Object.Namespace && s.Object.Name == ev.Object.Name {
						t.Fatalf("event delivered twice: revision %d %s %s", ev.Revision, ev.Object.Kind, ev.Object.Name)
					}
				}
				seen = append(seen, ev)
				if ev.Object.Kind == "VirtualService" {
					return ev
				}
			case err := <-watchErr:
				t.Fatalf("watch ended waiting for %s: %v", what, err)
			case <-ctx.Done():
				t.Fatalf("no event for %s", what)
			}
		}
	}
	if ev := next("w1"); ev.Object.Name != "w1" || ev.Revision != first.Version {
		t.Fatalf("first event %s at %d", ev.Object.Name, ev.Revision)
	}
	if ev := next("w2"); ev.Object.Name != "w2" || ev.Revision != second.Version {
		t.Fatalf("second event %s at %d", ev.Object.Name, ev.Revision)
	}
	if err := c.Stop(0); err != nil { // the anchor a4's watch goes through
		t.Fatal(err)
	}
	third := put(t, cl, vs("w3", "v1"))
	if ev := next("w3"); ev.Object.Name != "w3" || ev.Revision != third.Version {
		t.Fatalf("event after the failover: %s at %d, want w3 at %d", ev.Object.Name, ev.Revision, third.Version)
	}
}

func TestEveryScopeGetsANameConstrainedCA(t *testing.T) {
	c := startCluster(t, meshtest.Options{})
	cl := client(t, c, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	child := "shop." + mesh
	if _, err := cl.CreateScope(ctx, child, []string{"a1", "a2", "a3"}); err != nil {
		t.Fatal(err)
	}
	var caObj resource.Object
	eventually(t, 10*time.Second, func() error {
		res, err := cl.Get(ctx, "ca", child, "ca", "")
		if err != nil {
			return err
		}
		caObj = res.Objects[0]
		return nil
	})
	var spec struct{ Certificates, SealedKey string }
	if err := json.Unmarshal(caObj.Spec, &spec); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(spec.Certificates))
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(cert.PermittedURIDomains) != "["+child+" ."+child+"]" || !cert.IsCA {
		t.Fatalf("scope CA of %s: CA %v, permitted URI domains %v", child, cert.IsCA, cert.PermittedURIDomains)
	}
	if strings.Contains(spec.SealedKey, "PRIVATE") {
		t.Fatal("the scope CA key is stored in the clear")
	}
	// Nobody but the anchors writes a scope's CA.
	forged := caObj
	forged.Version, forged.Created, forged.UID = 0, 0, ""
	if _, err := cl.Apply(ctx, []resource.Object{forged}, false, nil); api.Code(err) != 7 /* PermissionDenied */ {
		t.Fatalf("admin applying a CertificateAuthority: %v", err)
	}
}

// TestAnchorsOutsideTheRootLearnLaterAnchors: a4 to a6 join the mesh in
// that order and none of them replicates the root scope (a1-a3 do). a4,
// which joined first, learns the addresses of a5 and a6 from the root
// scope's Anchor objects; and a scope created on the three of them elects a
// leader and commits on every replica.
func TestAnchorsOutsideTheRootLearnLaterAnchors(t *testing.T) {
	c := startCluster(t, meshtest.Options{Anchors: 6, RootVoters: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first := client(t, c, 3) // a4
	eventually(t, 10*time.Second, func() error {
		st, err := first.Status(ctx)
		if err != nil {
			return err
		}
		known := map[string]string{}
		for _, ad := range st.Anchors {
			known[ad.Id] = ad.Address
		}
		for _, i := range []int{4, 5} {
			if known[c.Name(i)] != c.Addr(i) {
				return fmt.Errorf("a4 knows %s at %q, want %q", c.Name(i), known[c.Name(i)], c.Addr(i))
			}
		}
		return nil
	})

	child := "shop." + mesh
	if _, err := client(t, c, 0).CreateScope(ctx, child, []string{"a4", "a5", "a6"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitLeader(ctx, child); err != nil {
		t.Fatal(err)
	}
	o := vs("cart", "v1")
	o.Namespace = child
	created := put(t, first, o)
	eventually(t, 10*time.Second, func() error {
		for i := 3; i < 6; i++ {
			if rev := c.Anchor(i).Revision(child); rev < created.Version {
				return fmt.Errorf("%s applied %s up to revision %d, want %d", c.Name(i), child, rev, created.Version)
			}
		}
		return nil
	})
}
