package xds

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"sync"

	networking "istio.io/api/networking/v1alpha3"

	"canton.dev/canton/internal/resource"
)

// generator produces one kind of resource into out. Generators run in the order of the list;
// a later one may read what an earlier one produced (listeners read routes to decide which
// HTTP filters are needed).
type generator struct {
	name string
	run  func(g *gen, out *Resources) error
}

// generators is the whole translation, in order.
var generators = []generator{
	{"routes", generateRoutes},
	{"listeners", generateListeners},
	{"upstreams", generateUpstreams},
	{"clusters", generateClusters},
	{"endpoints", generateEndpoints},
	{"secrets", generateSecrets},
}

// gen is the state of one Generate call.
type gen struct {
	in      Input
	node    Node
	m       *model
	visible []*service // services the node may reach, sorted by host
	skipped map[Skip]bool
	appPort uint32 // port of Node.AppAddress
	// gatewayRef is the Gateway ("absolute-ns/name") whose routes are being translated; empty
	// while translating sidecar routes.
	gatewayRef string
	// gatewayListener is true while the security filters of gateway listeners are translated:
	// port conditions then match the listener's port instead of the workload's ports.
	gatewayListener bool
	drCache         map[string]*destinationRule // destinationRuleFor by host
}

// Generate translates the scope snapshot in into the resources of node. It is pure and
// deterministic. Errors are reserved for unusable input (no mesh domain, an invalid Node);
// config that cannot be translated is left out and listed in Resources.Skipped.
//
// Generate decodes every object of in; to configure many proxies of one scope revision,
// decode once with NewSnapshot and call Snapshot.Generate per proxy.
func Generate(in Input, node Node) (Resources, error) {
	s, err := NewSnapshot(in)
	if err != nil {
		return Resources{}, err
	}
	return s.Generate(node)
}

// Snapshot is a scope snapshot decoded once, for generating the resources of many proxies.
// It is immutable and safe for concurrent use.
type Snapshot struct {
	in Input
	m  *model

	// memo shares generated resources between proxies that differ only in
	// their ID: every replica of a workload gets the same configuration, so
	// a change is generated once per distinct node, not once per stream.
	memo sync.Map // nodeKey -> *memoEntry
}

type memoEntry struct {
	once sync.Once
	res  Resources
	err  error
}

// nodeKey identifies what generation depends on: the whole node but its ID.
func nodeKey(n Node) string {
	n.ID = ""
	b, _ := json.Marshal(n) // map keys are sorted: deterministic
	return string(b)
}

// NewSnapshot decodes in. The Input must not be modified afterwards.
func NewSnapshot(in Input) (*Snapshot, error) {
	if in.Mesh == "" {
		return nil, errors.New("input: mesh domain is required")
	}
	return &Snapshot{in: in, m: buildModel(in)}, nil
}

// Revision returns the scope revision the snapshot was taken at.
func (s *Snapshot) Revision() uint64 { return s.in.Revision }

// Generate is the package-level Generate for a decoded snapshot.
//
// Proxies with the same node (but for the ID) share one result: callers must
// not modify the returned maps or messages.
func (s *Snapshot) Generate(node Node) (Resources, error) {
	v, _ := s.memo.LoadOrStore(nodeKey(node), &memoEntry{})
	e := v.(*memoEntry)
	e.once.Do(func() { e.res, e.err = s.generate(node) })
	if e.err != nil {
		return Resources{}, fmt.Errorf("node %q: %w", node.ID, e.err)
	}
	return e.res, nil
}

func (s *Snapshot) generate(node Node) (Resources, error) {
	if node.kind() == KindProxyless {
		return s.generateProxyless(node)
	}
	g := &gen{in: s.in, node: node, m: s.m, skipped: map[Skip]bool{}, drCache: map[string]*destinationRule{}}
	if err := g.checkNode(); err != nil {
		return Resources{}, err
	}
	for _, sk := range s.m.skips {
		g.skipped[sk] = true
	}
	g.computeVisible()
	out := newResources()
	for _, gr := range generators {
		if err := gr.run(g, out); err != nil {
			return Resources{}, fmt.Errorf("generate %s: %w", gr.name, err)
		}
	}
	if err := out.computeVersions(); err != nil {
		return Resources{}, err
	}
	for s := range g.skipped {
		out.Skipped = append(out.Skipped, s)
	}
	sort.Slice(out.Skipped, func(i, j int) bool { return out.Skipped[i].String() < out.Skipped[j].String() })
	return *out, nil
}

