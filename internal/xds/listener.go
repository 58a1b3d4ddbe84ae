package xds

import (
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	security "istio.io/api/security/v1beta1"
)

// Listener names.
const (
	OutboundListenerName = "outbound"
	InboundListenerName  = "inbound"
)

const hcmFilterName = "envoy.filters.network.http_connection_manager"

// generateListeners builds the outbound HTTP listener (RDS "outbound"), the inbound mTLS
// listener in front of the application, and a gateway's server listeners. The inbound
// listener and every gateway listener receive requests from callers the policies are about:
// they get the same security filters (see securityFilters).
func generateListeners(g *gen, out *Resources) error {
	if g.node.OutboundPort != 0 {
		l := &listenerv3.Listener{
			Name:             OutboundListenerName,
			Address:          socketAddress("127.0.0.1", g.node.OutboundPort),
			TrafficDirection: corev3.TrafficDirection_OUTBOUND,
			FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{
				hcmFilter(g.secureHCM(rdsHCM("outbound", OutboundRouteName, out.Routes[OutboundRouteName], nil), false)),
			}}},
		}
		out.Listeners[l.Name] = l
	}
	if g.node.InboundPort != 0 {
		l := g.inboundListener(g.securityFilters(false))
		out.Listeners[l.Name] = l
	}
	servers := g.gatewayServers()
	ports := sortedPorts(servers)
	var authn []*hcmv3.HttpFilter
	if len(ports) > 0 {
		authn = g.securityFilters(true)
	}
	for _, port := range ports {
		name := gatewayRouteName(port)
		hcm := hcmFilter(g.secureHCM(rdsHCM(name, name, out.Routes[name], authn), false))
		l := &listenerv3.Listener{
			Name:             name,
			Address:          socketAddress(g.gatewayAddress(), port),
			TrafficDirection: corev3.TrafficDirection_OUTBOUND,
			FilterChains:     []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcm}}},
		}
		if srv := servers[port]; len(srv) > 0 && srv[0].tls {
			l.FilterChains = g.gatewayTLSChains(srv, hcm)
			l.ListenerFilters = []*listenerv3.ListenerFilter{tlsInspector()}
		}
		out.Listeners[l.Name] = l
	}
	return nil
}

// securityFilters translates the RequestAuthentications and AuthorizationPolicies that apply
// to the node into the HTTP filters that run first on its inbound listener or, with gateway,
// on its gateway listeners, in Envoy's order: authenticate the request's JWT, then authorize
// (CUSTOM, DENY, ALLOW, AUDIT). Nothing applies: no filter.
func (g *gen) securityFilters(gateway bool) []*hcmv3.HttpFilter {
	g.gatewayListener = gateway
	defer func() { g.gatewayListener = false }()
	var out []*hcmv3.HttpFilter
	if f := g.jwtFilter(); f != nil {
		out = append(out, f)
	}
	return append(out, g.authzFilters()...)
}

// rdsHCM is an HttpConnectionManager fetching route config rdsName over ADS. Its HTTP filters
// are first (security filters, see securityFilters), then the fault filter when rc (the
// route config it will receive) uses it, then the router.
func rdsHCM(statPrefix, rdsName string, rc any, first []*hcmv3.HttpFilter) *hcmv3.HttpConnectionManager {
	h := &hcmv3.HttpConnectionManager{
		StatPrefix: statPrefix,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource: adsConfigSource(), RouteConfigName: rdsName}},
		HttpFilters: append([]*hcmv3.HttpFilter(nil), first...),
	}
	if r, ok := rc.(*routev3.RouteConfiguration); ok && usesFilter(r, FaultFilterName) {
		h.HttpFilters = append(h.HttpFilters, &hcmv3.HttpFilter{Name: FaultFilterName,
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&faultv3.HTTPFault{})}})
	}
	h.HttpFilters = append(h.HttpFilters, routerFilter())
	return h
}

func routerFilter() *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: RouterFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}}
}

func hcmFilter(h *hcmv3.HttpConnectionManager) *listenerv3.Filter {
	return &listenerv3.Filter{Name: hcmFilterName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(h)}}
}

// usesFilter reports whether any route or virtual host of rc has per-filter config for name.
func usesFilter(rc *routev3.RouteConfiguration, name string) bool {
	for _, vh := range rc.GetVirtualHosts() {
		if _, ok := vh.GetTypedPerFilterConfig()[name]; ok {
			return true
		}
		for _, r := range vh.GetRoutes() {
			if _, ok := r.GetTypedPerFilterConfig()[name]; ok {
				return true
			}
		}
	}
	return false
}

