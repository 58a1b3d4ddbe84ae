package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Node IDs of the Canton proxies; each gets its own fixed snapshot from the static xDS server.
const (
	nodeOneHop   = "bench-1hop"
	nodeOutbound = "bench-outbound"
	nodeInbound  = "bench-inbound"
	// The HTTP/2 mesh path: the same two hops, HTTP/2 over mTLS between them (h2c and gRPC scenarios).
	nodeOutboundH2 = "bench-outbound-h2"
	nodeInboundH2  = "bench-inbound-h2"
	nodeMany       = "bench-1000-clusters"
	listenerName   = "bench"
)

// xdsServer is a static ADS server (go-control-plane's server over its snapshot cache) on 127.0.0.1:0
// serving one fixed snapshot per node.
type xdsServer struct {
	Addr  string
	gs    *grpc.Server
	cache cachev3.SnapshotCache
}

func startXDS(ctx context.Context) (*xdsServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("xds server: listen: %w", err)
	}
	c := cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	gs := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, serverv3.NewServer(ctx, c, nil))
	go func() { _ = gs.Serve(ln) }() // returns when stopped
	return &xdsServer{Addr: ln.Addr().String(), gs: gs, cache: c}, nil
}

func (x *xdsServer) stop() { x.gs.Stop() }

// set installs the snapshot of node.
func (x *xdsServer) set(ctx context.Context, node string, res map[resourcev3.Type][]types.Resource) error {
	s, err := cachev3.NewSnapshot("1", res)
	if err != nil {
		return fmt.Errorf("xds snapshot %s: %w", node, err)
	}
	if err := s.Consistent(); err != nil {
		return fmt.Errorf("xds snapshot %s: %w", node, err)
	}
	if err := x.cache.SetSnapshot(ctx, node, s); err != nil {
		return fmt.Errorf("xds snapshot %s: %w", node, err)
	}
	return nil
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(fmt.Sprintf("marshal %T: %v", m, err)) // only fixed, well-typed messages are marshalled
	}
	return a
}

func socketAddress(hostport string) (*corev3.Address, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("port of %s: %w", hostport, err)
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(n)}}}}, nil
}

var ads = &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	ResourceApiVersion: corev3.ApiVersion_V3}

// httpListener is a listener on addr whose HTTP connection manager takes route configuration "routes"
// over ADS; tls, if not nil, is the downstream TLS transport socket of its filter chain.
func httpListener(addr string, tls *corev3.TransportSocket) (*listenerv3.Listener, error) {
	a, err := socketAddress(addr)
	if err != nil {
		return nil, fmt.Errorf("listener address: %w", err)
	}
	h := &hcmv3.HttpConnectionManager{StatPrefix: listenerName,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "routes", ConfigSource: ads}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}}}}
	return &listenerv3.Listener{Name: listenerName, Address: a, FilterChains: []*listenerv3.FilterChain{{
		TransportSocket: tls,
		Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(h)}}}}}}, nil
}

func routeTo(cluster string) *routev3.Route_Route {
	return &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
		Timeout: durationpb.New(30 * time.Second)}}
}

// routes is an L7 route table: a virtual host for the benchmark's authority with a path-prefix route
// to cluster, behind a non-matching route so matching does some work, as a real mesh route would;
// grpcCluster, if not empty, gets the calls of fortio's ping service (path prefix /fgrpc.).
func routes(cluster, grpcCluster string) *routev3.RouteConfiguration {
	rs := []*routev3.Route{{Name: "admin", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/admin/"}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 403}}}}
	if grpcCluster != "" {
		rs = append(rs, &routev3.Route{Name: "grpc", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/fgrpc."}},
			Action: routeTo(grpcCluster)})
	}
	rs = append(rs, &routev3.Route{Name: "default", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: routeTo(cluster)})
	return &routev3.RouteConfiguration{Name: "routes", VirtualHosts: []*routev3.VirtualHost{{Name: "bench", Domains: []string{"*"}, Routes: rs}}}
}

// staticCluster is a STATIC cluster with one endpoint; tls, if not nil, is its upstream transport socket.
func staticCluster(name, addr string, tls *corev3.TransportSocket) (*clusterv3.Cluster, error) {
	a, err := socketAddress(addr)
	if err != nil {
		return nil, fmt.Errorf("cluster %s address: %w", name, err)
	}
	return &clusterv3.Cluster{Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:  durationpb.New(2 * time.Second),
		TransportSocket: tls,
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
				Endpoint: &endpointv3.Endpoint{Address: a}}}}}}}}, nil
}

func sds(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: ads}
}

// Secret names of the mTLS scenario.
const (
	secretCert = "workload-cert"
	secretCA   = "trust-bundle"
)

// secrets are the SDS resources of a proxy of the mTLS scenario: its key pair and the trust bundle.
func secrets(certPEM, keyPEM, caPEM []byte) []types.Resource {
	return []types.Resource{
		&tlsv3.Secret{Name: secretCert, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: certPEM}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: keyPEM}}}}},
		&tlsv3.Secret{Name: secretCA, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: caPEM}}}}},
	}
}

