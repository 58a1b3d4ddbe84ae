package xds

import (
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"canton.dev/canton/internal/resource"
)

// A gateway route configuration ends with a "*" not_found virtual host, unless a VirtualService
// already claims "*": a domain may appear only once.
func TestGatewayNotFoundHostOnlyWhenStarIsFree(t *testing.T) {
	in := loadInput(t, "testdata/gateway")
	node := loadNode(t, "testdata/gateway")
	vhosts := func(in Input) []*routev3.VirtualHost {
		t.Helper()
		res, err := Generate(in, node)
		if err != nil {
			t.Fatal(err)
		}
		rc := res.Routes[gatewayRouteName(8080)]
		if rc == nil {
			t.Fatalf("no route configuration %s", gatewayRouteName(8080))
		}
		if err := uniqueDomains(rc.(*routev3.RouteConfiguration)); err != nil {
			t.Fatal(err)
		}
		return rc.(*routev3.RouteConfiguration).GetVirtualHosts()
	}
	star := vhosts(in)
	for _, vh := range star {
		if vh.GetName() == "not_found" {
			t.Errorf("not_found virtual host added although %q claims \"*\"", star[0].GetName())
		}
	}
	named := in
	named.Objects = append([]resource.Object(nil), in.Objects...)
	replaced := false
	for i, o := range named.Objects {
		if o.Kind == "VirtualService" && o.Name == "bookinfo" {
			spec := strings.Replace(string(o.Spec), `"hosts":["*"]`, `"hosts":["bookinfo.example.com"]`, 1)
			replaced = spec != string(o.Spec)
			o.Spec = []byte(spec)
			named.Objects[i] = o
		}
	}
	if !replaced {
		t.Fatal("test input: VirtualService bookinfo has no hosts [\"*\"] to replace")
	}
	got := vhosts(named)
	if len(got) != 2 || got[1].GetName() != "not_found" || strings.Join(got[1].GetDomains(), ",") != "*" ||
		got[1].GetRoutes()[0].GetDirectResponse().GetStatus() != 404 {
		t.Errorf("virtual hosts %v, want bookinfo.example.com then not_found (\"*\" -> 404)", got)
	}
}

func TestUniqueDomainsRejectsDuplicates(t *testing.T) {
	rc := &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{
		{Name: "a", Domains: []string{"*", "a:80"}}, {Name: "b", Domains: []string{"A:80"}}}}
	if err := uniqueDomains(rc); err == nil || !strings.Contains(err.Error(), `"a:80"`) {
		t.Errorf("uniqueDomains = %v, want a duplicate a:80", err)
	}
}
