package proxy

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"canton.dev/canton/internal/proxy/xdsclient"
	"canton.dev/canton/internal/telemetry"
)

// Two proxies with mTLS between them exchange peer metadata: each side's metrics carry both
// workloads (Istio's source_* and destination_* labels), the exchange headers never reach the
// applications, and an application cannot forge its proxy's identity.
func TestPeerMetadataLabelsBothSides(t *testing.T) {
	ca := newCA(t)
	ppCert, ppKey := ca.issue(t, nil, "spiffe://bookinfo.demo.mesh/sa/productpage")
	rvCert, rvKey := ca.issue(t, []string{"reviews.bookinfo.demo.mesh"}, "spiffe://bookinfo.demo.mesh/sa/reviews")
	sawHeaders := make(chan string, 4)
	app := startUpstream(t, "reviews", func(w http.ResponseWriter, r *http.Request) {
		sawHeaders <- fmt.Sprint(r.Header[telemetry.PeerMetadataHeader], r.Header[telemetry.PeerMetadataIDHeader])
		w.Header().Set(telemetry.PeerMetadataHeader, "forged-by-the-app")
		w.Write([]byte("ok"))
	})
	pp := Workload{Name: "productpage-v1", Namespace: "bookinfo.demo.mesh", App: "productpage", Version: "v1",
		Principal: "spiffe://bookinfo.demo.mesh/sa/productpage"}
	rv := Workload{Name: "reviews-v2", Namespace: "bookinfo.demo.mesh", App: "reviews", Version: "v2",
		Principal: "spiffe://bookinfo.demo.mesh/sa/reviews"}

	// The callee's proxy: mTLS inbound listener -> the app.
	in := startEnv(t, func(o *Options) { o.Workload, o.NodeID = rv, "reviews-v2-1" })
	in.set(xdsclient.SecretType, "1", keyPairSecret("svid", rvCert, rvKey), caSecret("bundle", ca.pem))
	in.set(xdsclient.ClusterType, "1", edsCluster("inbound|9080||reviews.bookinfo.demo.mesh", nil))
	in.set(xdsclient.EndpointType, "1", endpoints(t, "inbound|9080||reviews.bookinfo.demo.mesh", app.Addr()))
	in.set(xdsclient.RouteType, "1", simpleRoutes("r", "inbound|9080||reviews.bookinfo.demo.mesh"))
	l := httpListener(t, "inbound", "r", nil)
	l.TrafficDirection = corev3.TrafficDirection_INBOUND
	l.FilterChains[0].TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, &tlsv3.DownstreamTlsContext{
			RequireClientCertificate: wrapperspb.Bool(true),
			CommonTlsContext: &tlsv3.CommonTlsContext{
				TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds("svid")},
				ValidationContextType:          &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{ValidationContextSdsSecretConfig: sds("bundle")}}})}}
	in.set(xdsclient.ListenerType, "1", l)
	in.waitACK(xdsclient.SecretType, "1")
	in.waitACK(xdsclient.EndpointType, "1")
	inAddr := in.listenerAddr("inbound")

	// The caller's proxy: plain outbound listener -> mTLS mesh cluster -> the callee's proxy.
	const outCluster = "outbound|9080||reviews.bookinfo.demo.mesh"
	out := startEnv(t, func(o *Options) { o.Workload, o.NodeID = pp, "productpage-v1-1" })
	out.set(xdsclient.SecretType, "1", keyPairSecret("svid", ppCert, ppKey), caSecret("bundle", ca.pem))
	out.set(xdsclient.ClusterType, "1", edsCluster(outCluster, func(c *clusterv3.Cluster) {
		c.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
			TypedConfig: mustAny(t, &tlsv3.UpstreamTlsContext{Sni: "reviews.bookinfo.demo.mesh", CommonTlsContext: &tlsv3.CommonTlsContext{
				TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds("svid")},
				ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
						SanType: tlsv3.SubjectAltNameMatcher_URI,
						Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://bookinfo.demo.mesh/"}}}}},
					ValidationContextSdsSecretConfig: sds("bundle")}}}})}}
	}))
	out.set(xdsclient.EndpointType, "1", endpoints(t, outCluster, inAddr))
	out.set(xdsclient.RouteType, "1", simpleRoutes("r", outCluster))
	out.set(xdsclient.ListenerType, "1", httpListener(t, "outbound", "r", nil))
	out.waitACK(xdsclient.SecretType, "1")
	out.waitACK(xdsclient.EndpointType, "1")
	outAddr := out.listenerAddr("outbound")

	// The calling application tries to pass itself off as another workload.
	forged, err := telemetry.EncodePeerMetadata("evil", Workload{Name: "evil", Namespace: "evil.demo.mesh", App: "evil"})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		resp, body := get(t, client(), outAddr, "reviews.bookinfo.demo.mesh", "/", telemetry.PeerMetadataHeader, forged)
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("through both proxies: %d %q", resp.StatusCode, body)
		}
		if v := resp.Header.Values(telemetry.PeerMetadataHeader); len(v) > 0 {
			t.Errorf("the calling application got the exchange header %q", v)
		}
		if got := <-sawHeaders; got != "[] []" {
			t.Errorf("the called application got the exchange headers %s", got)
		}
	}

	want := map[*env][]string{
		out: {`reporter="source"`, `source_workload="productpage-v1"`, `source_app="productpage"`, `source_version="v1"`,
			`source_canonical_service="productpage"`, `source_principal="spiffe://bookinfo.demo.mesh/sa/productpage"`,
			`destination_workload="reviews-v2"`, `destination_app="reviews"`, `destination_version="v2"`,
			`destination_workload_namespace="bookinfo.demo.mesh"`, `destination_service="reviews.bookinfo.demo.mesh"`},
		in: {`reporter="destination"`, `source_workload="productpage-v1"`, `source_version="v1"`, `source_workload_namespace="bookinfo.demo.mesh"`,
			`source_principal="spiffe://bookinfo.demo.mesh/sa/productpage"`, `destination_workload="reviews-v2"`,
			`destination_principal="spiffe://bookinfo.demo.mesh/sa/reviews"`, `destination_canonical_revision="v2"`,
			`connection_security_policy="mutual_tls"`},
	}
	for e, labels := range want {
		_, metrics := get(t, client(), e.p.AdminAddr(), "admin", "/stats/prometheus")
		var line string
		for _, l := range strings.Split(metrics, "\n") {
			if strings.HasPrefix(l, "istio_requests_total{") {
				line = l
			}
		}
		if line == "" {
			t.Fatalf("no istio_requests_total in\n%s", metrics)
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				t.Errorf("%s lacks %s", line, l)
			}
		}
		if strings.Contains(line, "evil") {
			t.Errorf("forged metadata reached the metrics: %s", line)
		}
	}
}
