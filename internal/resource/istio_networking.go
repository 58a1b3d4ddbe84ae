package resource

import (
	"encoding/json"
	"net/netip"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"
)

// istioChecks holds the semantic checks of the Istio kinds, by kind name. Each gets the
// object and its decoded spec message. The checks are this project's reading of the Istio
// reference documentation, not a copy of Istio's validation.
var istioChecks = map[string]func(o Object, spec any) error{
	"VirtualService":        func(o Object, s any) error { return checkVirtualService(s.(*networking.VirtualService)) },
	"DestinationRule":       func(o Object, s any) error { return checkDestinationRule(s.(*networking.DestinationRule)) },
	"ServiceEntry":          func(o Object, s any) error { return checkServiceEntry(s.(*networking.ServiceEntry)) },
	"WorkloadEntry":         func(o Object, s any) error { return checkWorkloadEntry(specPath, s.(*networking.WorkloadEntry)) },
	"Gateway":               func(o Object, s any) error { return checkGateway(s.(*networking.Gateway)) },
	"Sidecar":               func(o Object, s any) error { return checkSidecar(s.(*networking.Sidecar)) },
	"PeerAuthentication":    checkPeerAuthentication,
	"RequestAuthentication": checkRequestAuthentication,
	"AuthorizationPolicy":   checkAuthorizationPolicy,
}

// checkDuration requires a set duration to be valid and strictly positive.
func checkDuration(path string, d *durationpb.Duration) error {
	if d == nil {
		return nil
	}
	if err := d.CheckValid(); err != nil {
		return errorf(path, "invalid duration")
	}
	if d.GetSeconds() < 0 || d.GetSeconds() == 0 && d.GetNanos() <= 0 {
		return errorf(path, "must be a positive duration, not %s", formatDuration(d.AsDuration()))
	}
	return nil
}

func checkPercent(path string, p *networking.Percent) error {
	if p == nil {
		return nil
	}
	if v := p.GetValue(); !(v >= 0 && v <= 100) { // also rejects NaN
		return errorf(field(path, "value"), "must be 0..100, not %s", strconv.FormatFloat(v, 'g', -1, 64))
	}
	return nil
}

func checkStringMatch(path string, m *networking.StringMatch) error {
	if m == nil {
		return nil
	}
	if m.GetMatchType() == nil {
		return errorf(path, "one of exact, prefix or regex is required")
	}
	if re, ok := m.GetMatchType().(*networking.StringMatch_Regex); ok {
		if _, err := regexp.Compile(re.Regex); err != nil {
			return errorf(field(path, "regex"), "invalid RE2 regular expression %q: %v", re.Regex, regexpReason(err))
		}
	}
	return nil
}

// regexpReason returns the stable part of a regexp compile error.
func regexpReason(err error) string {
	if e, ok := err.(*syntax.Error); ok {
		return string(e.Code)
	}
	return err.Error()
}

func checkDestination(path string, d *networking.Destination) error {
	if d == nil {
		return errorf(path, "required")
	}
	if d.GetHost() == "" {
		return errorf(field(path, "host"), "required")
	}
	if err := checkHost(field(path, "host"), d.GetHost(), false); err != nil {
		return err
	}
	if strings.HasPrefix(d.GetHost(), "*") {
		return errorf(field(path, "host"), "%q: a destination cannot be a wildcard host", d.GetHost())
	}
	if d.GetSubset() != "" && !isDNSLabel(d.GetSubset()) {
		return errorf(field(path, "subset"), "%q must be a DNS-1123 label", d.GetSubset())
	}
	if d.GetPort() != nil {
		if err := checkPort(field(field(path, "port"), "number"), d.GetPort().GetNumber()); err != nil {
			return err
		}
	}
	return nil
}

// checkWeights checks route weights: each 0..100 and, with more than one destination,
// summing to 100.
func checkWeights(path string, weights []int32) error {
	sum := int64(0)
	for i, w := range weights {
		if w < 0 || w > 100 {
			return errorf(field(index(path, i), "weight"), "must be 0..100")
		}
		sum += int64(w)
	}
	if len(weights) > 1 && sum != 100 {
		return errorf(path, "weights must sum to 100, not %d", sum)
	}
	return nil
}

func checkGatewayRefs(path string, gws []string) error {
	for i, g := range gws {
		p := index(path, i)
		if g == "mesh" {
			continue
		}
		ns, name, hasNS := strings.Cut(g, "/")
		if !hasNS {
			name = g
		}
		if hasNS && !isDNSSubdomain(ns) {
			return errorf(p, "%q: namespace %q is not valid (use \"namespace/name\", \"name\" or \"mesh\")", g, ns)
		}
		if !isDNSSubdomain(name) {
			return errorf(p, "%q is not a valid gateway reference (use \"namespace/name\", \"name\" or \"mesh\")", g)
		}
	}
	return nil
}

