package cli

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestResolvePrintsTheVerifiedChain: canton resolve verifies the answer
// against the credentials' trust bundle and says which scope CAs vouched,
// from the root scope's referral down to the owner, alias hops included.
func TestResolvePrintsTheVerifiedChain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := startMesh(ctx, t, "shop")
	manifests := `apiVersion: canton.dev/v1
kind: Service
metadata: {name: cart, namespace: payments.shop}
spec:
  ports: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: canton.dev/v1
kind: Alias
metadata: {name: basket, namespace: default}
spec: {target: cart.payments.shop.demo.mesh, actions: [resolve]}
`
	if _, stderr, code := run(t, c, manifests, "apply", "-f", "-"); code != 0 {
		t.Fatal(stderr)
	}
	out, stderr, code := run(t, c, "", "resolve", "basket.default")
	if code != 0 {
		t.Fatalf("resolve: %d %s %s", code, out, stderr)
	}
	for _, want := range []string{
		`basket.default.demo.mesh: alias by CA "canton root CA demo.mesh" (scope demo.mesh`,
		`cart.payments.shop.demo.mesh: answer by CA "canton scope CA shop.demo.mesh" (scope shop.demo.mesh`,
		`chain demo.mesh -> shop.demo.mesh`,
		`vouched by:   scope CA "canton scope CA shop.demo.mesh" of shop.demo.mesh`,
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
	t.Log(out)
}
