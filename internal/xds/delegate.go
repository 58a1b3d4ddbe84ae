package xds

import (
	"maps"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"canton.dev/canton/internal/resource"
)

// VirtualService delegation (Istio's http[].delegate): an http route of a root VirtualService
// hands its requests to the http routes of another VirtualService, the delegate, which has no
// hosts (so it routes nothing by itself) and is usually owned by another team. Each delegate
// route is kept for every pair of a root match and one of its own matches, with the two matches
// merged: the delegate may narrow the root's match (a longer path prefix, more headers), never
// widen or contradict it (such a pair is left out and reported). One level only; the delegate
// must be exported to the root's namespace; its routes keep their own names and actions.

// delegateRoutes translates http route hr (at path) of vs, which delegates, for service s on
// port p.
func (g *gen) delegateRoutes(vs *virtualService, hr *networking.HTTPRoute, path string, s *service, p servicePort) []*routev3.Route {
	d := hr.GetDelegate()
	ns := vs.namespace
	if d.GetNamespace() != "" {
		ns = resource.AbsoluteNamespace(d.GetNamespace(), g.in.Mesh)
	}
	var dvs *virtualService
	for _, v := range g.m.vss {
		if v.name == d.GetName() && v.namespace == ns {
			dvs = v
			break
		}
	}
	switch {
	case dvs == nil:
		g.skip(vs.ref, path+".delegate", "VirtualService "+ns+"/"+d.GetName()+" does not exist; the route is left out")
		return nil
	case len(dvs.hosts) > 0:
		g.skip(vs.ref, path+".delegate", "VirtualService "+ns+"/"+d.GetName()+" has hosts, so it is not a delegate; the route is left out")
		return nil
	case !exportedTo(dvs.spec.GetExportTo(), dvs.namespace, vs.namespace, g.in.Mesh):
		g.skip(vs.ref, path+".delegate", "VirtualService "+ns+"/"+d.GetName()+" is not exported to "+vs.namespace+"; the route is left out")
		return nil
	}
	rootMatches := hr.GetMatch()
	if len(rootMatches) == 0 {
		rootMatches = []*networking.HTTPMatchRequest{nil}
	}
	var routes []*routev3.Route
	for k, dr := range dvs.spec.GetHttp() {
		dpath := "http[" + itoa(k) + "]"
		dMatches := dr.GetMatch()
		if len(dMatches) == 0 {
			dMatches = []*networking.HTTPMatchRequest{nil}
		}
	pairs:
		for _, rm := range rootMatches {
			for j, dm := range dMatches {
				mpath := dpath
				if dm != nil {
					mpath += ".match[" + itoa(j) + "]"
				}
				m, why := mergeMatch(rm, dm)
				if why != "" {
					g.skip(dvs.ref, mpath, "widens or contradicts the match of "+vs.ref+" "+path+" that delegates to it ("+why+"); left out for that match")
					continue
				}
				if m != nil && !g.matchApplies(m, vs.namespace, p.number) {
					continue
				}
				rmatch, ok := g.routeMatch(m, dvs.ref, mpath)
				if !ok {
					continue
				}
				r := &routev3.Route{Name: routeName(dvs, dr, k, dm), Match: rmatch}
				if !g.routeAction(r, dvs, dr, dpath, s, p, m) {
					break pairs
				}
				routes = append(routes, r)
			}
		}
	}
	return routes
}