func checkVirtualService(vs *networking.VirtualService) error {
	hosts := field(specPath, "hosts")
	if len(vs.GetHosts()) == 0 {
		// A delegate: routes another VirtualService's http route hands over (http[].delegate).
		switch {
		case len(vs.GetGateways()) > 0:
			return errorf(field(specPath, "gateways"), "a VirtualService without hosts is a delegate: the root VirtualService's gateways apply, set none")
		case len(vs.GetTcp()) > 0 || len(vs.GetTls()) > 0:
			return errorf(specPath, "a VirtualService without hosts is a delegate: only http routes can be delegated")
		case len(vs.GetHttp()) == 0:
			return errorf(hosts, "at least one host is required (or http routes, for a delegate)")
		}
		for i, r := range vs.GetHttp() {
			if r.GetDelegate() != nil {
				return errorf(field(index(field(specPath, "http"), i), "delegate"), "a delegate cannot delegate again (one level only)")
			}
		}
	}
	for i, h := range vs.GetHosts() {
		if err := checkHost(index(hosts, i), h, true); err != nil {
			return err
		}
	}
	if err := checkGatewayRefs(field(specPath, "gateways"), vs.GetGateways()); err != nil {
		return err
	}
	if len(vs.GetHttp()) == 0 && len(vs.GetTcp()) == 0 && len(vs.GetTls()) == 0 {
		return errorf(specPath, "at least one of http, tcp or tls routes is required")
	}
	for i, r := range vs.GetHttp() {
		if err := checkHTTPRoute(index(field(specPath, "http"), i), r); err != nil {
			return err
		}
	}
	for i, r := range vs.GetTcp() {
		p := index(field(specPath, "tcp"), i)
		for j, m := range r.GetMatch() {
			if err := checkL4Match(index(field(p, "match"), j), m.GetDestinationSubnets(), m.GetPort(), m.GetSourceLabels(), m.GetGateways()); err != nil {
				return err
			}
		}
		if err := checkRouteDestinations(field(p, "route"), r.GetRoute()); err != nil {
			return err
		}
	}
	for i, r := range vs.GetTls() {
		p := index(field(specPath, "tls"), i)
		if len(r.GetMatch()) == 0 {
			return errorf(field(p, "match"), "at least one match (with sniHosts) is required")
		}
		for j, m := range r.GetMatch() {
			pm := index(field(p, "match"), j)
			if len(m.GetSniHosts()) == 0 {
				return errorf(field(pm, "sniHosts"), "at least one SNI host is required")
			}
			for k, h := range m.GetSniHosts() {
				if err := checkHost(index(field(pm, "sniHosts"), k), h, true); err != nil {
					return err
				}
			}
			if err := checkL4Match(pm, m.GetDestinationSubnets(), m.GetPort(), m.GetSourceLabels(), m.GetGateways()); err != nil {
				return err
			}
		}
		if err := checkRouteDestinations(field(p, "route"), r.GetRoute()); err != nil {
			return err
		}
	}
	return checkExportTo(field(specPath, "exportTo"), vs.GetExportTo())
}

func checkL4Match(path string, subnets []string, port uint32, sourceLabels map[string]string, gateways []string) error {
	for i, s := range subnets {
		if err := checkIPOrCIDR(index(field(path, "destinationSubnets"), i), s); err != nil {
			return err
		}
	}
	if port > 65535 {
		return errorf(field(path, "port"), "port %d must be 1..65535", port)
	}
	if err := checkLabels(field(path, "sourceLabels"), sourceLabels); err != nil {
		return err
	}
	return checkGatewayRefs(field(path, "gateways"), gateways)
}

func checkRouteDestinations(path string, route []*networking.RouteDestination) error {
	if len(route) == 0 {
		return errorf(path, "at least one destination is required")
	}
	weights := make([]int32, len(route))
	for i, d := range route {
		if err := checkDestination(field(index(path, i), "destination"), d.GetDestination()); err != nil {
			return err
		}
		weights[i] = d.GetWeight()
	}
	return checkWeights(path, weights)
}

