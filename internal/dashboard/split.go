package dashboard

import (
	"fmt"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"canton.dev/canton/internal/resource"
)

// RouteRule is one rule of a VirtualService drawn as the split it produces.
type RouteRule struct {
	// VirtualService is the name of the VirtualService, Namespace its namespace.
	VirtualService string `json:"virtualService"`
	Namespace      string `json:"namespace"`
	// Protocol is "http", "tls" or "tcp"; Index the rule's index in that list.
	Protocol string `json:"protocol"`
	Index    int    `json:"index"`
	// Name is the rule's name, if any.
	Name string `json:"name,omitempty"`
	// Matches are the rule's match conditions, one string per match block
	// (blocks are OR-ed, conditions inside one are AND-ed); empty = all traffic.
	Matches []string `json:"matches,omitempty"`
	// Splits are the destinations with their share of the rule's traffic.
	Splits []Split `json:"splits,omitempty"`
	// Action describes a rule that does not forward (redirect, direct response).
	Action string `json:"action,omitempty"`
	// Notes are other effects: fault injection, timeout, retries, mirror,
	// rewrite, and why a rule takes no traffic.
	Notes []string `json:"notes,omitempty"`
}

// Split is one destination of a rule and its share.
type Split struct {
	// Host is the destination host, fully qualified.
	Host string `json:"host"`
	// Subset and Port as written ("" / 0 when absent).
	Subset string `json:"subset,omitempty"`
	Port   uint32 `json:"port,omitempty"`
	// Weight as written; Percent is the share of the rule's traffic (0..100).
	Weight  int32   `json:"weight"`
	Percent float64 `json:"percent"`
	// Color is a stable palette index for the subset (for the bars).
	Color int `json:"color"`
}

// Label is the short name of the destination: the subset ("v1") when the
// destination is self, else "reviews v1" / "reviews".
func (s Split) Label(self string) string {
	switch {
	case s.Host == self && s.Subset != "":
		return s.Subset
	case s.Host == self:
		return "all versions"
	case s.Subset != "":
		return shortHost(s.Host) + " " + s.Subset
	}
	return shortHost(s.Host)
}

// shortHost drops the namespace domain: "reviews.bookinfo.demo.mesh" -> "reviews".
func shortHost(h string) string {
	if n, _, ok := strings.Cut(h, "."); ok {
		return n
	}
	return h
}

// qualifyHost returns the fully qualified form of host as written in a
// resource of namespace ns (Canton's rules: a single label is a service of
// ns, "<svc>.<ns>.svc.cluster.local" maps into the mesh, case folded, a
// trailing dot dropped).
func qualifyHost(host, ns, mesh string) string {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	switch {
	case h == "*" || h == "":
		return h
	case strings.HasSuffix(h, ".svc.cluster.local"):
		name, rel, ok := strings.Cut(strings.TrimSuffix(h, ".svc.cluster.local"), ".")
		if !ok {
			return h
		}
		return name + "." + resource.AbsoluteNamespace(rel, mesh)
	case !strings.Contains(h, "."):
		return h + "." + ns
	}
	return h
}

// hostCovers reports whether a host pattern ("*", "*.suffix" or a name) covers host.
func hostCovers(pattern, host string) bool {
	switch {
	case pattern == "*" || pattern == host:
		return true
	case strings.HasPrefix(pattern, "*."):
		return strings.HasSuffix(host, pattern[1:])
	}
	return false
}

// vsApplies reports whether the VirtualService routes traffic for fqdn.
func vsApplies(vs *networking.VirtualService, ns, mesh, fqdn string) bool {
	for _, h := range vs.GetHosts() {
		if hostCovers(qualifyHost(h, ns, mesh), fqdn) {
			return true
		}
	}
	return false
}

