package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"canton.dev/canton/internal/resource"
	"canton.dev/canton/internal/scope"
)

// Page is what every page (and its JSON) carries.
type Page struct {
	Title string `json:"title"`
	Mesh  string `json:"mesh"`
	// Nav is "overview", "scope" or "service" (for the header).
	Nav string `json:"nav"`
	// API is the JSON endpoint behind the page.
	API string `json:"api"`
	// RefreshMS is the polling period of the page's script (0: none).
	RefreshMS int64 `json:"refreshMs"`
	// Updated is when the data was read (RFC 3339, UTC).
	Updated string `json:"updated"`
	// Errors are what could not be read; the page shows the rest.
	Errors []string `json:"errors,omitempty"`
	// Shape identifies everything drawn except the live numbers: when it
	// changes, the script fetches the page again instead of patching it.
	Shape string `json:"shape"`
	// Live maps each live element's key to its text.
	Live map[string]string `json:"live"`

	rec *recorder
}

// R is the recorder of live values (templates call .R.Live).
func (p *Page) R() *recorder { return p.rec }

// Stat is one number of the overview's summary strip.
type Stat struct {
	Key   string `json:"key"`
	Label string `json:"label"`
	Value string `json:"value"`
	Note  string `json:"note,omitempty"`
	Class string `json:"class,omitempty"`
}

// OverviewPage is "/".
type OverviewPage struct {
	Page
	Stats   []Stat     `json:"stats"`
	Graph   GraphView  `json:"graph"`
	Scopes  []ScopeRow `json:"scopes"`
	Anchors []Anchor   `json:"anchors"`
	Proxies []ProxyRow `json:"proxies"`
}

// ServiceRow is a service of a scope page.
type ServiceRow struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Link      string `json:"link"`
	Ports     string `json:"ports"`
	Versions  string `json:"versions"`
	Workloads int    `json:"workloads"`
	InRPS     string `json:"inRps"`
	Health    string `json:"health"`
}

// WorkloadRow is a workload (endpoint) of a service.
type WorkloadRow struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Service   string `json:"service"`
	Address   string `json:"address"`
	Version   string `json:"version,omitempty"`
	Labels    string `json:"labels,omitempty"`
	Proxy     string `json:"proxy,omitempty"`
	Lease     uint64 `json:"lease"`
}

// PolicyRow is an Istio or Canton policy object.
type PolicyRow struct {
	Kind      string   `json:"kind"`
	Name      string   `json:"name"`
	Namespace string   `json:"namespace"`
	Version   uint64   `json:"version"`
	Applies   string   `json:"applies,omitempty"` // what it targets, readable
	Spec      []string `json:"spec,omitempty"`    // flattened spec lines
}

// LineageRow is one lineage record, readable.
type LineageRow struct {
	Index uint64 `json:"index"`
	Who   string `json:"who"`
	// Time is when the proposing anchor says it proposed the change (RFC 3339,
	// UTC, milliseconds, by its clock); empty for records committed before
	// mutations carried a time.
	Time string `json:"time,omitempty"`
	// Ago is Time relative to this anchor's clock when the page was read, e.g.
	// "3 min ago"; empty when Time is.
	Ago      string   `json:"ago,omitempty"`
	Op       string   `json:"op"`
	What     []string `json:"what"`
	Hash     string   `json:"hash"`
	Prev     string   `json:"prev"`
	Short    string   `json:"short"`
	Chained  bool     `json:"chained"` // Prev equals the previous row's Hash
	Mutation string   `json:"-"`
}

// ScopePage is "/scope/{domain}".
type ScopePage struct {
	Page
	Scope     ScopeRow      `json:"scope"`
	Found     bool          `json:"found"`
	Children  []ScopeRow    `json:"children,omitempty"`
	Services  []ServiceRow  `json:"services"`
	Workloads []WorkloadRow `json:"workloads"`
	Policies  []PolicyRow   `json:"policies"`
	Lineage   []LineageRow  `json:"lineage"`
	// LineageNote says how much of the lineage is shown.
	LineageNote string `json:"lineageNote,omitempty"`
}