func checkHTTPRoute(path string, r *networking.HTTPRoute) error {
	for j, m := range r.GetMatch() {
		if err := checkHTTPMatch(index(field(path, "match"), j), m); err != nil {
			return err
		}
	}
	hasRoute, hasRedirect, hasDirect, hasDelegate := len(r.GetRoute()) > 0, r.GetRedirect() != nil, r.GetDirectResponse() != nil, r.GetDelegate() != nil
	switch {
	case hasRedirect && hasRoute:
		return errorf(path, "redirect and route are mutually exclusive")
	case hasDirect && (hasRoute || hasRedirect):
		return errorf(path, "directResponse cannot be combined with route or redirect")
	case hasDelegate && (hasRoute || hasRedirect || hasDirect):
		return errorf(path, "delegate cannot be combined with route, redirect or directResponse")
	case !hasRoute && !hasRedirect && !hasDirect && !hasDelegate:
		return errorf(path, "one of route, redirect, directResponse or delegate is required")
	}
	if hasRoute {
		p := field(path, "route")
		weights := make([]int32, len(r.GetRoute()))
		for i, d := range r.GetRoute() {
			if err := checkDestination(field(index(p, i), "destination"), d.GetDestination()); err != nil {
				return err
			}
			weights[i] = d.GetWeight()
		}
		if err := checkWeights(p, weights); err != nil {
			return err
		}
	}
	if rd := r.GetRedirect(); rd != nil {
		p := field(path, "redirect")
		if rd.GetUri() == "" && rd.GetAuthority() == "" && rd.GetScheme() == "" && rd.GetRedirectPort() == nil && rd.GetPrefixRewrite() == "" {
			return errorf(p, "at least one of uri, authority, scheme, port, derivePort or prefixRewrite is required")
		}
		if rd.GetUri() != "" && rd.GetPrefixRewrite() != "" {
			return errorf(p, "uri and prefixRewrite are mutually exclusive")
		}
		if c := rd.GetRedirectCode(); c != 0 && (c < 300 || c > 399) {
			return errorf(field(p, "redirectCode"), "%d must be a 3xx status code", c)
		}
		if pp, ok := rd.GetRedirectPort().(*networking.HTTPRedirect_Port); ok {
			if err := checkPort(field(p, "port"), pp.Port); err != nil {
				return err
			}
		}
	}
	if dr := r.GetDirectResponse(); dr != nil {
		if s := dr.GetStatus(); s < 200 || s > 599 {
			return errorf(field(field(path, "directResponse"), "status"), "%d must be an HTTP status code 200..599", s)
		}
	}
	if d := r.GetDelegate(); d != nil {
		p := field(path, "delegate")
		if !isDNSSubdomain(d.GetName()) {
			return errorf(field(p, "name"), "%q must be the name of a VirtualService", d.GetName())
		}
		if d.GetNamespace() != "" && !isDNSSubdomain(d.GetNamespace()) {
			return errorf(field(p, "namespace"), "%q is not a valid namespace", d.GetNamespace())
		}
	}
	if rw := r.GetRewrite(); rw != nil {
		p := field(path, "rewrite")
		if rw.GetUri() != "" && rw.GetUriRegexRewrite() != nil {
			return errorf(p, "uri and uriRegexRewrite are mutually exclusive")
		}
		if rr := rw.GetUriRegexRewrite(); rr != nil {
			if _, err := regexp.Compile(rr.GetMatch()); err != nil || rr.GetMatch() == "" {
				return errorf(field(field(p, "uriRegexRewrite"), "match"), "%q must be a non-empty RE2 regular expression", rr.GetMatch())
			}
		}
	}
	if err := checkDuration(field(path, "timeout"), r.GetTimeout()); err != nil {
		return err
	}
	if rt := r.GetRetries(); rt != nil {
		p := field(path, "retries")
		if rt.GetAttempts() < 0 {
			return errorf(field(p, "attempts"), "must be >= 0")
		}
		if err := checkDuration(field(p, "perTryTimeout"), rt.GetPerTryTimeout()); err != nil {
			return err
		}
		if err := checkDuration(field(p, "backoff"), rt.GetBackoff()); err != nil {
			return err
		}
		for _, cond := range strings.Split(rt.GetRetryOn(), ",") {
			if strings.TrimSpace(cond) == "" && rt.GetRetryOn() != "" {
				return errorf(field(p, "retryOn"), "%q has an empty condition", rt.GetRetryOn())
			}
		}
	}
	if f := r.GetFault(); f != nil {
		if err := checkFault(field(path, "fault"), f); err != nil {
			return err
		}
	}
	if r.GetMirror() != nil && len(r.GetMirrors()) > 0 {
		return errorf(path, "mirror and mirrors are mutually exclusive")
	}
	if r.GetMirror() != nil {
		if err := checkDestination(field(path, "mirror"), r.GetMirror()); err != nil {
			return err
		}
	}
	if mp := r.GetMirrorPercent(); mp != nil && mp.GetValue() > 100 {
		return errorf(field(path, "mirrorPercent"), "must be 0..100")
	}
	if err := checkPercent(field(path, "mirrorPercentage"), r.GetMirrorPercentage()); err != nil {
		return err
	}
	for i, m := range r.GetMirrors() {
		p := index(field(path, "mirrors"), i)
		if err := checkDestination(field(p, "destination"), m.GetDestination()); err != nil {
			return err
		}
		if err := checkPercent(field(p, "percentage"), m.GetPercentage()); err != nil {
			return err
		}
	}
	if c := r.GetCorsPolicy(); c != nil {
		for i, o := range c.GetAllowOrigins() {
			if err := checkStringMatch(index(field(field(path, "corsPolicy"), "allowOrigins"), i), o); err != nil {
				return err
			}
		}
		if err := checkDuration(field(field(path, "corsPolicy"), "maxAge"), c.GetMaxAge()); err != nil {
			return err
		}
	}
	return nil
}

func checkHTTPMatch(path string, m *networking.HTTPMatchRequest) error {
	// Fixed order, so the first error reported is deterministic.
	for _, f := range []struct {
		name string
		sm   *networking.StringMatch
	}{{"uri", m.GetUri()}, {"scheme", m.GetScheme()}, {"method", m.GetMethod()}, {"authority", m.GetAuthority()}} {
		if err := checkStringMatch(field(path, f.name), f.sm); err != nil {
			return err
		}
	}
	for _, group := range []struct {
		name string
		m    map[string]*networking.StringMatch
	}{{"headers", m.GetHeaders()}, {"queryParams", m.GetQueryParams()}, {"withoutHeaders", m.GetWithoutHeaders()}} {
		for _, k := range sortedKeys(group.m) {
			p := key(field(path, group.name), k)
			if k == "" {
				return errorf(p, "name must not be empty")
			}
			if group.name != "queryParams" && k != strings.ToLower(k) {
				return errorf(p, "header name %q must be lower-case", k)
			}
			// An empty StringMatch on a header means "header present", which is allowed.
			if sm := group.m[k]; sm != nil && sm.GetMatchType() != nil {
				if err := checkStringMatch(p, sm); err != nil {
					return err
				}
			}
		}
	}
	if m.GetPort() > 65535 {
		return errorf(field(path, "port"), "port %d must be 1..65535", m.GetPort())
	}
	if err := checkLabels(field(path, "sourceLabels"), m.GetSourceLabels()); err != nil {
		return err
	}
	return checkGatewayRefs(field(path, "gateways"), m.GetGateways())
}

