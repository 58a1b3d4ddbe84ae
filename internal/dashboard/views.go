package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"canton.dev/canton/internal/resource"
)

// Health classes of scopes, anchors, nodes and edges (CSS classes too).
const (
	healthOK       = "ok"
	healthWarn     = "warn"
	healthBad      = "bad"
	healthIdle     = "idle"
	errorWarnRatio = 0.01
	errorBadRatio  = 0.05
)

// ScopeRow is one scope of the scope tree.
type ScopeRow struct {
	Domain   string       `json:"domain"`
	Parent   string       `json:"parent,omitempty"`
	Depth    int          `json:"depth"`
	Leader   string       `json:"leader,omitempty"`
	Revision uint64       `json:"revision"`
	Health   string       `json:"health"` // ok, warn, bad
	Status   string       `json:"status"` // readable health
	Anchors  []AnchorChip `json:"anchors"`
	Link     string       `json:"link"`
}

// AnchorChip is one anchor of a scope as the scope tree shows it.
type AnchorChip struct {
	ID        string `json:"id"`
	Leader    bool   `json:"leader"`
	Reachable bool   `json:"reachable"`
	Role      string `json:"role,omitempty"`
	Applied   uint64 `json:"applied"`
}

// ProxyRow is one connected proxy.
type ProxyRow struct {
	Proxy
	Version string `json:"version,omitempty"`
	XDS     string `json:"xds"`    // "acked n types" or "NACK: ..."
	Scrape  string `json:"scrape"` // "" ok, else why not
	Link    string `json:"link"`
}

// NodeView is a service drawn in the topology graph.
type NodeView struct {
	ID        string  `json:"id"`
	X         float64 `json:"x"`
	Y         float64 `json:"y"`
	Name      string  `json:"name"`
	Namespace string  `json:"namespace"` // relative to the mesh
	Versions  string  `json:"versions,omitempty"`
	Link      string  `json:"link,omitempty"`
	Health    string  `json:"health"`
	InRPS     string  `json:"inRps"` // formatted inbound rate
	External  bool    `json:"external"`
}

// EdgeView is a call edge drawn in the topology graph.
type EdgeView struct {
	ID   string `json:"id"`
	From string `json:"from"`
	To   string `json:"to"`
	// FromName/ToName are short display names, FromLink/ToLink service pages ("" for outside callers).
	FromName string    `json:"fromName"`
	ToName   string    `json:"toName"`
	FromLink string    `json:"fromLink,omitempty"`
	ToLink   string    `json:"toLink,omitempty"`
	Path     string    `json:"path"`
	LX       float64   `json:"lx"`
	LY       float64   `json:"ly"`
	Stats    EdgeStats `json:"stats"`
	RPS      string    `json:"rpsText"`
	Errors   string    `json:"errorsText"`
	P99      string    `json:"p99Text"`
	Health   string    `json:"health"`
	Width    int       `json:"width"`     // 1..5
	MTLS     string    `json:"mtlsClass"` // mtls, plain, mixed, "" unknown
}

// GraphView is the topology graph.
type GraphView struct {
	Width  float64    `json:"width"`
	Height float64    `json:"height"`
	Nodes  []NodeView `json:"nodes"`
	Edges  []EdgeView `json:"edges"`
}

// meshData is what the pages share: scopes, anchors, proxies, objects by scope, traffic.
type meshData struct {
	mesh    string
	scopes  []Scope
	anchors []Anchor
	proxies []Proxy
	objects map[string][]resource.Object // by scope domain
	traffic traffic
	scrape  map[string]string
	errors  []string
}

// load reads what the pages need from the source; failures become
// messages on the page, never a failed page.
func (h *handler) load(ctx context.Context, withObjects bool) *meshData {
	d := &meshData{mesh: h.src.Mesh(), objects: map[string][]resource.Object{}}
	var err error
	if d.anchors, err = h.src.Anchors(ctx); err != nil {
		d.errors = append(d.errors, "anchors: "+err.Error())
	}
	if d.scopes, err = h.src.Scopes(ctx); err != nil {
		d.errors = append(d.errors, "scopes: "+err.Error())
	}
	sort.Slice(d.scopes, func(i, j int) bool { return d.scopes[i].Domain < d.scopes[j].Domain })
	if d.proxies, err = h.src.Proxies(ctx); err != nil {
		d.errors = append(d.errors, "proxies: "+err.Error())
	}
	sort.Slice(d.proxies, func(i, j int) bool { return d.proxies[i].ID < d.proxies[j].ID })
	if withObjects {
		for _, s := range d.scopes {
			objs, err := h.src.Objects(ctx, s.Domain)
			if err != nil {
				d.errors = append(d.errors, "objects of scope "+s.Domain+": "+err.Error())
				continue
			}
			d.objects[s.Domain] = objs
		}
	}
	d.traffic, d.scrape = h.scraper.traffic(ctx, d.mesh, d.proxies)
	return d
}

