package xds

import (
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
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

// gatewayServer is one HTTP or HTTPS server of a Gateway selecting the node.
type gatewayServer struct {
	gw     *gateway
	ref    string // "absolute-ns/name" as VirtualServices name it
	server *networking.Server
	path   string // "servers[i]", for reports
	// tls: an HTTPS server terminating TLS (SIMPLE or MUTUAL) with the key pair named by
	// tls.credentialName; plain HTTP otherwise.
	tls bool
	// httpsRedirect: a plain HTTP server (tls.httpsRedirect) answering every request of its
	// hosts with a 301 to the same URL in https.
	httpsRedirect bool
}

// gatewayServers returns, by port, the HTTP and HTTPS servers of the Gateways whose selector
// matches the node (only for gateway nodes). A port serves either plain HTTP or TLS: servers of
// the other kind on it, and servers Canton does not translate, are reported.
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
			path := "servers[" + itoa(i) + "]"
			gs := gatewayServer{gw: gw, ref: gw.namespace + "/" + gw.name, server: srv, path: path}
			if why := g.gatewayServerKind(&gs); why != "" {
				g.skip(gw.ref, path, why)
				continue
			}
			if srv.GetBind() != "" {
				g.skip(gw.ref, path+".bind", "bind is not supported; the server listens on the gateway's address, "+g.gatewayAddress()+" (canton proxy --gateway-address)")
			}
			port := srv.GetPort().GetNumber()
			if others := out[port]; len(others) > 0 && others[0].tls != gs.tls {
				g.skip(gw.ref, path, "port "+itoa(int(port))+" already serves "+kindOfServer(others[0])+" ("+others[0].ref+" "+others[0].path+"); one port cannot serve both plain HTTP and TLS")
				continue
			}
			out[port] = append(out[port], gs)
		}
	}
	return out
}

func kindOfServer(gs gatewayServer) string {
	if gs.tls {
		return "TLS"
	}
	return "plain HTTP"
}

// gatewayServerKind sets gs.tls from its server's protocol and TLS settings, or says why the
// server is not translated.
func (g *gen) gatewayServerKind(gs *gatewayServer) string {
	srv := gs.server
	t := srv.GetTls()
	switch proto := strings.ToUpper(srv.GetPort().GetProtocol()); {
	case (proto == "HTTP" || proto == "HTTP2" || proto == "GRPC") && t == nil:
		return ""
	case proto == "HTTP" && t.GetHttpsRedirect():
		gs.httpsRedirect = true
		return ""
	case proto != "HTTPS":
		return "protocol " + srv.GetPort().GetProtocol() + " is not supported on gateways (HTTP, HTTP2, GRPC and HTTPS are)"
	case t == nil:
		return "an HTTPS server needs tls settings (mode SIMPLE or MUTUAL, credentialName)"
	case t.GetMode() != networking.ServerTLSSettings_SIMPLE && t.GetMode() != networking.ServerTLSSettings_MUTUAL:
		return "tls.mode " + t.GetMode().String() + " is not supported (SIMPLE and MUTUAL are)"
	case t.GetCredentialName() == "":
		return "tls.credentialName is required: the key pair the gateway serves (canton proxy --gateway --tls-credential NAME=CERT,KEY); file paths (serverCertificate, privateKey) are not supported"
	case len(t.GetSubjectAltNames()) > 0 || len(t.GetVerifyCertificateSpki()) > 0 || len(t.GetVerifyCertificateHash()) > 0:
		return "tls.subjectAltNames and certificate pins are not supported; the server is left out"
	}
	gs.tls = true
	return ""
}

