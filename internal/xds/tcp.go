package xds

import (
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"canton.dev/canton/internal/resource"
)

// TCP and TLS traffic: tcp_proxy chains for the upstream listeners (VirtualService tcp and tls
// routes) and for the inbound listener of a workload serving TCP ports.

// tcpALPN is the ALPN a proxy offers when it carries opaque TCP over mesh mutual TLS (Istio's
// in-mesh TCP ALPN). The inbound listener of a workload whose service has TCP and HTTP ports
// sends connections offering it to its TCP chain.
const tcpALPN = "istio"

// blackHoleCluster names no cluster: a tcp_proxy to it closes every connection (flag NC). An
// upstream binding that cannot be served still gets its listener, so its port is held and
// its clients fail at once instead of hanging.
const blackHoleCluster = "BlackHoleCluster"

const (
	tcpProxyFilterName     = "envoy.filters.network.tcp_proxy"
	tlsInspectorFilterName = "envoy.filters.listener.tls_inspector"
)

// tls reports whether the port carries TLS the proxy passes through (routed by SNI).
func (p servicePort) tls() bool { return p.protocol == "TLS" || p.protocol == "HTTPS" }

// tcpProxy is what a connection to port p of s gets: the first tcp route of the node's
// VirtualService for s that applies (Istio: routes in order, a route's matches ORed, none =
// every connection), else the service's cluster.
func (g *gen) tcpProxy(s *service, p servicePort) *tcpproxyv3.TcpProxy {
	statPrefix := clusterName(p.number, "", s.host)
	if vs := g.virtualServiceFor(s, ""); vs != nil {
		for i, tr := range vs.spec.GetTcp() {
			path := "tcp[" + itoa(i) + "]"
			if !g.l4RouteApplies(vs, path, p.number, tr.GetMatch()) {
				continue
			}
			if dests, weights, ok := routeDestinations(g, vs, tr.GetRoute(), path, s, p); ok {
				return tcpProxyTo(statPrefix, dests, weights)
			}
		}
	}
	return tcpProxyTo(statPrefix, []destination{{cluster: statPrefix}}, nil)
}

// l4RouteApplies reports whether a tcp route with matches ms applies to the node on port:
// no match, or one whose generation-time conditions hold.
func (g *gen) l4RouteApplies(vs *virtualService, path string, port uint32, ms []*networking.L4MatchAttributes) bool {
	if len(ms) == 0 {
		return true
	}
	for j, m := range ms {
		if g.l4MatchApplies(vs, path+".match["+itoa(j)+"]", port, l4Match{port: m.GetPort(), sourceLabels: m.GetSourceLabels(),
			sourceNamespace: m.GetSourceNamespace(), gateways: m.GetGateways(), subnets: len(m.GetDestinationSubnets()) > 0 || m.GetSourceSubnet() != ""}) {
			return true
		}
	}
	return false
}

// l4Match is what tcp and tls route matches share.
type l4Match struct {
	port            uint32
	sourceLabels    map[string]string
	sourceNamespace string
	gateways        []string
	subnets         bool // destinationSubnets or sourceSubnet set
}

// l4MatchApplies evaluates a tcp or tls match for the node at generation time, as matchApplies
// does for HTTP. Subnet conditions cannot be decided (an upstream listener serves one service,
// whatever its addresses): such a match is left out, reported.
func (g *gen) l4MatchApplies(vs *virtualService, path string, port uint32, m l4Match) bool {
	if m.port != 0 && m.port != port {
		return false
	}
	if len(m.sourceLabels) > 0 && !labelsMatch(m.sourceLabels, g.node.Labels) {
		return false
	}
	if ns := m.sourceNamespace; ns != "" && resource.AbsoluteNamespace(ns, g.in.Mesh) != g.node.Namespace {
		return false
	}
	if len(m.gateways) > 0 && !g.gatewaysMatch(m.gateways, vs.namespace) {
		return false
	}
	if m.subnets {
		g.skip(vs.ref, path, "destinationSubnets and sourceSubnet are not supported (an upstream listener serves one service); the match is left out")
		return false
	}
	return true
}

