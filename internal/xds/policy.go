package xds

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	networking "istio.io/api/networking/v1alpha3"
)

// policy is the traffic policy in effect for one cluster: each section comes from the most
// specific place that sets it (subset port level, subset, top-level port level, top level).
type policy struct {
	lb      *networking.LoadBalancerSettings
	pool    *networking.ConnectionPoolSettings
	outlier *networking.OutlierDetection
	tls     *networking.ClientTLSSettings
	// path of each section's origin, for messages.
	lbPath, poolPath, outlierPath, tlsPath string
}

// effectivePolicy merges the DestinationRule's traffic policies for port and subset (""
// for the service's default cluster), Istio's way: a section set at a more specific level
// replaces the whole section of the less specific one.
func effectivePolicy(dr *destinationRule, subset string, port uint32) policy {
	var p policy
	if dr == nil {
		return p
	}
	p.apply(dr.spec.GetTrafficPolicy(), port, "trafficPolicy")
	if subset != "" {
		for i, sub := range dr.spec.GetSubsets() {
			if sub.GetName() == subset {
				p.apply(sub.GetTrafficPolicy(), port, "subsets["+itoa(i)+"].trafficPolicy")
			}
		}
	}
	return p
}

func (p *policy) apply(tp *networking.TrafficPolicy, port uint32, path string) {
	if tp == nil {
		return
	}
	p.set(tp.GetLoadBalancer(), tp.GetConnectionPool(), tp.GetOutlierDetection(), tp.GetTls(), path)
	for i, pl := range tp.GetPortLevelSettings() {
		if pl.GetPort().GetNumber() == port {
			p.set(pl.GetLoadBalancer(), pl.GetConnectionPool(), pl.GetOutlierDetection(), pl.GetTls(),
				path+".portLevelSettings["+itoa(i)+"]")
		}
	}
}

func (p *policy) set(lb *networking.LoadBalancerSettings, pool *networking.ConnectionPoolSettings,
	od *networking.OutlierDetection, tls *networking.ClientTLSSettings, path string) {
	if lb != nil {
		p.lb, p.lbPath = lb, path+".loadBalancer"
	}
	if pool != nil {
		p.pool, p.poolPath = pool, path+".connectionPool"
	}
	if od != nil {
		p.outlier, p.outlierPath = od, path+".outlierDetection"
	}
	if tls != nil {
		p.tls, p.tlsPath = tls, path+".tls"
	}
}

// hashPolicy returns the route hash policy for a consistentHash load balancer of the cluster
// (service s, port, subset), or nil.
func (g *gen) hashPolicy(s *service, port uint32, subset, ref string) []*routev3.RouteAction_HashPolicy {
	dr := g.destinationRuleFor(s)
	p := effectivePolicy(dr, subset, port)
	ch := p.lb.GetConsistentHash()
	if ch == nil {
		return nil
	}
	var hp *routev3.RouteAction_HashPolicy
	switch k := ch.GetHashKey().(type) {
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
		hp = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
			Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: k.HttpHeaderName}}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie:
		if k.HttpCookie.GetTtl() != nil || k.HttpCookie.GetPath() != "" {
			g.skip(dr.ref, p.lbPath+".consistentHash.httpCookie", "ttl and path are not supported: the cookie is read, never generated")
		}
		hp = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{
			Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: k.HttpCookie.GetName()}}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_UseSourceIp:
		hp = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
			ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: k.UseSourceIp}}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName:
		g.skip(dr.ref, p.lbPath+".consistentHash.httpQueryParameterName", "hashing on a query parameter is not supported; requests are spread by the ring without a key")
		return nil
	default:
		return nil
	}
	return []*routev3.RouteAction_HashPolicy{hp}
}
