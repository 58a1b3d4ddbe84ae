package xds

import (
	"fmt"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
)

// ProxylessCertProvider is the certificate provider instance a proxyless
// client's bootstrap must define (e.g. file_watcher over the SVID, its key
// and the bundle); ProxylessCertName and ProxylessRootName are the
// certificate names asked of it for the identity and the trust bundle.
const (
	ProxylessCertProvider = "default"
	ProxylessCertName     = "default"
	ProxylessRootName     = "ROOTCA"
)

// proxylessRoutePort is the outbound port a proxyless node is generated with:
// its routes are the sidecar's outbound routes; no socket listener is sent.
const proxylessRoutePort = 15001

// generateProxyless builds the resources of a proxyless gRPC client: the
// routes, clusters and endpoints a sidecar in its place would get, and, in
// place of socket listeners, one API listener per name it may dial
// ("host:port" and "host" of every virtual host), each an
// HttpConnectionManager using RDS "outbound" with the router last.
//
// grpc-go cannot fetch SDS secrets; it reads certificates from the
// certificate providers of its bootstrap. So the mutual TLS of every
// ISTIO_MUTUAL cluster names certificate provider instances instead, as
// Istio does for proxyless clients: instance ProxylessCertProvider, whose
// certificate "default" is the workload's SVID and key and whose
// "ROOTCA" is the trust bundle (a file_watcher provider over the files an
// agent keeps renewed), with the same SNI, ALPN and peer identity checks
// (match_subject_alt_names: grpc-go does not read the typed matchers).
func (s *Snapshot) generateProxyless(node Node) (Resources, error) {
	side := node
	side.Kind, side.OutboundPort, side.InboundPort, side.AppAddress = KindSidecar, proxylessRoutePort, 0, ""
	res, err := s.generate(side)
	if err != nil {
		return Resources{}, err
	}
	out, ok := res.Listeners[OutboundListenerName].(*listenerv3.Listener)
	if !ok || len(out.GetFilterChains()) != 1 || len(out.GetFilterChains()[0].GetFilters()) != 1 {
		return Resources{}, fmt.Errorf("proxyless: outbound listener of unexpected shape")
	}
	hcm := out.GetFilterChains()[0].GetFilters()[0].GetTypedConfig()
	rc, _ := res.Routes[OutboundRouteName].(*routev3.RouteConfiguration)
	listeners := map[string]proto.Message{}
	for _, vh := range rc.GetVirtualHosts() {
		for _, d := range vh.GetDomains() {
			if strings.Contains(d, "*") || !strings.Contains(d, ".") {
				continue // wildcards and short names are not dial targets
			}
			listeners[d] = &listenerv3.Listener{Name: d, ApiListener: &listenerv3.ApiListener{ApiListener: hcm}}
		}
	}
	clusters := make(map[string]proto.Message, len(res.Clusters))
	for name, m := range res.Clusters {
		if len(m.(*clusterv3.Cluster).GetTransportSocketMatches()) > 0 {
			res.Skipped = append(res.Skipped, Skip{Object: "node", Field: "cluster " + name, Reason: "grpc-go does not support transport_socket_matches: " +
				"mutual TLS is used to every endpoint, and those that serve plain text only (PeerAuthentication DISABLE) cannot be reached (fail closed)"})
		}
		c, err := proxylessCluster(m.(*clusterv3.Cluster))
		if err != nil {
			return Resources{}, fmt.Errorf("proxyless: cluster %s: %w", name, err)
		}
		clusters[name] = c
	}
	out2 := newResources()
	out2.Listeners, out2.Routes, out2.Clusters, out2.Endpoints = listeners, res.Routes, clusters, res.Endpoints
	out2.Skipped = slices.Clone(res.Skipped) // res.Skipped may be shared with other proxies
	slices.SortFunc(out2.Skipped, func(a, b Skip) int { return strings.Compare(a.String(), b.String()) })
	if err := out2.computeVersions(); err != nil {
		return Resources{}, err
	}
	return *out2, nil
}

// proxylessCluster returns c with its SDS-based mutual TLS rewritten to
// certificate provider instances and without transport_socket_matches, which
// grpc-go rejects (the cluster's own transport, mutual TLS, then applies to
// every endpoint); a cluster without TLS is returned as is. The cluster is
// copied: c may be shared with other nodes' resources.
func proxylessCluster(c *clusterv3.Cluster) (*clusterv3.Cluster, error) {
	ts := c.GetTransportSocket()
	if ts == nil {
		return c, nil
	}
	var up tlsv3.UpstreamTlsContext
	if err := ts.GetTypedConfig().UnmarshalTo(&up); err != nil {
		return nil, fmt.Errorf("transport socket: %w", err)
	}
	common := up.GetCommonTlsContext()
	var sans []*matcherv3.StringMatcher
	for _, m := range common.GetCombinedValidationContext().GetDefaultValidationContext().GetMatchTypedSubjectAltNames() {
		if m.GetSanType() != tlsv3.SubjectAltNameMatcher_URI {
			return nil, fmt.Errorf("subject alt name matcher of type %s: proxyless clients match URIs only", m.GetSanType())
		}
		sans = append(sans, m.GetMatcher())
	}
	out := &tlsv3.UpstreamTlsContext{Sni: up.GetSni(), CommonTlsContext: &tlsv3.CommonTlsContext{
		AlpnProtocols: common.GetAlpnProtocols(),
		TlsCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{
			InstanceName: ProxylessCertProvider, CertificateName: ProxylessCertName},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			CaCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{
				InstanceName: ProxylessCertProvider, CertificateName: ProxylessRootName},
			MatchSubjectAltNames: sans,
		}},
	}}
	cc := proto.Clone(c).(*clusterv3.Cluster)
	cc.TransportSocketMatches = nil
	cc.TransportSocket = &corev3.TransportSocket{Name: ts.GetName(),
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(out)}}
	return cc, nil
}