// tlsChains are the filter chains of an upstream listener on a TLS port of s: one per tls
// route of the node's VirtualService that applies, matching its sniHosts (a name claimed by
// an earlier route is reported and left out; "*" matches every name), then a chain without
// names for every other connection: the tcp routes' choice, as Istio falls back to them.
// The client's TLS is never terminated.
func (g *gen) tlsChains(s *service, p servicePort) []*listenerv3.FilterChain {
	statPrefix := clusterName(p.number, "", s.host)
	var named []*listenerv3.FilterChain
	var catchAll *listenerv3.FilterChain
	vs := g.virtualServiceFor(s, "")
	var routes []*networking.TLSRoute
	if vs != nil {
		routes = vs.spec.GetTls()
	}
	claimed := map[string]string{} // SNI -> the tls route whose chain has it
	for i, tr := range routes {
		path := "tls[" + itoa(i) + "]"
		if len(tr.GetMatch()) == 0 {
			g.skip(vs.ref, path+".match", "a tls route needs a match with sniHosts; the route is left out")
			continue
		}
		type sni struct{ name, field string }
		var snis []sni
		all := false
		for j, m := range tr.GetMatch() {
			mpath := path + ".match[" + itoa(j) + "]"
			if !g.l4MatchApplies(vs, mpath, p.number, l4Match{port: m.GetPort(), sourceLabels: m.GetSourceLabels(),
				sourceNamespace: m.GetSourceNamespace(), gateways: m.GetGateways(), subnets: len(m.GetDestinationSubnets()) > 0}) {
				continue
			}
			for k, h := range m.GetSniHosts() {
				if h = strings.ToLower(strings.TrimSuffix(h, ".")); h == "*" {
					all = true
				} else {
					snis = append(snis, sni{h, mpath + ".sniHosts[" + itoa(k) + "]"})
				}
			}
		}
		switch {
		case all && catchAll != nil:
			g.skip(vs.ref, path, "an earlier tls route already takes every SNI (\"*\"); the route is left out")
			continue
		case !all && len(snis) == 0:
			continue // no match applies to this proxy and port
		}
		dests, weights, ok := routeDestinations(g, vs, tr.GetRoute(), path, s, p)
		if !ok {
			continue
		}
		c := tcpChain(vs.name+"."+vs.namespace+"/"+path, tcpProxyTo(statPrefix, dests, weights))
		if all {
			catchAll = c // "*" covers the route's other names too
			continue
		}
		var names []string
		for _, n := range snis {
			switch owner, taken := claimed[n.name]; {
			case taken && owner != path:
				g.skip(vs.ref, n.field, "SNI "+n.name+" is already routed by "+owner+"; left out")
			case !taken:
				claimed[n.name] = path
				names = append(names, n.name)
			}
		}
		if len(names) > 0 {
			c.FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: names}
			named = append(named, c)
		}
	}
	if catchAll == nil {
		catchAll = tcpChain("", g.tcpProxy(s, p))
	}
	return append(named, catchAll)
}

// tcpProxyTo is a tcp_proxy to dests: one cluster, or weighted clusters (weights from
// routeDestinations: positive when there are several).
func tcpProxyTo(statPrefix string, dests []destination, weights []uint32) *tcpproxyv3.TcpProxy {
	t := &tcpproxyv3.TcpProxy{StatPrefix: statPrefix}
	if len(dests) == 1 {
		t.ClusterSpecifier = &tcpproxyv3.TcpProxy_Cluster{Cluster: dests[0].cluster}
		return t
	}
	wc := &tcpproxyv3.TcpProxy_WeightedCluster{}
	for i, d := range dests {
		wc.Clusters = append(wc.Clusters, &tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{Name: d.cluster, Weight: weights[i]})
	}
	t.ClusterSpecifier = &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: wc}
	return t
}

// tcpChain is a filter chain with t as its one network filter.
func tcpChain(name string, t *tcpproxyv3.TcpProxy) *listenerv3.FilterChain {
	return &listenerv3.FilterChain{Name: name, Filters: []*listenerv3.Filter{{Name: tcpProxyFilterName,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t)}}}}
}

func tlsInspector() *listenerv3.ListenerFilter {
	return &listenerv3.ListenerFilter{Name: tlsInspectorFilterName,
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspectorv3.TlsInspector{})}}
}

// inboundProtocols reports whether the node's service has HTTP-family ports and whether it has
// others (TCP, TLS, ...). A node without a known service, or whose service has no port, is
// taken to serve HTTP.
func (g *gen) inboundProtocols() (http, tcp bool) {
	s := g.m.services[g.node.Service+"."+g.node.Namespace]
	if s == nil || len(s.ports) == 0 {
		return true, false
	}
	for _, p := range s.ports {
		if p.http() {
			http = true
		} else {
			tcp = true
		}
	}
	return http, tcp
}

// tcpAuthzFilters translates the AuthorizationPolicies that apply to the node into the network
// RBAC filters of its inbound TCP chains, with the selection, precedence and fail-closed rules
// of the HTTP filters (see authzRules): DENY before ALLOW; no policy, no filter (allow all); an
// ALLOW policy without a rule that can match a connection denies every connection. The rules
// follow Istio's semantics for TCP (see ruleTranslator.httpOnly). CUSTOM policies cannot be
// sent to a provider over TCP: their rules deny instead (fail closed, reported).
func (g *gen) tcpAuthzFilters() []*listenerv3.Filter {
	aps := g.authorizationPolicies()
	if len(aps) == 0 {
		return nil
	}
	var out []*listenerv3.Filter
	for _, gr := range g.authzRules(aps, nil) {
		cfg := &netrbacv3.RBAC{StatPrefix: networkRBACStatPrefix, Rules: gr.rules}
		out = append(out, &listenerv3.Filter{Name: gr.networkName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(cfg)}})
	}
	return out
}

// inboundTCPChain is an inbound TCP filter chain named name: the network filters authz (see
// tcpAuthzFilters), then a tcp_proxy to the application.
func (g *gen) inboundTCPChain(name string, authz []*listenerv3.Filter) *listenerv3.FilterChain {
	c := tcpChain(name, tcpProxyTo(inboundClusterName(g.appPort), []destination{{cluster: inboundClusterName(g.appPort)}}, nil))
	fs := make([]*listenerv3.Filter, 0, len(authz)+1)
	for _, f := range authz {
		fs = append(fs, proto.Clone(f).(*listenerv3.Filter))
	}
	c.Filters = append(fs, c.Filters...)
	return c
}
