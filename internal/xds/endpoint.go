package xds

import (
	"net/netip"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
)

// generateEndpoints builds the ClusterLoadAssignment of every EDS cluster: the service's
// endpoints (filtered by the subset's labels), grouped by locality, with the priorities or
// locality weights of the DestinationRule's localityLbSetting for this caller.
func generateEndpoints(g *gen, out *Resources) error {
	for _, s := range g.visible {
		if kind, ok := g.clusterKind(s); !ok || kind != clusterv3.Cluster_EDS {
			continue
		}
		dr := g.destinationRuleFor(s)
		for _, p := range s.ports {
			g.endpointsOf(out, s, dr, p, "", nil)
			if dr == nil {
				continue
			}
			for _, sub := range dr.spec.GetSubsets() {
				g.endpointsOf(out, s, dr, p, sub.GetName(), sub.GetLabels())
			}
		}
	}
	return nil
}

// endpointsOf adds the ClusterLoadAssignment of the cluster of s for port p and subset ("" for
// the service's own cluster).
func (g *gen) endpointsOf(out *Resources, s *service, dr *destinationRule, p servicePort, subset string, subsetLabels map[string]string) {
	name := clusterName(p.number, subset, s.host)
	pol := effectivePolicy(dr, subset, p.number)
	ref := ""
	if dr != nil {
		ref = dr.ref
	}
	llb := g.localityLBFor(s, pol, ref, clusterv3.Cluster_EDS)
	out.Endpoints[name] = g.loadAssignment(s, p, name, subsetLabels, g.plainEndpoints(s, pol, subsetLabels), llb)
}

// plainEndpoints returns which endpoints of s (by index) the cluster with policy pol and
// subsetLabels reaches in plain text through its transport socket match (see applyTLS): nil when
// the cluster has none.
func (g *gen) plainEndpoints(s *service, pol policy, subsetLabels map[string]string) []bool {
	if !autoMTLSApplies(s, pol) || !g.node.supports(FeatureTransportSocketMatches) {
		return nil
	}
	if t, plain := g.autoMTLS(s, subsetLabels); t == peerMixed {
		return plain
	}
	return nil
}

// loadAssignment lists the endpoints of s that match subsetLabels, one LocalityLbEndpoints per
// locality (weight 1: grpc-go drops localities of weight 0) shaped by llb for this caller; those
// plain marks (by index, nil: none) carry the metadata that selects plain text
// (endpointMetadata). Without locality settings the result does not depend on the caller.
func (g *gen) loadAssignment(s *service, p servicePort, name string, subsetLabels map[string]string, plain []bool, llb localityLB) *endpointv3.ClusterLoadAssignment {
	byLocality := map[string]*lbGroup{}
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
		loc := endpointLocality(e)
		grp := byLocality[loc.String()]
		if grp == nil {
			grp = &lbGroup{loc: loc, weight: 1}
			byLocality[loc.String()] = grp
		}
		grp.lbs = append(grp.lbs, lb)
		if llb.active() {
			grp.eps = append(grp.eps, e)
		}
	}
	groups := make([]*lbGroup, 0, len(byLocality))
	for _, key := range sortedKeys(byLocality) {
		groups = append(groups, byLocality[key])
	}
	if llb.active() {
		groups = llb.shape(groups, localityFromLabels(g.node.Labels), g.node.Labels)
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	for _, grp := range groups {
		if len(grp.lbs) == 0 {
			continue // no traffic for this locality (distribute)
		}
		// grpc-go rejects a locality without one: endpoints without a locality get the empty one.
		cla.Endpoints = append(cla.Endpoints, &endpointv3.LocalityLbEndpoints{Locality: grp.loc.proto(),
			LoadBalancingWeight: wrapU32(grp.weight), LbEndpoints: grp.lbs, Priority: grp.priority})
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
