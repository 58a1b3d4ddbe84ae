package xds

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"canton.dev/canton/internal/filter"
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

// A gateway's server listeners bind the node's InboundAddress (canton proxy --gateway-address)
// at the Gateway's ports (8080 HTTP and 8443 HTTPS here), 0.0.0.0 without one; a gateway gets no
// inbound or outbound listener.
func TestGatewayListenersBindTheGatewayAddress(t *testing.T) {
	in := loadInput(t, "testdata/gateway")
	for _, tc := range []struct{ address, want string }{{"", "0.0.0.0"}, {"127.0.0.2", "127.0.0.2"}, {"::1", "::1"}} {
		node := loadNode(t, "testdata/gateway")
		node.InboundAddress = tc.address
		res, err := Generate(in, node)
		if err != nil {
			t.Fatal(err)
		}
		if names := sortedKeys(res.Listeners); len(names) != 2 {
			t.Fatalf("address %q: listeners %v, want only %s and %s", tc.address, names, gatewayRouteName(8080), gatewayRouteName(8443))
		}
		for _, port := range []uint32{8080, 8443} {
			l, ok := res.Listeners[gatewayRouteName(port)].(*listenerv3.Listener)
			if !ok {
				t.Fatalf("address %q: no listener %s", tc.address, gatewayRouteName(port))
			}
			sa := l.GetAddress().GetSocketAddress()
			if sa.GetAddress() != tc.want || sa.GetPortValue() != port {
				t.Errorf("address %q: gateway listener on %s:%d, want %s:%d", tc.address, sa.GetAddress(), sa.GetPortValue(), tc.want, port)
			}
		}
	}
}

func TestUniqueDomainsRejectsDuplicates(t *testing.T) {
	rc := &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{
		{Name: "a", Domains: []string{"*", "a:80"}}, {Name: "b", Domains: []string{"A:80"}}}}
	if err := uniqueDomains(rc); err == nil || !strings.Contains(err.Error(), `"a:80"`) {
		t.Errorf("uniqueDomains = %v, want a duplicate a:80", err)
	}
}

// TestGatewayEnforcesSecurityPolicies runs the HTTP filters of the gateway-authz case's
// gateway listener with the proxy's filter package: the policies selecting the gateway (by
// labels, targetRefs Gateway, mesh root namespace) are enforced, a bad token gets 401, and
// the policies of other workloads (which would deny everything) are not applied.
func TestGatewayEnforcesSecurityPolicies(t *testing.T) {
	dir := "testdata/gateway-authz"
	res, err := Generate(loadInput(t, dir), loadNode(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	h, err := filter.Build(listenerFilters(t, res, gatewayRouteName(8080)), filter.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusOK)
		return nil
	}))
	if err != nil {
		t.Fatalf("the proxy's filter package rejects the gateway's filters: %v", err)
	}
	user := &filter.JWT{Principal: "https://issuer.example/bob"}
	for _, tc := range []struct {
		name string
		q    req
		want int
	}{
		{"allowed path", req{method: "GET", path: "/productpage"}, 200},
		{"path the ALLOW policy does not name", req{method: "GET", path: "/admin"}, 403},
		{"method the ALLOW policy does not name", req{method: "DELETE", path: "/productpage"}, 403},
		{"targetRefs Gateway DENY", req{method: "GET", path: "/static/private/key"}, 403},
		{"next to the DENY", req{method: "GET", path: "/static/app.js"}, 200},
		{"mesh-wide DENY", req{method: "TRACE", path: "/productpage"}, 403},
		{"request principal required, none", req{method: "GET", path: "/api/v1/products/1"}, 403},
		{"request principal required, present", req{method: "GET", path: "/api/v1/products/1", jwt: user}, 200},
		{"invalid token", req{method: "GET", path: "/productpage", headers: map[string]string{"Authorization": "Bearer not-a-token"}}, 401},
		{"port the ALLOW policy does not name", req{method: "GET", path: "/productpage", dst: netip.MustParseAddrPort("10.0.0.1:8081")}, 403},
	} {
		if !tc.q.dst.IsValid() {
			tc.q.dst = netip.MustParseAddrPort("10.0.0.1:8080") // the gateway listener's port
		}
		if got := serve(h, tc.q); got != tc.want {
			t.Errorf("%s: %s %s: %d, want %d", tc.name, tc.q.method, tc.q.path, got, tc.want)
		}
	}
	if len(res.Skipped) != 0 {
		t.Errorf("unexpected skips: %v", res.Skipped)
	}
}