// peerMatch requires the peer certificate's SPIFFE ID to be id.
func peerMatch(id string) *tlsv3.CommonTlsContext_CombinedValidationContext {
	return &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
		DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
			SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: id}}}}},
		ValidationContextSdsSecretConfig: sds(secretCA)}}
}

// oneHopResources configures a plain-text proxy on listen in front of upstream (HTTP/1.1) and
// grpcUpstream (HTTP/2, for gRPC calls).
func oneHopResources(listen, upstream, grpcUpstream string) (map[resourcev3.Type][]types.Resource, error) {
	l, err := httpListener(listen, nil)
	if err != nil {
		return nil, err
	}
	c, err := staticCluster("upstream", upstream, nil)
	if err != nil {
		return nil, err
	}
	g, err := staticCluster("upstream-grpc", grpcUpstream, nil)
	if err != nil {
		return nil, err
	}
	g.Http2ProtocolOptions = &corev3.Http2ProtocolOptions{}
	return map[resourcev3.Type][]types.Resource{resourcev3.ListenerType: {l}, resourcev3.RouteType: {routes("upstream", "upstream-grpc")},
		resourcev3.ClusterType: {c, g}}, nil
}

// outboundResources configures the client-side proxy of the mesh path: plain HTTP on listen, mTLS to
// the inbound proxy at inbound, which must present the server SPIFFE ID. With h2 the hop between the
// proxies is HTTP/2 (ALPN h2), as a sidecar's is for HTTP/2 and gRPC services; otherwise HTTP/1.1.
func outboundResources(listen, inbound string, p *pki, h2 bool) (map[resourcev3.Type][]types.Resource, error) {
	l, err := httpListener(listen, nil)
	if err != nil {
		return nil, err
	}
	common := &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds(secretCert)},
		ValidationContextType:          peerMatch(serverSPIFFE)}
	if h2 {
		common.AlpnProtocols = []string{"h2"}
	}
	up := &tlsv3.UpstreamTlsContext{Sni: serverName, CommonTlsContext: common}
	c, err := staticCluster("inbound", inbound, &corev3.TransportSocket{Name: "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(up)}})
	if err != nil {
		return nil, err
	}
	if h2 {
		c.Http2ProtocolOptions = &corev3.Http2ProtocolOptions{}
	}
	return map[resourcev3.Type][]types.Resource{resourcev3.ListenerType: {l}, resourcev3.RouteType: {routes("inbound", "")},
		resourcev3.ClusterType: {c}, resourcev3.SecretType: secrets(p.ClientCert, p.ClientKey, p.CA)}, nil
}

// inboundResources configures the server-side proxy of the mesh path: mTLS on listen requiring the
// client SPIFFE ID (HTTP/1.1 or, by ALPN, HTTP/2), plain HTTP/1.1 to upstream; with h2, h2c to
// upstream and gRPC calls to grpcUpstream.
func inboundResources(listen, upstream, grpcUpstream string, p *pki, h2 bool) (map[resourcev3.Type][]types.Resource, error) {
	down := &tlsv3.DownstreamTlsContext{RequireClientCertificate: wrapperspb.Bool(true), CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds(secretCert)},
		ValidationContextType:          peerMatch(clientSPIFFE)}}
	l, err := httpListener(listen, &corev3.TransportSocket{Name: "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(down)}})
	if err != nil {
		return nil, err
	}
	c, err := staticCluster("upstream", upstream, nil)
	if err != nil {
		return nil, err
	}
	if !h2 {
		return map[resourcev3.Type][]types.Resource{resourcev3.ListenerType: {l}, resourcev3.RouteType: {routes("upstream", "")},
			resourcev3.ClusterType: {c}, resourcev3.SecretType: secrets(p.ServerCert, p.ServerKey, p.CA)}, nil
	}
	c.Http2ProtocolOptions = &corev3.Http2ProtocolOptions{}
	g, err := staticCluster("upstream-grpc", grpcUpstream, nil)
	if err != nil {
		return nil, err
	}
	g.Http2ProtocolOptions = &corev3.Http2ProtocolOptions{}
	return map[resourcev3.Type][]types.Resource{resourcev3.ListenerType: {l}, resourcev3.RouteType: {routes("upstream", "upstream-grpc")},
		resourcev3.ClusterType: {c, g}, resourcev3.SecretType: secrets(p.ServerCert, p.ServerKey, p.CA)}, nil
}

// manyClustersResources configures a plain HTTP/1.1 proxy on listen routing to the first of n STATIC
// clusters (each with one endpoint at upstream), to measure the memory cost of a large configuration.
func manyClustersResources(listen, upstream string, n int) (map[resourcev3.Type][]types.Resource, error) {
	l, err := httpListener(listen, nil)
	if err != nil {
		return nil, err
	}
	clusters := make([]types.Resource, 0, n)
	for i := range n {
		c, err := staticCluster(fmt.Sprintf("service-%04d", i), upstream, nil)
		if err != nil {
			return nil, err
		}
		clusters = append(clusters, c)
	}
	return map[resourcev3.Type][]types.Resource{resourcev3.ListenerType: {l}, resourcev3.RouteType: {routes("service-0000", "")},
		resourcev3.ClusterType: clusters}, nil
}