func (g *gen) checkNode() error {
	n := g.node
	if n.ID == "" {
		return errors.New("id is required")
	}
	if n.Namespace == "" {
		return errors.New("namespace is required")
	}
	switch n.kind() {
	case KindSidecar, KindGateway, KindProxyless:
	default:
		return fmt.Errorf("kind %q must be %q, %q or %q", n.Kind, KindSidecar, KindGateway, KindProxyless)
	}
	if err := checkPathNormalization(n.PathNormalization); err != nil {
		return err
	}
	if n.OutboundPort > 65535 || n.InboundPort > 65535 {
		return errors.New("ports must be 0..65535")
	}
	if n.InboundAddress != "" {
		if _, err := netip.ParseAddr(n.InboundAddress); err != nil {
			return fmt.Errorf("inbound address %q must be an IP address", n.InboundAddress)
		}
	}
	if err := checkUpstreams(n); err != nil {
		return err
	}
	if n.InboundPort != 0 {
		ap, err := netip.ParseAddrPort(n.AppAddress)
		if err != nil {
			return fmt.Errorf("app address %q must be IP:port (the inbound listener forwards to it): %v", n.AppAddress, err)
		}
		if ap.Port() == 0 {
			return fmt.Errorf("app address %q: port must not be 0", n.AppAddress)
		}
		g.appPort = uint32(ap.Port())
	}
	return nil
}

// skip records that config of object was left out.
func (g *gen) skip(object, field, reason string) {
	g.skipped[Skip{Object: object, Field: field, Reason: reason}] = true
}

func itoa(i int) string { return strconv.Itoa(i) }

// computeVisible selects the services the node may reach: exported to its namespace and, if a
// Sidecar applies to it, allowed by the Sidecar's egress hosts.
func (g *gen) computeVisible() {
	sc := g.sidecarFor()
	if sc != nil {
		g.reportSidecar(sc)
	}
	for _, h := range sortedKeys(g.m.services) {
		s := g.m.services[h]
		if !exportedTo(s.exportTo, s.namespace, g.node.Namespace, g.in.Mesh) {
			continue
		}
		if sc != nil && !g.egressAllows(sc, s) {
			continue
		}
		g.visible = append(g.visible, s)
	}
}

// sidecarFor returns the Sidecar that applies to the node, Istio's way: one in the node's
// namespace whose workloadSelector matches it, else the one in its namespace without a
// selector, else the one without a selector in the mesh root namespace. Oldest wins ties.
// Sidecars configure sidecars only: a gateway gets none (Istio gives gateways the default
// scope, every host of every namespace).
func (g *gen) sidecarFor() *sidecarConfig {
	if g.node.kind() == KindGateway {
		return nil
	}
	var nsDefault, rootDefault *sidecarConfig
	for _, sc := range g.m.sidecars {
		sel := sc.spec.GetWorkloadSelector().GetLabels()
		switch {
		case sc.namespace == g.node.Namespace && len(sel) > 0:
			if labelsMatch(sel, g.node.Labels) {
				return sc
			}
		case sc.namespace == g.node.Namespace:
			if nsDefault == nil {
				nsDefault = sc
			}
		case sc.namespace == g.in.Mesh && len(sel) == 0:
			if rootDefault == nil {
				rootDefault = sc
			}
		}
	}
	if nsDefault != nil {
		return nsDefault
	}
	return rootDefault
}

