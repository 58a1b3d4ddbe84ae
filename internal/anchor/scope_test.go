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
	put(t, client(t, c, 3), o2)
}

func TestLeaseExpiryRemovesWorkload(t *testing.T) {
	c := startCluster(t, meshtest.Options{})
	cl := client(t, c, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ns := "default." + mesh
	put(t, cl, resource.Object{Kind: "Service", Namespace: ns, Name: "reviews", Spec: []byte(`{"ports":[{"name":"http","port":9080,"protocol":"HTTP"}]}`)})
	lease, err := cl.Raw().GrantLease(ctx, &apipb.GrantLeaseRequest{Scope: mesh, TtlSeconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	wl := resource.Object{Kind: "Workload", Namespace: ns, Name: "reviews-1", Spec: []byte(fmt.Sprintf(`{"service":"reviews","address":"127.0.0.1","port":9081,"labels":{"version":"v1"},"lease":%d}`, lease.LeaseId))}
	put(t, cl, wl)

	// Kept alive (through a follower, which forwards to the leader) it stays for several TTLs.
	keep := time.Now().Add(2500 * time.Millisecond)
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
	eventually(t, 5*time.Second, func() error {
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
	if fmt.Sprint(cert.PermittedURIDomains) != "["+child+"]" || !cert.IsCA {
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