func checkFault(path string, f *networking.HTTPFaultInjection) error {
	if f.GetDelay() == nil && f.GetAbort() == nil {
		return errorf(path, "one of delay or abort is required")
	}
	if d := f.GetDelay(); d != nil {
		p := field(path, "delay")
		if d.GetPercent() < 0 || d.GetPercent() > 100 {
			return errorf(field(p, "percent"), "must be 0..100")
		}
		if err := checkPercent(field(p, "percentage"), d.GetPercentage()); err != nil {
			return err
		}
		switch t := d.GetHttpDelayType().(type) {
		case *networking.HTTPFaultInjection_Delay_FixedDelay:
			if t.FixedDelay == nil {
				return errorf(field(p, "fixedDelay"), "required")
			}
			if err := checkDuration(field(p, "fixedDelay"), t.FixedDelay); err != nil {
				return err
			}
		case *networking.HTTPFaultInjection_Delay_ExponentialDelay:
			if err := checkDuration(field(p, "exponentialDelay"), t.ExponentialDelay); err != nil {
				return err
			}
		default:
			return errorf(field(p, "fixedDelay"), "required")
		}
	}
	if a := f.GetAbort(); a != nil {
		p := field(path, "abort")
		if err := checkPercent(field(p, "percentage"), a.GetPercentage()); err != nil {
			return err
		}
		switch t := a.GetErrorType().(type) {
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			if t.HttpStatus < 200 || t.HttpStatus > 599 {
				return errorf(field(p, "httpStatus"), "%d must be an HTTP status code 200..599", t.HttpStatus)
			}
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			if t.GrpcStatus == "" {
				return errorf(field(p, "grpcStatus"), "must not be empty")
			}
		default:
			return errorf(p, "one of httpStatus or grpcStatus is required")
		}
	}
	return nil
}

func checkDestinationRule(dr *networking.DestinationRule) error {
	if dr.GetHost() == "" {
		return errorf(field(specPath, "host"), "required")
	}
	if err := checkHost(field(specPath, "host"), dr.GetHost(), false); err != nil {
		return err
	}
	if err := checkTrafficPolicy(field(specPath, "trafficPolicy"), dr.GetTrafficPolicy(), true); err != nil {
		return err
	}
	seen := map[string]int{}
	for i, s := range dr.GetSubsets() {
		p := index(field(specPath, "subsets"), i)
		if s.GetName() == "" {
			return errorf(field(p, "name"), "required")
		}
		if !isDNSLabel(s.GetName()) {
			return errorf(field(p, "name"), "%q must be a DNS-1123 label (lower-case letters, digits, '-')", s.GetName())
		}
		if j, dup := seen[s.GetName()]; dup {
			return errorf(field(p, "name"), "duplicate subset name %q (also subsets[%d])", s.GetName(), j)
		}
		seen[s.GetName()] = i
		if err := checkLabels(field(p, "labels"), s.GetLabels()); err != nil {
			return err
		}
		if err := checkTrafficPolicy(field(p, "trafficPolicy"), s.GetTrafficPolicy(), true); err != nil {
			return err
		}
	}
	if ws := dr.GetWorkloadSelector(); ws != nil {
		if err := checkLabels(field(field(specPath, "workloadSelector"), "matchLabels"), ws.GetMatchLabels()); err != nil {
			return err
		}
	}
	return checkExportTo(field(specPath, "exportTo"), dr.GetExportTo())
}

// trafficPolicyParts is what a TrafficPolicy and a port-level policy have in common.
type trafficPolicyParts struct {
	lb *networking.LoadBalancerSettings
	cp *networking.ConnectionPoolSettings
	od *networking.OutlierDetection
	tl *networking.ClientTLSSettings
}