// VersionShare is the observed traffic to one version of a service.
type VersionShare struct {
	Version string  `json:"version"`
	Percent float64 `json:"percent"`
	Text    string  `json:"text"`
	Color   int     `json:"color"`
}

// SubsetRow is a DestinationRule subset.
type SubsetRow struct {
	Name      string   `json:"name"`
	Labels    string   `json:"labels"`
	Workloads int      `json:"workloads"`
	Policy    []string `json:"policy,omitempty"`
}

// DestinationRuleView is a DestinationRule of a service.
type DestinationRuleView struct {
	Name      string      `json:"name"`
	Namespace string      `json:"namespace"`
	Policy    []string    `json:"policy,omitempty"`
	Subsets   []SubsetRow `json:"subsets,omitempty"`
}

// ServicePage is "/service/{namespace}/{name}".
type ServicePage struct {
	Page
	Name      string `json:"name"`
	Namespace string `json:"namespace"` // absolute
	Scope     string `json:"scope"`
	ScopeLink string `json:"scopeLink,omitempty"`
	Found     bool   `json:"found"`
	UID       string `json:"uid,omitempty"`
	Ports     string `json:"ports,omitempty"`
	// Self is the service's FQDN (split labels are relative to it).
	Self             string                `json:"fqdn"`
	Workloads        []WorkloadRow         `json:"workloads"`
	Versions         []VersionShare        `json:"observed"` // observed split by version
	Inbound          []EdgeView            `json:"inbound"`
	Outbound         []EdgeView            `json:"outbound"`
	Routes           []RouteRule           `json:"routes"`
	DestinationRules []DestinationRuleView `json:"destinationRules"`
	Policies         []PolicyRow           `json:"policies"`
}

// istioPolicyKinds are the kinds listed as policies, in display order.
var istioPolicyKinds = []string{"VirtualService", "DestinationRule", "ServiceEntry", "WorkloadEntry", "Gateway", "Sidecar",
	"PeerAuthentication", "RequestAuthentication", "AuthorizationPolicy", "Alias", "Delegation"}

func kindOrder(k string) int {
	for i, x := range istioPolicyKinds {
		if x == k {
			return i
		}
	}
	return len(istioPolicyKinds)
}

func (h *handler) overview(ctx context.Context) *OverviewPage {
	d := h.load(ctx, true)
	p := &OverviewPage{Page: h.page(d, "Overview", "overview", "/api/overview.json")}
	p.Graph = graph(d)
	p.Scopes = scopeRows(d)
	p.Anchors = d.anchors
	p.Proxies = proxyRows(d)

	reach := 0
	for _, a := range d.anchors {
		if a.Reachable {
			reach++
		}
	}
	healthy := 0
	for _, s := range p.Scopes {
		if s.Health == healthOK {
			healthy++
		}
	}
	var total EdgeStats
	errs := 0.0
	for _, e := range p.Graph.Edges {
		total.Requests += e.Stats.Requests
		total.RPS += e.Stats.RPS
		total.HasRate = total.HasRate || e.Stats.HasRate
		errs += e.Stats.ErrorRate * e.Stats.Requests
	}
	if total.Requests > 0 {
		total.ErrorRate = errs / total.Requests
	}
	mtls, edges := 0, len(p.Graph.Edges)
	for _, e := range p.Graph.Edges {
		if e.MTLS == "mtls" {
			mtls++
		}
	}
	anchorClass := healthOK
	if reach < len(d.anchors) {
		anchorClass = healthWarn
	}
	if reach == 0 {
		anchorClass = healthBad
	}
	scopeClass := healthOK
	for _, s := range p.Scopes {
		if s.Health == healthBad {
			scopeClass = healthBad
		} else if s.Health != healthOK && scopeClass == healthOK {
			scopeClass = healthWarn
		}
	}
	services := 0
	for _, n := range p.Graph.Nodes {
		if !n.External {
			services++
		}
	}
	p.Stats = []Stat{
		{Key: "anchors", Label: "anchors up", Value: fmt.Sprintf("%d/%d", reach, len(d.anchors)), Class: anchorClass},
		{Key: "scopes", Label: "scopes healthy", Value: fmt.Sprintf("%d/%d", healthy, len(p.Scopes)), Class: scopeClass},
		{Key: "services", Label: "services", Value: fmt.Sprint(services)},
		{Key: "proxies", Label: "proxies", Value: fmt.Sprint(len(d.proxies))},
		{Key: "rps", Label: "requests", Value: rpsText(total), Class: errorHealth(total)},
		{Key: "errors", Label: "error rate", Value: strings.TrimSuffix(errText(total), " err"), Class: errorHealth(total)},
		{Key: "mtls", Label: "edges on mTLS", Value: fmt.Sprintf("%d/%d", mtls, edges)},
	}
	return p
}

