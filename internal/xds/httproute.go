package xds

import (
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	networking "istio.io/api/networking/v1alpha3"

	"canton.dev/canton/internal/resource"
)

// FaultFilterName is the HTTP filter (and typed_per_filter_config key) of fault injection.
const FaultFilterName = "envoy.filters.http.fault"

// RouterFilterName is the terminal HTTP filter.
const RouterFilterName = "envoy.filters.http.router"

// translateHTTP turns the http routes of vs into Envoy routes for service s on port p. Each
// match of an HTTP route becomes one Envoy route (Istio ORs matches); routes keep their order.
func (g *gen) translateHTTP(vs *virtualService, s *service, p servicePort) []*routev3.Route {
	if g.gatewayRef != "" && (len(vs.spec.GetTcp()) > 0 || len(vs.spec.GetTls()) > 0) {
		g.skip(vs.ref, "tcp/tls", "TCP and TLS routes are not translated for gateways (their HTTP servers only)")
	}
	var routes []*routev3.Route
	for i, hr := range vs.spec.GetHttp() {
		path := "http[" + itoa(i) + "]"
		if hr.GetDelegate() != nil {
			routes = append(routes, g.delegateRoutes(vs, hr, path, s, p)...)
			continue
		}
		matches := hr.GetMatch()
		if len(matches) == 0 {
			matches = []*networking.HTTPMatchRequest{nil}
		}
		for j, m := range matches {
			if m != nil && !g.matchApplies(m, vs.namespace, p.number) {
				continue
			}
			mpath := path
			if m != nil {
				mpath = path + ".match[" + itoa(j) + "]"
			}
			rm, ok := g.routeMatch(m, vs.ref, mpath)
			if !ok {
				continue
			}
			r := &routev3.Route{Name: routeName(vs, hr, i, m), Match: rm}
			if !g.routeAction(r, vs, hr, path, s, p, m) {
				break
			}
			routes = append(routes, r)
		}
	}
	return routes
}

func routeName(vs *virtualService, hr *networking.HTTPRoute, i int, m *networking.HTTPMatchRequest) string {
	name := vs.name + "." + vs.namespace + "/"
	if hr.GetName() != "" {
		name += hr.GetName()
	} else {
		name += "http" + itoa(i)
	}
	if m.GetName() != "" {
		name += "." + m.GetName()
	}
	return name
}

// matchApplies evaluates the parts of a match known when generating: port, source labels,
// source namespace and gateways.
func (g *gen) matchApplies(m *networking.HTTPMatchRequest, vsNS string, port uint32) bool {
	if m.GetPort() != 0 && m.GetPort() != port {
		return false
	}
	if len(m.GetSourceLabels()) > 0 && !labelsMatch(m.GetSourceLabels(), g.node.Labels) {
		return false
	}
	if ns := m.GetSourceNamespace(); ns != "" && resource.AbsoluteNamespace(ns, g.in.Mesh) != g.node.Namespace {
		return false
	}
	if len(m.GetGateways()) > 0 && !g.gatewaysMatch(m.GetGateways(), vsNS) {
		return false
	}
	return true
}

// gatewaysMatch reports whether a match's gateways name what is being translated: "mesh" for
// sidecar routes, the gateway gatewayRef for a gateway's.
func (g *gen) gatewaysMatch(gateways []string, vsNS string) bool {
	for _, gw := range gateways {
		switch {
		case g.gatewayRef == "" && gw == "mesh":
			return true
		case g.gatewayRef != "" && gw != "mesh" && gatewayName(gw, vsNS, g.in.Mesh) == g.gatewayRef:
			return true
		}
	}
	return false
}

