package workload_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/meshtest"
)

// TestRenameKeepsTrafficFlowing: renaming a service (same UID, the old name
// left as an Alias) must not break its callers: a caller using the old name,
// with or without a VirtualService naming it, still reaches the running
// workloads (registered, and holding certificates, under the old name), and
// the new name reaches them too.
func TestRenameKeepsTrafficFlowing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const web = "web.demo.mesh"
	c, cl, applyIn := startScopes(ctx, t, meshtest.Options{Anchors: 2, RootVoters: 1}, map[string]string{web: "a2"})
	applyIn(web, `apiVersion: canton.dev/v1
kind: Service
metadata: {name: frontend}
spec:
  ports: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: canton.dev/v1
kind: Service
metadata: {name: cart}
spec:
  ports: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: canton.dev/v1
kind: Service
metadata: {name: orders}
spec:
  ports: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: orders}
spec:
  hosts: [orders]
  http:
  - route:
    - destination: {host: orders}
`)
	startSidecarIn(t, c, web, []int{1}, "cart", "v1", app(t, "cart"))
	startSidecarIn(t, c, web, []int{1}, "orders", "v1", app(t, "orders"))
	front := startSidecarIn(t, c, web, []int{1}, "frontend", "v1", app(t, "frontend"))
	reaches := func(host, want string) func() error {
		return func() error {
			if got := fetch(t, front, host, 3); got[want] != 3 {
				return fmt.Errorf("frontend -> %s: %v", host, got)
			}
			return nil
		}
	}
	eventually(t, 20*time.Second, reaches("cart."+web+":8080", "cart"))
	eventually(t, 20*time.Second, reaches("orders."+web+":8080", "orders"))

	for _, r := range [][2]string{{"cart", "basket"}, {"orders", "purchases"}} {
		if _, err := cl.Raw().Rename(ctx, &apipb.RenameRequest{Namespace: web, Name: r[0], NewName: r[1]}); err != nil {
			t.Fatalf("rename %s -> %s: %v", r[0], r[1], err)
		}
	}
	eventually(t, 20*time.Second, reaches("basket."+web+":8080", "cart"))
	eventually(t, 20*time.Second, reaches("purchases."+web+":8080", "orders"))
	for _, host := range []string{"cart." + web + ":8080", "cart:8080"} {
		eventually(t, 20*time.Second, reaches(host, "cart"))
	}
	// The VirtualService still names the old host: it keeps routing.
	eventually(t, 20*time.Second, reaches("orders."+web+":8080", "orders"))
	eventually(t, 20*time.Second, reaches("orders:8080", "orders"))
}