func (h *handler) page(d *meshData, title, nav, api string) Page {
	p := Page{Title: title, Mesh: d.mesh, Nav: nav, API: api, Errors: d.errors, Updated: h.now().UTC().Format("2006-01-02 15:04:05Z")}
	if h.refresh > 0 {
		p.RefreshMS = h.refresh.Milliseconds()
	}
	return p
}

func (h *handler) scopePage(ctx context.Context, domain string) *ScopePage {
	d := h.load(ctx, false)
	p := &ScopePage{Page: h.page(d, domain, "scope", "/api/scope/"+urlPathEscape(domain)+".json")}
	rows := scopeRows(d)
	for _, r := range rows {
		if r.Domain == domain {
			p.Scope, p.Found = r, true
		}
		if r.Parent == domain {
			p.Children = append(p.Children, r)
		}
	}
	if !p.Found {
		p.Scope = ScopeRow{Domain: domain, Health: healthBad, Status: "unknown scope"}
		return p
	}
	objs, err := h.src.Objects(ctx, domain)
	if err != nil {
		p.Errors = append(p.Errors, "objects: "+err.Error())
	}
	d.objects[domain] = objs
	svcs := services(d)
	inbound := inboundByService(d)
	var refs []svcRef
	for ref, s := range svcs {
		if s.scope == domain {
			refs = append(refs, ref)
		}
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].String() < refs[j].String() })
	for _, ref := range refs {
		s := svcs[ref]
		n := 0
		for _, c := range s.versions {
			n += c
		}
		in := inbound[ref]
		p.Services = append(p.Services, ServiceRow{Name: ref.Name, Namespace: resource.RelativeNamespace(ref.Namespace, d.mesh),
			Link: serviceLink(ref.Namespace, ref.Name, d.mesh), Ports: portsText(s.ports), Versions: versionsText(s.versions),
			Workloads: n, InRPS: rpsText(in), Health: errorHealth(in)})
	}
	p.Workloads = workloadRows(objs, func(resource.WorkloadSpec, resource.Object) bool { return true }, d.mesh)
	for _, o := range objs {
		if kindOrder(o.Kind) == len(istioPolicyKinds) {
			continue
		}
		p.Policies = append(p.Policies, policyRow(o, d.mesh))
	}
	sortPolicies(p.Policies)

	limit := h.lineageLimit
	recs, err := h.src.Lineage(ctx, domain, limit)
	if err != nil {
		p.Errors = append(p.Errors, "lineage: "+err.Error())
	}
	p.Lineage = lineageRows(recs, d.mesh, h.now())
	if len(recs) >= limit {
		p.LineageNote = fmt.Sprintf("the last %d records, newest first", limit)
	} else {
		p.LineageNote = fmt.Sprintf("all %d records, newest first", len(recs))
	}
	return p
}

func urlPathEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "%", "%25"), "/", "%2F")
}

func inboundByService(d *meshData) map[svcRef]EdgeStats {
	out := map[svcRef]EdgeStats{}
	errs := map[svcRef]float64{}
	for k, st := range d.traffic.edges {
		in := out[k.to]
		in.Requests += st.Requests
		in.RPS += st.RPS
		in.HasRate = in.HasRate || st.HasRate
		errs[k.to] += st.ErrorRate * st.Requests
		if in.Requests > 0 {
			in.ErrorRate = errs[k.to] / in.Requests
		}
		for v, n := range st.Versions {
			if in.Versions == nil {
				in.Versions = map[string]float64{}
			}
			in.Versions[v] += n
		}
		out[k.to] = in
	}
	return out
}

