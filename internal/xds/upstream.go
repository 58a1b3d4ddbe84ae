package xds

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"canton.dev/canton/internal/resource"
)

// Upstream listeners: `canton proxy --upstream NAME=HOST:PORT` binds a loopback port to one
// service port. The listener is chosen by the port's protocol:
//   - HTTP, HTTP2, GRPC, GRPC-WEB: an HttpConnectionManager with the routes the outbound
//     listener has for that host (RDS, a route configuration of the listener's name whose
//     one virtual host answers every Host);
//   - TLS, HTTPS: TLS passthrough: the VirtualService's tls routes by SNI (tls_inspector,
//     server_names), then, for any other SNI, what a TCP port gets;
//   - anything else (TCP, unknown, opaque): a tcp_proxy to the first tcp route that applies,
//     else to the service's cluster.
//
// Mesh clusters keep their ISTIO_MUTUAL transport, so TCP bytes travel in mTLS to the peer's
// inbound listener (for TLS ports: the client's own TLS inside the mesh's).

// UpstreamListenerName is the listener of the upstream binding on address (and, for an HTTP
// port, its route configuration): "upstream.<ip>:<port>".
func UpstreamListenerName(address string) string { return "upstream." + address }

// generateUpstreams builds one listener per Node.Upstreams entry (and the route configuration
// of those on HTTP ports).
func generateUpstreams(g *gen, out *Resources) error {
	for _, u := range g.node.Upstreams {
		l := g.upstreamListener(u, out)
		out.Listeners[l.Name] = l
	}
	return nil
}

func (g *gen) upstreamListener(u Upstream, out *Resources) *listenerv3.Listener {
	name := UpstreamListenerName(u.Address)
	ap := netip.MustParseAddrPort(u.Address) // checked by checkNode
	s, p, reason := g.upstreamTarget(u)
	if reason != "" {
		g.skip("node", "", "upstream "+u.String()+": "+reason+"; connections to "+u.Address+" are closed")
		return &listenerv3.Listener{Name: name, Address: socketAddress(ap.Addr().String(), uint32(ap.Port())),
			TrafficDirection: corev3.TrafficDirection_OUTBOUND, FilterChains: []*listenerv3.FilterChain{blackHoleChain(name)}}
	}
	return g.servicePortListener(name, ap, s, p, out)
}

// blackHoleChain closes every connection.
func blackHoleChain(statPrefix string) *listenerv3.FilterChain {
	return tcpChain("", tcpProxyTo(statPrefix, []destination{{cluster: blackHoleCluster}}, nil))
}

// servicePortListener is the listener name at ap that stands for port p of service s: what an
// upstream binding or a VIP gets (see the top of this file). HTTP ports get a route
// configuration of the same name.
func (g *gen) servicePortListener(name string, ap netip.AddrPort, s *service, p servicePort, out *Resources) *listenerv3.Listener {
	l := &listenerv3.Listener{Name: name, Address: socketAddress(ap.Addr().String(), uint32(ap.Port())),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND}
	switch {
	case p.http():
		vh := g.virtualHost(s, p, "", map[string]string{})
		vh.Domains = []string{"*"} // the port stands for the service: every Host reaches it
		rc := &routev3.RouteConfiguration{Name: name, ValidateClusters: wrapBool(false), VirtualHosts: []*routev3.VirtualHost{vh}}
		out.Routes[name] = rc
		l.FilterChains = []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{
			hcmFilter(g.secureHCM(rdsHCM(name, name, rc, nil), false))}}}
	case p.tls():
		l.FilterChains = g.tlsChains(s, p)
		if len(l.FilterChains[0].GetFilterChainMatch().GetServerNames()) > 0 {
			l.ListenerFilters = []*listenerv3.ListenerFilter{tlsInspector()}
		}
	default:
		l.FilterChains = []*listenerv3.FilterChain{tcpChain("", g.tcpProxy(s, p))}
	}
	return l
}

// upstreamTarget resolves the service and port an upstream binding names, as the node sees
// them: a short name is a service of the node's namespace, "svc.ns" is relative to the mesh,
// an alias stands for its service. reason says why there is none.
func (g *gen) upstreamTarget(u Upstream) (*service, servicePort, string) {
	name := u.Service
	var cands []string
	switch {
	case !strings.Contains(name, "."):
		cands = []string{name + "." + g.node.Namespace}
	case strings.HasSuffix(name, clusterLocalSuffix):
		cands = []string{qualify(name, g.node.Namespace, g.in.Mesh)}
	default:
		label, ns, _ := strings.Cut(name, ".")
		cands = []string{name, label + "." + resource.AbsoluteNamespace(ns, g.in.Mesh)}
	}
	var s *service
	for _, c := range cands {
		if svc, ok := g.isVisible(g.m.canonical(c)); ok {
			s = svc
			break
		}
	}
	if s == nil {
		return nil, servicePort{}, "no service " + cands[len(cands)-1] + " this proxy may reach"
	}
	var p servicePort
	switch {
	case u.Port != 0:
		var ok bool
		if p, ok = s.port(u.Port); !ok {
			return nil, servicePort{}, s.host + " has no port " + itoa(int(u.Port))
		}
	case len(s.ports) == 1:
		p = s.ports[0]
	default:
		ports := make([]string, len(s.ports))
		for i, sp := range s.ports {
			ports[i] = itoa(int(sp.number))
		}
		return nil, servicePort{}, s.host + " has several ports (" + strings.Join(ports, ", ") + "): name one, " + u.Service + ":PORT=" + u.Address
	}
	if !g.routable(s) {
		return nil, servicePort{}, "this proxy gets no cluster for " + s.host + " (reported above)"
	}
	return s, p, ""
}

// checkUpstreams checks Node.Upstreams: canonical entries (as ParseUpstreams writes them) with
// a port, no address twice, none that another listener of the node binds.
func checkUpstreams(n Node) error {
	if len(n.Upstreams) > maxUpstreams {
		return fmt.Errorf("more than %d upstreams", maxUpstreams)
	}
	seen := map[string]bool{}
	for _, u := range n.Upstreams {
		got, err := parseUpstream(u.String(), false)
		if err == nil && got != u {
			err = errors.New("not in canonical form, want " + got.String())
		}
		if err != nil {
			return fmt.Errorf("upstream %s: %w", u, err)
		}
		if seen[u.Address] {
			return fmt.Errorf("upstream %s: address bound twice", u)
		}
		seen[u.Address] = true
		ap := netip.MustParseAddrPort(u.Address)
		if n.OutboundPort != 0 && uint32(ap.Port()) == n.OutboundPort && ap.Addr() == netip.AddrFrom4([4]byte{127, 0, 0, 1}) {
			return fmt.Errorf("upstream %s: the outbound listener binds that address", u)
		}
		if n.InboundPort != 0 && uint32(ap.Port()) == n.InboundPort {
			in, err := netip.ParseAddr(n.InboundAddress)
			if err != nil || in.IsUnspecified() || in == ap.Addr() {
				return fmt.Errorf("upstream %s: the inbound listener binds that address", u)
			}
		}
	}
	return nil
}
