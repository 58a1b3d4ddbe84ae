package xds

import (
	"math"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	networking "istio.io/api/networking/v1alpha3"
)

// Secret names used by every TLS context (Istio's SDS names).
const (
	CertSecretName = "default"
	RootSecretName = "ROOTCA"
)

// defaultConnectTimeout is Istio's default connectTimeout.
const defaultConnectTimeout = 10 * time.Second

// httpProtocolOptionsKey is the typed_extension_protocol_options key of upstream HTTP options.
const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// clusterKind returns the discovery type of the clusters of s, and false when the node cannot
// use them (reported).
func (g *gen) clusterKind(s *service) (clusterv3.Cluster_DiscoveryType, bool) {
	if s.native {
		return clusterv3.Cluster_EDS, true
	}
	var t clusterv3.Cluster_DiscoveryType
	switch s.resolution {
	case networking.ServiceEntry_STATIC:
		return clusterv3.Cluster_EDS, true
	case networking.ServiceEntry_NONE:
		if len(s.endpoints) > 0 {
			return clusterv3.Cluster_EDS, true
		}
		t = clusterv3.Cluster_LOGICAL_DNS
	case networking.ServiceEntry_DNS:
		t = clusterv3.Cluster_STRICT_DNS
	case networking.ServiceEntry_DNS_ROUND_ROBIN:
		t = clusterv3.Cluster_LOGICAL_DNS
	default:
		g.skip(s.ref, "resolution", "unknown resolution "+s.resolution.String())
		return 0, false
	}
	if len(s.host) > 1 && s.host[0] == '*' && len(s.endpoints) == 0 {
		g.skip(s.ref, "hosts", "wildcard host "+s.host+" without endpoints needs original-destination forwarding, which is not supported; it is not routed")
		return 0, false
	}
	if !g.node.supports(FeatureDNSCluster) {
		g.skip(s.ref, "resolution", "host "+s.host+" needs a DNS cluster, which this proxy does not support ("+FeatureDNSCluster+"); it is not routed")
		return 0, false
	}
	return t, true
}

// generateClusters builds the clusters of every visible service (one per port and one per
// port and DestinationRule subset).
func generateClusters(g *gen, out *Resources) error {
	for _, s := range g.visible {
		kind, ok := g.clusterKind(s)
		if !ok {
			continue
		}
		dr := g.destinationRuleFor(s)
		for _, p := range s.ports {
			c := g.cluster(s, p, "", nil, dr, kind)
			out.Clusters[c.Name] = c
			if dr == nil {
				continue
			}
			for _, sub := range dr.spec.GetSubsets() {
				c := g.cluster(s, p, sub.GetName(), sub.GetLabels(), dr, kind)
				out.Clusters[c.Name] = c
			}
		}
	}
	return nil
}

// generateInboundCluster builds the inbound cluster of the local application.
func generateInboundCluster(g *gen, out *Resources) error {
	if g.node.InboundPort != 0 {
		c := g.inboundCluster()
		out.Clusters[c.Name] = c
	}
	return nil
}

func (g *gen) inboundCluster() *clusterv3.Cluster {
	name := inboundClusterName(g.appPort)
	host, _, _ := cutLast(g.node.AppAddress, ":")
	host = trimBrackets(host)
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationOf(defaultConnectTimeout),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LoadBalancingWeight: wrapU32(1),
			LbEndpoints:         []*endpointv3.LbEndpoint{lbEndpoint(host, g.appPort, 0)},
		}}},
	}
	if g.appSpeaksH2() {
		// A gRPC (or HTTP2) application must be reached over HTTP/2 (h2c).
		opts := &upstreamhttpv3.HttpProtocolOptions{UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}}}
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsKey: mustAny(opts)}
	}
	return c
}

// appSpeaksH2 reports whether every port of the node's own service is GRPC or
// HTTP2: then the local application is spoken to over HTTP/2.
func (g *gen) appSpeaksH2() bool {
	s := g.m.services[g.node.Service+"."+g.node.Namespace]
	if s == nil || len(s.ports) == 0 {
		return false
	}
	for _, p := range s.ports {
		if !p.h2() {
			return false
		}
	}
	return true
}

func trimBrackets(h string) string {
	if len(h) >= 2 && h[0] == '[' && h[len(h)-1] == ']' {
		return h[1 : len(h)-1]
	}
	return h
}

