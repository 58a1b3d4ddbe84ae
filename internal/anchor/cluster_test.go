package anchor_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/meshtest"
	"canton.dev/canton/internal/resource"
)

const mesh = "demo.mesh"

// tick is the Raft tick of test clusters: an election timeout is 10 ticks.
const tick = 20 * time.Millisecond

func startCluster(t *testing.T, opts meshtest.Options) *meshtest.Cluster {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.TickInterval == 0 {
		opts.TickInterval = tick
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := meshtest.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.WaitScope(ctx, c.Mesh()); err != nil {
		t.Fatal(err)
	}
	return c
}

func client(t *testing.T, c *meshtest.Cluster, i int) *api.Client {
	t.Helper()
	cl, err := c.Client(i)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// eventually polls f until it succeeds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// vs is a VirtualService routing host to subset, in namespace default.
func vs(name, subset string) resource.Object {
	spec := fmt.Sprintf(`{"hosts":[%q],"http":[{"route":[{"destination":{"host":%q,"subset":%q}}]}]}`, name, name, subset)
	return resource.Object{Kind: "VirtualService", Namespace: "default." + mesh, Name: name, Spec: []byte(spec)}
}

// put commits one object through anchor cl, retrying while the scope elects.
func put(t *testing.T, cl *api.Client, o resource.Object) resource.Object {
	t.Helper()
	var out resource.Object
	eventually(t, 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		res, err := cl.Apply(ctx, []resource.Object{o}, false, nil)
		if err != nil {
			return err
		}
		out = res.Objects[0]
		return nil
	})
	return out
}

func get(cl *api.Client, kind, ns, name string) (resource.Object, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	res, err := cl.Get(ctx, kind, ns, name, "")
	if err != nil {
		return resource.Object{}, err
	}
	return res.Objects[0], nil
}

func TestApplyGetThroughEveryAnchor(t *testing.T) {
	c := startCluster(t, meshtest.Options{})
	created := put(t, client(t, c, 1), vs("reviews", "v1"))
	if created.Version == 0 || created.Created != created.Version {
		t.Fatalf("created object: version %d created %d", created.Version, created.Created)
	}
	for i := range c.Len() {
		got, err := get(client(t, c, i), "VirtualService", "default."+mesh, "reviews")
		if err != nil {
			t.Fatalf("get via %s: %v", c.Name(i), err)
		}
		if got.Version != created.Version || string(got.Spec) != string(created.Spec) {
			t.Fatalf("get via %s: %+v, want %+v", c.Name(i), got, created)
		}
	}
}

func TestLeaderLossNewLeaderCommits(t *testing.T) {
	c := startCluster(t, meshtest.Options{})
	first := put(t, client(t, c, 0), vs("reviews", "v1"))
	old := c.Leader(mesh)
	survivor := (old + 1) % c.Len()
	cl := client(t, c, survivor)
	killed := time.Now()
	if err := c.Stop(old); err != nil {
		t.Fatal(err)
	}
	// From the kill to the first commit: the survivors notice the death (one
	// election timeout without news), elect (one or two more) and commit.
	// Attempts are short, so that one whose proposal went to the dead leader
	// and was lost does not hide how soon the new leader commits.
	const election = 10 * tick
	bound := 5*election + 2*time.Second // 2 s leaves room for a loaded 2-core machine
	var second resource.Object
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*election)
		res, err := cl.Apply(ctx, []resource.Object{vs("ratings", "v1")}, false, nil)
		cancel()
		if err == nil {
			second = res.Objects[0]
			break
		}
		if took := time.Since(killed); took > bound {
			t.Fatalf("no commit within %s of killing the leader %s: %v", took, c.Name(old), err)
		}
		time.Sleep(10 * time.Millisecond) // poll interval after a fast failure (no leader yet)
	}
	t.Logf("first commit %s after killing the leader", time.Since(killed).Round(time.Millisecond))
	if took := time.Since(killed); took > bound {
		t.Errorf("the new leader committed %s after the old one was killed, more than %s", took, bound)
	}
	if nl := c.Leader(mesh); nl == old || nl < 0 {
		t.Fatalf("leader after stopping %s: %d", c.Name(old), nl)
	}
	for _, o := range []resource.Object{first, second} {
		got, err := get(cl, o.Kind, o.Namespace, o.Name)
		if err != nil || got.Version != o.Version {
			t.Fatalf("acknowledged %s lost after leader loss: %+v %v", o.Name, got, err)
		}
	}
}

