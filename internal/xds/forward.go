package xds

import (
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	networking "istio.io/api/networking/v1alpha3"
)

// Istio's default retry policy, applied to routes whose VirtualService sets no retries.
const defaultRetryOn = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"

func defaultRetryPolicy() *routev3.RetryPolicy {
	return &routev3.RetryPolicy{RetryOn: defaultRetryOn, NumRetries: wrapU32(2), RetriableStatusCodes: []uint32{503}}
}

// destination is a resolved route destination.
type destination struct {
	cluster string
	svc     *service // nil when the host is unknown or not visible
	port    uint32
	subset  string
}

// resolveDestination finds the cluster of d as written in a resource of namespace ns, for a
// request that arrived for service s on port p.
func (g *gen) resolveDestination(d *networking.Destination, ns string, s *service, p servicePort, ref, path string) (destination, bool) {
	host := g.m.canonical(qualify(d.GetHost(), ns, g.in.Mesh))
	svc, visible := g.isVisible(host)
	port := d.GetPort().GetNumber()
	if port == 0 {
		switch {
		case s != nil && svc == s:
			port = p.number
		case svc != nil && len(svc.ports) == 1:
			port = svc.ports[0].number
		case svc != nil && s != nil:
			if _, ok := svc.port(p.number); ok {
				port = p.number
			}
		}
	}
	if port == 0 {
		if !visible {
			g.skip(ref, path+".host", "destination "+host+" is not a service this proxy may reach and names no port; the route is left out")
		} else {
			g.skip(ref, path+".port", "destination "+host+" has several ports; name one")
		}
		return destination{}, false
	}
	if !visible {
		g.skip(ref, path+".host", "destination "+host+" is not a service this proxy may reach; requests routed to it fail with 503")
	} else if _, ok := svc.port(port); !ok {
		g.skip(ref, path+".port", "destination "+host+" has no port "+itoa(int(port))+"; requests routed to it fail with 503")
	}
	if sub := d.GetSubset(); sub != "" && visible {
		if dr := g.destinationRuleFor(svc); dr == nil || findSubset(dr, sub) == nil {
			g.skip(ref, path+".subset", "subset "+sub+" of "+host+" is not defined by any DestinationRule; requests routed to it fail with 503")
		}
	}
	return destination{cluster: clusterName(port, d.GetSubset(), host), svc: svc, port: port, subset: d.GetSubset()}, true
}

func findSubset(dr *destinationRule, name string) *networking.Subset {
	for _, sub := range dr.spec.GetSubsets() {
		if sub.GetName() == name {
			return sub
		}
	}
	return nil
}

// forward builds the RouteAction of an HTTP route that forwards (not redirect/direct response).
func (g *gen) forward(vs *virtualService, hr *networking.HTTPRoute, path string, s *service, p servicePort, m *networking.HTTPMatchRequest) (*routev3.RouteAction, bool) {
	ra := &routev3.RouteAction{Timeout: durationOf(0)}
	dests, weights, ok := routeDestinations(g, vs, hr.GetRoute(), path, s, p)
	if !ok {
		return nil, false
	}
	for i, rd := range hr.GetRoute() {
		if rd.GetHeaders() != nil && len(hr.GetRoute()) > 1 && rd.GetWeight() > 0 {
			g.skip(vs.ref, path+".route["+itoa(i)+"].headers", "per-destination headers of a weighted route are not supported")
		}
	}
	switch {
	case len(dests) == 1:
		ra.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: dests[0].cluster}
	default:
		wc := &routev3.WeightedCluster{}
		for i, d := range dests {
			wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{Name: d.cluster, Weight: wrapU32(weights[i])})
		}
		ra.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	}
	if t := hr.GetTimeout(); t != nil {
		ra.Timeout = t
	}
	ra.RetryPolicy = g.retryPolicy(hr.GetRetries())
	if rw := hr.GetRewrite(); rw != nil {
		g.rewrite(ra, rw, m)
	}
	g.mirrors(ra, vs, hr, path, s, p)
	if d := dests[0]; d.svc != nil {
		ra.HashPolicy = g.hashPolicy(d.svc, d.port, d.subset, vs.ref)
	}
	g.retryOtherHosts(ra, hr.GetRetries())
	return ra, true
}

// retryOtherHosts adds Istio's default retry host predicate to ra's retry policy: a retry goes to
// a host not tried yet (previous_hosts, up to 5 balancer choices). Istio leaves it out when the
// route hashes requests to hosts (a consistent-hash DestinationRule: a retry keeps its host) and
// when the VirtualService sets retryIgnorePreviousHosts: false; so does Canton, and for proxies
// that do not support it.
func (g *gen) retryOtherHosts(ra *routev3.RouteAction, r *networking.HTTPRetry) {
	if ra.RetryPolicy == nil || len(ra.HashPolicy) > 0 || !g.node.supports(FeatureRetryPreviousHosts) {
		return
	}
	if v := r.GetRetryIgnorePreviousHosts(); v != nil && !v.GetValue() {
		return
	}
	ra.RetryPolicy.RetryHostPredicate = []*routev3.RetryPolicy_RetryHostPredicate{{Name: "envoy.retry_host_predicates.previous_hosts",
		ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: mustAny(&previoushostsv3.PreviousHostsPredicate{})}}}
	ra.RetryPolicy.HostSelectionRetryMaxAttempts = 5
}