// inboundListener terminates mTLS from other proxies (as PeerAuthentication allows) and routes
// every request to the local application, after the security filters.
func (g *gen) inboundListener(authn []*hcmv3.HttpFilter) *listenerv3.Listener {
	cluster := inboundClusterName(g.appPort)
	h := &hcmv3.HttpConnectionManager{
		StatPrefix: "inbound_" + itoa(int(g.appPort)),
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: cluster,
			VirtualHosts: []*routev3.VirtualHost{{Name: "inbound", Domains: []string{"*"}, Routes: []*routev3.Route{{
				Name:   "inbound",
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}, Timeout: durationOf(0)}},
			}}}},
		}},
	}
	g.secureHCM(h, true)
	h.HttpFilters = append(append(h.HttpFilters, authn...), routerFilter())
	addr := g.node.InboundAddress
	if addr == "" {
		addr = "0.0.0.0"
	}
	l := &listenerv3.Listener{Name: InboundListenerName, Address: socketAddress(addr, g.node.InboundPort),
		TrafficDirection: corev3.TrafficDirection_INBOUND}
	mtls := func(c *listenerv3.FilterChain) *listenerv3.FilterChain {
		c.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls",
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(downstreamTLS())}}
		return c
	}
	// The application's protocol decides the chains: HTTP ports get the connection manager,
	// other ports (TCP, TLS: opaque bytes) a tcp_proxy; a service with both tells them apart by
	// the ALPN its mesh clients offer for TCP (tcpALPN); plain text goes to HTTP then.
	httpPorts, tcpPorts := g.inboundProtocols()
	var tlsChains []*listenerv3.FilterChain
	var plainChain *listenerv3.FilterChain
	switch {
	case !tcpPorts:
		tlsChains = []*listenerv3.FilterChain{mtls(&listenerv3.FilterChain{Name: "inbound_mtls", Filters: []*listenerv3.Filter{hcmFilter(h)}})}
		plainChain = &listenerv3.FilterChain{Name: "inbound_plaintext", Filters: []*listenerv3.Filter{hcmFilter(h)}}
	case !httpPorts:
		authz := g.tcpAuthzFilters()
		tlsChains = []*listenerv3.FilterChain{mtls(g.inboundTCPChain("inbound_mtls_tcp", authz))}
		plainChain = g.inboundTCPChain("inbound_plaintext_tcp", authz)
	default:
		tcpTLS := mtls(g.inboundTCPChain("inbound_mtls_tcp", g.tcpAuthzFilters()))
		tcpTLS.FilterChainMatch = &listenerv3.FilterChainMatch{ApplicationProtocols: []string{tcpALPN}}
		tlsChains = []*listenerv3.FilterChain{mtls(&listenerv3.FilterChain{Name: "inbound_mtls", Filters: []*listenerv3.Filter{hcmFilter(h)}}), tcpTLS}
		plainChain = &listenerv3.FilterChain{Name: "inbound_plaintext", Filters: []*listenerv3.Filter{hcmFilter(h)}}
	}
	switch g.peerAuthenticationMode() {
	case security.PeerAuthentication_MutualTLS_DISABLE:
		l.FilterChains = []*listenerv3.FilterChain{plainChain}
	case security.PeerAuthentication_MutualTLS_PERMISSIVE:
		for _, c := range tlsChains {
			if c.FilterChainMatch == nil {
				c.FilterChainMatch = &listenerv3.FilterChainMatch{}
			}
			c.FilterChainMatch.TransportProtocol = "tls"
		}
		plainChain.FilterChainMatch = &listenerv3.FilterChainMatch{TransportProtocol: "raw_buffer"}
		l.ListenerFilters = []*listenerv3.ListenerFilter{tlsInspector()}
		l.FilterChains = append(tlsChains, plainChain)
	default:
		if len(tlsChains) > 1 {
			l.ListenerFilters = []*listenerv3.ListenerFilter{tlsInspector()} // ALPN
		}
		l.FilterChains = tlsChains
	}
	return l
}

func downstreamTLS() *tlsv3.DownstreamTlsContext {
	return &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapBool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsSecret(CertSecretName)},
			ValidationContextType:          &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{ValidationContextSdsSecretConfig: sdsSecret(RootSecretName)},
		},
	}
}

// peerAuthenticationMode returns the mutual TLS mode of the node's inbound listener, which
// serves the application's port and the ports of the node's Service (see mtlsMode).
func (g *gen) peerAuthenticationMode() security.PeerAuthentication_MutualTLS_Mode {
	return g.mtlsMode(g.node.Namespace, g.node.Labels, g.workloadPorts(), true)
}

func (pa *peerAuthentication) mode() security.PeerAuthentication_MutualTLS_Mode {
	if pa == nil {
		return security.PeerAuthentication_MutualTLS_UNSET
	}
	return pa.spec.GetMtls().GetMode()
}

// strictness orders modes: DISABLE < PERMISSIVE < STRICT.
func strictness(m security.PeerAuthentication_MutualTLS_Mode) int {
	switch m {
	case security.PeerAuthentication_MutualTLS_STRICT:
		return 3
	case security.PeerAuthentication_MutualTLS_PERMISSIVE:
		return 2
	case security.PeerAuthentication_MutualTLS_DISABLE:
		return 1
	}
	return 0
}

func sortedPorts[V any](m map[uint32]V) []uint32 {
	out := make([]uint32, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}