// reportSidecar lists, for the node it applies to, what of Sidecar sc is not translated: the
// port, bind and captureMode of egress listeners (the proxy has one outbound listener, so the
// hosts of all egress listeners are united), ingress listeners (the inbound listener forwards
// to Node.AppAddress), inboundConnectionPool, and outboundTrafficPolicy ALLOW_ANY or
// egressProxy (REGISTRY_ONLY is what the outbound listener does: unknown hosts get 502).
func (g *gen) reportSidecar(sc *sidecarConfig) {
	for i, eg := range sc.spec.GetEgress() {
		if eg.GetPort() != nil || eg.GetBind() != "" {
			g.skip(sc.ref, "egress["+itoa(i)+"]", "port and bind are not used: the proxy has a single outbound listener; hosts of all egress listeners apply")
		}
		if eg.GetCaptureMode() != networking.CaptureMode_DEFAULT {
			g.skip(sc.ref, "egress["+itoa(i)+"].captureMode", "not used: the proxy has a single outbound listener, on 127.0.0.1")
		}
	}
	if len(sc.spec.GetIngress()) > 0 {
		g.skip(sc.ref, "ingress", "ingress listeners are not supported: the inbound listener serves the port the proxy is given and forwards every request to the application's address (Node.AppAddress)")
	}
	if sc.spec.GetInboundConnectionPool() != nil {
		g.skip(sc.ref, "inboundConnectionPool", "not supported: the inbound cluster has the default connection limits")
	}
	if otp := sc.spec.GetOutboundTrafficPolicy(); otp != nil {
		if otp.GetMode() == networking.OutboundTrafficPolicy_ALLOW_ANY {
			g.skip(sc.ref, "outboundTrafficPolicy.mode", "ALLOW_ANY is not supported (there is no passthrough): requests to hosts outside the registry get 502, as with REGISTRY_ONLY")
		}
		if otp.GetEgressProxy() != nil {
			g.skip(sc.ref, "outboundTrafficPolicy.egressProxy", "not supported: requests to hosts outside the registry get 502, they are not sent to the egress proxy")
		}
	}
}

// egressAllows reports whether one of the Sidecar's egress hosts ("namespace/host") covers s.
// A Sidecar without egress listeners has Istio's default one, "*/*": every host of every
// namespace (exportTo still applies).
func (g *gen) egressAllows(sc *sidecarConfig, s *service) bool {
	if len(sc.spec.GetEgress()) == 0 {
		return true
	}
	for _, eg := range sc.spec.GetEgress() {
		for _, entry := range eg.GetHosts() {
			nsPart, hostPart, ok := cutLast(entry, "/")
			if !ok {
				continue
			}
			var ns string
			switch nsPart {
			case "*":
			case ".":
				ns = g.node.Namespace // the workload's, also for the mesh root namespace's Sidecar
			case "~":
				continue
			default:
				ns = resource.AbsoluteNamespace(nsPart, g.in.Mesh)
			}
			if ns != "" && s.namespace != ns {
				continue
			}
			pattern := hostPart
			if ns != "" {
				pattern = qualify(hostPart, ns, g.in.Mesh)
			} else {
				pattern = qualify(hostPart, s.namespace, g.in.Mesh)
			}
			if hostMatches(pattern, s.host) {
				return true
			}
		}
	}
	return false
}

func cutLast(s, sep string) (before, after string, ok bool) {
	for i := len(s) - len(sep); i >= 0; i-- {
		if s[i:i+len(sep)] == sep {
			return s[:i], s[i+len(sep):], true
		}
	}
	return "", s, false
}

// isVisible reports whether host is one of the services the node may reach.
func (g *gen) isVisible(host string) (*service, bool) {
	i := sort.Search(len(g.visible), func(i int) bool { return g.visible[i].host >= host })
	if i < len(g.visible) && g.visible[i].host == host {
		return g.visible[i], true
	}
	return nil, false
}

// namespaceRank orders policy candidates Istio's way: the client's namespace first, then the
// service's, then the mesh root namespace, then any other.
func (g *gen) namespaceRank(objNS, serviceNS string) int {
	switch objNS {
	case g.node.Namespace:
		return 0
	case serviceNS:
		return 1
	case g.in.Mesh:
		return 2
	}
	return 3
}

// hostSpecificity ranks a host pattern: exact names before wildcards, longer wildcards first.
func hostSpecificity(pattern string) int {
	if len(pattern) > 0 && pattern[0] == '*' {
		return 1000 - len(pattern)
	}
	return 0
}

