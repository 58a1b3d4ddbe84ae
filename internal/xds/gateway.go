package xds

import (
	"sort"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	networking "istio.io/api/networking/v1alpha3"

	"canton.dev/canton/internal/resource"
)

// gatewayRouteName names the listener and route configuration of a gateway port.
func gatewayRouteName(port uint32) string { return "http." + itoa(int(port)) }

// gatewayAddress is the IP a gateway's server listeners bind: the node's InboundAddress (a
// gateway has no inbound listener; canton proxy --gateway-address sends it), else 0.0.0.0 (every
// interface, as Istio's gateways listen). The ports are the Gateway servers'.
func (g *gen) gatewayAddress() string {
	if g.node.InboundAddress != "" {
		return g.node.InboundAddress
	}
	return "0.0.0.0"
}

// gatewayServer is one plain-HTTP server of a Gateway selecting the node.
type gatewayServer struct {
	gw     *gateway
	ref    string // "absolute-ns/name" as VirtualServices name it
	server *networking.Server
}

// gatewayServers returns, by port, the HTTP servers of the Gateways whose selector matches
// the node (only for gateway nodes). Servers that are not plain HTTP are reported.
func (g *gen) gatewayServers() map[uint32][]gatewayServer {
	if g.node.kind() != KindGateway {
		return nil
	}
	out := map[uint32][]gatewayServer{}
	for _, gw := range g.m.gateways {
		sel := gw.spec.GetSelector()
		if len(sel) == 0 || !labelsMatch(sel, g.node.Labels) {
			continue
		}
		for i, srv := range gw.spec.GetServers() {
			proto := strings.ToUpper(srv.GetPort().GetProtocol())
			if proto != "HTTP" && proto != "HTTP2" && proto != "GRPC" || srv.GetTls() != nil {
				g.skip(gw.ref, "servers["+itoa(i)+"]", "only plain HTTP gateway servers are supported; protocol "+srv.GetPort().GetProtocol()+" is not")
				continue
			}
			if srv.GetBind() != "" {
				g.skip(gw.ref, "servers["+itoa(i)+"].bind", "bind is not supported; the server listens on the gateway's address, "+g.gatewayAddress()+" (canton proxy --gateway-address)")
			}
			port := srv.GetPort().GetNumber()
			out[port] = append(out[port], gatewayServer{gw: gw, ref: gw.namespace + "/" + gw.name, server: srv})
		}
	}
	return out
}

// gatewayPorts lists the ports of the node's gateway listeners, sorted.
func (g *gen) gatewayPorts() []uint32 {
	var ports []uint32
	for p := range g.gatewayServers() {
		ports = append(ports, p)
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
	return ports
}

// serverAllows reports whether a Gateway server's hosts ("namespace/host" or "host") admit a
// VirtualService host of namespace vsNS.
func (g *gen) serverAllows(gs gatewayServer, vsNS, host string) bool {
	for _, h := range gs.server.GetHosts() {
		nsPart, hostPart, ok := cutLast(h, "/")
		if ok && nsPart != "*" {
			ns := gs.gw.namespace
			if nsPart != "." {
				ns = resource.AbsoluteNamespace(nsPart, g.in.Mesh)
			}
			if ns != vsNS {
				continue
			}
		}
		pattern := qualify(hostPart, gs.gw.namespace, g.in.Mesh)
		if hostMatches(pattern, host) || hostMatches(host, pattern) {
			return true
		}
	}
	return false
}

// generateGatewayRoutes builds one RouteConfiguration per gateway port from the
// VirtualServices bound to the Gateways of that port: one virtual host per VirtualService host.
func generateGatewayRoutes(g *gen, out *Resources) error {
	servers := g.gatewayServers()
	for _, port := range g.gatewayPorts() {
		name := gatewayRouteName(port)
		rc := &routev3.RouteConfiguration{Name: name, ValidateClusters: wrapBool(false)}
		claimed := map[string]string{}
		for _, vs := range g.m.vss {
			for _, host := range vs.hosts {
				var bound *gatewayServer
				for i, gs := range servers[port] {
					if g.boundTo(vs.spec.GetGateways(), vs.namespace, gs.ref) && g.serverAllows(gs, vs.namespace, host) {
						bound = &servers[port][i]
						break
					}
				}
				if bound == nil {
					continue
				}
				vh := &routev3.VirtualHost{Name: host + ":" + itoa(int(port))}
				for _, d := range []string{host, host + ":" + itoa(int(port))} {
					if owner, taken := claimed[d]; taken {
						g.skip(vs.ref, "hosts", "domain "+d+" on gateway port "+itoa(int(port))+" already belongs to virtual host "+owner)
						continue
					}
					claimed[d] = vh.Name
					vh.Domains = append(vh.Domains, d)
				}
				if len(vh.Domains) == 0 {
					continue
				}
				g.gatewayRef = bound.ref
				vh.Routes = g.translateHTTP(vs, nil, servicePort{number: port, protocol: "HTTP"})
				g.gatewayRef = ""
				if len(vh.Routes) == 0 {
					continue
				}
				rc.VirtualHosts = append(rc.VirtualHosts, vh)
			}
		}
		sort.SliceStable(rc.VirtualHosts, func(i, j int) bool { return rc.VirtualHosts[i].Name < rc.VirtualHosts[j].Name })
		// Hosts no VirtualService claims get a 404 — unless one claims "*" already: a domain may
		// appear only once in a route configuration (Envoy rejects duplicates).
		if _, taken := claimed["*"]; !taken {
			rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{Name: "not_found", Domains: []string{"*"},
				Routes: []*routev3.Route{{Name: "not_found", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 404}}}}})
		}
		out.Routes[name] = rc
	}
	return nil
}
