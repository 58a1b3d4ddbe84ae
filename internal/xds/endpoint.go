package xds

import (
	"net/netip"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
)

// generateEndpoints builds the ClusterLoadAssignment of every EDS cluster: the service's
// endpoints (filtered by the subset's labels), grouped by locality.
func generateEndpoints(g *gen, out *Resources) error {
	for _, s := range g.visible {
		if kind, ok := g.clusterKind(s); !ok || kind != clusterv3.Cluster_EDS {
			continue
		}
		dr := g.destinationRuleFor(s)
		for _, p := range s.ports {
			name := clusterName(p.number, "", s.host)
			out.Endpoints[name] = g.loadAssignment(s, p, name, nil, g.plainEndpoints(s, dr, "", p.number, nil))
			if dr == nil {
				continue
			}
			for _, sub := range dr.spec.GetSubsets() {
				name := clusterName(p.number, sub.GetName(), s.host)
				out.Endpoints[name] = g.loadAssignment(s, p, name, sub.GetLabels(), g.plainEndpoints(s, dr, sub.GetName(), p.number, sub.GetLabels()))
			}
		}
	}
	return nil
}

// plainEndpoints returns which endpoints of s (by index) the cluster of port, subset and
// subsetLabels reaches in plain text through its transport socket match (see applyTLS): nil
// when the cluster has none.
func (g *gen) plainEndpoints(s *service, dr *destinationRule, subset string, port uint32, subsetLabels map[string]string) []bool {
	if !autoMTLSApplies(s, effectivePolicy(dr, subset, port)) || !g.node.supports(FeatureTransportSocketMatches) {
		return nil
	}
	if t, plain := g.autoMTLS(s, subsetLabels); t == peerMixed {
		return plain
	}
	return nil
}

// loadAssignment lists the endpoints of s that match subsetLabels; those plain marks (by
// index, nil: none) carry the metadata that selects plain text (endpointMetadata).
func (g *gen) loadAssignment(s *service, p servicePort, name string, subsetLabels map[string]string, plain []bool) *endpointv3.ClusterLoadAssignment {
	byLocality := map[string][]*endpointv3.LbEndpoint{}
	for i, e := range s.endpoints {
		if !labelsMatch(subsetLabels, e.labels) {
			continue
		}
		if _, err := netip.ParseAddr(e.address); err != nil {
			g.skip(s.ref, "endpoints", "endpoint address "+e.address+" is not an IP address; resolution STATIC needs IPs")
			continue
		}
		lb := lbEndpoint(e.address, e.portFor(p), e.weight)
		if plain != nil && plain[i] {
			lb.Metadata = endpointMetadata()
		}
		byLocality[e.locality] = append(byLocality[e.locality], lb)
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	for _, loc := range sortedKeys(byLocality) {
		// grpc-go drops localities of weight 0: every locality gets weight 1.
		lle := &endpointv3.LocalityLbEndpoints{LoadBalancingWeight: wrapU32(1), LbEndpoints: byLocality[loc]}
		// grpc-go rejects a locality without one: endpoints without a locality
		// get the empty locality.
		lle.Locality = &corev3.Locality{}
		if loc != "" {
			lle.Locality = parseLocality(loc)
		}
		cla.Endpoints = append(cla.Endpoints, lle)
	}
	return cla
}

func lbEndpoint(addr string, port, weight uint32) *endpointv3.LbEndpoint {
	lb := &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(addr, port)}}}
	if weight > 0 {
		lb.LoadBalancingWeight = wrapU32(weight)
	}
	return lb
}

// parseLocality splits Istio's "region/zone/subzone".
func parseLocality(s string) *corev3.Locality {
	parts := []string{"", "", ""}
	for i, p := range strings.SplitN(s, "/", 3) {
		parts[i] = p
	}
	return &corev3.Locality{Region: parts[0], Zone: parts[1], SubZone: parts[2]}
}
