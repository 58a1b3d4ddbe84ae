package xds

import (
	"bytes"
	"cmp"
	"net/netip"
	"slices"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"

	"canton.dev/canton/internal/resource"
)

// meta is what the translation keeps of an object besides its typed spec.
type meta struct {
	ref       string // "Kind namespace/name"
	name      string
	namespace string
	created   uint64
}

// service is one routable host: a Canton Service or one host of a ServiceEntry.
type service struct {
	meta
	host       string     // fully qualified, possibly "*.example.com"
	vip        netip.Addr // a Canton Service's VIP (invalid: none)
	ports      []servicePort
	exportTo   []string
	native     bool                               // a Canton Service
	resolution networking.ServiceEntry_Resolution // ServiceEntries only
	external   bool                               // MESH_EXTERNAL ServiceEntry
	sans       []string                           // ServiceEntry subjectAltNames
	endpoints  []endpoint                         // sorted
}

type servicePort struct {
	number     uint32
	name       string
	protocol   string // upper case
	targetPort uint32
}

// http reports whether the port carries HTTP the outbound HTTP listener can route.
func (p servicePort) http() bool {
	switch p.protocol {
	case "HTTP", "HTTP2", "GRPC", "GRPC-WEB":
		return true
	}
	return false
}

// h2 reports whether upstream connections use HTTP/2.
func (p servicePort) h2() bool { return p.protocol == "HTTP2" || p.protocol == "GRPC" }

func (s *service) port(n uint32) (servicePort, bool) {
	for _, p := range s.ports {
		if p.number == n {
			return p, true
		}
	}
	return servicePort{}, false
}

// endpoint is one instance of a service.
type endpoint struct {
	address  string            // IP, or a DNS name for DNS ServiceEntries
	port     uint32            // one port for every service port (Workloads); 0: per port
	ports    map[string]uint32 // by service port name (WorkloadEntries)
	labels   map[string]string
	weight   uint32
	locality string
}

// portFor returns the endpoint port that serves service port p.
func (e endpoint) portFor(p servicePort) uint32 {
	if n, ok := e.ports[p.name]; ok && n != 0 {
		return n
	}
	if e.port != 0 {
		return e.port
	}
	if p.targetPort != 0 {
		return p.targetPort
	}
	return p.number
}

type virtualService struct {
	meta
	hosts []string // qualified
	spec  *networking.VirtualService
}

type destinationRule struct {
	meta
	host string // qualified
	spec *networking.DestinationRule
}

type sidecarConfig struct {
	meta
	spec *networking.Sidecar
}

type peerAuthentication struct {
	meta
	spec *security.PeerAuthentication
}

type gateway struct {
	meta
	spec *networking.Gateway
}

type authorizationPolicy struct {
	meta
	spec *security.AuthorizationPolicy
}

type requestAuthentication struct {
	meta
	spec *security.RequestAuthentication
}

// model is the scope snapshot decoded once per Generate call.
type model struct {
	services  map[string]*service // by host
	vss       []*virtualService
	drs       []*destinationRule
	sidecars  []*sidecarConfig
	pas       []*peerAuthentication
	aps       []*authorizationPolicy
	ras       []*requestAuthentication
	gateways  []*gateway
	entries   []workloadEntry       // WorkloadEntries, for ServiceEntry workloadSelectors
	workloads map[string][]endpoint // Canton Workloads by "<namespace>/<service>"
	// aliases maps another name of a service (an Alias with the "invoke" action, such as the
	// old name a rename leaves) to the service; aliasesOf lists them per service, sorted.
	aliases   map[string]*service
	aliasesOf map[*service][]string
	// DestinationRules indexed by exact host, and those with wildcard hosts.
	drsByHost   map[string][]*destinationRule
	wildcardDRs []*destinationRule
	skips       []Skip // objects that could not be used, for every node
	otherSkips  []Skip // those of skips that are not about VirtualServices
	// decoded are the specs of the snapshot's objects, decoded (see modelBuilder.typed).
	decoded decodedSpecs
	// outboundLabels are the node labels the outbound part of a proxy's configuration reads
	// (see outboundKey in generate.go), sorted (outboundLabelKeys).
	outboundLabels []string
}

