package xds

import (
	"fmt"
	"testing"

	"canton.dev/canton/internal/resource"
)

func TestReferencedHosts(t *testing.T) {
	yaml := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front, namespace: web}
spec:
  hosts: [front]
  http:
  - route:
    - destination: {host: cart.payments.shop.demo.mesh}
      weight: 90
    - destination: {host: reviews.bookinfo.svc.cluster.local}
      weight: 10
    mirror: {host: audit.ops.demo.mesh}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ext, namespace: web}
spec: {host: "*.example.com"}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: web}
spec:
  egress:
  - hosts: ["./*", "shop/orders", "*/everything", "payments.shop/ledger.payments.shop.demo.mesh", "*/stock.shop.demo.mesh"]
`
	objs, err := resource.Parse("refs.yaml", []byte(yaml), "demo.mesh", "web.demo.mesh")
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(ReferencedHosts(objs, "demo.mesh"))
	want := "[audit.ops.demo.mesh cart.payments.shop.demo.mesh front.web.demo.mesh ledger.payments.shop.demo.mesh orders.shop.demo.mesh reviews.bookinfo.demo.mesh stock.shop.demo.mesh]"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}
