package subset

import (
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func listener(t *testing.T, hcm *hcmv3.HttpConnectionManager) *listenerv3.Listener {
	return &listenerv3.Listener{Name: "l", FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{
		{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)}}}}}}
}

// tcpWithRBAC is a listener whose chain runs a network RBAC filter before its tcp_proxy.
func tcpWithRBAC(t *testing.T, rbac *netrbacv3.RBAC) *listenerv3.Listener {
	return &listenerv3.Listener{Name: "l", FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{
		{Name: "envoy.filters.network.rbac", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, rbac)}},
		{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t,
			&tcpproxyv3.TcpProxy{StatPrefix: "x", ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: "c"}})}}}}}}
}

func TestCheck(t *testing.T) {
	okHCM := &hcmv3.HttpConnectionManager{StatPrefix: "x", NormalizePath: wrapperspb.Bool(true),
		HttpFilters: []*hcmv3.HttpFilter{{Name: "anything", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &structpb.Struct{})}}}}
	tests := []struct {
		name string
		m    proto.Message
		want string // empty: accepted
	}{
		{"supported listener", listener(t, okHCM), ""},
		{"unsupported hcm field", listener(t, &hcmv3.HttpConnectionManager{XffNumTrustedHops: 2}),
			"filter_chains[0].filters[0].typed_config.xff_num_trusted_hops: field not supported"},
		{"unsupported extension", &listenerv3.Listener{FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{
			{Name: "x", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, &structpb.Struct{})}}}}}},
			`filter_chains[0].filters[0].typed_config: extension type "google.protobuf.Struct" is not supported`},
		{"unsupported route field", &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{{Domains: []string{"*"},
			Routes: []*routev3.Route{{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{HostRewriteSpecifier: &routev3.RouteAction_AutoHostRewrite{AutoHostRewrite: wrapperspb.Bool(true)}}}}}}}},
			"virtual_hosts[0].routes[0].route.auto_host_rewrite: field not supported"},
		{"network rbac", tcpWithRBAC(t, &netrbacv3.RBAC{StatPrefix: "tcp.", Rules: &rbacconfigv3.RBAC{Action: rbacconfigv3.RBAC_DENY},
			ShadowRules: &rbacconfigv3.RBAC{}, ShadowRulesStatPrefix: "s"}), ""},
		{"network rbac continuous", tcpWithRBAC(t, &netrbacv3.RBAC{StatPrefix: "tcp.", EnforcementType: netrbacv3.RBAC_CONTINUOUS}),
			"filter_chains[0].filters[0].typed_config.enforcement_type: field not supported"},
		{"network rbac delay_deny", tcpWithRBAC(t, &netrbacv3.RBAC{StatPrefix: "tcp.", DelayDeny: durationpb.New(1)}),
			"filter_chains[0].filters[0].typed_config.delay_deny: field not supported"},
		{"supported cluster", &clusterv3.Cluster{Name: "c", ConnectTimeout: durationpb.New(1), LbPolicy: clusterv3.Cluster_MAGLEV}, ""},
		{"unsupported cluster field", &clusterv3.Cluster{Name: "c", DnsLookupFamily: clusterv3.Cluster_V4_ONLY}, "dns_lookup_family: field not supported"},
		{"typed protocol options checked", &clusterv3.Cluster{Name: "c", TypedExtensionProtocolOptions: map[string]*anypb.Any{
			"x": mustAny(t, &corev3.Http2ProtocolOptions{AllowConnect: true})}}, `typed_extension_protocol_options["x"]: extension type "envoy.config.core.v3.Http2ProtocolOptions" is not supported`},
	}
	for _, tt := range tests {
		err := Check(tt.m)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: rejected: %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
	}
}

// BenchmarkCheckCluster checks a STATIC cluster with one endpoint, as a proxy does for each of the
// clusters of a configuration.
func BenchmarkCheckCluster(b *testing.B) {
	addr := &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080}}}}
	c := &clusterv3.Cluster{Name: "service-0001", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout: durationpb.New(1), LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: "service-0001",
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: addr}}}}}}}}
	if err := Check(c); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = Check(c)
	}
}