func portsText(ps []resource.ServicePort) string {
	var parts []string
	for _, p := range ps {
		proto := p.Protocol
		if proto == "" {
			proto = "HTTP"
		}
		parts = append(parts, fmt.Sprintf("%d/%s", p.Port, proto))
	}
	return strings.Join(parts, ", ")
}

func workloadRows(objs []resource.Object, keep func(resource.WorkloadSpec, resource.Object) bool, mesh string) []WorkloadRow {
	var out []WorkloadRow
	for _, o := range objs {
		if o.Kind != "Workload" {
			continue
		}
		var spec resource.WorkloadSpec
		if json.Unmarshal(o.Spec, &spec) != nil || !keep(spec, o) {
			continue
		}
		out = append(out, WorkloadRow{Name: o.Name, Namespace: resource.RelativeNamespace(o.Namespace, mesh), Service: spec.Service,
			Address: fmt.Sprintf("%s:%d", spec.Address, spec.Port), Version: spec.Labels["version"], Labels: labelsText(spec.Labels),
			Proxy: spec.Proxy, Lease: spec.Lease})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		if out[i].Version != out[j].Version {
			return out[i].Version < out[j].Version
		}
		return out[i].Name < out[j].Name
	})
	return out
}

func policyRow(o resource.Object, mesh string) PolicyRow {
	r := PolicyRow{Kind: o.Kind, Name: o.Name, Namespace: resource.RelativeNamespace(o.Namespace, mesh), Version: o.Version, Spec: flatten(o.Spec, 24)}
	switch o.Kind {
	case "VirtualService", "DestinationRule", "ServiceEntry":
		var s struct {
			Hosts []string `json:"hosts"`
			Host  string   `json:"host"`
		}
		if json.Unmarshal(o.Spec, &s) == nil {
			if s.Host != "" {
				s.Hosts = append(s.Hosts, s.Host)
			}
			r.Applies = "hosts " + strings.Join(s.Hosts, ", ")
		}
	case "PeerAuthentication", "RequestAuthentication", "AuthorizationPolicy", "Sidecar":
		if sel := selectorOf(o.Spec); len(sel) > 0 {
			r.Applies = "workloads " + labelsText(sel)
		} else if o.Namespace == mesh {
			r.Applies = "the whole mesh"
		} else {
			r.Applies = "every workload of the namespace"
		}
	}
	return r
}