// gatewayTLSChains are the filter chains of a TLS gateway port: one per server, chosen by SNI
// among the server's hosts ("*" or none: any name), each terminating TLS with the server's key
// pair (SDS secret tls.credentialName, which the gateway serves from its local files) and, for
// MUTUAL, requiring a client certificate signed by the CAs of the secret
// "<credentialName>-cacert" (Istio's convention). hcm is the port's connection manager.
func (g *gen) gatewayTLSChains(servers []gatewayServer, hcm *listenerv3.Filter) []*listenerv3.FilterChain {
	var chains []*listenerv3.FilterChain
	claimed := map[string]string{} // SNI -> server
	for _, gs := range servers {
		var names []string
		for _, h := range gs.server.GetHosts() {
			_, host, _ := cutLast(h, "/")
			if host == "*" {
				names = nil
				break
			}
			names = append(names, strings.ToLower(host))
		}
		key := strings.Join(names, ",")
		if owner, taken := claimed[key]; taken {
			g.skip(gs.gw.ref, gs.path+".hosts", "the same server names ("+namesOrAny(key)+") are served by "+owner+" on this port; left out")
			continue
		}
		claimed[key] = gs.ref + " " + gs.path
		t := gs.server.GetTls()
		ctx := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsSecret(t.GetCredentialName())},
			AlpnProtocols:                  []string{"h2", "http/1.1"},
		}}
		if t.GetMode() == networking.ServerTLSSettings_MUTUAL {
			ctx.RequireClientCertificate = wrapBool(true)
			ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
				ValidationContextSdsSecretConfig: sdsSecret(t.GetCredentialName() + "-cacert")}
		}
		if v := tlsVersion(t.GetMinProtocolVersion()); v != tlsv3.TlsParameters_TLS_AUTO {
			ctx.CommonTlsContext.TlsParams = &tlsv3.TlsParameters{TlsMinimumProtocolVersion: v}
		}
		if v := tlsVersion(t.GetMaxProtocolVersion()); v != tlsv3.TlsParameters_TLS_AUTO {
			if ctx.CommonTlsContext.TlsParams == nil {
				ctx.CommonTlsContext.TlsParams = &tlsv3.TlsParameters{}
			}
			ctx.CommonTlsContext.TlsParams.TlsMaximumProtocolVersion = v
		}
		chain := &listenerv3.FilterChain{
			Name:    gs.ref + "/" + gs.path,
			Filters: []*listenerv3.Filter{hcm},
			TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.tls",
				ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)}},
		}
		if len(names) > 0 {
			chain.FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: names}
		}
		chains = append(chains, chain)
	}
	return chains
}

func namesOrAny(names string) string {
	if names == "" {
		return "any"
	}
	return names
}

// tlsVersion maps Istio's TLS protocol versions to Envoy's.
func tlsVersion(v networking.ServerTLSSettings_TLSProtocol) tlsv3.TlsParameters_TlsProtocol {
	switch v {
	case networking.ServerTLSSettings_TLSV1_0:
		return tlsv3.TlsParameters_TLSv1_0
	case networking.ServerTLSSettings_TLSV1_1:
		return tlsv3.TlsParameters_TLSv1_1
	case networking.ServerTLSSettings_TLSV1_2:
		return tlsv3.TlsParameters_TLSv1_2
	case networking.ServerTLSSettings_TLSV1_3:
		return tlsv3.TlsParameters_TLSv1_3
	}
	return tlsv3.TlsParameters_TLS_AUTO
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
	for _, port := range sortedPorts(servers) {
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
				if bound.httpsRedirect {
					vh.Routes = []*routev3.Route{httpsRedirectRoute()}
				} else {
					g.gatewayRef = bound.ref
					vh.Routes = g.translateHTTP(vs, nil, servicePort{number: port, protocol: "HTTP"})
					g.gatewayRef = ""
				}
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

// httpsRedirectRoute answers every request with a 301 to the same URL in https (on its default
// port), what Istio's tls.httpsRedirect asks of a gateway's HTTP server.
func httpsRedirectRoute() *routev3.Route {
	return &routev3.Route{Name: "https_redirect", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
			SchemeRewriteSpecifier: &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true},
			ResponseCode:           routev3.RedirectAction_MOVED_PERMANENTLY}}}
}
