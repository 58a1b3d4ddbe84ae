package cluster

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// addrEP is an endpoint at a host:port, with transport socket match metadata when tlsMode is set.
func addrEP(t *testing.T, addr, tlsMode string) *endpointv3.LbEndpoint {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var n uint32
	for _, c := range port {
		n = n*10 + uint32(c-'0')
	}
	e := &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: n}}}}}}}
	if tlsMode != "" {
		e.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{TransportMatchFilter: {
			Fields: map[string]*structpb.Value{"tlsMode": structpb.NewStringValue(tlsMode)}}}}
	}
	return e
}

// A cluster whose own transport is TLS reaches the endpoints a transport socket match selects
// (metadata tlsMode: disabled) in plain text and the others over TLS, for HTTP/1.1 through its
// pool and through its http.Transport, and for TCP.
func TestTransportSocketMatchChoosesPerEndpoint(t *testing.T) {
	proto := func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			io.WriteString(w, "tls")
		} else {
			io.WriteString(w, "plain")
		}
	}
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(proto))
	defer tlsSrv.Close()
	plainSrv := httptest.NewServer(http.HandlerFunc(proto))
	defer plainSrv.Close()
	otherSrv := httptest.NewTLSServer(http.HandlerFunc(proto)) // metadata that no match selects
	defer otherSrv.Close()
	tlsAddr, plainAddr, otherAddr := tlsSrv.Listener.Addr().String(), plainSrv.Listener.Addr().String(), otherSrv.Listener.Addr().String()

	c := &clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment: cla("c", addrEP(t, tlsAddr, ""), addrEP(t, plainAddr, "disabled"), addrEP(t, otherAddr, "istio"))}
	cl, err := New(c, Options{TLS: &tls.Config{InsecureSkipVerify: true}, Mesh: true,
		Matches: []TransportMatch{{Name: "tlsMode-disabled", Match: map[string]string{"tlsMode": "disabled"}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close(0)
	if cl.Scheme != "https" {
		t.Fatalf("scheme %q, want https (the cluster's own transport)", cl.Scheme)
	}
	if cl.Mesh {
		t.Error("Mesh is true although a match reaches endpoints in plain text")
	}
	for _, tc := range []struct {
		addr, want string
	}{{tlsAddr, "tls"}, {plainAddr, "plain"}, {otherAddr, "tls"}} {
		for _, streamed := range []bool{false, true} { // the h1 pool, then the http.Transport
			req, err := http.NewRequest("POST", cl.Scheme+"://"+tc.addr+"/", strings.NewReader("x"))
			if err != nil {
				t.Fatal(err)
			}
			if streamed {
				req.GetBody = nil
				req.ContentLength = -1
			}
			resp, err := cl.RoundTrip(req)
			if err != nil {
				t.Fatalf("%s (streamed %v): %v", tc.addr, streamed, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != tc.want {
				t.Errorf("%s (streamed %v): upstream saw %s, want %s", tc.addr, streamed, b, tc.want)
			}
		}
		conn, err := cl.DialTCP(context.Background(), tc.addr)
		if err != nil {
			t.Fatalf("DialTCP %s: %v", tc.addr, err)
		}
		if _, isTLS := conn.(*tls.Conn); isTLS != (tc.want == "tls") {
			t.Errorf("DialTCP %s: TLS %v, want %v", tc.addr, isTLS, tc.want == "tls")
		}
		conn.Close()
	}

	// An endpoint update that drops the metadata moves the endpoint to the cluster's transport.
	if err := cl.SetEndpoints(cla("c", addrEP(t, plainAddr, ""))); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", cl.Scheme+"://"+plainAddr+"/", nil)
	if resp, err := cl.RoundTrip(req); err == nil {
		resp.Body.Close()
		t.Errorf("plain-text server reached over the cluster's TLS transport: %s", resp.Status)
	}
}