func checkTrafficPolicy(path string, tp *networking.TrafficPolicy, allowPortLevel bool) error {
	if tp == nil {
		return nil
	}
	if err := checkPolicyParts(path, trafficPolicyParts{tp.GetLoadBalancer(), tp.GetConnectionPool(), tp.GetOutlierDetection(), tp.GetTls()}); err != nil {
		return err
	}
	ports := map[uint32]int{}
	for i, pl := range tp.GetPortLevelSettings() {
		p := index(field(path, "portLevelSettings"), i)
		if pl.GetPort() == nil {
			return errorf(field(p, "port"), "required")
		}
		n := pl.GetPort().GetNumber()
		if err := checkPort(field(field(p, "port"), "number"), n); err != nil {
			return err
		}
		if j, dup := ports[n]; dup {
			return errorf(field(field(p, "port"), "number"), "duplicate port %d (also portLevelSettings[%d])", n, j)
		}
		ports[n] = i
		if err := checkPolicyParts(p, trafficPolicyParts{pl.GetLoadBalancer(), pl.GetConnectionPool(), pl.GetOutlierDetection(), pl.GetTls()}); err != nil {
			return err
		}
	}
	if t := tp.GetTunnel(); t != nil {
		p := field(path, "tunnel")
		if t.GetTargetHost() == "" {
			return errorf(field(p, "targetHost"), "required")
		}
		if err := checkPort(field(p, "targetPort"), t.GetTargetPort()); err != nil {
			return err
		}
		if pr := t.GetProtocol(); pr != "" && pr != "CONNECT" && pr != "POST" {
			return errorf(field(p, "protocol"), "%q must be CONNECT or POST", pr)
		}
	}
	return nil
}

func checkPolicyParts(path string, tp trafficPolicyParts) error {
	if lb := tp.lb; lb != nil {
		p := field(path, "loadBalancer")
		if ch := lb.GetConsistentHash(); ch != nil {
			pc := field(p, "consistentHash")
			if ch.GetHashKey() == nil {
				return errorf(pc, "one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName is required")
			}
			if c := ch.GetHttpCookie(); c != nil {
				if c.GetName() == "" {
					return errorf(field(field(pc, "httpCookie"), "name"), "required")
				}
				if c.GetTtl() != nil && c.GetTtl().CheckValid() != nil {
					return errorf(field(field(pc, "httpCookie"), "ttl"), "invalid duration")
				}
			}
			if ch.GetMinimumRingSize() != 0 && ch.GetHashAlgorithm() != nil {
				return errorf(field(pc, "minimumRingSize"), "deprecated field cannot be combined with ringHash or maglev")
			}
			if lb.GetWarmupDurationSecs() != nil || lb.GetWarmup() != nil {
				return errorf(p, "warmup is only supported with the ROUND_ROBIN and LEAST_REQUEST policies, not consistentHash")
			}
		}
		if lb.GetSimple() != networking.LoadBalancerSettings_UNSPECIFIED && lb.GetSimple() != networking.LoadBalancerSettings_ROUND_ROBIN &&
			lb.GetSimple() != networking.LoadBalancerSettings_LEAST_REQUEST && lb.GetSimple() != networking.LoadBalancerSettings_LEAST_CONN &&
			(lb.GetWarmupDurationSecs() != nil || lb.GetWarmup() != nil) {
			return errorf(p, "warmup is only supported with the ROUND_ROBIN and LEAST_REQUEST policies, not %s", lb.GetSimple())
		}
		if lb.GetWarmupDurationSecs() != nil && lb.GetWarmup() != nil {
			return errorf(p, "warmupDurationSecs and warmup are mutually exclusive")
		}
		if err := checkDuration(field(p, "warmupDurationSecs"), lb.GetWarmupDurationSecs()); err != nil {
			return err
		}
		if w := lb.GetWarmup(); w != nil {
			if err := checkDuration(field(field(p, "warmup"), "duration"), w.GetDuration()); err != nil {
				return err
			}
			if mp := w.GetMinimumPercent(); mp != nil && !(mp.GetValue() >= 0 && mp.GetValue() <= 100) {
				return errorf(field(field(p, "warmup"), "minimumPercent"), "must be 0..100")
			}
		}
		if ll := lb.GetLocalityLbSetting(); ll != nil {
			pl := field(p, "localityLbSetting")
			if len(ll.GetDistribute()) > 0 && (len(ll.GetFailover()) > 0 || len(ll.GetFailoverPriority()) > 0) {
				return errorf(pl, "distribute cannot be combined with failover or failoverPriority")
			}
			for i, d := range ll.GetDistribute() {
				pd := index(field(pl, "distribute"), i)
				if d.GetFrom() == "" {
					return errorf(field(pd, "from"), "required")
				}
				sum := uint64(0)
				for _, k := range sortedKeys(d.GetTo()) {
					w := d.GetTo()[k]
					if w > 100 {
						return errorf(key(field(pd, "to"), k), "weight %d must be 0..100", w)
					}
					sum += uint64(w)
				}
				if sum != 100 {
					return errorf(field(pd, "to"), "weights must sum to 100, not %d", sum)
				}
			}
			for i, f := range ll.GetFailover() {
				pf := index(field(pl, "failover"), i)
				if f.GetFrom() == "" || f.GetTo() == "" {
					return errorf(pf, "from and to are required")
				}
				if f.GetFrom() == f.GetTo() {
					return errorf(pf, "from and to must differ")
				}
			}
		}
	}
	if cp := tp.cp; cp != nil {
		p := field(path, "connectionPool")
		if t := cp.GetTcp(); t != nil {
			pt := field(p, "tcp")
			if t.GetMaxConnections() < 0 {
				return errorf(field(pt, "maxConnections"), "must be >= 0")
			}
			for _, d := range []struct {
				name string
				d    *durationpb.Duration
			}{{"connectTimeout", t.GetConnectTimeout()}, {"maxConnectionDuration", t.GetMaxConnectionDuration()}, {"idleTimeout", t.GetIdleTimeout()}} {
				if err := checkDuration(field(pt, d.name), d.d); err != nil {
					return err
				}
			}
			if ka := t.GetTcpKeepalive(); ka != nil {
				if err := checkDuration(field(field(pt, "tcpKeepalive"), "time"), ka.GetTime()); err != nil {
					return err
				}
				if err := checkDuration(field(field(pt, "tcpKeepalive"), "interval"), ka.GetInterval()); err != nil {
					return err
				}
			}
		}
		if h := cp.GetHttp(); h != nil {
			ph := field(p, "http")
			for _, n := range []struct {
				name string
				v    int32
			}{{"http1MaxPendingRequests", h.GetHttp1MaxPendingRequests()}, {"http2MaxRequests", h.GetHttp2MaxRequests()},
				{"maxRequestsPerConnection", h.GetMaxRequestsPerConnection()}, {"maxRetries", h.GetMaxRetries()}, {"maxConcurrentStreams", h.GetMaxConcurrentStreams()}} {
				if n.v < 0 {
					return errorf(field(ph, n.name), "must be >= 0")
				}
			}
			if err := checkDuration(field(ph, "idleTimeout"), h.GetIdleTimeout()); err != nil {
				return err
			}
		}
	}
	if od := tp.od; od != nil {
		p := field(path, "outlierDetection")
		if od.GetConsecutiveErrors() < 0 {
			return errorf(field(p, "consecutiveErrors"), "must be >= 0")
		}
		if od.GetMaxEjectionPercent() < 0 || od.GetMaxEjectionPercent() > 100 {
			return errorf(field(p, "maxEjectionPercent"), "must be 0..100")
		}
		if od.GetMinHealthPercent() < 0 || od.GetMinHealthPercent() > 100 {
			return errorf(field(p, "minHealthPercent"), "must be 0..100")
		}
		if err := checkDuration(field(p, "interval"), od.GetInterval()); err != nil {
			return err
		}
		if err := checkDuration(field(p, "baseEjectionTime"), od.GetBaseEjectionTime()); err != nil {
			return err
		}
		if od.GetConsecutiveLocalOriginFailures() != nil && !od.GetSplitExternalLocalOriginErrors() {
			return errorf(field(p, "consecutiveLocalOriginFailures"), "requires splitExternalLocalOriginErrors: true")
		}
		for i, c := range od.GetOutlierDetectionHttpErrorCodes() {
			if c < 400 || c > 599 {
				return errorf(index(field(p, "outlierDetectionHttpErrorCodes"), i), "%d must be 400..599", c)
			}
		}
	}
	if t := tp.tl; t != nil {
		p := field(path, "tls")
		if t.GetMode() == networking.ClientTLSSettings_MUTUAL && t.GetCredentialName() == "" && (t.GetClientCertificate() == "" || t.GetPrivateKey() == "") {
			return errorf(p, "mode MUTUAL needs credentialName, or clientCertificate and privateKey")
		}
		if (t.GetMode() == networking.ClientTLSSettings_DISABLE || t.GetMode() == networking.ClientTLSSettings_ISTIO_MUTUAL) &&
			(t.GetClientCertificate() != "" || t.GetPrivateKey() != "" || t.GetCaCertificates() != "" || t.GetCredentialName() != "") {
			return errorf(p, "mode %s cannot be combined with certificates or credentialName", t.GetMode())
		}
	}
	return nil
}