// cluster builds one outbound cluster.
func (g *gen) cluster(s *service, p servicePort, subset string, subsetLabels map[string]string, dr *destinationRule, kind clusterv3.Cluster_DiscoveryType) *clusterv3.Cluster {
	name := clusterName(p.number, subset, s.host)
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: kind},
		ConnectTimeout:       durationOf(defaultConnectTimeout),
		LbPolicy:             clusterv3.Cluster_LEAST_REQUEST,
	}
	switch kind {
	case clusterv3.Cluster_EDS:
		c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsConfigSource(), ServiceName: name}
	default:
		c.LoadAssignment = g.dnsLoadAssignment(s, p, name, subsetLabels, kind)
	}
	pol := effectivePolicy(dr, subset, p.number)
	ref := ""
	if dr != nil {
		ref = dr.ref
	}
	g.applyLoadBalancer(c, pol, ref)
	if g.localityLBFor(s, pol, ref, kind).distribute != nil {
		applyLocalityWeightedLB(c)
	}
	opts := g.applyConnectionPool(c, pol, ref)
	g.applyOutlier(c, pol, ref)
	g.applyTLS(c, s, p, subset, subsetLabels, pol, ref)
	if p.h2() {
		opts.UpstreamProtocolOptions = &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}}
	}
	if opts.UpstreamProtocolOptions == nil && opts.CommonHttpProtocolOptions != nil {
		opts.UpstreamProtocolOptions = &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}}}}
	}
	if opts.UpstreamProtocolOptions != nil {
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsKey: mustAny(opts)}
	}
	return c
}

// dnsLoadAssignment lists the DNS names (or addresses) a DNS cluster resolves: the
// ServiceEntry's endpoints, else the host itself. LOGICAL_DNS takes exactly one.
func (g *gen) dnsLoadAssignment(s *service, p servicePort, name string, subsetLabels map[string]string, kind clusterv3.Cluster_DiscoveryType) *endpointv3.ClusterLoadAssignment {
	var lbs []*endpointv3.LbEndpoint
	for _, e := range s.endpoints {
		if labelsMatch(subsetLabels, e.labels) {
			lbs = append(lbs, lbEndpoint(e.address, e.portFor(p), e.weight))
		}
	}
	if len(s.endpoints) == 0 {
		lbs = append(lbs, lbEndpoint(s.host, p.targetPortOr(), 0))
	}
	if kind == clusterv3.Cluster_LOGICAL_DNS && len(lbs) > 1 {
		g.skip(s.ref, "endpoints", "resolution DNS_ROUND_ROBIN/NONE uses only the first endpoint")
		lbs = lbs[:1]
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	if len(lbs) > 0 {
		cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{LoadBalancingWeight: wrapU32(1), LbEndpoints: lbs}}
	}
	return cla
}

func (p servicePort) targetPortOr() uint32 {
	if p.targetPort != 0 {
		return p.targetPort
	}
	return p.number
}

func (g *gen) applyLoadBalancer(c *clusterv3.Cluster, pol policy, ref string) {
	lb := pol.lb
	if lb == nil {
		return
	}
	switch {
	case lb.GetConsistentHash() != nil:
		ch := lb.GetConsistentHash()
		if mg := ch.GetMaglev(); mg != nil {
			c.LbPolicy = clusterv3.Cluster_MAGLEV
			if mg.GetTableSize() != 0 {
				c.LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapU64(mg.GetTableSize())}}
			}
		} else {
			c.LbPolicy = clusterv3.Cluster_RING_HASH
			min := ch.GetRingHash().GetMinimumRingSize()
			if min == 0 {
				min = ch.GetMinimumRingSize()
			}
			if min != 0 {
				c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapU64(min)}}
			}
		}
	default:
		switch lb.GetSimple() {
		case networking.LoadBalancerSettings_ROUND_ROBIN:
			c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
		case networking.LoadBalancerSettings_RANDOM:
			c.LbPolicy = clusterv3.Cluster_RANDOM
		case networking.LoadBalancerSettings_LEAST_REQUEST, networking.LoadBalancerSettings_UNSPECIFIED:
			c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
		default:
			g.skip(ref, pol.lbPath+".simple", lb.GetSimple().String()+" is not supported; LEAST_REQUEST is used")
		}
	}
	if lb.GetWarmupDurationSecs() != nil || lb.GetWarmup() != nil {
		g.skip(ref, pol.lbPath+".warmup", "slow start is not supported")
	}
}