func TestRestartedAnchorCatchesUpThroughSnapshot(t *testing.T) {
	c := startCluster(t, meshtest.Options{SnapshotEntries: 8})
	lagging := (c.Leader(mesh) + 1) % c.Len()
	if err := c.Stop(lagging); err != nil {
		t.Fatal(err)
	}
	writer := client(t, c, (lagging+1)%c.Len())
	var written []resource.Object
	for i := range 30 { // several snapshots' worth: the restarted anchor needs one
		written = append(written, put(t, writer, vs(fmt.Sprintf("svc-%d", i), "v1")))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Restart(ctx, lagging); err != nil {
		t.Fatal(err)
	}
	// Reads through the restarted anchor are linearizable: they wait for it to catch up.
	cl := client(t, c, lagging)
	for _, o := range written {
		eventually(t, 10*time.Second, func() error {
			got, err := get(cl, o.Kind, o.Namespace, o.Name)
			if err != nil {
				return err
			}
			if got.Version != o.Version {
				return fmt.Errorf("%s at version %d, want %d", o.Name, got.Version, o.Version)
			}
			return nil
		})
	}
	// And its own state has everything, read without going through the API's ReadIndex.
	if a := c.Anchor(lagging); a == nil || a.Revision(mesh) < written[len(written)-1].Version {
		t.Fatalf("restarted anchor's applied revision %d, want >= %d", a.Revision(mesh), written[len(written)-1].Version)
	}
	// The lineage came through the snapshot intact: the same head as the writer's,
	// once both have applied the same index.
	eventually(t, 5*time.Second, func() error {
		i1, h1 := c.Anchor(lagging).LineageHead(mesh)
		i2, h2 := c.Anchor((lagging + 1) % c.Len()).LineageHead(mesh)
		if i1 != i2 || h1 != h2 || h1 == "" {
			return fmt.Errorf("lineage heads differ: %d %s vs %d %s", i1, h1, i2, h2)
		}
		return nil
	})
}

func TestMinorityPartitionCannotCommit(t *testing.T) {
	c := startCluster(t, meshtest.Options{RequestTimeout: time.Second})
	acked := put(t, client(t, c, 0), vs("before", "v1"))
	minority := c.Leader(mesh)
	var majority []int
	for i := range c.Len() {
		if i != minority {
			majority = append(majority, i)
		}
	}
	c.Partition([]int{minority}, majority)

	// The majority elects a leader and commits.
	during := put(t, client(t, c, majority[0]), vs("during", "v1"))

	// The old leader, alone, cannot commit: it fails fast instead of hanging.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err := client(t, c, minority).Apply(ctx, []resource.Object{vs("minority", "v1")}, false, nil)
	if err == nil {
		t.Fatal("minority side committed a mutation")
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("minority apply took %s to fail", took)
	}
	t.Logf("minority apply failed as it must: %v", err)

	c.Heal()
	cl := client(t, c, minority)
	for _, o := range []resource.Object{acked, during} {
		eventually(t, 10*time.Second, func() error {
			got, err := get(cl, o.Kind, o.Namespace, o.Name)
			if err != nil {
				return err
			}
			if got.Version != o.Version {
				return fmt.Errorf("%s version %d, want %d", o.Name, got.Version, o.Version)
			}
			return nil
		})
	}
	if _, err := get(client(t, c, majority[1]), "VirtualService", "default."+mesh, "minority"); api.Code(err) != 5 /* NotFound */ {
		t.Fatalf("the minority's rejected write is visible or the read failed: %v", err)
	}
}