// subsetColors gives each subset name a stable palette index, in sorted order.
func subsetColors(rules []RouteRule) {
	names := map[string]bool{}
	for _, r := range rules {
		for _, s := range r.Splits {
			names[s.Host+"/"+s.Subset] = true
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	idx := map[string]int{}
	for i, n := range sorted {
		idx[n] = i % paletteSize
	}
	for i := range rules {
		for j := range rules[i].Splits {
			s := &rules[i].Splits[j]
			s.Color = idx[s.Host+"/"+s.Subset]
		}
	}
}

// paletteSize is the number of split colours in the stylesheet (.c0 .. .c7).
const paletteSize = 8

// splitRules computes the rules of vs (absolute namespace ns) as splits, in order.
// Weights follow Canton's translation: a single destination takes all the
// traffic whatever its weight; with several, a destination of weight 0 (or
// negative) takes none and the others share the traffic in proportion to
// their weights (Envoy's weighted clusters need not sum to 100).
func splitRules(vsName, ns, mesh string, vs *networking.VirtualService) []RouteRule {
	var out []RouteRule
	rel := resource.RelativeNamespace(ns, mesh)
	for i, hr := range vs.GetHttp() {
		r := RouteRule{VirtualService: vsName, Namespace: rel, Protocol: "http", Index: i, Name: hr.GetName()}
		for _, m := range hr.GetMatch() {
			r.Matches = append(r.Matches, describeHTTPMatch(m))
		}
		switch {
		case hr.GetRedirect() != nil:
			rd := hr.GetRedirect()
			code := rd.GetRedirectCode()
			if code == 0 {
				code = 301
			}
			r.Action = fmt.Sprintf("redirect %d to %s%s", code, rd.GetAuthority(), rd.GetUri())
		case hr.GetDirectResponse() != nil:
			r.Action = fmt.Sprintf("respond %d directly", hr.GetDirectResponse().GetStatus())
		default:
			var dests []weighted
			for _, d := range hr.GetRoute() {
				dests = append(dests, weighted{d.GetDestination(), d.GetWeight()})
			}
			r.Splits = computeSplits(dests, ns, mesh)
			if len(r.Splits) > 0 && allZero(r.Splits) {
				r.Notes = append(r.Notes, "no destination with a positive weight: the rule is left out")
			}
		}
		if f := hr.GetFault(); f != nil {
			if d := f.GetDelay(); d != nil {
				r.Notes = append(r.Notes, fmt.Sprintf("fault: delay %s for %s of requests", d.GetFixedDelay().AsDuration().String(), percentText(d.GetPercentage().GetValue(), d.GetPercentage() != nil)))
			}
			if a := f.GetAbort(); a != nil {
				r.Notes = append(r.Notes, fmt.Sprintf("fault: abort with %d for %s of requests", a.GetHttpStatus(), percentText(a.GetPercentage().GetValue(), a.GetPercentage() != nil)))
			}
		}
		if t := hr.GetTimeout(); t != nil {
			r.Notes = append(r.Notes, "timeout "+t.AsDuration().String())
		}
		if rt := hr.GetRetries(); rt != nil {
			n := fmt.Sprintf("retries %d", rt.GetAttempts())
			if rt.GetPerTryTimeout() != nil {
				n += " × " + rt.GetPerTryTimeout().AsDuration().String()
			}
			if rt.GetRetryOn() != "" {
				n += " on " + rt.GetRetryOn()
			}
			r.Notes = append(r.Notes, n)
		}
		if m := hr.GetMirror(); m != nil {
			r.Notes = append(r.Notes, "mirror to "+destText(m, ns, mesh))
		}
		for _, m := range hr.GetMirrors() {
			r.Notes = append(r.Notes, "mirror to "+destText(m.GetDestination(), ns, mesh))
		}
		if rw := hr.GetRewrite(); rw != nil {
			if rw.GetUri() != "" {
				r.Notes = append(r.Notes, "rewrite path to "+rw.GetUri())
			}
			if rw.GetAuthority() != "" {
				r.Notes = append(r.Notes, "rewrite authority to "+rw.GetAuthority())
			}
		}
		out = append(out, r)
	}
	for i, tr := range vs.GetTls() {
		r := RouteRule{VirtualService: vsName, Namespace: rel, Protocol: "tls", Index: i}
		for _, m := range tr.GetMatch() {
			r.Matches = append(r.Matches, describeL4Match(m.GetSniHosts(), m.GetDestinationSubnets(), m.GetPort(), m.GetSourceLabels()))
		}
		var dests []weighted
		for _, d := range tr.GetRoute() {
			dests = append(dests, weighted{d.GetDestination(), d.GetWeight()})
		}
		r.Splits = computeSplits(dests, ns, mesh)
		out = append(out, r)
	}
	for i, tr := range vs.GetTcp() {
		r := RouteRule{VirtualService: vsName, Namespace: rel, Protocol: "tcp", Index: i}
		for _, m := range tr.GetMatch() {
			r.Matches = append(r.Matches, describeL4Match(nil, m.GetDestinationSubnets(), m.GetPort(), m.GetSourceLabels()))
		}
		var dests []weighted
		for _, d := range tr.GetRoute() {
			dests = append(dests, weighted{d.GetDestination(), d.GetWeight()})
		}
		r.Splits = computeSplits(dests, ns, mesh)
		out = append(out, r)
	}
	return out
}

type weighted struct {
	d *networking.Destination
	w int32
}

func allZero(s []Split) bool {
	for _, x := range s {
		if x.Percent > 0 {
			return false
		}
	}
	return true
}

// computeSplits turns weighted destinations into shares (see splitRules).
func computeSplits(dests []weighted, ns, mesh string) []Split {
	out := make([]Split, 0, len(dests))
	var sum int64
	for _, d := range dests {
		if d.w > 0 {
			sum += int64(d.w)
		}
	}
	for _, d := range dests {
		s := Split{Host: qualifyHost(d.d.GetHost(), ns, mesh), Subset: d.d.GetSubset(), Port: d.d.GetPort().GetNumber(), Weight: d.w}
		switch {
		case len(dests) == 1:
			s.Percent = 100
		case d.w > 0 && sum > 0:
			s.Percent = float64(d.w) * 100 / float64(sum)
		}
		out = append(out, s)
	}
	return out
}

// destText is "host[ subset][:port]" for a destination.
func destText(d *networking.Destination, ns, mesh string) string {
	s := qualifyHost(d.GetHost(), ns, mesh)
	if d.GetSubset() != "" {
		s += " " + d.GetSubset()
	}
	if p := d.GetPort().GetNumber(); p != 0 {
		s += fmt.Sprintf(":%d", p)
	}
	return s
}

// describeHTTPMatch renders one match block as readable conditions.
func describeHTTPMatch(m *networking.HTTPMatchRequest) string {
	var c []string
	add := func(what string, sm *networking.StringMatch) {
		if d := describeStringMatch(sm); d != "" {
			c = append(c, what+" "+d)
		}
	}
	add("path", m.GetUri())
	add("scheme", m.GetScheme())
	add("method", m.GetMethod())
	add("authority", m.GetAuthority())
	for _, k := range sortedKeys(m.GetHeaders()) {
		add("header "+k, m.GetHeaders()[k])
	}
	for _, k := range sortedKeys(m.GetQueryParams()) {
		add("query "+k, m.GetQueryParams()[k])
	}
	for _, k := range sortedKeys(m.GetWithoutHeaders()) {
		if d := describeStringMatch(m.GetWithoutHeaders()[k]); d != "" {
			c = append(c, "header "+k+" not "+d)
		} else {
			c = append(c, "no header "+k)
		}
	}
	if m.GetPort() != 0 {
		c = append(c, fmt.Sprintf("port %d", m.GetPort()))
	}
	if len(m.GetSourceLabels()) > 0 {
		c = append(c, "from workloads "+labelsText(m.GetSourceLabels()))
	}
	if m.GetSourceNamespace() != "" {
		c = append(c, "from namespace "+m.GetSourceNamespace())
	}
	if len(m.GetGateways()) > 0 {
		c = append(c, "via "+strings.Join(m.GetGateways(), ", "))
	}
	if m.GetIgnoreUriCase() {
		c = append(c, "path case-insensitive")
	}
	if len(c) == 0 {
		return "any request"
	}
	return strings.Join(c, " and ")
}

func describeStringMatch(sm *networking.StringMatch) string {
	switch v := sm.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		return "= " + v.Exact
	case *networking.StringMatch_Prefix:
		return "starts with " + v.Prefix
	case *networking.StringMatch_Regex:
		return "matches /" + v.Regex + "/"
	}
	if sm != nil {
		return "present"
	}
	return ""
}

func describeL4Match(sni, subnets []string, port uint32, src map[string]string) string {
	var c []string
	if len(sni) > 0 {
		c = append(c, "SNI "+strings.Join(sni, ", "))
	}
	if len(subnets) > 0 {
		c = append(c, "to "+strings.Join(subnets, ", "))
	}
	if port != 0 {
		c = append(c, fmt.Sprintf("port %d", port))
	}
	if len(src) > 0 {
		c = append(c, "from workloads "+labelsText(src))
	}
	if len(c) == 0 {
		return "any connection"
	}
	return strings.Join(c, " and ")
}

// labelsText renders labels as "k=v, k=v" in key order.
func labelsText(m map[string]string) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// percentText renders a fault percentage; Istio's default (unset) is 100%.
func percentText(v float64, set bool) string {
	if !set {
		return "100%"
	}
	return strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.2f", v), "0"), ".0") + "%"
}
