package xds

import (
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"canton.dev/canton/internal/resource"
)

// OutboundRouteName is the RouteConfiguration of the outbound listener.
const OutboundRouteName = "outbound"

// blockAllName is the virtual host answering for hosts the node may not reach.
const blockAllName = "block_all"

// generateRoutes builds the outbound RouteConfiguration: one virtual host per visible service
// and HTTP port, then a catch-all that answers 502 for unknown hosts (Istio's REGISTRY_ONLY).
func generateRoutes(g *gen, out *Resources) error {
	if g.node.OutboundPort != 0 {
		rc := &routev3.RouteConfiguration{Name: OutboundRouteName, ValidateClusters: wrapBool(false)}
		claimed := map[string]string{}
		for _, s := range g.visible {
			for _, p := range s.ports {
				if !p.http() {
					continue
				}
				if !g.routable(s) {
					continue
				}
				vh := g.virtualHost(s, p, "", claimed)
				if vh != nil {
					rc.VirtualHosts = append(rc.VirtualHosts, vh)
				}
			}
		}
		rc.VirtualHosts = append(rc.VirtualHosts, blockAll())
		out.Routes[rc.Name] = rc
	}
	return nil
}

func blockAll() *routev3.VirtualHost {
	return &routev3.VirtualHost{Name: blockAllName, Domains: []string{"*"}, Routes: []*routev3.Route{{
		Name:   blockAllName,
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 502}},
	}}}
}

// routable reports whether the node gets a cluster for s (DNS clusters need a capability).
func (g *gen) routable(s *service) bool {
	_, ok := g.clusterKind(s)
	return ok
}

// virtualHost builds the virtual host of service s on port p. claimed tracks domains already
// used in the route configuration (Envoy rejects duplicates): the first claim wins.
func (g *gen) virtualHost(s *service, p servicePort, gatewayRef string, claimed map[string]string) *routev3.VirtualHost {
	name := s.host + ":" + itoa(int(p.number))
	vh := &routev3.VirtualHost{Name: name}
	for _, d := range g.domains(s, p) {
		if owner, taken := claimed[d]; taken {
			if owner != name {
				g.skip(s.ref, "", "domain "+d+" already belongs to virtual host "+owner)
			}
			continue
		}
		claimed[d] = name
		vh.Domains = append(vh.Domains, d)
	}
	if len(vh.Domains) == 0 {
		return nil
	}
	if vs := g.virtualServiceFor(s, gatewayRef); vs != nil {
		vh.Routes = g.translateHTTP(vs, s, p)
	} else {
		vh.Routes = []*routev3.Route{g.defaultRoute(s, p)}
	}
	if len(vh.Routes) == 0 {
		// No route applies to this port (all matched other ports or sources): Envoy
		// answers 404 for the host, as Istio does.
		vh.Routes = []*routev3.Route{{Name: "no_route",
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 404}}}}
	}
	return vh
}

// domains lists the Host/:authority values that reach s on port p: the fully qualified name
// and its "svc.cluster.local" and mesh-relative spellings, and the short name when s is in
// the node's namespace, each bare (only on the service's default HTTP port) and with ":port".
// The names of s's aliases (e.g. its name before a rename) are spelled the same ways, after
// its own.
func (g *gen) domains(s *service, p servicePort) []string {
	var names []string
	for _, host := range append([]string{s.host}, g.m.aliasesOf[s]...) {
		names = append(names, host)
		if strings.HasPrefix(host, "*.") || !resource.IsSubdomain(s.namespace, g.in.Mesh) || !strings.HasSuffix(host, "."+s.namespace) {
			continue
		}
		label := strings.TrimSuffix(host, "."+s.namespace)
		if strings.Contains(label, ".") {
			continue
		}
		if s.namespace == g.node.Namespace {
			names = append(names, label)
		}
		if rel := resource.RelativeNamespace(s.namespace, g.in.Mesh); rel != s.namespace {
			names = append(names, label+"."+rel, label+"."+rel+clusterLocalSuffix)
		}
	}
	bare := p.number == defaultHTTPPort(s)
	var out []string
	for _, n := range names {
		if bare {
			out = append(out, n)
		}
		out = append(out, n+":"+itoa(int(p.number)))
	}
	return out
}

// defaultHTTPPort is the port a Host header without a port reaches: 80 when the service has
// it as an HTTP port, else its lowest HTTP port.
func defaultHTTPPort(s *service) uint32 {
	var first uint32
	for _, p := range s.ports {
		if !p.http() {
			continue
		}
		if p.number == 80 {
			return 80
		}
		if first == 0 {
			first = p.number
		}
	}
	return first
}

// defaultRoute sends everything to the service's port cluster (no VirtualService).
func (g *gen) defaultRoute(s *service, p servicePort) *routev3.Route {
	ra := &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: clusterName(p.number, "", s.host)},
		Timeout:          durationOf(0),
		RetryPolicy:      defaultRetryPolicy(),
	}
	ra.HashPolicy = g.hashPolicy(s, p.number, "", s.ref)
	g.retryOtherHosts(ra, nil)
	return &routev3.Route{
		Name:   "default",
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: ra},
	}
}