func sortPolicies(ps []PolicyRow) {
	sort.Slice(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if ka, kb := kindOrder(a.Kind), kindOrder(b.Kind); ka != kb {
			return ka < kb
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
}

// lineageRows makes records readable, newest first; now is the reference of
// the relative times.
func lineageRows(recs []scope.Record, mesh string, now time.Time) []LineageRow {
	out := make([]LineageRow, 0, len(recs))
	for i, r := range recs {
		row := LineageRow{Index: r.Index, Who: r.Proposer, Hash: r.Hash, Prev: r.Prev, Short: shortHash(r.Hash)}
		if at, ok := r.At(); ok {
			row.Time, row.Ago = scope.FormatTime(at), agoText(at, now)
		}
		row.Chained = i == 0 || recs[i-1].Hash == r.Prev
		m, err := scope.Decode(r.Mutation)
		if err != nil {
			row.Op = "undecodable"
			row.What = []string{err.Error()}
		} else {
			row.Op, row.What = describeMutation(m, mesh)
		}
		out = append(out, row)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// agoText says how long before now t was: "just now", "42s ago", "3 min
// ago", "5 h ago", "12 days ago". A t after now (the proposer's clock ahead of
// this anchor's) reads "12s in the future".
func agoText(t, now time.Time) string {
	d := now.Sub(t)
	suffix := " ago"
	if d < 0 {
		d, suffix = -d, " in the future"
	}
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second)) + suffix
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d/time.Minute)) + suffix
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h", int(d/time.Hour)) + suffix
	}
	return fmt.Sprintf("%d days", int(d/(24*time.Hour))) + suffix
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// describeMutation says what a mutation did, one line per object.
func describeMutation(m scope.Mutation, mesh string) (string, []string) {
	switch m.Op {
	case scope.OpPut:
		var what []string
		for i, o := range m.Objects {
			if i == 8 {
				what = append(what, fmt.Sprintf("… and %d more", len(m.Objects)-8))
				break
			}
			what = append(what, o.Kind+" "+resource.RelativeNamespace(o.Namespace, mesh)+"/"+o.Name)
		}
		return "apply", what
	case scope.OpDelete:
		return "delete", []string{m.Kind + " " + resource.RelativeNamespace(m.Namespace, mesh) + "/" + m.Name}
	case scope.OpGrantLease:
		ttl := int64(0)
		if m.Lease != nil {
			ttl = m.Lease.TTLSeconds
		}
		return "grant lease", []string{fmt.Sprintf("ttl %ds", ttl)}
	case scope.OpRevokeLease, scope.OpExpireLeases:
		var ids []string
		for i, id := range m.LeaseIDs {
			if i == 8 {
				ids = append(ids, "…")
				break
			}
			ids = append(ids, fmt.Sprint(id))
		}
		op := "revoke lease"
		if m.Op == scope.OpExpireLeases {
			op = "expire leases"
		}
		return op, []string{"lease " + strings.Join(ids, ", ") + " and its workloads"}
	case scope.OpGenesis:
		if g := m.Genesis; g != nil {
			what := []string{"scope " + g.Domain + " created with anchors " + strings.Join(g.Anchors, ", ")}
			if g.Parent != "" {
				what = append(what, "parent "+g.Parent)
			}
			return "genesis", what
		}
		return "genesis", nil
	case scope.OpSetGovernance:
		var ids []string
		if m.Governance != nil {
			for _, a := range m.Governance.Anchors {
				s := a.ID
				if !a.Voter {
					s += " (learner)"
				}
				ids = append(ids, s)
			}
		}
		return "governance", []string{"anchors " + strings.Join(ids, ", ")}
	case scope.OpNoop:
		return "no-op", nil
	}
	return string(m.Op), nil
}

