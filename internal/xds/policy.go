package xds

import (
	"slices"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
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

// mtlsMode returns the mutual TLS mode of the inbound listener of a workload of namespace ns
// (absolute) with labels, serving the ports served, with Istio's precedence: the mesh root
// namespace's default, overridden by the namespace's default, overridden by a
// PeerAuthentication of the namespace whose selector matches the labels (the oldest),
// overridden by that one's portLevelMtls entry for a served port; UNSET inherits at every
// level. Without any, Canton requires mutual TLS (STRICT): every caller in the mesh is a
// proxy. A workload's inbound listener serves all its ports, so when port-level entries for
// several served ports differ, the strictest applies to all of them; report tells whether to
// report that (the workload's own proxy does, its callers do not).
func (g *gen) mtlsMode(ns string, labels map[string]string, served []uint32, report bool) security.PeerAuthentication_MutualTLS_Mode {
	mode, chosen := g.baseMTLSMode(ns, labels)
	if chosen == nil {
		return mode
	}
	var portModes []security.PeerAuthentication_MutualTLS_Mode
	for _, port := range sortedPorts(chosen.spec.GetPortLevelMtls()) {
		m := chosen.spec.GetPortLevelMtls()[port].GetMode()
		if m == security.PeerAuthentication_MutualTLS_UNSET || !slices.Contains(served, port) {
			continue
		}
		if report && len(portModes) > 0 && !slices.Contains(portModes, m) {
			g.skip(chosen.ref, "portLevelMtls", "the ports of this workload share one inbound listener and their modes differ; the strictest applies to all of them")
		}
		portModes = append(portModes, m)
	}
	if len(portModes) > 0 {
		mode = slices.MaxFunc(portModes, func(a, b security.PeerAuthentication_MutualTLS_Mode) int {
			return strictness(a) - strictness(b)
		})
	}
	return mode
}

// baseMTLSMode is mtlsMode before port-level settings; chosen is the PeerAuthentication
// selecting the workload, if any.
func (g *gen) baseMTLSMode(ns string, labels map[string]string) (mode security.PeerAuthentication_MutualTLS_Mode, chosen *peerAuthentication) {
	var nsDefault, rootDefault *peerAuthentication
	for _, pa := range g.m.pas {
		sel := pa.spec.GetSelector().GetMatchLabels()
		switch {
		case pa.namespace == ns && len(sel) > 0:
			if chosen == nil && labelsMatch(sel, labels) {
				chosen = pa
			}
		case pa.namespace == ns:
			if nsDefault == nil {
				nsDefault = pa
			}
		case pa.namespace == g.in.Mesh && len(sel) == 0:
			if rootDefault == nil {
				rootDefault = pa
			}
		}
	}
	mode = security.PeerAuthentication_MutualTLS_STRICT
	for _, pa := range []*peerAuthentication{rootDefault, nsDefault, chosen} {
		if m := pa.mode(); m != security.PeerAuthentication_MutualTLS_UNSET {
			mode = m
		}
	}
	return mode, chosen
}

// peerTLS is how a client reaches the endpoints of one cluster under auto mutual TLS.
type peerTLS uint8

const (
	peerMutual peerTLS = iota // every endpoint accepts mutual TLS (or there is none)
	peerPlain                 // every endpoint serves plain text only
	peerMixed                 // some of each: the transport is chosen per endpoint
)

// autoMTLS is Istio's auto mutual TLS for a cluster of the Canton service s whose
// DestinationRule sets no tls: mutual TLS to the endpoints whose workload accepts it (its
// PeerAuthentication mode, computed as its own inbound listener computes it, is STRICT,
// PERMISSIVE or UNSET), plain text to those whose mode is DISABLE. It returns the choice for
// the endpoints that match subsetLabels and, when it is peerMixed, which endpoints of s (by
// index in s.endpoints) get plain text.
//
// A caller does not know a workload's application port (a Workload publishes its proxy's
// port), so port-level modes are taken for the ports of s only, as the workload's inbound
// listener takes them for the ports of its Service; a port-level entry for another port that
// would change the outcome is reported.
func (g *gen) autoMTLS(s *service, subsetLabels map[string]string) (peerTLS, []bool) {
	if !g.anyMTLSDisabled() {
		return peerMutual, nil
	}
	served := make([]uint32, 0, len(s.ports))
	for _, p := range s.ports {
		served = append(served, p.number)
	}
	plain := make([]bool, len(s.endpoints))
	var nPlain, nMutual int
	for i, e := range s.endpoints {
		if !labelsMatch(subsetLabels, e.labels) {
			continue
		}
		mode := g.mtlsMode(s.namespace, e.labels, served, false)
		g.reportUnseenPortModes(s, e.labels, served, mode)
		if mode == security.PeerAuthentication_MutualTLS_DISABLE {
			plain[i] = true
			nPlain++
		} else {
			nMutual++
		}
	}
	switch {
	case nPlain == 0:
		return peerMutual, nil
	case nMutual == 0:
		return peerPlain, nil
	}
	return peerMixed, plain
}

// anyMTLSDisabled reports whether any PeerAuthentication disables mutual TLS, at any level:
// without one every Canton workload accepts it.
func (g *gen) anyMTLSDisabled() bool {
	for _, pa := range g.m.pas {
		if pa.mode() == security.PeerAuthentication_MutualTLS_DISABLE {
			return true
		}
		for _, pl := range pa.spec.GetPortLevelMtls() {
			if pl.GetMode() == security.PeerAuthentication_MutualTLS_DISABLE {
				return true
			}
		}
	}
	return false
}

// reportUnseenPortModes reports the portLevelMtls entries of the PeerAuthentication selecting
// a workload of s (labels) for ports callers do not know (not ports of s) whose mode would
// turn mutual TLS on or off: if such a port is the workload's application port, its inbound
// listener applies the entry and its callers do not.
func (g *gen) reportUnseenPortModes(s *service, labels map[string]string, served []uint32, mode security.PeerAuthentication_MutualTLS_Mode) {
	_, chosen := g.baseMTLSMode(s.namespace, labels)
	if chosen == nil {
		return
	}
	plain := mode == security.PeerAuthentication_MutualTLS_DISABLE
	for _, port := range sortedPorts(chosen.spec.GetPortLevelMtls()) {
		m := chosen.spec.GetPortLevelMtls()[port].GetMode()
		if m == security.PeerAuthentication_MutualTLS_UNSET || slices.Contains(served, port) ||
			(m == security.PeerAuthentication_MutualTLS_DISABLE) == plain {
			continue
		}
		ports := make([]string, len(served))
		for i, p := range served {
			ports[i] = itoa(int(p))
		}
		g.skip(chosen.ref, "portLevelMtls["+itoa(int(port))+"]", "callers choose mutual TLS or plain text for this workload from the ports of "+s.ref+
			" ("+strings.Join(ports, ", ")+"), the only ones of it they know; they do not apply the mode of port "+itoa(int(port))+
			", which the workload's inbound listener applies if it is its application port")
	}
}