// routeDestinations resolves the destinations of an http, tcp or tls route (at path) with
// their weights: a negative weight is left out, and so is a weight of 0 among several
// destinations (it takes no traffic). It returns false, reported, when a destination cannot
// be resolved or none is left.
func routeDestinations[D weightedDestination](g *gen, vs *virtualService, rds []D, path string, s *service, p servicePort) ([]destination, []uint32, bool) {
	var dests []destination
	var weights []uint32
	for i, rd := range rds {
		dpath := path + ".route[" + itoa(i) + "].destination"
		d, ok := g.resolveDestination(rd.GetDestination(), vs.namespace, s, p, vs.ref, dpath)
		if !ok {
			return nil, nil, false
		}
		if rd.GetWeight() < 0 || (len(rds) > 1 && rd.GetWeight() == 0) {
			continue
		}
		dests = append(dests, d)
		weights = append(weights, uint32(rd.GetWeight()))
	}
	if len(dests) == 0 {
		g.skip(vs.ref, path+".route", "no destination with a positive weight; the route is left out")
		return nil, nil, false
	}
	return dests, weights, true
}

// weightedDestination is a route destination of any route kind (HTTPRouteDestination,
// RouteDestination).
type weightedDestination interface {
	GetDestination() *networking.Destination
	GetWeight() int32
}

// retryPolicy converts HTTPRetry; nil in gives Istio's default, attempts 0 disables retries.
func (g *gen) retryPolicy(r *networking.HTTPRetry) *routev3.RetryPolicy {
	if r == nil {
		return defaultRetryPolicy()
	}
	if r.GetAttempts() <= 0 {
		return nil
	}
	rp := &routev3.RetryPolicy{NumRetries: wrapU32(uint32(r.GetAttempts())), PerTryTimeout: r.GetPerTryTimeout()}
	retryOn := r.GetRetryOn()
	if retryOn == "" {
		retryOn = defaultRetryOn
		rp.RetriableStatusCodes = []uint32{503}
	}
	var policies []string
	for _, part := range strings.Split(retryOn, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if code, err := strconv.ParseUint(part, 10, 32); err == nil {
			rp.RetriableStatusCodes = append(rp.RetriableStatusCodes, uint32(code))
			continue
		}
		policies = append(policies, part)
	}
	if len(rp.RetriableStatusCodes) > 0 && !contains(policies, "retriable-status-codes") {
		policies = append(policies, "retriable-status-codes")
	}
	rp.RetryOn = strings.Join(policies, ",")
	if b := r.GetBackoff(); b != nil && b.AsDuration() > 0 {
		rp.RetryBackOff = &routev3.RetryPolicy_RetryBackOff{BaseInterval: b}
	}
	return rp
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// rewrite applies HTTPRewrite: uri replaces the matched prefix (or the whole path of an exact
// or regex match), uriRegexRewrite rewrites by regex, authority replaces the Host.
func (g *gen) rewrite(ra *routev3.RouteAction, rw *networking.HTTPRewrite, m *networking.HTTPMatchRequest) {
	if u := rw.GetUri(); u != "" {
		if _, isRegex := m.GetUri().GetMatchType().(*networking.StringMatch_Regex); isRegex {
			ra.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{Pattern: regex("^.*$"), Substitution: u}
		} else {
			ra.PrefixRewrite = u
		}
	} else if rr := rw.GetUriRegexRewrite(); rr != nil {
		ra.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{Pattern: regex(rr.GetMatch()), Substitution: rr.GetRewrite()}
	}
	if a := rw.GetAuthority(); a != "" {
		ra.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: a}
	}
}

// mirrors converts mirror (+ mirrorPercentage / mirrorPercent) and mirrors[].
func (g *gen) mirrors(ra *routev3.RouteAction, vs *virtualService, hr *networking.HTTPRoute, path string, s *service, p servicePort) {
	add := func(d *networking.Destination, pct float64, fpath string) {
		if pct <= 0 {
			return
		}
		dest, ok := g.resolveDestination(d, vs.namespace, s, p, vs.ref, fpath)
		if !ok {
			return
		}
		mp := &routev3.RouteAction_RequestMirrorPolicy{Cluster: dest.cluster}
		if pct < 100 {
			mp.RuntimeFraction = &corev3.RuntimeFractionalPercent{DefaultValue: percent(pct)}
		}
		ra.RequestMirrorPolicies = append(ra.RequestMirrorPolicies, mp)
	}
	if d := hr.GetMirror(); d != nil {
		pct := 100.0
		switch {
		case hr.GetMirrorPercentage() != nil:
			pct = hr.GetMirrorPercentage().GetValue()
		case hr.GetMirrorPercent() != nil:
			pct = float64(hr.GetMirrorPercent().GetValue())
		}
		add(d, pct, path+".mirror")
	}
	for i, mp := range hr.GetMirrors() {
		pct := 100.0
		if mp.GetPercentage() != nil {
			pct = mp.GetPercentage().GetValue()
		}
		add(mp.GetDestination(), pct, path+".mirrors["+itoa(i)+"].destination")
	}
}
