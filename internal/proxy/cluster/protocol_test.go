package cluster

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func protocolOptions(t *testing.T, po *upstreamhttpv3.HttpProtocolOptions) map[string]*anypb.Any {
	t.Helper()
	a, err := anypb.New(po)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": a}
}

func TestIdleTimeout(t *testing.T) {
	for _, tc := range []struct {
		name    string
		idle    *durationpb.Duration
		want    time.Duration
		wantErr string
	}{
		{name: "unset", want: DefaultIdleTimeout},
		{name: "set", idle: durationpb.New(3 * time.Second), want: 3 * time.Second},
		{name: "zero disables", idle: durationpb.New(0), want: 0},
		{name: "negative", idle: durationpb.New(-time.Second), wantErr: "common_http_protocol_options.idle_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}}
			if tc.idle != nil {
				c.TypedExtensionProtocolOptions = protocolOptions(t, &upstreamhttpv3.HttpProtocolOptions{
					CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{IdleTimeout: tc.idle}})
			}
			cl, err := New(c, Options{})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("New: %v, want an error naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close(0)
			if cl.IdleTimeout != tc.want || cl.Transport().IdleConnTimeout != tc.want {
				t.Errorf("idle timeout %v (transport %v), want %v", cl.IdleTimeout, cl.Transport().IdleConnTimeout, tc.want)
			}
		})
	}
}

// Scheme must not follow Transport.TLSClientConfig: net/http sets that on first use of an HTTP/2
// transport, h2c included, and an h2c cluster that took it for TLS dialed its plain-text hosts
// with TLS whenever its pool was empty (after an idle close or a GOAWAY, or while the first
// connection was being set up).
func TestSchemeFixedAtConstruction(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) })}
	go srv.Serve(lis)
	defer srv.Close()

	h2c := newCluster(t, &clusterv3.Cluster{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}})
	if h2c.Scheme != "http" {
		t.Fatalf("h2c cluster scheme %q, want http", h2c.Scheme)
	}
	for i := range 2 {
		req, err := http.NewRequest("GET", h2c.Scheme+"://"+lis.Addr().String()+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := h2c.RoundTrip(req)
		if err != nil {
			t.Fatalf("request %d over h2c: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "HTTP/2.0" {
			t.Fatalf("request %d: upstream saw %q, want HTTP/2.0", i, b)
		}
		// Empty the pool, as an idle timeout or a GOAWAY does.
		h2c.closeIdle(false)
	}
	if h2c.Scheme != "http" {
		t.Errorf("h2c cluster scheme %q after use, want http", h2c.Scheme)
	}

	c := &clusterv3.Cluster{Name: "tls", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}}
	tc, err := New(c, Options{TLS: &tls.Config{ServerName: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close(0)
	if tc.Scheme != "https" {
		t.Errorf("TLS cluster scheme %q, want https", tc.Scheme)
	}
}

// Cluster HTTP settings the transports cannot honour are rejected with their field, never ignored.
func TestUnsupportedClusterHTTPOptionsAreRejected(t *testing.T) {
	u32 := func(v uint32) *wrapperspb.UInt32Value { return wrapperspb.UInt32(v) }
	for _, tc := range []struct {
		name string
		po   *upstreamhttpv3.HttpProtocolOptions
		h2   *corev3.Http2ProtocolOptions // the deprecated Cluster.http2_protocol_options
		want string
	}{
		{name: "max_concurrent_streams", po: explicitH2(&corev3.Http2ProtocolOptions{MaxConcurrentStreams: u32(10)}), want: "http2_protocol_options.max_concurrent_streams"},
		{name: "window sizes", po: explicitH2(&corev3.Http2ProtocolOptions{InitialStreamWindowSize: u32(1 << 20)}), want: "initial_stream_window_size"},
		{name: "deprecated field", h2: &corev3.Http2ProtocolOptions{MaxConcurrentStreams: u32(10)}, want: "http2_protocol_options.max_concurrent_streams"},
		{name: "max_headers_count", po: &upstreamhttpv3.HttpProtocolOptions{CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{MaxHeadersCount: u32(50)}}, want: "max_headers_count"},
		{name: "max_connection_duration", po: &upstreamhttpv3.HttpProtocolOptions{CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{MaxConnectionDuration: durationpb.New(time.Minute)}}, want: "max_connection_duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}, Http2ProtocolOptions: tc.h2}
			if tc.po != nil {
				c.TypedExtensionProtocolOptions = protocolOptions(t, tc.po)
			}
			cl, err := New(c, Options{})
			if err == nil {
				cl.Close(0)
				t.Fatalf("New accepted it, want an error naming %s", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %s", err, tc.want)
			}
		})
	}
}

func explicitH2(o *corev3.Http2ProtocolOptions) *upstreamhttpv3.HttpProtocolOptions {
	return &upstreamhttpv3.HttpProtocolOptions{UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
		ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: o}}}}
}
