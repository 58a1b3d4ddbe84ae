package workload_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"canton.dev/canton/internal/meshtest"
	"canton.dev/canton/internal/workload"
)

// TestStaleRemoteEndpointsOutlierDetection: the callee scope (shop) loses quorum, so the caller
// scope (web) keeps serving shop's last endpoints, stale, and nobody can take a dead endpoint
// out of them. When one of cart's two instances then dies, web's proxy still answers every
// call (retrying on the other host) and its outlier detection (web's DestinationRule for
// cart.shop.demo.mesh) ejects the dead instance, as Envoy's admin /clusters shows.
func TestStaleRemoteEndpointsOutlierDetection(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const web, shop = "web.demo.mesh", "shop.demo.mesh"
	c, _, applyIn := startScopes(ctx, t, meshtest.Options{Anchors: 3, RootVoters: 1}, map[string]string{web: "a2", shop: "a3"})
	applyIn(shop, cartForWeb)
	applyIn(web, frontendService+`---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: cart}
spec:
  host: cart.shop.demo.mesh
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 50}
`)
	startSidecarIn(t, c, shop, []int{2}, "cart", "a", app(t, "cart-a"))
	dying := startSidecarIn(t, c, shop, []int{2}, "cart", "b", app(t, "cart-b"))
	front := startSidecarWith(t, c, web, []int{1}, "frontend", "v1", "", func(o *workload.Options) { o.Admin = "127.0.0.1:0" })
	eventually(t, 20*time.Second, func() error {
		if got := fetch(t, front, "cart.shop.demo.mesh:8080", 10); got["cart-a"] == 0 || got["cart-b"] == 0 {
			return fmt.Errorf("web -> shop: %v, want both instances", got)
		}
		return nil
	})

	c.Stop(2) // shop's only anchor: the scope is gone, web keeps the last answer
	dying.stop()

	// Every call succeeds: a request that meets the dead instance is retried on the other.
	got := fetch(t, front, "cart.shop.demo.mesh:8080", 20)
	if got["cart-a"] != 20 {
		t.Fatalf("with shop down and cart-b dead: %v, want 20 × cart-a", got)
	}
	// And the dead instance is ejected: web's proxy stops sending to it.
	dead := dying.w.Inbound()
	resp, err := http.Get("http://" + front.w.Admin() + "/clusters")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var flags []string
	for _, line := range strings.Split(string(body), "\n") {
		if strings.Contains(line, "cart.shop.demo.mesh") && strings.Contains(line, "::health_flags::") {
			flags = append(flags, line)
		}
	}
	var ejected, healthy bool
	for _, l := range flags {
		switch {
		case strings.Contains(l, dead+"::health_flags::/failed_outlier_check"):
			ejected = true
		case strings.HasSuffix(l, "::health_flags::healthy"):
			healthy = true
		}
	}
	if !ejected || !healthy {
		t.Fatalf("cart endpoints at web's proxy:\n%s\nwant %s ejected (failed_outlier_check) and the other healthy", strings.Join(flags, "\n"), dead)
	}
}
