package xds

import (
	"fmt"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
)

// proxylessRoutePort is the outbound port a proxyless node is generated with:
// its routes are the sidecar's outbound routes; no socket listener is sent.
const proxylessRoutePort = 15001

// generateProxyless builds the resources of a proxyless gRPC client: the
// routes, clusters and endpoints a sidecar in its place would get, and, in
// place of socket listeners, one API listener per name it may dial
// ("host:port" and "host" of every virtual host), each an
// HttpConnectionManager using RDS "outbound" with the router last. Clusters
// keep their TLS settings: grpc-go needs certificate providers for mTLS,
// which are not generated yet, so it rejects ISTIO_MUTUAL clusters (visible
// as a NACK in `canton get proxy`) rather than talking plain text.
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
	out2 := newResources()
	out2.Listeners, out2.Routes, out2.Clusters, out2.Endpoints = listeners, res.Routes, res.Clusters, res.Endpoints
	out2.Skipped = res.Skipped
	if err := out2.computeVersions(); err != nil {
		return Resources{}, err
	}
	return *out2, nil
}