func (h *handler) servicePage(ctx context.Context, nsIn, name string) *ServicePage {
	d := h.load(ctx, false)
	ns := resource.AbsoluteNamespace(nsIn, d.mesh)
	fqdn := name + "." + ns
	p := &ServicePage{Page: h.page(d, name+"."+resource.RelativeNamespace(ns, d.mesh), "service",
		"/api/service/"+urlPathEscape(resource.RelativeNamespace(ns, d.mesh))+"/"+urlPathEscape(name)+".json"),
		Name: name, Namespace: ns, Self: fqdn}
	p.Scope = governing(d.scopes, ns)
	var objs []resource.Object
	if p.Scope != "" {
		p.ScopeLink = "/scope/" + urlPathEscape(p.Scope)
		var err error
		if objs, err = h.src.Objects(ctx, p.Scope); err != nil {
			p.Errors = append(p.Errors, "objects: "+err.Error())
		}
		d.objects[p.Scope] = objs
	}
	for _, o := range objs {
		if o.Kind == "Service" && o.Namespace == ns && o.Name == name {
			p.Found, p.UID = true, o.UID
			var spec resource.ServiceSpec
			if json.Unmarshal(o.Spec, &spec) == nil {
				p.Ports = portsText(spec.Ports)
			}
		}
	}
	p.Workloads = workloadRows(objs, func(s resource.WorkloadSpec, o resource.Object) bool {
		return o.Namespace == ns && s.Service == name
	}, d.mesh)
	if len(p.Workloads) > 0 {
		p.Found = true
	}
	// The labels of each workload: registered Workloads, plus connected
	// proxies that have not registered one (yet).
	var wlLabels []map[string]string
	registered := map[string]bool{}
	for _, o := range objs {
		var spec resource.WorkloadSpec
		if o.Kind == "Workload" && o.Namespace == ns && json.Unmarshal(o.Spec, &spec) == nil && spec.Service == name {
			wlLabels = append(wlLabels, spec.Labels)
			if spec.Proxy != "" {
				registered[spec.Proxy] = true
			}
		}
	}
	for _, px := range d.proxies {
		if px.Service == name && resource.AbsoluteNamespace(px.Namespace, d.mesh) == ns && !registered[px.ID] {
			wlLabels = append(wlLabels, px.Labels)
		}
	}

	// Traffic in and out, and the observed split by version.
	self := svcRef{ns, name}
	g := graph(d)
	for _, e := range g.Edges {
		if e.To == self.String() {
			p.Inbound = append(p.Inbound, e)
		}
		if e.From == self.String() && e.To != self.String() {
			p.Outbound = append(p.Outbound, e)
		}
	}
	in := inboundByService(d)[self]
	var tot float64
	for _, n := range in.Versions {
		tot += n
	}
	for _, v := range sortedKeys(in.Versions) {
		pct := 0.0
		if tot > 0 {
			pct = in.Versions[v] * 100 / tot
		}
		label := v
		if label == "" {
			label = "unknown"
		}
		p.Versions = append(p.Versions, VersionShare{Version: label, Percent: pct, Text: fmt.Sprintf("%.0f%%", pct)})
	}

	// Routing: VirtualServices of this host, as splits.
	for _, o := range objs {
		if o.Kind != "VirtualService" {
			continue
		}
		vs := typedVS(o)
		if vs == nil || !vsApplies(vs, o.Namespace, d.mesh, fqdn) {
			continue
		}
		p.Routes = append(p.Routes, splitRules(o.Name, o.Namespace, d.mesh, vs)...)
	}
	subsetColors(p.Routes)
	// Observed versions take the colour of the subset of the same name when there is one.
	colorOf := map[string]int{}
	for _, r := range p.Routes {
		for _, s := range r.Splits {
			if s.Host == fqdn && s.Subset != "" {
				colorOf[s.Subset] = s.Color
			}
		}
	}
	for i := range p.Versions {
		if c, ok := colorOf[p.Versions[i].Version]; ok {
			p.Versions[i].Color = c
		} else {
			p.Versions[i].Color = (len(colorOf) + i) % paletteSize
		}
	}

	// DestinationRules of this host.
	for _, o := range objs {
		if o.Kind != "DestinationRule" {
			continue
		}
		dr := typedDR(o)
		if dr == nil || !hostCovers(qualifyHost(dr.GetHost(), o.Namespace, d.mesh), fqdn) {
			continue
		}
		v := DestinationRuleView{Name: o.Name, Namespace: resource.RelativeNamespace(o.Namespace, d.mesh)}
		var raw struct {
			TrafficPolicy json.RawMessage `json:"trafficPolicy"`
			Subsets       []struct {
				TrafficPolicy json.RawMessage `json:"trafficPolicy"`
			} `json:"subsets"`
		}
		_ = json.Unmarshal(o.Spec, &raw)
		v.Policy = flatten(raw.TrafficPolicy, 24)
		for i, sub := range dr.GetSubsets() {
			n := 0
			for _, l := range wlLabels {
				if labelsMatch(sub.GetLabels(), l) {
					n++
				}
			}
			row := SubsetRow{Name: sub.GetName(), Labels: labelsText(sub.GetLabels()), Workloads: n}
			if i < len(raw.Subsets) {
				row.Policy = flatten(raw.Subsets[i].TrafficPolicy, 12)
			}
			v.Subsets = append(v.Subsets, row)
		}
		p.DestinationRules = append(p.DestinationRules, v)
	}

	// Security and other workload policies that select this service's workloads.
	for _, o := range objs {
		switch o.Kind {
		case "PeerAuthentication", "RequestAuthentication", "AuthorizationPolicy", "Sidecar":
		default:
			continue
		}
		if o.Namespace != ns && o.Namespace != d.mesh {
			continue
		}
		sel := selectorOf(o.Spec)
		applies := len(sel) == 0
		for _, l := range wlLabels {
			if labelsMatch(sel, l) {
				applies = true
			}
		}
		if applies {
			p.Policies = append(p.Policies, policyRow(o, d.mesh))
		}
	}
	sortPolicies(p.Policies)
	return p
}