// scopeRows returns the scope tree in depth-first order (children sorted),
// with each scope's health: bad without a leader, warn when one of its
// anchors is unreachable or does not report a replica, ok otherwise.
func scopeRows(d *meshData) []ScopeRow {
	byID := map[string]Anchor{}
	for _, a := range d.anchors {
		byID[a.ID] = a
	}
	known := map[string]bool{}
	for _, s := range d.scopes {
		known[s.Domain] = true
	}
	children := map[string][]Scope{}
	var roots []Scope
	for _, s := range d.scopes {
		if s.Parent == "" || !known[s.Parent] || s.Parent == s.Domain {
			roots = append(roots, s)
		} else {
			children[s.Parent] = append(children[s.Parent], s)
		}
	}
	var out []ScopeRow
	visited := map[string]bool{}
	var walk func(s Scope, depth int)
	walk = func(s Scope, depth int) {
		if visited[s.Domain] || depth > 32 {
			return
		}
		visited[s.Domain] = true
		out = append(out, scopeRow(s, depth, byID))
		for _, c := range children[s.Domain] {
			walk(c, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
	for _, s := range d.scopes { // parent cycles: show them flat rather than lose them
		if !visited[s.Domain] {
			walk(s, 0)
		}
	}
	return out
}

func scopeRow(s Scope, depth int, anchors map[string]Anchor) ScopeRow {
	r := ScopeRow{Domain: s.Domain, Parent: s.Parent, Depth: depth, Leader: s.Leader, Revision: s.Revision,
		Link: "/scope/" + url.PathEscape(s.Domain)}
	ids := append([]string(nil), s.Anchors...)
	sort.Strings(ids)
	missing := 0
	for _, id := range ids {
		c := AnchorChip{ID: id, Leader: id == s.Leader}
		a, ok := anchors[id]
		c.Reachable = ok && a.Reachable
		if c.Reachable {
			found := false
			for _, rep := range a.Scopes {
				if rep.Domain == s.Domain {
					c.Role, c.Applied, found = rep.Role, rep.Applied, true
				}
			}
			if !found {
				missing++
			}
		} else {
			missing++
		}
		r.Anchors = append(r.Anchors, c)
	}
	switch {
	case s.Leader == "":
		r.Health, r.Status = healthBad, "no leader"
	case missing > 0:
		r.Health, r.Status = healthWarn, fmt.Sprintf("%d of %d anchors not answering", missing, len(ids))
	default:
		r.Health, r.Status = healthOK, "healthy"
	}
	return r
}

// proxyRows renders the proxies with their xDS and scrape state.
func proxyRows(d *meshData) []ProxyRow {
	var out []ProxyRow
	for _, p := range d.proxies {
		r := ProxyRow{Proxy: p, Version: p.Labels["version"], Scrape: d.scrape[p.ID],
			Link: serviceLink(resource.AbsoluteNamespace(p.Namespace, d.mesh), p.Service, d.mesh)}
		if p.Nack != "" {
			r.XDS = "rejected: " + p.Nack
		} else {
			r.XDS = fmt.Sprintf("in sync (%d types)", len(p.Acked))
		}
		out = append(out, r)
	}
	return out
}

func serviceLink(ns, name, mesh string) string {
	if name == "" {
		return ""
	}
	return "/service/" + url.PathEscape(resource.RelativeNamespace(ns, mesh)) + "/" + url.PathEscape(name)
}

// serviceInfo is a service as gathered from objects and proxies.
type serviceInfo struct {
	ref      svcRef
	uid      string
	ports    []resource.ServicePort
	versions map[string]int // version label -> workloads
	scope    string
}

// services collects the services of every scope (Service objects, plus
// services that only have workloads or proxies).
func services(d *meshData) map[svcRef]*serviceInfo {
	out := map[svcRef]*serviceInfo{}
	get := func(ref svcRef, scope string) *serviceInfo {
		s := out[ref]
		if s == nil {
			s = &serviceInfo{ref: ref, versions: map[string]int{}, scope: scope}
			out[ref] = s
		}
		return s
	}
	for dom, objs := range d.objects {
		for _, o := range objs {
			switch o.Kind {
			case "Service":
				s := get(svcRef{o.Namespace, o.Name}, dom)
				s.uid = o.UID
				var spec resource.ServiceSpec
				if json.Unmarshal(o.Spec, &spec) == nil {
					s.ports = spec.Ports
				}
			case "Workload":
				var spec resource.WorkloadSpec
				if json.Unmarshal(o.Spec, &spec) == nil && spec.Service != "" {
					s := get(svcRef{o.Namespace, spec.Service}, dom)
					s.versions[spec.Labels["version"]]++
				}
			}
		}
	}
	for _, p := range d.proxies {
		if p.Service == "" {
			continue
		}
		ref := svcRef{resource.AbsoluteNamespace(p.Namespace, d.mesh), p.Service}
		if _, ok := out[ref]; !ok {
			s := get(ref, "")
			s.versions[p.Labels["version"]]++
		}
	}
	return out
}

// graph builds the topology: every service, plus every caller seen in the
// traffic, and an edge per observed call.
func graph(d *meshData) GraphView {
	svcs := services(d)
	var nodes []graphNode
	for ref := range svcs {
		nodes = append(nodes, graphNode{ID: ref.String()})
	}
	var edges []graphEdge
	for k := range d.traffic.edges {
		edges = append(edges, graphEdge{From: k.from.String(), To: k.to.String()})
	}
	lay := computeLayout(nodes, edges)

	inbound := map[string]*EdgeStats{}
	for k, st := range d.traffic.edges {
		id := k.to.String()
		in := inbound[id]
		if in == nil {
			in = &EdgeStats{}
			inbound[id] = in
		}
		errs := in.ErrorRate*in.Requests + st.ErrorRate*st.Requests
		in.Requests += st.Requests
		in.RPS += st.RPS
		in.HasRate = in.HasRate || st.HasRate
		if in.Requests > 0 {
			in.ErrorRate = errs / in.Requests
		}
	}
	byID := map[string]svcRef{}
	for ref := range svcs {
		byID[ref.String()] = ref
	}
	for k := range d.traffic.edges {
		byID[k.from.String()] = k.from
		byID[k.to.String()] = k.to
	}
	g := GraphView{Width: lay.Width, Height: lay.Height}
	for _, p := range lay.Nodes {
		ref := byID[p.ID]
		n := NodeView{ID: p.ID, X: p.X, Y: p.Y, Name: ref.Name, Namespace: resource.RelativeNamespace(ref.Namespace, d.mesh), Health: healthIdle}
		if ref.Name == "" {
			n.Name, n.Namespace, n.External = "outside the mesh", "unknown callers", true
		} else if ref.Namespace != "" {
			n.Link = serviceLink(ref.Namespace, ref.Name, d.mesh)
		}
		if s := svcs[ref]; s != nil {
			n.Versions = versionsText(s.versions)
		}
		if in := inbound[p.ID]; in != nil {
			n.Health = errorHealth(*in)
			n.InRPS = rpsText(*in)
		}
		g.Nodes = append(g.Nodes, n)
	}
	for _, r := range lay.Routes {
		k := edgeKey{byID[r.From], byID[r.To]}
		st := d.traffic.edges[k]
		if st == nil {
			continue
		}
		e := EdgeView{ID: r.From + ">" + r.To, From: r.From, To: r.To, Path: r.Path,
			FromName: displayName(k.from, d.mesh), ToName: displayName(k.to, d.mesh),
			FromLink: serviceLink(k.from.Namespace, k.from.Name, d.mesh), ToLink: serviceLink(k.to.Namespace, k.to.Name, d.mesh), LX: r.LX, LY: r.LY, Stats: *st,
			RPS: rpsText(*st), Errors: errText(*st), P99: p99Text(st.P99), Health: errorHealth(*st), Width: widthClass(*st)}
		switch st.MTLS {
		case "mutual_tls":
			e.MTLS = "mtls"
		case "none":
			e.MTLS = "plain"
		case "mixed":
			e.MTLS = "mixed"
		}
		g.Edges = append(g.Edges, e)
	}
	return g
}

// displayName is "reviews" for a service of the mesh's namespace domain
// relative form "reviews · bookinfo", "outside the mesh" for unknown callers.
func displayName(s svcRef, mesh string) string {
	if s.Name == "" {
		return "outside the mesh"
	}
	if s.Namespace == "" {
		return s.Name
	}
	return s.Name + " · " + resource.RelativeNamespace(s.Namespace, mesh)
}

func versionsText(v map[string]int) string {
	var parts []string
	for _, k := range sortedKeys(v) {
		if k != "" {
			parts = append(parts, k)
		}
	}
	return strings.Join(parts, " · ")
}

func errorHealth(s EdgeStats) string {
	switch {
	case s.Requests <= 0:
		return healthIdle
	case s.ErrorRate >= errorBadRatio:
		return healthBad
	case s.ErrorRate >= errorWarnRatio:
		return healthWarn
	}
	return healthOK
}

func widthClass(s EdgeStats) int {
	switch r := s.RPS; {
	case !s.HasRate || r < 0.5:
		return 1
	case r < 2:
		return 2
	case r < 10:
		return 3
	case r < 50:
		return 4
	}
	return 5
}

// rpsText formats a request rate: "0.4/s", "12/s", "1.3k/s"; without a
// rate yet, the count seen so far.
func rpsText(s EdgeStats) string {
	if !s.HasRate {
		if s.Requests > 0 {
			return fmt.Sprintf("%s req", compact(s.Requests))
		}
		return "—"
	}
	return compact(s.RPS) + "/s"
}

func compact(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	case v >= 10:
		return fmt.Sprintf("%.0f", v)
	case v == 0:
		return "0"
	case v < 0.1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func errText(s EdgeStats) string {
	if s.Requests <= 0 {
		return "—"
	}
	p := s.ErrorRate * 100
	switch {
	case p == 0:
		return "0% err"
	case p < 0.1:
		return "<0.1% err"
	case p < 10:
		return fmt.Sprintf("%.1f%% err", p)
	}
	return fmt.Sprintf("%.0f%% err", p)
}

func p99Text(ms float64) string {
	switch {
	case ms < 0 || math.IsNaN(ms):
		return "p99 —"
	case ms >= 1000:
		return fmt.Sprintf("p99 %.1f s", ms/1000)
	case ms >= 10:
		return fmt.Sprintf("p99 %.0f ms", ms)
	}
	return fmt.Sprintf("p99 %.1f ms", ms)
}

// governing returns the scope (of d.scopes) whose domain is the longest
// suffix of ns, or "".
func governing(scopes []Scope, ns string) string {
	best := ""
	for _, s := range scopes {
		if (ns == s.Domain || strings.HasSuffix(ns, "."+s.Domain)) && len(s.Domain) > len(best) {
			best = s.Domain
		}
	}
	return best
}

// flatten renders a JSON spec as "path: value" lines, at most limit lines.
func flatten(spec json.RawMessage, limit int) []string {
	var v any
	if len(spec) == 0 || json.Unmarshal(spec, &v) != nil {
		return nil
	}
	var out []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if len(out) > limit {
			return
		}
		switch x := v.(type) {
		case map[string]any:
			for _, k := range sortedKeys(x) {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				walk(p, x[k])
			}
		case []any:
			for i, e := range x {
				walk(fmt.Sprintf("%s[%d]", prefix, i), e)
			}
		default:
			b, _ := json.Marshal(x)
			out = append(out, prefix+": "+string(b))
		}
	}
	walk("", v)
	if len(out) > limit {
		out = append(out[:limit], "…")
	}
	return out
}

// selectorOf returns the matchLabels of an Istio policy spec's selector
// (workloadSelector for Sidecar), nil when it has none.
func selectorOf(spec json.RawMessage) map[string]string {
	var s struct {
		Selector         *struct{ MatchLabels map[string]string } `json:"selector"`
		WorkloadSelector *struct{ Labels map[string]string }      `json:"workloadSelector"`
	}
	if json.Unmarshal(spec, &s) != nil {
		return nil
	}
	if s.Selector != nil {
		return s.Selector.MatchLabels
	}
	if s.WorkloadSelector != nil {
		return s.WorkloadSelector.Labels
	}
	return nil
}

func labelsMatch(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// typedVS decodes a VirtualService object, nil if it does not decode.
func typedVS(o resource.Object) *networking.VirtualService {
	v, err := resource.Typed(o)
	if err != nil {
		return nil
	}
	vs, _ := v.(*networking.VirtualService)
	return vs
}

// typedDR decodes a DestinationRule object, nil if it does not decode.
func typedDR(o resource.Object) *networking.DestinationRule {
	v, err := resource.Typed(o)
	if err != nil {
		return nil
	}
	dr, _ := v.(*networking.DestinationRule)
	return dr
}