// routeMatch converts the request-time parts of m (nil: match everything).
func (g *gen) routeMatch(m *networking.HTTPMatchRequest, ref, path string) (*routev3.RouteMatch, bool) {
	rm := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	if m == nil {
		return rm, true
	}
	if u := m.GetUri(); u != nil {
		switch t := u.GetMatchType().(type) {
		case *networking.StringMatch_Exact:
			rm.PathSpecifier = &routev3.RouteMatch_Path{Path: t.Exact}
		case *networking.StringMatch_Prefix:
			rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: t.Prefix}
		case *networking.StringMatch_Regex:
			rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: regex(t.Regex)}
		}
	}
	if m.GetIgnoreUriCase() {
		rm.CaseSensitive = wrapBool(false)
	}
	pseudo := []struct {
		name string
		sm   *networking.StringMatch
	}{{":scheme", m.GetScheme()}, {":method", m.GetMethod()}, {":authority", m.GetAuthority()}}
	for _, ps := range pseudo {
		if ps.sm != nil {
			rm.Headers = append(rm.Headers, headerMatcher(ps.name, ps.sm, false))
		}
	}
	for _, name := range sortedKeys(m.GetHeaders()) {
		rm.Headers = append(rm.Headers, headerMatcher(strings.ToLower(name), m.GetHeaders()[name], false))
	}
	for _, name := range sortedKeys(m.GetWithoutHeaders()) {
		rm.Headers = append(rm.Headers, headerMatcher(strings.ToLower(name), m.GetWithoutHeaders()[name], true))
	}
	for _, name := range sortedKeys(m.GetQueryParams()) {
		qm := &routev3.QueryParameterMatcher{Name: name}
		sm := m.GetQueryParams()[name]
		if s := stringMatcher(sm); s != nil {
			qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_StringMatch{StringMatch: s}
		} else {
			qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}
		}
		rm.QueryParameters = append(rm.QueryParameters, qm)
	}
	if m.GetStatPrefix() != "" {
		g.skip(ref, path+".statPrefix", "per-route stat prefixes are not supported")
	}
	return rm, true
}

func regex(re string) *matcherv3.RegexMatcher { return &matcherv3.RegexMatcher{Regex: re} }

// stringMatcher converts an Istio StringMatch; nil for an empty one (presence).
func stringMatcher(sm *networking.StringMatch) *matcherv3.StringMatcher {
	switch t := sm.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: t.Exact}}
	case *networking.StringMatch_Prefix:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: t.Prefix}}
	case *networking.StringMatch_Regex:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: regex(t.Regex)}}
	}
	return nil
}

// headerMatcher: an empty StringMatch means "present" (Istio); invert for withoutHeaders.
func headerMatcher(name string, sm *networking.StringMatch, invert bool) *routev3.HeaderMatcher {
	hm := &routev3.HeaderMatcher{Name: name, InvertMatch: invert}
	if s := stringMatcher(sm); s != nil {
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: s}
	} else {
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
	}
	return hm
}

// routeAction fills the action, headers and per-filter config of r. It returns false when
// the HTTP route cannot be translated at all (already reported).
func (g *gen) routeAction(r *routev3.Route, vs *virtualService, hr *networking.HTTPRoute, path string, s *service, p servicePort, m *networking.HTTPMatchRequest) bool {
	switch {
	case hr.GetRedirect() != nil:
		r.Action = &routev3.Route_Redirect{Redirect: g.redirect(hr.GetRedirect(), vs.ref, path)}
	case hr.GetDirectResponse() != nil:
		dr := hr.GetDirectResponse()
		da := &routev3.DirectResponseAction{Status: dr.GetStatus()}
		switch b := dr.GetBody().GetSpecifier().(type) {
		case *networking.HTTPBody_String_:
			da.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: b.String_}}
		case *networking.HTTPBody_Bytes:
			da.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b.Bytes}}
		}
		r.Action = &routev3.Route_DirectResponse{DirectResponse: da}
	default:
		ra, ok := g.forward(vs, hr, path, s, p, m)
		if !ok {
			return false
		}
		r.Action = &routev3.Route_Route{Route: ra}
	}
	if h := hr.GetHeaders(); h != nil {
		r.RequestHeadersToAdd, r.RequestHeadersToRemove = headerOps(h.GetRequest())
		r.ResponseHeadersToAdd, r.ResponseHeadersToRemove = headerOps(h.GetResponse())
	}
	if len(hr.GetRoute()) == 1 {
		// A single destination's headers apply to the whole route.
		if h := hr.GetRoute()[0].GetHeaders(); h != nil {
			add, rm := headerOps(h.GetRequest())
			r.RequestHeadersToAdd, r.RequestHeadersToRemove = append(r.RequestHeadersToAdd, add...), append(r.RequestHeadersToRemove, rm...)
			add, rm = headerOps(h.GetResponse())
			r.ResponseHeadersToAdd, r.ResponseHeadersToRemove = append(r.ResponseHeadersToAdd, add...), append(r.ResponseHeadersToRemove, rm...)
		}
	}
	if f := hr.GetFault(); f != nil {
		if hf := g.fault(f, vs.ref, path+".fault"); hf != nil {
			r.TypedPerFilterConfig = map[string]*anypb.Any{FaultFilterName: mustAny(hf)}
		}
	}
	if hr.GetCorsPolicy() != nil {
		g.skip(vs.ref, path+".corsPolicy", "CORS is not supported yet; the policy is not applied")
	}
	return true
}