// serviceEntryProtocols are the port protocols Istio documents (compared case-insensitively).
var serviceEntryProtocols = []string{"HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "MYSQL", "REDIS", "TCP", "TLS", "UDP", "THRIFT"}

func checkPortProtocol(path, proto string) error {
	if proto == "" || oneOf(strings.ToUpper(proto), serviceEntryProtocols) {
		return nil
	}
	return errorf(path, "%q must be one of %s", proto, strings.Join(serviceEntryProtocols, ", "))
}

func checkServiceEntry(se *networking.ServiceEntry) error {
	hosts := field(specPath, "hosts")
	if len(se.GetHosts()) == 0 {
		return errorf(hosts, "at least one host is required")
	}
	wildcard := false
	for i, h := range se.GetHosts() {
		if err := checkHost(index(hosts, i), h, false); err != nil {
			return err
		}
		wildcard = wildcard || strings.HasPrefix(h, "*")
	}
	for i, a := range se.GetAddresses() {
		if err := checkIPOrCIDR(index(field(specPath, "addresses"), i), a); err != nil {
			return err
		}
	}
	ports := field(specPath, "ports")
	names := map[string]int{}
	numbers := map[uint32]int{}
	for i, p := range se.GetPorts() {
		pp := index(ports, i)
		if err := checkPort(field(pp, "number"), p.GetNumber()); err != nil {
			return err
		}
		if j, dup := numbers[p.GetNumber()]; dup {
			return errorf(field(pp, "number"), "duplicate port %d (also ports[%d])", p.GetNumber(), j)
		}
		numbers[p.GetNumber()] = i
		if p.GetName() != "" {
			if j, dup := names[p.GetName()]; dup {
				return errorf(field(pp, "name"), "duplicate port name %q (also ports[%d])", p.GetName(), j)
			}
			names[p.GetName()] = i
		}
		if err := checkPortProtocol(field(pp, "protocol"), p.GetProtocol()); err != nil {
			return err
		}
		if p.GetTargetPort() != 0 {
			if err := checkPort(field(pp, "targetPort"), p.GetTargetPort()); err != nil {
				return err
			}
		}
	}
	eps := field(specPath, "endpoints")
	if se.GetWorkloadSelector() != nil && len(se.GetEndpoints()) > 0 {
		return errorf(specPath, "workloadSelector and endpoints are mutually exclusive")
	}
	if ws := se.GetWorkloadSelector(); ws != nil {
		if err := checkLabels(field(field(specPath, "workloadSelector"), "labels"), ws.GetLabels()); err != nil {
			return err
		}
	}
	res := se.GetResolution()
	switch res {
	case networking.ServiceEntry_NONE:
		// Traffic goes to the original destination; endpoints are not used.
		if len(se.GetEndpoints()) > 0 {
			return errorf(eps, "endpoints are not used with resolution NONE; use STATIC or DNS")
		}
	case networking.ServiceEntry_STATIC:
		if len(se.GetEndpoints()) == 0 && se.GetWorkloadSelector() == nil {
			return errorf(eps, "resolution STATIC needs endpoints or a workloadSelector")
		}
	case networking.ServiceEntry_DNS, networking.ServiceEntry_DNS_ROUND_ROBIN:
		if len(se.GetEndpoints()) == 0 && wildcard {
			return errorf(hosts, "resolution %s without endpoints cannot resolve wildcard hosts", res)
		}
		if res == networking.ServiceEntry_DNS_ROUND_ROBIN && len(se.GetEndpoints()) > 1 {
			return errorf(eps, "resolution DNS_ROUND_ROBIN allows at most one endpoint")
		}
	}
	for i, ep := range se.GetEndpoints() {
		p := index(eps, i)
		if err := checkWorkloadEntry(p, ep); err != nil {
			return err
		}
		addr := ep.GetAddress()
		if res == networking.ServiceEntry_STATIC && !strings.HasPrefix(addr, "unix://") {
			if _, err := netip.ParseAddr(addr); err != nil {
				return errorf(field(p, "address"), "%q must be an IP address with resolution STATIC", addr)
			}
		}
		for _, name := range sortedKeys(ep.GetPorts()) {
			if _, ok := names[name]; !ok {
				return errorf(key(field(p, "ports"), name), "no port named %q in spec.ports", name)
			}
		}
	}
	for i, san := range se.GetSubjectAltNames() {
		if san == "" {
			return errorf(index(field(specPath, "subjectAltNames"), i), "must not be empty")
		}
	}
	return checkExportTo(field(specPath, "exportTo"), se.GetExportTo())
}

func checkWorkloadEntry(path string, we *networking.WorkloadEntry) error {
	addr := we.GetAddress()
	if addr == "" && we.GetNetwork() == "" {
		return errorf(field(path, "address"), "required (unless network is set)")
	}
	if addr != "" {
		if strings.HasPrefix(addr, "unix://") {
			if len(addr) == len("unix://") {
				return errorf(field(path, "address"), "%q: empty unix socket path", addr)
			}
			if len(we.GetPorts()) > 0 {
				return errorf(field(path, "ports"), "must be empty for a unix socket address")
			}
		} else if _, err := netip.ParseAddr(addr); err != nil && !isHostname(addr) {
			return errorf(field(path, "address"), "%q must be an IP address, a host name or unix://path", addr)
		}
	}
	for _, k := range sortedKeys(we.GetPorts()) {
		if err := checkPort(key(field(path, "ports"), k), we.GetPorts()[k]); err != nil {
			return err
		}
	}
	if err := checkLabels(field(path, "labels"), we.GetLabels()); err != nil {
		return err
	}
	if sa := we.GetServiceAccount(); sa != "" && !isDNSSubdomain(sa) {
		return errorf(field(path, "serviceAccount"), "%q must be a DNS-1123 subdomain", sa)
	}
	return nil
}

func checkServerTLS(path string, t *networking.ServerTLSSettings) error {
	if t == nil {
		return nil
	}
	switch t.GetMode() {
	case networking.ServerTLSSettings_SIMPLE, networking.ServerTLSSettings_MUTUAL, networking.ServerTLSSettings_OPTIONAL_MUTUAL:
		hasCred := t.GetCredentialName() != "" || len(t.GetCredentialNames()) > 0 || len(t.GetTlsCertificates()) > 0
		hasFiles := t.GetServerCertificate() != "" || t.GetPrivateKey() != ""
		if hasCred && hasFiles {
			return errorf(path, "credentialName(s)/tlsCertificates and serverCertificate/privateKey are mutually exclusive")
		}
		if !hasCred && (t.GetServerCertificate() == "" || t.GetPrivateKey() == "") {
			return errorf(path, "mode %s needs credentialName, or serverCertificate and privateKey", t.GetMode())
		}
	}
	if min, max := t.GetMinProtocolVersion(), t.GetMaxProtocolVersion(); min != networking.ServerTLSSettings_TLS_AUTO && max != networking.ServerTLSSettings_TLS_AUTO && min > max {
		return errorf(field(path, "minProtocolVersion"), "%s is above maxProtocolVersion %s", min, max)
	}
	return nil
}

func checkGateway(gw *networking.Gateway) error {
	servers := field(specPath, "servers")
	if len(gw.GetServers()) == 0 {
		return errorf(servers, "at least one server is required")
	}
	names := map[string]int{}
	for i, s := range gw.GetServers() {
		p := index(servers, i)
		if s.GetPort() == nil {
			return errorf(field(p, "port"), "required")
		}
		pp := field(p, "port")
		if err := checkPort(field(pp, "number"), s.GetPort().GetNumber()); err != nil {
			return err
		}
		if s.GetPort().GetProtocol() == "" {
			return errorf(field(pp, "protocol"), "required")
		}
		if err := checkPortProtocol(field(pp, "protocol"), s.GetPort().GetProtocol()); err != nil {
			return err
		}
		if s.GetName() != "" {
			if j, dup := names[s.GetName()]; dup {
				return errorf(field(p, "name"), "duplicate server name %q (also servers[%d])", s.GetName(), j)
			}
			names[s.GetName()] = i
		}
		if len(s.GetHosts()) == 0 {
			return errorf(field(p, "hosts"), "at least one host is required")
		}
		for j, h := range s.GetHosts() {
			if err := checkNamespacedHost(index(field(p, "hosts"), j), h); err != nil {
				return err
			}
		}
		proto := strings.ToUpper(s.GetPort().GetProtocol())
		if (proto == "HTTPS" || proto == "TLS") && s.GetTls() == nil {
			return errorf(field(p, "tls"), "required for protocol %s", proto)
		}
		if err := checkServerTLS(field(p, "tls"), s.GetTls()); err != nil {
			return err
		}
	}
	return checkLabels(field(specPath, "selector"), gw.GetSelector())
}

// checkNamespacedHost validates "host" or "namespace/host", where namespace may be "*", "."
// or "~" and host may be "*" or a (wildcard) DNS name.
func checkNamespacedHost(path, h string) error {
	ns, host, hasNS := strings.Cut(h, "/")
	if !hasNS {
		host, ns = h, ""
	}
	if hasNS {
		if ns == "" {
			return errorf(path, "%q: namespace before '/' must not be empty", h)
		}
		if ns != "*" && ns != "." && ns != "~" && !isDNSSubdomain(ns) {
			return errorf(path, "%q: namespace %q must be \"*\", \".\", \"~\" or a namespace", h, ns)
		}
	}
	if err := checkHost(path, host, true); err != nil {
		return errorf(path, "%q: %s", h, err.(*FieldError).Msg)
	}
	return nil
}

func checkSidecar(sc *networking.Sidecar) error {
	if ws := sc.GetWorkloadSelector(); ws != nil {
		if err := checkLabels(field(field(specPath, "workloadSelector"), "labels"), ws.GetLabels()); err != nil {
			return err
		}
	}
	ingressPorts := map[uint32]int{}
	for i, in := range sc.GetIngress() {
		p := index(field(specPath, "ingress"), i)
		if in.GetPort() == nil {
			return errorf(field(p, "port"), "required")
		}
		n := in.GetPort().GetNumber()
		if err := checkPort(field(field(p, "port"), "number"), n); err != nil {
			return err
		}
		if j, dup := ingressPorts[n]; dup {
			return errorf(field(field(p, "port"), "number"), "duplicate port %d (also ingress[%d])", n, j)
		}
		ingressPorts[n] = i
		if err := checkPortProtocol(field(field(p, "port"), "protocol"), in.GetPort().GetProtocol()); err != nil {
			return err
		}
		if err := checkServerTLS(field(p, "tls"), in.GetTls()); err != nil {
			return err
		}
	}
	catchAll := 0
	for i, eg := range sc.GetEgress() {
		p := index(field(specPath, "egress"), i)
		if eg.GetPort() == nil {
			catchAll++
			if catchAll > 1 {
				return errorf(p, "only one egress listener may omit port (the catch-all)")
			}
		} else if err := checkPort(field(field(p, "port"), "number"), eg.GetPort().GetNumber()); err != nil {
			return err
		}
		if len(eg.GetHosts()) == 0 {
			return errorf(field(p, "hosts"), "at least one host (namespace/host) is required")
		}
		for j, h := range eg.GetHosts() {
			ph := index(field(p, "hosts"), j)
			if !strings.Contains(h, "/") {
				return errorf(ph, "%q must have the form namespace/host (e.g. \"./*\" or \"istio-system/*\")", h)
			}
			if err := checkNamespacedHost(ph, h); err != nil {
				return err
			}
		}
	}
	if otp := sc.GetOutboundTrafficPolicy(); otp != nil && otp.GetEgressProxy() != nil {
		if otp.GetMode() != networking.OutboundTrafficPolicy_ALLOW_ANY {
			return errorf(field(field(specPath, "outboundTrafficPolicy"), "egressProxy"), "requires mode ALLOW_ANY")
		}
		if err := checkDestination(field(field(specPath, "outboundTrafficPolicy"), "egressProxy"), otp.GetEgressProxy()); err != nil {
			return err
		}
	}
	return nil
}

// jsonValid reports whether s is a JSON document (used for inline JWKS).
func jsonValid(s string) bool { return json.Valid([]byte(s)) }