// virtualServiceFor returns the VirtualService that routes host for the node (nil: none) and
// the qualified host entry it matched. Candidates must be exported to the node's namespace and
// bound to the mesh (sidecars) or to gatewayRef (gateways, when not empty).
func (g *gen) virtualServiceFor(s *service, gatewayRef string) *virtualService {
	type cand struct {
		vs         *virtualService
		spec, rank int
	}
	var cands []cand
	for _, vs := range g.m.vss {
		if !exportedTo(vs.spec.GetExportTo(), vs.namespace, g.node.Namespace, g.in.Mesh) {
			continue
		}
		if !g.boundTo(vs.spec.GetGateways(), vs.namespace, gatewayRef) {
			continue
		}
		best := -1
		for _, h := range vs.hosts {
			// A VirtualService for an old name (an alias) still routes the service.
			if hostMatches(h, s.host) || slices.Contains(g.m.aliasesOf[s], h) {
				if sp := hostSpecificity(h); best < 0 || sp < best {
					best = sp
				}
			}
		}
		if best >= 0 {
			cands = append(cands, cand{vs, best, g.namespaceRank(vs.namespace, s.namespace)})
		}
	}
	if len(cands) == 0 {
		return nil
	}
	sort.SliceStable(cands, func(i, j int) bool {
		if cands[i].spec != cands[j].spec {
			return cands[i].spec < cands[j].spec
		}
		return cands[i].rank < cands[j].rank
	})
	for _, c := range cands[1:] {
		if c.spec != cands[0].spec || c.rank != cands[0].rank {
			break
		}
		g.skip(c.vs.ref, "hosts", "host "+s.host+" is already routed by "+cands[0].vs.ref+" (one VirtualService per host; the most specific host, then the client's namespace, then the service's, then the oldest wins)")
	}
	return cands[0].vs
}

// boundTo reports whether a VirtualService with the given gateways applies: to sidecars when
// the list is empty or has "mesh"; to the gateway gatewayRef ("namespace/name") when listed.
func (g *gen) boundTo(gateways []string, vsNS, gatewayRef string) bool {
	if gatewayRef == "" {
		if len(gateways) == 0 {
			return true
		}
		for _, gw := range gateways {
			if gw == "mesh" {
				return true
			}
		}
		return false
	}
	for _, gw := range gateways {
		if gatewayName(gw, vsNS, g.in.Mesh) == gatewayRef {
			return true
		}
	}
	return false
}

// gatewayName qualifies a gateway reference "name" or "namespace/name" to "absolute-ns/name".
func gatewayName(ref, ns, mesh string) string {
	if n, name, ok := cutLast(ref, "/"); ok {
		return resource.AbsoluteNamespace(n, mesh) + "/" + name
	}
	return ns + "/" + ref
}

// destinationRuleFor returns the DestinationRule that applies to host for the node, or nil.
func (g *gen) destinationRuleFor(s *service) *destinationRule {
	if dr, ok := g.drCache[s.host]; ok {
		return dr
	}
	dr := g.findDestinationRule(s)
	g.drCache[s.host] = dr
	return dr
}

func (g *gen) findDestinationRule(s *service) *destinationRule {
	type cand struct {
		dr              *destinationRule
		spec, rank, sel int
	}
	var cands []cand
	drs := append([]*destinationRule(nil), g.m.drsByHost[s.host]...)
	for _, alias := range g.m.aliasesOf[s] {
		drs = append(drs, g.m.drsByHost[alias]...) // a rule for an old name still applies, after the service's own
	}
	for _, dr := range append(drs, g.m.wildcardDRs...) {
		if !hostMatches(dr.host, s.host) && !slices.Contains(g.m.aliasesOf[s], dr.host) {
			continue
		}
		if !exportedTo(dr.spec.GetExportTo(), dr.namespace, g.node.Namespace, g.in.Mesh) {
			continue
		}
		sel := 1
		if ws := dr.spec.GetWorkloadSelector(); ws != nil {
			if dr.namespace != g.node.Namespace || !labelsMatch(ws.GetMatchLabels(), g.node.Labels) {
				continue
			}
			sel = 0
		}
		cands = append(cands, cand{dr, hostSpecificity(dr.host), g.namespaceRank(dr.namespace, s.namespace), sel})
	}
	if len(cands) == 0 {
		return nil
	}
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if a.spec != b.spec {
			return a.spec < b.spec
		}
		if a.rank != b.rank {
			return a.rank < b.rank
		}
		return a.sel < b.sel
	})
	for _, c := range cands[1:] {
		if c.spec != cands[0].spec || c.rank != cands[0].rank || c.sel != cands[0].sel {
			break
		}
		g.skip(c.dr.ref, "host", "host "+s.host+" already takes its policy from "+cands[0].dr.ref+" (DestinationRules are not merged)")
	}
	return cands[0].dr
}