func (g *gen) redirect(rd *networking.HTTPRedirect, ref, path string) *routev3.RedirectAction {
	ra := &routev3.RedirectAction{HostRedirect: rd.GetAuthority()}
	if rd.GetUri() != "" {
		ra.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: rd.GetUri()}
	} else if rd.GetPrefixRewrite() != "" {
		ra.PathRewriteSpecifier = &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: rd.GetPrefixRewrite()}
	}
	if sc := rd.GetScheme(); sc != "" {
		ra.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: sc}
	}
	switch pt := rd.GetRedirectPort().(type) {
	case *networking.HTTPRedirect_Port:
		ra.PortRedirect = pt.Port
	case *networking.HTTPRedirect_DerivePort:
		g.skip(ref, path+".redirect.derivePort", "derivePort is not supported; the port is kept")
	}
	switch rd.GetRedirectCode() {
	case 0, 301:
		ra.ResponseCode = routev3.RedirectAction_MOVED_PERMANENTLY
	case 302:
		ra.ResponseCode = routev3.RedirectAction_FOUND
	case 303:
		ra.ResponseCode = routev3.RedirectAction_SEE_OTHER
	case 307:
		ra.ResponseCode = routev3.RedirectAction_TEMPORARY_REDIRECT
	case 308:
		ra.ResponseCode = routev3.RedirectAction_PERMANENT_REDIRECT
	default:
		g.skip(ref, path+".redirect.redirectCode", "code "+itoa(int(rd.GetRedirectCode()))+" is not a redirect Envoy supports; 301 is used")
	}
	return ra
}

// headerOps converts Istio header operations: set overwrites, add appends.
func headerOps(ops *networking.Headers_HeaderOperations) ([]*corev3.HeaderValueOption, []string) {
	if ops == nil {
		return nil, nil
	}
	var add []*corev3.HeaderValueOption
	for _, k := range sortedKeys(ops.GetSet()) {
		add = append(add, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: strings.ToLower(k), Value: ops.GetSet()[k]},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD})
	}
	for _, k := range sortedKeys(ops.GetAdd()) {
		add = append(add, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: strings.ToLower(k), Value: ops.GetAdd()[k]},
			AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD})
	}
	var rm []string
	for _, k := range ops.GetRemove() {
		rm = append(rm, strings.ToLower(k))
	}
	sort.Strings(rm)
	return add, rm
}

// grpcCodes maps gRPC status names (as Istio's abort.grpcStatus takes them) to codes.
var grpcCodes = map[string]uint32{"OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3,
	"DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7,
	"RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11,
	"UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16}

// fault converts Istio fault injection to the fault filter's per-route config (nil if empty).
func (g *gen) fault(f *networking.HTTPFaultInjection, ref, path string) *faultv3.HTTPFault {
	hf := &faultv3.HTTPFault{}
	if d := f.GetDelay(); d != nil {
		switch t := d.GetHttpDelayType().(type) {
		case *networking.HTTPFaultInjection_Delay_FixedDelay:
			hf.Delay = &faultcommonv3.FaultDelay{
				FaultDelaySecifier: &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: t.FixedDelay},
				Percentage:         faultPercent(d.GetPercentage(), d.GetPercent()),
			}
		default:
			g.skip(ref, path+".delay", "only fixedDelay is supported")
		}
	}
	if a := f.GetAbort(); a != nil {
		fa := &faultv3.FaultAbort{Percentage: faultPercent(a.GetPercentage(), 0)}
		switch t := a.GetErrorType().(type) {
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			fa.ErrorType = &faultv3.FaultAbort_HttpStatus{HttpStatus: uint32(t.HttpStatus)}
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			code, ok := grpcCodes[strings.ToUpper(t.GrpcStatus)]
			if !ok {
				g.skip(ref, path+".abort.grpcStatus", "unknown gRPC status "+t.GrpcStatus)
				fa = nil
				break
			}
			fa.ErrorType = &faultv3.FaultAbort_GrpcStatus{GrpcStatus: code}
		default:
			g.skip(ref, path+".abort", "only httpStatus and grpcStatus aborts are supported")
			fa = nil
		}
		hf.Abort = fa
	}
	if hf.Delay == nil && hf.Abort == nil {
		return nil
	}
	return hf
}

// faultPercent: the percentage field, else the deprecated integer percent; unset means no
// request is affected (Istio's API documents that).
func faultPercent(p *networking.Percent, legacy int32) *typev3.FractionalPercent {
	if p != nil {
		return percent(p.GetValue())
	}
	return percent(float64(legacy))
}