type workloadEntry struct {
	meta
	spec *networking.WorkloadEntry
}

// sortObjects orders objects by creation (Istio's "oldest wins" for conflicts), then by
// namespace and name, so every later iteration is deterministic.
// It returns pointers into objs, which it does not modify.
func sortObjects(objs []resource.Object) []*resource.Object {
	out := make([]*resource.Object, len(objs))
	for i := range objs {
		out[i] = &objs[i]
	}
	slices.SortStableFunc(out, compareObjects)
	return out
}

// compareObjects is the order of sortObjects.
func compareObjects(a, b *resource.Object) int {
	if a.Created != b.Created {
		return cmp.Compare(a.Created, b.Created)
	}
	if c := strings.Compare(a.Kind, b.Kind); c != 0 {
		return c
	}
	if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// modelBuilder decodes a scope snapshot into a model.
type modelBuilder struct {
	in   Input
	m    *model
	prev decodedSpecs // the decoded specs of the previous snapshot; may be empty
}

// objectKey names an object of a snapshot.
type objectKey struct{ kind, namespace, name string }

// decodedSpec is a spec and what resource.Typed made of it (never modified), and the object's
// Ref.
type decodedSpec struct {
	spec  []byte
	typed any
	err   error
	ref   string
}

// decodedSpecs are the decoded specs of a snapshot's objects by name, those of VirtualServices
// apart: a model whose other objects are its predecessor's keeps their map (buildModelFrom).
type decodedSpecs struct {
	vs, other map[objectKey]decodedSpec
}

func (d decodedSpecs) get(k objectKey) (decodedSpec, bool) {
	m := d.other
	if k.kind == "VirtualService" {
		m = d.vs
	}
	s, ok := m[k]
	return s, ok
}

// typed is resource.Typed(o) and o.Ref(), taken from the previous snapshot when o's spec is
// unchanged: a scope change usually changes a few objects, and decoding every spec of a large
// scope for every revision would cost more than all the rest of the translation.
func (b *modelBuilder) typed(o *resource.Object) (typed any, ref string, err error) {
	k := objectKey{o.Kind, o.Namespace, o.Name}
	d, ok := b.prev.get(k)
	if !ok {
		d.ref = o.Ref()
	}
	if !ok || !bytes.Equal(d.spec, o.Spec) {
		d.spec = o.Spec
		d.typed, d.err = resource.Typed(*o)
	}
	if o.Kind == "VirtualService" {
		b.m.decoded.vs[k] = d
	} else {
		b.m.decoded.other[k] = d
	}
	return d.typed, d.ref, d.err
}

// skip records that an object (not a VirtualService) cannot be used.
func (b *modelBuilder) skip(object, field, reason string) {
	sk := Skip{Object: object, Field: field, Reason: reason}
	b.m.skips = append(b.m.skips, sk)
	b.m.otherSkips = append(b.m.otherSkips, sk)
}

// buildModel decodes the objects of in. Objects that do not decode are skipped with a note.
func buildModel(in Input) *model { return buildModelFrom(in, nil, false) }

// buildModelFrom is buildModel, reusing the decoded specs of prev (nil: none) for the objects
// whose spec did not change. When onlyVirtualServices, in differs from prev's input in its
// VirtualServices only (every other object is the same, in the same order, with the same mesh):
// the model keeps prev's but for them.
func buildModelFrom(in Input, prev *model, onlyVirtualServices bool) *model {
	b := &modelBuilder{in: in}
	if prev != nil {
		b.prev = prev.decoded
	}
	if prev != nil && onlyVirtualServices {
		b.buildVirtualServices(prev)
	} else {
		b.build()
	}
	return b.m
}

// buildVirtualServices makes the model of b.in from prev, whose input had every object of b.in
// but its VirtualServices: prev's but for the VirtualServices and what depends on them.
func (b *modelBuilder) buildVirtualServices(prev *model) {
	m := *prev
	m.vss = nil
	m.skips = slices.Clip(prev.otherSkips) // appending copies
	m.decoded.vs = map[objectKey]decodedSpec{}
	b.m = &m
	var vss []*resource.Object
	for i := range b.in.Objects {
		if b.in.Objects[i].Kind == "VirtualService" {
			vss = append(vss, &b.in.Objects[i])
		}
	}
	slices.SortStableFunc(vss, compareObjects)
	for _, o := range vss {
		typed, ref, err := b.typed(o)
		mt := meta{ref: ref, name: o.Name, namespace: o.Namespace, created: o.Created}
		if err != nil {
			m.skips = append(m.skips, Skip{Object: mt.ref, Reason: "cannot decode spec: " + err.Error()})
			continue
		}
		if spec, ok := typed.(*networking.VirtualService); ok {
			b.addVirtualService(mt, spec)
		}
	}
	m.outboundLabels = outboundLabelKeys(&m)
}

func (b *modelBuilder) addVirtualService(mt meta, spec *networking.VirtualService) {
	vs := &virtualService{meta: mt, spec: spec}
	for _, h := range spec.GetHosts() {
		vs.hosts = append(vs.hosts, qualify(h, mt.namespace, b.in.Mesh))
	}
	b.m.vss = append(b.m.vss, vs)
}

func (b *modelBuilder) build() {
	m := &model{services: map[string]*service{}, workloads: map[string][]endpoint{}, drsByHost: map[string][]*destinationRule{},
		aliases: map[string]*service{}, aliasesOf: map[*service][]string{},
		decoded: decodedSpecs{vs: map[objectKey]decodedSpec{}, other: make(map[objectKey]decodedSpec, len(b.in.Objects))}}
	b.m = m
	mesh := b.in.Mesh
	var entries []*networking.ServiceEntry
	var entryMeta []meta
	var aliases []*resource.Object
	uids := map[string]*service{}
	for _, o := range sortObjects(b.in.Objects) {
		if o.Kind == "Alias" {
			aliases = append(aliases, o)
			continue
		}
		switch o.Kind {
		case "Service", "Workload", "ServiceEntry", "WorkloadEntry", "VirtualService", "DestinationRule",
			"Sidecar", "PeerAuthentication", "Gateway", "AuthorizationPolicy", "RequestAuthentication":
		default:
			continue
		}
		typed, ref, err := b.typed(o)
		mt := meta{ref: ref, name: o.Name, namespace: o.Namespace, created: o.Created}
		if err != nil && o.Kind == "VirtualService" {
			m.skips = append(m.skips, Skip{Object: mt.ref, Reason: "cannot decode spec: " + err.Error()})
			continue
		}
		if err != nil {
			b.skip(mt.ref, "", "cannot decode spec: "+err.Error())
			continue
		}
		switch spec := typed.(type) {
		case *resource.ServiceSpec:
			s := &service{meta: mt, host: o.Name + "." + o.Namespace, exportTo: spec.ExportTo, native: true}
			if len(o.VIPs) > 0 {
				if a, err := netip.ParseAddr(o.VIPs[0]); err == nil && resource.IsVIP(a) {
					s.vip = a
				}
			}
			for _, p := range spec.Ports {
				proto := strings.ToUpper(p.Protocol)
				if proto == "" {
					proto = "HTTP"
				}
				s.ports = append(s.ports, servicePort{number: p.Port, name: p.Name, protocol: proto})
			}
			if b.addService(s) && o.UID != "" {
				uids[o.UID] = s
			}
		case *resource.WorkloadSpec:
			key := o.Namespace + "/" + spec.Service
			m.workloads[key] = append(m.workloads[key], endpoint{address: spec.Address, port: spec.Port, labels: spec.Labels})
		case *networking.ServiceEntry:
			entries = append(entries, spec)
			entryMeta = append(entryMeta, mt)
		case *networking.WorkloadEntry:
			m.entries = append(m.entries, workloadEntry{meta: mt, spec: spec})
		case *networking.VirtualService:
			b.addVirtualService(mt, spec)
		case *networking.DestinationRule:
			m.drs = append(m.drs, &destinationRule{meta: mt, host: qualify(spec.GetHost(), o.Namespace, mesh), spec: spec})
		case *networking.Sidecar:
			m.sidecars = append(m.sidecars, &sidecarConfig{meta: mt, spec: spec})
		case *security.PeerAuthentication:
			m.pas = append(m.pas, &peerAuthentication{meta: mt, spec: spec})
		case *networking.Gateway:
			m.gateways = append(m.gateways, &gateway{meta: mt, spec: spec})
		case *security.AuthorizationPolicy:
			m.aps = append(m.aps, &authorizationPolicy{meta: mt, spec: spec})
		case *security.RequestAuthentication:
			m.ras = append(m.ras, &requestAuthentication{meta: mt, spec: spec})
		}
	}
	// Canton Services first (they win host conflicts), then ServiceEntries in age order.
	for i, se := range entries {
		b.addServiceEntry(entryMeta[i], se)
	}
	for _, o := range aliases {
		b.addAlias(o, uids)
	}
	for _, dr := range m.drs {
		if strings.HasPrefix(dr.host, "*") {
			m.wildcardDRs = append(m.wildcardDRs, dr)
		} else {
			m.drsByHost[dr.host] = append(m.drsByHost[dr.host], dr)
		}
	}
	for _, s := range m.services {
		if s.native {
			s.endpoints = append(s.endpoints, m.workloads[s.namespace+"/"+s.name]...)
		}
		sortEndpoints(s.endpoints)
	}
	m.outboundLabels = outboundLabelKeys(m)
}

// outboundLabelKeys lists the node labels that the outbound part of the translation reads
// (outbound clusters, endpoints and route configuration): the Sidecar that applies
// (workloadSelector), the DestinationRule that applies (workloadSelector), the http matches
// that apply (sourceLabels) and, where a DestinationRule balances by locality, the caller's
// locality and failoverPriority labels. What is generated per proxy (inbound listener and
// cluster, security filters, gateway and upstream listeners, whose selectors are
// PeerAuthentication's, AuthorizationPolicy's, RequestAuthentication's, Gateway's and tcp/tls
// sourceLabels) reads the whole node and is not listed.
func outboundLabelKeys(m *model) []string {
	set := map[string]bool{}
	for _, k := range localityLabelKeys(m.drs) { // locality load balancing, only where a DestinationRule asks for it
		set[k] = true
	}
	add := func(labels map[string]string) {
		for k := range labels {
			set[k] = true
		}
	}
	for _, sc := range m.sidecars {
		add(sc.spec.GetWorkloadSelector().GetLabels())
	}
	for _, dr := range m.drs {
		add(dr.spec.GetWorkloadSelector().GetMatchLabels())
	}
	for _, vs := range m.vss {
		for _, hr := range vs.spec.GetHttp() {
			for _, mt := range hr.GetMatch() {
				add(mt.GetSourceLabels())
			}
		}
	}
	return sortedKeys(set)
}

// loadBalancerSettings lists every load balancer setting of a DestinationRule: its traffic
// policy's, its subsets', and their port-level ones.
func loadBalancerSettings(dr *networking.DestinationRule) []*networking.LoadBalancerSettings {
	var out []*networking.LoadBalancerSettings
	add := func(tp *networking.TrafficPolicy) {
		if tp == nil {
			return
		}
		out = append(out, tp.GetLoadBalancer())
		for _, pl := range tp.GetPortLevelSettings() {
			out = append(out, pl.GetLoadBalancer())
		}
	}
	add(dr.GetTrafficPolicy())
	for _, sub := range dr.GetSubsets() {
		add(sub.GetTrafficPolicy())
	}
	return out
}

func sortEndpoints(eps []endpoint) {
	sort.SliceStable(eps, func(i, j int) bool {
		if eps[i].address != eps[j].address {
			return eps[i].address < eps[j].address
		}
		return eps[i].port < eps[j].port
	})
}

// addService registers s unless its host is taken (the first owner keeps it); it reports
// whether s was registered.
func (b *modelBuilder) addService(s *service) bool {
	sort.SliceStable(s.ports, func(i, j int) bool { return s.ports[i].number < s.ports[j].number })
	if prev, ok := b.m.services[s.host]; ok {
		b.skip(s.ref, "", "host "+s.host+" is already defined by "+prev.ref+"; this definition is ignored")
		return false
	}
	b.m.services[s.host] = s
	return true
}

// addAlias makes the name of Alias o another host of the service it points to (by UID, or by
// fully qualified name), when the alias may be used to invoke it: callers and routes that
// still use an old name keep reaching the service. A name that is a service itself stays
// that service. Aliases of aliases are not followed here (resolution follows them).
func (b *modelBuilder) addAlias(o *resource.Object, uids map[string]*service) {
	typed, ref, err := b.typed(o)
	if err != nil {
		b.skip(ref, "", "cannot decode spec: "+err.Error())
		return
	}
	spec := typed.(*resource.AliasSpec)
	if !slices.Contains(spec.Actions, "invoke") {
		return
	}
	host := o.Name + "." + o.Namespace
	target := uids[spec.Target]
	if target == nil {
		target = b.m.services[strings.ToLower(strings.TrimSuffix(spec.Target, "."))]
	}
	if target == nil || !target.native {
		return // not a service of this snapshot (another scope's, or gone): nothing to route
	}
	if prev, ok := b.m.services[host]; ok {
		b.skip(ref, "", "host "+host+" is a service ("+prev.ref+"); the alias is not used for routing")
		return
	}
	if _, ok := b.m.aliases[host]; ok {
		return
	}
	b.m.aliases[host] = target
	b.m.aliasesOf[target] = append(b.m.aliasesOf[target], host)
	slices.Sort(b.m.aliasesOf[target])
}

// canonical returns the service host that host names: host itself, or the service an alias
// points to.
func (m *model) canonical(host string) string {
	if s, ok := m.aliases[host]; ok {
		return s.host
	}
	return host
}

func (b *modelBuilder) addServiceEntry(mt meta, se *networking.ServiceEntry) {
	var eps []endpoint
	for _, we := range se.GetEndpoints() {
		eps = append(eps, entryEndpoint(we))
	}
	if sel := se.GetWorkloadSelector(); sel != nil {
		for _, we := range b.m.entries {
			if we.namespace == mt.namespace && labelsMatch(sel.GetLabels(), we.spec.GetLabels()) {
				eps = append(eps, entryEndpoint(we.spec))
			}
		}
	}
	for i, h := range se.GetHosts() {
		host := qualify(h, mt.namespace, b.in.Mesh)
		if host == "*" {
			b.skip(mt.ref, "hosts["+itoa(i)+"]", "host \"*\" cannot be routed by the outbound listener")
			continue
		}
		s := &service{meta: mt, host: host, exportTo: se.GetExportTo(), resolution: se.GetResolution(),
			external: se.GetLocation() == networking.ServiceEntry_MESH_EXTERNAL, sans: se.GetSubjectAltNames(),
			endpoints: append([]endpoint(nil), eps...)}
		for _, p := range se.GetPorts() {
			s.ports = append(s.ports, servicePort{number: p.GetNumber(), name: p.GetName(),
				protocol: portProtocol(p.GetProtocol(), p.GetName()), targetPort: p.GetTargetPort()})
		}
		b.addService(s)
	}
}

// portProtocol returns the upper-case protocol of a ServiceEntry port; when empty it is
// inferred from the port name prefix as Istio does ("http-web" is HTTP), else TCP.
func portProtocol(proto, name string) string {
	if proto != "" {
		return strings.ToUpper(proto)
	}
	prefix, _, _ := strings.Cut(strings.ToLower(name), "-")
	switch prefix {
	case "http", "http2", "grpc", "grpc-web", "https", "tls":
		return strings.ToUpper(prefix)
	}
	return "TCP"
}

func entryEndpoint(we *networking.WorkloadEntry) endpoint {
	return endpoint{address: we.GetAddress(), ports: we.GetPorts(), labels: we.GetLabels(), weight: we.GetWeight(),
		locality: we.GetLocality()}
}
