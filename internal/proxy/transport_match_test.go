package proxy

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"canton.dev/canton/internal/proxy/cluster"
	"canton.dev/canton/internal/proxy/xdsclient"
)

// autoMTLSCluster is what internal/xds generates for a service some of whose workloads serve
// plain text only (PeerAuthentication DISABLE): mutual TLS as the cluster's transport, and a
// transport socket match giving plain text (raw_buffer) to the endpoints marked tlsMode: disabled.
func autoMTLSCluster(t *testing.T) *clusterv3.Cluster {
	t.Helper()
	pack := func(m proto.Message) *anypb.Any {
		a, err := anypb.New(m)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	ads := &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
	mtls := &tlsv3.UpstreamTlsContext{Sni: "outbound_.9080_._.reviews.bookinfo.demo.mesh", CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "default", SdsConfig: ads}},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "ROOTCA", SdsConfig: ads}}}}
	return &clusterv3.Cluster{Name: "outbound|9080||reviews.bookinfo.demo.mesh",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads},
		TransportSocket:      &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: pack(mtls)}},
		TransportSocketMatches: []*clusterv3.Cluster_TransportSocketMatch{{
			Name:            "tlsMode-disabled",
			Match:           &structpb.Struct{Fields: map[string]*structpb.Value{"tlsMode": structpb.NewStringValue("disabled")}},
			TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.raw_buffer", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: pack(&rawbufferv3.RawBuffer{})}},
		}}}
}

// mustResource returns m as the xDS client holds it.
func mustResource(t testing.TB, m proto.Message) *xdsclient.Resource {
	t.Helper()
	r, err := xdsclient.NewResource(m)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func buildClusters(t *testing.T, cs ...*clusterv3.Cluster) (map[string]*cluster.Cluster, error) {
	t.Helper()
	p, err := New(Options{XDSServers: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	res := xdsclient.Resources{}
	for _, c := range cs {
		res[c.GetName()] = mustResource(t, c)
	}
	st := xdsclient.State{Resources: map[string]xdsclient.Resources{xdsclient.ClusterType: res}, Versions: map[string]string{}}
	s, created, err := p.build(emptySnapshot(), xdsclient.ClusterType, st)
	for _, c := range created {
		t.Cleanup(func() { c.Close(0) })
	}
	if err != nil {
		return nil, err
	}
	return s.clusters, nil
}

// The auto mutual TLS cluster compiles, and an endpoint marked tlsMode: disabled is reached in plain
// text while the cluster's scheme stays https (its other endpoints get mutual TLS).
func TestTransportSocketMatchesReachPlainTextEndpoints(t *testing.T) {
	clusters, err := buildClusters(t, autoMTLSCluster(t))
	if err != nil {
		t.Fatal(err)
	}
	cl := clusters["outbound|9080||reviews.bookinfo.demo.mesh"]
	if cl.Scheme != "https" || cl.Mesh {
		t.Errorf("scheme %q, mesh %v: want https (mutual TLS by default) and no peer metadata exchange (some endpoints are plain text)", cl.Scheme, cl.Mesh)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "plain") }))
	defer srv.Close()
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	n, _ := strconv.Atoi(port)
	lb := &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(n)}}}}}},
		Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"envoy.transport_socket_match": {
			Fields: map[string]*structpb.Value{"tlsMode": structpb.NewStringValue("disabled")}}}}}
	if err := cl.SetEndpoints(&endpointv3.ClusterLoadAssignment{ClusterName: cl.EDSName,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{lb}}}}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", cl.Scheme+"://"+srv.Listener.Addr().String()+"/", nil)
	resp, err := cl.RoundTrip(req)
	if err != nil {
		t.Fatalf("plain-text endpoint: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "plain" {
		t.Errorf("plain-text endpoint answered %q", b)
	}
}

// Matches the proxy cannot apply are rejected, naming the field.
func TestTransportSocketMatchesRejected(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*clusterv3.Cluster)
		want string
	}{
		{"non-string match value", func(c *clusterv3.Cluster) {
			c.TransportSocketMatches[0].Match.Fields["tlsMode"] = structpb.NewNumberValue(1)
		}, `transport_socket_matches[0].match.fields["tlsMode"].number_value: field not supported`},
		{"no transport socket", func(c *clusterv3.Cluster) {
			c.TransportSocketMatches[0].TransportSocket = nil
		}, "transport_socket_matches[0].transport_socket: required"},
		{"not a TLS context", func(c *clusterv3.Cluster) {
			c.TransportSocketMatches[0].TransportSocket = &corev3.TransportSocket{Name: "x"}
		}, "transport_socket_matches[0].transport_socket.typed_config: must be an UpstreamTlsContext"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := autoMTLSCluster(t)
			tc.edit(c)
			_, err := buildClusters(t, c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("build: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
