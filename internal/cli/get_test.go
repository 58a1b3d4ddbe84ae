package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"canton.dev/canton/internal/resource"
)

// TestGetAllWalksDelegationsByDomain: get -A follows a zone cut to the
// Delegation's spec.domain, whatever the Delegation is named.
func TestGetAllWalksDelegationsByDomain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := startMesh(ctx, t)
	cl, err := c.Client(0)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	child := "shop." + c.Mesh()
	cut := resource.Object{Kind: "Delegation", Namespace: c.Mesh(), Name: "shop-cut",
		Spec: []byte(`{"domain":"` + child + `","anchors":["a2","a3"]}`)}
	if _, err := cl.Apply(ctx, []resource.Object{cut}, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitScope(ctx, child); err != nil {
		t.Fatal(err)
	}
	vs := resource.Object{Kind: "VirtualService", Namespace: "web." + child, Name: "cart",
		Spec: []byte(`{"hosts":["cart"],"http":[{"route":[{"destination":{"host":"cart"}}]}]}`)}
	for {
		_, err := cl.Apply(ctx, []resource.Object{vs}, false, nil)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("apply in the child scope: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // the child scope is sealing its CA; retry
	}
	out, stderr, code := run(t, c, "", "get", "vs", "-A")
	if code != 0 {
		t.Fatalf("get vs -A: exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "web.shop") || !strings.Contains(out, "cart") {
		t.Fatalf("get vs -A does not list the child scope's VirtualService:\n%s", out)
	}
}

// TestSummaryShowsVIP: the wide listing of a Service shows the VIP its scope gave it.
func TestSummaryShowsVIP(t *testing.T) {
	o := resource.Object{Kind: "Service", Name: "reviews", VIPs: []string{"241.2.3.4"},
		Spec: []byte(`{"ports":[{"name":"http","port":9080}]}`)}
	if got := summary(o); got != "vip=241.2.3.4" {
		t.Fatalf("summary = %q, want vip=241.2.3.4", got)
	}
}
