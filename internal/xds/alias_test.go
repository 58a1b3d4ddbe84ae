package xds

import (
	"slices"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"canton.dev/canton/internal/resource"
)

// aliasInput is a namespace after `canton rename service reviews critiques`
// (the Alias points at the UID) and `ratings` -> `stars` (an Alias by name
// that may only be resolved, not invoked), with a VirtualService and a
// DestinationRule still written for the old name reviews.
const aliasInput = `apiVersion: canton.dev/v1
kind: Service
metadata: {name: critiques, namespace: bookinfo, uid: 3-9}
spec:
  ports: [{name: http, port: 9080, protocol: HTTP}]
---
apiVersion: canton.dev/v1
kind: Service
metadata: {name: stars, namespace: bookinfo, uid: 3-10}
spec:
  ports: [{name: http, port: 9080, protocol: HTTP}]
---
apiVersion: canton.dev/v1
kind: Service
metadata: {name: details, namespace: bookinfo, uid: 3-11}
spec:
  ports: [{name: http, port: 9080, protocol: HTTP}]
---
apiVersion: canton.dev/v1
kind: Alias
metadata: {name: reviews, namespace: bookinfo}
spec: {target: 3-9, actions: [resolve, invoke]}
---
apiVersion: canton.dev/v1
kind: Alias
metadata: {name: ratings, namespace: bookinfo}
spec: {target: stars.bookinfo.demo.mesh, actions: [resolve]}
---
apiVersion: canton.dev/v1
kind: Alias
metadata: {name: details, namespace: bookinfo}
spec: {target: 3-9, actions: [invoke]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`

// TestAliasesRouteToTheRenamedService: after a rename, the old name reaches
// the service (its domains are added to the service's virtual host), and the
// VirtualService and DestinationRule written for the old name keep applying,
// their destinations mapped to the service's clusters. An alias without the
// "invoke" action is not routable; a name that is a service stays that
// service.
func TestAliasesRouteToTheRenamedService(t *testing.T) {
	objs, err := resource.Parse("alias.yaml", []byte(aliasInput), testMesh, "bookinfo")
	if err != nil {
		t.Fatal(err)
	}
	for i := range objs {
		objs[i].Created = uint64(i + 1)
	}
	res, err := Generate(Input{Mesh: testMesh, Scope: testMesh, Objects: objs, Revision: 3}, defaultNode())
	if err != nil {
		t.Fatal(err)
	}
	validateAll(t, res)
	rc := res.Routes[OutboundRouteName].(*routev3.RouteConfiguration)
	vhost := func(name string) *routev3.VirtualHost {
		for _, vh := range rc.GetVirtualHosts() {
			if vh.GetName() == name {
				return vh
			}
		}
		t.Fatalf("no virtual host %s", name)
		return nil
	}
	critiques := vhost("critiques.bookinfo.demo.mesh:9080")
	for _, d := range []string{"critiques", "reviews", "reviews.bookinfo.demo.mesh", "reviews.bookinfo.demo.mesh:9080", "reviews.bookinfo:9080"} {
		if !slices.Contains(critiques.GetDomains(), d) {
			t.Errorf("domain %q missing from %v", d, critiques.GetDomains())
		}
	}
	// The VirtualService for reviews routes critiques, through the subsets of the old
	// name's DestinationRule.
	var clusters []string
	for _, r := range critiques.GetRoutes() {
		clusters = append(clusters, r.GetRoute().GetCluster())
	}
	if want := []string{"outbound|9080|v2|critiques.bookinfo.demo.mesh", "outbound|9080|v1|critiques.bookinfo.demo.mesh"}; !slices.Equal(clusters, want) {
		t.Errorf("routes of critiques go to %v, want %v", clusters, want)
	}
	for _, c := range []string{"outbound|9080|v1|critiques.bookinfo.demo.mesh", "outbound|9080|v2|critiques.bookinfo.demo.mesh"} {
		if _, ok := res.Clusters[c]; !ok {
			t.Errorf("cluster %s missing (the old name's DestinationRule subsets)", c)
		}
	}
	// ratings may be resolved but not invoked; details is a service, not an alias.
	for _, vh := range rc.GetVirtualHosts() {
		for _, d := range vh.GetDomains() {
			if strings.HasPrefix(d, "ratings") {
				t.Errorf("resolve-only alias ratings is routable: %s in %s", d, vh.GetName())
			}
			if strings.HasPrefix(d, "details") && vh.GetName() != "details.bookinfo.demo.mesh:9080" {
				t.Errorf("the service details was taken over by an alias: %s in %s", d, vh.GetName())
			}
		}
	}
	found := false
	for _, s := range res.Skipped {
		found = found || (s.Object == "Alias bookinfo.demo.mesh/details" && strings.Contains(s.Reason, "is a service"))
	}
	if !found {
		t.Errorf("the alias hidden by the service details is not reported: %v", res.Skipped)
	}
}