// mergeMatch is the match of a delegate route, d, under the root route's match r (either nil:
// none). The result has every condition of both; why says which condition of d widens or
// contradicts r's (then the pair matches nothing Istio would route).
func mergeMatch(r, d *networking.HTTPMatchRequest) (*networking.HTTPMatchRequest, string) {
	if r == nil {
		return d, ""
	}
	if d == nil {
		return r, ""
	}
	m := proto.Clone(d).(*networking.HTTPMatchRequest)
	var why string
	for _, f := range []struct {
		name       string
		root, dele *networking.StringMatch
		set        func(*networking.StringMatch)
	}{
		{"uri", r.GetUri(), d.GetUri(), func(v *networking.StringMatch) { m.Uri = v }},
		{"scheme", r.GetScheme(), d.GetScheme(), func(v *networking.StringMatch) { m.Scheme = v }},
		{"method", r.GetMethod(), d.GetMethod(), func(v *networking.StringMatch) { m.Method = v }},
		{"authority", r.GetAuthority(), d.GetAuthority(), func(v *networking.StringMatch) { m.Authority = v }},
	} {
		v, ok := narrower(f.root, f.dele)
		if !ok {
			return nil, f.name + " " + stringMatchText(f.dele) + " is not within " + stringMatchText(f.root)
		}
		f.set(v)
	}
	if m.Headers, why = mergeStringMatches("headers", r.GetHeaders(), d.GetHeaders()); why != "" {
		return nil, why
	}
	if m.QueryParams, why = mergeStringMatches("queryParams", r.GetQueryParams(), d.GetQueryParams()); why != "" {
		return nil, why
	}
	if m.WithoutHeaders, why = mergeStringMatches("withoutHeaders", r.GetWithoutHeaders(), d.GetWithoutHeaders()); why != "" {
		return nil, why
	}
	switch {
	case r.GetPort() != 0 && d.GetPort() != 0 && r.GetPort() != d.GetPort():
		return nil, "port " + itoa(int(d.GetPort())) + " is not " + itoa(int(r.GetPort()))
	case r.GetPort() != 0:
		m.Port = r.GetPort()
	}
	switch {
	case r.GetSourceNamespace() != "" && d.GetSourceNamespace() != "" && r.GetSourceNamespace() != d.GetSourceNamespace():
		return nil, "sourceNamespace " + d.GetSourceNamespace() + " is not " + r.GetSourceNamespace()
	case r.GetSourceNamespace() != "":
		m.SourceNamespace = r.GetSourceNamespace()
	}
	labels := maps.Clone(r.GetSourceLabels())
	for k, v := range d.GetSourceLabels() {
		if rv, ok := labels[k]; ok && rv != v {
			return nil, "sourceLabels " + k + "=" + v + " is not " + k + "=" + rv
		}
		if labels == nil {
			labels = map[string]string{}
		}
		labels[k] = v
	}
	m.SourceLabels = labels
	if len(r.GetGateways()) > 0 {
		m.Gateways = r.GetGateways()
	}
	m.IgnoreUriCase = r.GetIgnoreUriCase() || d.GetIgnoreUriCase()
	return m, ""
}

// narrower returns the StringMatch that holds both r and d (nil: any), when one is within the
// other as Istio checks it: equal, or d an exact or prefix value starting with r's prefix.
func narrower(r, d *networking.StringMatch) (*networking.StringMatch, bool) {
	switch {
	case r == nil:
		return d, true
	case d == nil, proto.Equal(r, d):
		return r, true
	case r.GetPrefix() != "" && d.GetPrefix() != "" && strings.HasPrefix(d.GetPrefix(), r.GetPrefix()),
		r.GetPrefix() != "" && d.GetExact() != "" && strings.HasPrefix(d.GetExact(), r.GetPrefix()):
		return d, true
	}
	return nil, false
}

// mergeStringMatches is the union of the maps of conditions r and d; a key in both must carry
// the same condition.
func mergeStringMatches(field string, r, d map[string]*networking.StringMatch) (map[string]*networking.StringMatch, string) {
	if len(r) == 0 {
		return d, ""
	}
	out := maps.Clone(r)
	for k, v := range d {
		if rv, ok := out[k]; ok && !proto.Equal(rv, v) {
			return nil, field + " " + k + ": " + stringMatchText(v) + " is not " + stringMatchText(rv)
		}
		out[k] = v
	}
	return out, ""
}

func stringMatchText(m *networking.StringMatch) string {
	switch {
	case m == nil:
		return "any"
	case m.GetExact() != "":
		return "exact " + m.GetExact()
	case m.GetPrefix() != "":
		return "prefix " + m.GetPrefix()
	case m.GetRegex() != "":
		return "regex " + m.GetRegex()
	}
	return "empty"
}