// applyConnectionPool sets circuit breakers and connect timeout on c and returns the upstream
// HTTP protocol options to attach (may be empty). Thresholds default to Istio's (unlimited).
func (g *gen) applyConnectionPool(c *clusterv3.Cluster, pol policy, ref string) *upstreamhttpv3.HttpProtocolOptions {
	th := &clusterv3.CircuitBreakers_Thresholds{
		MaxConnections:     wrapU32(math.MaxUint32),
		MaxPendingRequests: wrapU32(math.MaxUint32),
		MaxRequests:        wrapU32(math.MaxUint32),
		MaxRetries:         wrapU32(math.MaxUint32),
	}
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{th}}
	opts := &upstreamhttpv3.HttpProtocolOptions{}
	cp := pol.pool
	if cp == nil {
		return opts
	}
	common := &corev3.HttpProtocolOptions{}
	if tcp := cp.GetTcp(); tcp != nil {
		if n := tcp.GetMaxConnections(); n > 0 {
			th.MaxConnections = wrapU32(uint32(n))
		}
		if d := tcp.GetConnectTimeout(); d != nil {
			c.ConnectTimeout = d
		}
		if d := tcp.GetMaxConnectionDuration(); d != nil {
			common.MaxConnectionDuration = d
		}
		if tcp.GetTcpKeepalive() != nil || tcp.GetIdleTimeout() != nil {
			g.skip(ref, pol.poolPath+".tcp", "tcpKeepalive and idleTimeout are not supported")
		}
	}
	if h := cp.GetHttp(); h != nil {
		if n := h.GetHttp1MaxPendingRequests(); n > 0 {
			th.MaxPendingRequests = wrapU32(uint32(n))
		}
		if n := h.GetHttp2MaxRequests(); n > 0 {
			th.MaxRequests = wrapU32(uint32(n))
		}
		if n := h.GetMaxRetries(); n > 0 {
			th.MaxRetries = wrapU32(uint32(n))
		}
		if d := h.GetIdleTimeout(); d != nil {
			common.IdleTimeout = d
		}
		if n := h.GetMaxRequestsPerConnection(); n > 0 {
			if g.node.supports(FeatureMaxRequestsPerConnection) {
				common.MaxRequestsPerConnection = wrapU32(uint32(n))
			} else {
				g.skip(ref, pol.poolPath+".http.maxRequestsPerConnection", "this proxy does not support it ("+FeatureMaxRequestsPerConnection+")")
			}
		}
		if h.GetH2UpgradePolicy() != networking.ConnectionPoolSettings_HTTPSettings_DEFAULT || h.GetUseClientProtocol() ||
			h.GetMaxConcurrentStreams() != 0 || h.GetHttp2KeepAlive() != nil {
			g.skip(ref, pol.poolPath+".http", "h2UpgradePolicy, useClientProtocol, maxConcurrentStreams and http2KeepAlive are not supported")
		}
	}
	if common.IdleTimeout != nil || common.MaxConnectionDuration != nil || common.MaxRequestsPerConnection != nil {
		opts.CommonHttpProtocolOptions = common
	}
	return opts
}

func (g *gen) applyOutlier(c *clusterv3.Cluster, pol policy, ref string) {
	od := pol.outlier
	if od == nil {
		return
	}
	out := &clusterv3.OutlierDetection{}
	consecutive := od.GetConsecutive_5XxErrors()
	if consecutive == nil && od.GetConsecutiveErrors() > 0 {
		consecutive = wrapU32(uint32(od.GetConsecutiveErrors()))
	}
	if consecutive != nil {
		out.Consecutive_5Xx = wrapU32(consecutive.GetValue())
		if consecutive.GetValue() > 0 {
			out.EnforcingConsecutive_5Xx = wrapU32(100)
		} else {
			out.EnforcingConsecutive_5Xx = wrapU32(0)
		}
	}
	if gw := od.GetConsecutiveGatewayErrors(); gw != nil {
		out.ConsecutiveGatewayFailure = wrapU32(gw.GetValue())
		if gw.GetValue() > 0 {
			out.EnforcingConsecutiveGatewayFailure = wrapU32(100)
		} else {
			out.EnforcingConsecutiveGatewayFailure = wrapU32(0)
		}
	}
	out.Interval = od.GetInterval()
	out.BaseEjectionTime = od.GetBaseEjectionTime()
	if p := od.GetMaxEjectionPercent(); p > 0 {
		out.MaxEjectionPercent = wrapU32(uint32(min(p, 100)))
	}
	if od.GetMinHealthPercent() != 0 || od.GetSplitExternalLocalOriginErrors() || od.GetConsecutiveLocalOriginFailures() != nil ||
		len(od.GetOutlierDetectionHttpErrorCodes()) > 0 {
		g.skip(ref, pol.outlierPath, "minHealthPercent, local-origin errors and custom error codes are not supported")
	}
	c.OutlierDetection = out
}

// Istio's names for the transport socket match of endpoints that get plain text under auto
// mutual TLS, and the endpoint metadata it matches.
const (
	transportSocketMatchFilter = "envoy.transport_socket_match"
	tlsModeKey                 = "tlsMode"
	tlsModeDisabled            = "disabled"
)

