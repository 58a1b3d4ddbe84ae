package workload_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"canton.dev/canton/internal/meshtest"
)

// TestMeshWidePolicyReachesChildScopes: an AuthorizationPolicy in the mesh's
// root namespace (demo.mesh) applies to the workloads of every scope, as
// Istio's root namespace does, although scope web runs on an anchor that does
// not replicate the root scope; when the root scope loses quorum, web keeps
// enforcing the last copy (a mesh-wide DENY never lapses because the root is
// down).
func TestMeshWidePolicyReachesChildScopes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const web = "web.demo.mesh"
	c, _, applyIn := startScopes(ctx, t, meshtest.Options{Anchors: 4, RootVoters: 3}, map[string]string{web: "a4"})
	applyIn(web, `apiVersion: canton.dev/v1
kind: Service
metadata: {name: frontend}
spec:
  ports: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: canton.dev/v1
kind: Service
metadata: {name: backend}
spec:
  ports: [{name: http, port: 8080, protocol: HTTP}]
`)
	startSidecarIn(t, c, web, []int{3}, "backend", "v1", app(t, "backend"))
	front := startSidecarIn(t, c, web, []int{3}, "frontend", "v1", app(t, "frontend"))
	call := func() map[string]int { return fetch(t, front, "backend."+web+":8080", 3) }
	eventually(t, 20*time.Second, func() error {
		if got := call(); got["backend"] != 3 {
			return fmt.Errorf("frontend -> backend before any policy: %v", got)
		}
		return nil
	})

	applyIn("demo.mesh", `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-reviews}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/reviews/*"]}}]
`)
	denied := func(got map[string]int) bool { return got["403 RBAC: access denied"] == 3 }
	eventually(t, 20*time.Second, func() error {
		if got := call(); !denied(got) {
			return fmt.Errorf("the mesh-wide DENY does not apply in %s: %v", web, got)
		}
		return nil
	})

	for i := range 3 {
		c.Stop(i)
	}
	for range 3 {
		if got := call(); !denied(got) {
			t.Fatalf("with the root scope down, the mesh-wide DENY lapsed: %v", got)
		}
		time.Sleep(300 * time.Millisecond) // the follower retries meanwhile
	}
}