// applyTLS sets the upstream transport: Istio mutual TLS with the SDS secrets where a
// DestinationRule asks for ISTIO_MUTUAL, plain text where it disables TLS. Without a
// DestinationRule tls, ServiceEntries get plain text and Canton Services auto mutual TLS (see
// autoMTLS): mutual TLS to workloads that accept it, plain text to those whose
// PeerAuthentication is DISABLE; a cluster with both keeps mutual TLS as its transport and
// gets a transport socket match that gives plain text to the endpoints marked tlsMode:
// disabled (endpointMetadata), or, for a proxy that cannot choose per endpoint, mutual TLS to
// all of them (fail closed, reported).
func (g *gen) applyTLS(c *clusterv3.Cluster, s *service, p servicePort, subset string, subsetLabels map[string]string, pol policy, ref string) {
	mutual := s.native
	var sans []string
	if t := pol.tls; t != nil {
		switch t.GetMode() {
		case networking.ClientTLSSettings_ISTIO_MUTUAL:
			mutual = true
			sans = t.GetSubjectAltNames()
		case networking.ClientTLSSettings_DISABLE:
			mutual = false
		default:
			g.skip(ref, pol.tlsPath+".mode", t.GetMode().String()+" (TLS origination with files or credentials) is not supported yet; the default transport is kept")
		}
	}
	plainMatch := false
	if autoMTLSApplies(s, pol) {
		switch t, _ := g.autoMTLS(s, subsetLabels); t {
		case peerPlain:
			return
		case peerMixed:
			if g.node.supports(FeatureTransportSocketMatches) {
				plainMatch = true
			} else {
				g.skip(s.ref, "", "some of its workloads serve plain text only (PeerAuthentication DISABLE) and others mutual TLS; this proxy cannot choose the transport per endpoint ("+
					FeatureTransportSocketMatches+"), so it uses mutual TLS to all of them and cannot reach the plain-text ones (fail closed)")
			}
		}
	}
	if !mutual {
		return
	}
	if len(sans) == 0 {
		sans = s.sans
	}
	sniName := sni(p.number, subset, s.host)
	if t := pol.tls; t != nil && t.GetSni() != "" {
		sniName = t.GetSni()
	}
	var matchers []*tlsv3.SubjectAltNameMatcher
	for _, san := range sans {
		matchers = append(matchers, &tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: san}}})
	}
	if len(matchers) == 0 {
		// The peer must hold an identity of the service's namespace.
		matchers = append(matchers, &tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://" + s.namespace + "/"}}})
	}
	ctx := &tlsv3.UpstreamTlsContext{Sni: sniName, CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsSecret(CertSecretName)},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: matchers},
			ValidationContextSdsSecretConfig: sdsSecret(RootSecretName),
		}},
	}}
	switch {
	case p.h2():
		ctx.CommonTlsContext.AlpnProtocols = []string{"h2"}
	case !p.http():
		ctx.CommonTlsContext.AlpnProtocols = []string{tcpALPN} // the peer's inbound picks its TCP chain
	}
	c.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)}}
	if plainMatch {
		c.TransportSocketMatches = []*clusterv3.Cluster_TransportSocketMatch{{
			Name:  "tlsMode-" + tlsModeDisabled,
			Match: &structpb.Struct{Fields: map[string]*structpb.Value{tlsModeKey: structpb.NewStringValue(tlsModeDisabled)}},
			TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.raw_buffer",
				ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(&rawbufferv3.RawBuffer{})}},
		}}
	}
}

// autoMTLSApplies reports whether auto mutual TLS chooses the transport of a cluster of s with
// policy pol: s is a Canton Service and the DestinationRule sets no tls mode Canton
// implements (ISTIO_MUTUAL or DISABLE; the others keep the default transport, reported).
func autoMTLSApplies(s *service, pol policy) bool {
	if !s.native {
		return false
	}
	if pol.tls == nil {
		return true
	}
	m := pol.tls.GetMode()
	return m != networking.ClientTLSSettings_ISTIO_MUTUAL && m != networking.ClientTLSSettings_DISABLE
}

// endpointMetadata marks an endpoint that gets plain text in a cluster with both transports
// (see applyTLS), as Istio marks endpoints without a sidecar.
func endpointMetadata() *corev3.Metadata {
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{transportSocketMatchFilter: {
		Fields: map[string]*structpb.Value{tlsModeKey: structpb.NewStringValue(tlsModeDisabled)}}}}
}

func sdsSecret(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: adsConfigSource()}
}
