package xds

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"canton.dev/canton/internal/resource"
)

// generator produces one kind of resource into out. Generators run in the order of their
// list; a later one may read what an earlier one produced (listeners read routes to decide
// which HTTP filters are needed).
type generator struct {
	name string
	run  func(g *gen, out *Resources) error
	// routing is set on the outboundGenerators that read VirtualServices. The others read of
	// the input only what nodeInputsOf and destinationRulesOf hash, so a snapshot whose
	// hashes are its predecessor's keeps what they made (see freePart): a change of routing
	// regenerates the outbound route configuration alone.
	routing bool
}

// The translation is split in two lists. outboundGenerators build what a proxy reaches: the
// clusters and endpoints of the services it may call, its outbound route configuration and the
// trust bundle. They read of the node only what outboundKey holds (its namespace, kind,
// capabilities, whether it has an outbound listener and the labels outbound policies select
// by), so they run once per snapshot and outboundKey, for the node stripped to that key (see
// outboundKeyOf), and every proxy of that key shares the result. nodeGenerators build the rest
// from the whole node, per proxy: gateway routes and listeners (addresses, ports, security
// filters), upstream listeners, the inbound cluster and the proxy's own certificate; they see
// the outbound part in out (its routes) and in gen.visible.
//
// A generator added to outboundGenerators, or a new read of the node in one, must be covered
// by outboundKey: TestSharedOutboundMatchesGeneratingAlone compares every proxy's shared
// configuration with generating it alone. An outbound generator reads nothing another one
// wrote, and one that reads VirtualServices (or anything nodeInputsOf and destinationRulesOf
// leave out) is marked routing: TestNextCarriesNodePartsOverOnlyWhenTheirInputsAreUnchanged
// checks that a snapshot made with Next gives what a fresh one does.
var outboundGenerators = []generator{
	{name: "routes", run: generateRoutes, routing: true},
	{name: "clusters", run: generateClusters},
	{name: "endpoints", run: generateEndpoints},
	{name: "root secret", run: generateRootSecret},
}

var nodeGenerators = []generator{
	{name: "gateway routes", run: generateGatewayRoutes},
	{name: "listeners", run: generateListeners},
	{name: "upstreams", run: generateUpstreams},
	{name: "capture", run: generateCapture},
	{name: "inbound cluster", run: generateInboundCluster},
	{name: "node secret", run: generateNodeSecret},
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

func newGen(in Input, m *model, node Node) *gen {
	return &gen{in: in, node: node, m: m, skipped: map[Skip]bool{}, drCache: map[string]*destinationRule{}}
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

	// outbound memoizes the outbound part of the configuration by outboundKey: proxies
	// differ in their addresses, ports and most labels, but all those of one namespace, kind,
	// capabilities and selected labels reach the same services the same way, so a change is
	// translated once per distinct outboundKey, not once per proxy.
	outbound sync.Map // outboundKey -> *outboundEntry
	// prevOutbound is the outbound map of the snapshot Next made this one from (nil: none):
	// an outbound part's types whose resources did not change keep the previous part's maps,
	// versions and encodings (see intern).
	prevOutbound *sync.Map

	// nodeInputs hashes what the nodeGenerators of a plain sidecar read of in (see
	// nodeInputsOf); nodes memoizes their output per node, and Next carries it over to a
	// snapshot with the same nodeInputs: a change of routing (VirtualServices,
	// DestinationRules) does not rebuild every proxy's listeners.
	nodeInputs [sha256.Size]byte
	nodes      *nodeCache
	// destinationRules hashes the DestinationRules of in (destinationRulesOf). With
	// nodeInputs, it is what the outboundGenerators not marked routing read of in.
	destinationRules [sha256.Size]byte
}

// outboundKey is everything of a node the outboundGenerators read. Two nodes with equal keys
// get identical outbound parts.
type outboundKey struct {
	namespace string
	kind      string // KindSidecar or KindGateway (proxyless nodes are generated as sidecars)
	outbound  bool   // OutboundPort != 0: the node has an outbound route configuration
	// capabilities are the node's Capabilities that are true, sorted, each followed by "\n";
	// "*" for nil (every feature).
	capabilities string
	// labels are the node's labels that the snapshot's policies can select or compare it by
	// on the outbound side (model.outboundLabels), in key order, each as
	// "len(key):key=len(value):value\n".
	labels string
}

// outboundKeyOf returns the outboundKey of n and the node the outboundGenerators run for: n
// without its ID, addresses, ports, service, certificate, upstreams and unselected labels.
func (s *Snapshot) outboundKeyOf(n Node) (outboundKey, Node) {
	k := outboundKey{namespace: n.Namespace, kind: n.kind(), outbound: n.OutboundPort != 0, capabilities: "*"}
	on := Node{ID: "outbound", Namespace: n.Namespace, Kind: k.kind, Capabilities: n.Capabilities}
	if k.outbound {
		on.OutboundPort = 1 // only whether there is one is read
	}
	if n.Capabilities != nil {
		var b strings.Builder
		for _, c := range sortedKeys(n.Capabilities) {
			if n.Capabilities[c] {
				b.WriteString(c)
				b.WriteByte('\n')
			}
		}
		k.capabilities = b.String()
	}
	var b strings.Builder
	for _, key := range s.m.outboundLabels {
		v, ok := n.Labels[key]
		if !ok {
			continue
		}
		if on.Labels == nil {
			on.Labels = map[string]string{}
		}
		on.Labels[key] = v
		b.WriteString(strconv.Itoa(len(key)))
		b.WriteByte(':')
		b.WriteString(key)
		b.WriteByte('=')
		b.WriteString(strconv.Itoa(len(v)))
		b.WriteByte(':')
		b.WriteString(v)
		b.WriteByte('\n')
	}
	k.labels = b.String()
	return k, on
}

// outboundPart is the outbound configuration shared by every proxy of one outboundKey.
type outboundPart struct {
	res *Resources // versions computed; never modified once built
	// free is what the outboundGenerators not marked routing made of it, which the same part
	// of the next snapshot keeps when their inputs did not change.
	free *freePart
	// fault is whether the outbound route configuration uses the fault filter (the outbound
	// listener then has the filter).
	fault   bool
	visible []*service
	skipped map[Skip]bool
	sorted  []Skip // skipped, sorted; its capacity is its length (appending copies)
}

// withSkips returns the sorted skips of a proxy whose own generators skipped own: p's
// alone (the same slice for every proxy) unless own adds some.
func (p *outboundPart) withSkips(own map[Skip]bool) []Skip {
	all := p.sorted
	for sk := range own {
		if !p.skipped[sk] {
			all = append(all, sk)
		}
	}
	if len(all) == len(p.sorted) {
		return p.sorted
	}
	return sortSkips(all)
}

// freePart is what the outboundGenerators that are not marked routing made for one outboundKey
// (clusters, endpoints, the trust bundle), run on their own: their resources with versions,
// what they skipped, and the hashes of the input they read (Snapshot.nodeInputs and
// destinationRules). It is never modified once built.
type freePart struct {
	res                          *Resources
	skipped                      map[Skip]bool
	nodeInputs, destinationRules [sha256.Size]byte
}

type outboundEntry struct {
	once sync.Once
	part *outboundPart
	err  error
	done atomic.Pointer[outboundPart] // part, once built (for the next snapshot's intern)
}

// NewSnapshot decodes in. The Input must not be modified afterwards.
func NewSnapshot(in Input) (*Snapshot, error) {
	if in.Mesh == "" {
		return nil, errors.New("input: mesh domain is required")
	}
	s := &Snapshot{in: in, m: buildModel(in), nodes: &nodeCache{}}
	s.nodeInputs, s.destinationRules = nodeInputsOf(in), destinationRulesOf(in)
	return s, nil
}

// Next decodes in, a later state of the scope of s: like NewSnapshot(in), but the objects whose
// spec is unchanged since s keep their decoded form. s is not modified.
func (s *Snapshot) Next(in Input) (*Snapshot, error) {
	if in.Mesh == "" {
		return nil, errors.New("input: mesh domain is required")
	}
	n := &Snapshot{in: in, nodes: &nodeCache{}, prevOutbound: &s.outbound}
	n.nodeInputs, n.destinationRules = nodeInputsOf(in), destinationRulesOf(in)
	n.m = buildModelFrom(in, s.m, n.nodeInputs == s.nodeInputs && n.destinationRules == s.destinationRules)
	if n.nodeInputs == s.nodeInputs {
		n.nodes.prev = &s.nodes.cur
	}
	return n, nil
}

// Revision returns the scope revision the snapshot was taken at.
func (s *Snapshot) Revision() uint64 { return s.in.Revision }

// Generate is the package-level Generate for a decoded snapshot.
//
// Proxies share the resources of their outbound part (see outboundGenerators), and the maps
// of a type whose resources are all shared: callers must not modify the returned maps or
// messages.
func (s *Snapshot) Generate(node Node) (Resources, error) {
	res, err := s.generate(node)
	if err != nil {
		return Resources{}, fmt.Errorf("node %q: %w", node.ID, err)
	}
	return res, nil
}

func (s *Snapshot) generate(node Node) (Resources, error) {
	if node.kind() == KindProxyless {
		return s.generateProxyless(node)
	}
	g := newGen(s.in, s.m, node)
	if err := g.checkNode(); err != nil {
		return Resources{}, err
	}
	shared, err := s.outboundFor(node)
	if err != nil {
		return Resources{}, err
	}
	own, err := s.ownFor(g, shared)
	if err != nil {
		return Resources{}, err
	}
	res := layer(shared.res, own.res)
	res.Skipped = shared.withSkips(own.skipped)
	return res, nil
}

// ownPart is what the nodeGenerators produced for one node on top of its outbound part: the
// resources that are not the outbound part's, with their versions, and what they skipped.
// It is never modified once built.
type ownPart struct {
	res     *Resources
	skipped map[Skip]bool
}

// ownFor runs the nodeGenerators for g's node on top of shared, or returns their output for
// an identical node from this snapshot or, when nothing they read changed, the previous one.
func (s *Snapshot) ownFor(g *gen, shared *outboundPart) (*ownPart, error) {
	var key nodeCacheKey
	cacheable := s.nodes != nil && plainSidecar(g.node)
	if cacheable {
		key = nodeCacheKey{node: nodeDigest(g.node), outboundFault: shared.fault}
		if p := s.nodes.load(key); p != nil {
			return p, nil
		}
	}
	g.visible = shared.visible
	out := newResources()
	for name, rc := range shared.res.Routes { // the listeners read them
		out.Routes[name] = rc
	}
	for _, gr := range nodeGenerators {
		if err := gr.run(g, out); err != nil {
			return nil, fmt.Errorf("generate %s: %w", gr.name, err)
		}
	}
	own, err := ownOf(shared.res, out)
	if err != nil {
		return nil, err
	}
	p := &ownPart{res: own, skipped: g.skipped}
	if cacheable {
		s.nodes.cur.Store(key, p)
	}
	return p, nil
}

// plainSidecar reports whether the nodeGenerators read, for n, only what nodeInputsOf covers
// and, of the outbound part, whether its route configuration uses the fault filter
// (outboundPart.fault): a sidecar without upstream bindings and capture. A gateway's routes
// and listeners, and upstream and VIP listeners, are translated from VirtualServices and
// DestinationRules and read the outbound part's services: they are generated every time.
func plainSidecar(n Node) bool {
	return n.kind() == KindSidecar && len(n.Upstreams) == 0 && n.CapturePort == 0
}

// nodeInputsOf hashes what the nodeGenerators read of in for a plain sidecar (see
// plainSidecar): every object but VirtualServices and DestinationRules (which only the outbound
// part, gateway routes and upstream and VIP listeners read), whole, in order, and the mesh,
// scope and trust bundle. Not the revision: a snapshot of another revision with the same
// objects has the same node inputs.
func nodeInputsOf(in Input) [sha256.Size]byte {
	return hashInput(in, true, func(kind string) bool { return kind != "VirtualService" && kind != "DestinationRule" })
}

// destinationRulesOf hashes the DestinationRules of in, whole, in order.
func destinationRulesOf(in Input) [sha256.Size]byte {
	return hashInput(in, false, func(kind string) bool { return kind == "DestinationRule" })
}

// hashInput hashes the objects of in whose kind is kept, whole, in order, after the mesh, scope
// and trust bundle when withScope.
func hashInput(in Input, withScope bool, keep func(kind string) bool) [sha256.Size]byte {
	h := sha256.New()
	var buf []byte
	str := func(v string) { buf = append(strconv.AppendInt(buf, int64(len(v)), 10), ':'); buf = append(buf, v...) }
	raw := func(v []byte) { buf = append(strconv.AppendInt(buf, int64(len(v)), 10), ':'); buf = append(buf, v...) }
	strMap := func(m map[string]string) {
		buf = append(strconv.AppendInt(buf, int64(len(m)), 10), '{')
		for _, k := range sortedKeys(m) {
			str(k)
			str(m[k])
		}
	}
	if withScope {
		str(in.Mesh)
		str(in.Scope)
		raw(in.TrustBundle)
		h.Write(buf)
	}
	for _, o := range in.Objects {
		if !keep(o.Kind) {
			continue
		}
		buf = buf[:0]
		str(o.Kind)
		str(o.Namespace)
		str(o.Name)
		strMap(o.Labels)
		strMap(o.Annotations)
		raw(o.Spec)
		str(o.UID)
		buf = strconv.AppendUint(append(buf, ';'), o.Version, 10)
		buf = strconv.AppendUint(append(buf, ';'), o.Created, 10)
		buf = strconv.AppendInt(append(buf, ';'), int64(len(o.VIPs)), 10)
		for _, v := range o.VIPs {
			str(v)
		}
		h.Write(buf)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// nodeDigest hashes every field of n: nodes with equal digests are equal.
// TestNodeDigestCoversEveryField guards that a field added to Node is added here.
func nodeDigest(n Node) [sha256.Size]byte {
	var arr [512]byte
	buf := arr[:0]
	str := func(v string) []byte { return append(binary.AppendUvarint(buf, uint64(len(v))), v...) }
	num := func(v uint32) []byte { return binary.AppendUvarint(buf, uint64(v)) }
	buf = str(n.ID)
	buf = str(n.Service)
	buf = str(n.Namespace)
	buf = binary.AppendUvarint(buf, uint64(len(n.Labels)))
	var keys [16]string
	for _, k := range appendSortedKeys(keys[:0], n.Labels) {
		buf = str(k)
		buf = str(n.Labels[k])
	}
	buf = str(n.Kind)
	buf = num(n.OutboundPort)
	buf = num(n.CapturePort)
	buf = num(n.InboundPort)
	buf = str(n.InboundAddress)
	buf = str(n.AppAddress)
	buf = str(n.AdminAddress)
	buf = str(n.PathNormalization)
	if n.Capabilities == nil {
		buf = append(buf, 0) // every feature, unlike an empty set
	} else {
		buf = binary.AppendUvarint(append(buf, 1), uint64(len(n.Capabilities)))
		var caps [16]string
		for _, k := range appendSortedKeys(caps[:0], n.Capabilities) {
			buf = str(k)
			buf = strconv.AppendBool(buf, n.Capabilities[k])
		}
	}
	buf = binary.AppendUvarint(buf, uint64(len(n.Upstreams)))
	for _, u := range n.Upstreams {
		buf = str(u.Service)
		buf = num(u.Port)
		buf = str(u.Address)
	}
	for _, b := range [][]byte{n.CertificateChain, n.PrivateKey} {
		buf = append(binary.AppendUvarint(buf, uint64(len(b))), b...)
	}
	return sha256.Sum256(buf)
}

// appendSortedKeys appends the keys of m to dst, sorted.
func appendSortedKeys[V any](dst []string, m map[string]V) []string {
	for k := range m {
		dst = append(dst, k)
	}
	slices.Sort(dst)
	return dst
}

// nodeCacheKey identifies the output of the nodeGenerators for a plain sidecar within the
// snapshots of one nodeInputs: the node, and whether its outbound route configuration uses the
// fault filter (the outbound listener then has it; that is all the listeners read of the
// outbound part).
type nodeCacheKey struct {
	node          [sha256.Size]byte
	outboundFault bool
}

// nodeCache holds the ownParts generated for a snapshot and, when the snapshot's nodeInputs are
// its predecessor's, those of the predecessor: a node is carried over on its first lookup, so
// the nodes generated in neither of the last two snapshots are forgotten.
type nodeCache struct {
	cur  sync.Map  // nodeCacheKey -> *ownPart
	prev *sync.Map // the predecessor's cur; nil: none
}

func (c *nodeCache) load(k nodeCacheKey) *ownPart {
	if v, ok := c.cur.Load(k); ok {
		return v.(*ownPart)
	}
	if c.prev == nil {
		return nil
	}
	v, ok := c.prev.Load(k)
	if !ok {
		return nil
	}
	c.cur.Store(k, v)
	return v.(*ownPart)
}

// outboundFor returns the outbound part of node's configuration, generating it once per
// outboundKey.
func (s *Snapshot) outboundFor(node Node) (*outboundPart, error) {
	k, on := s.outboundKeyOf(node)
	v, ok := s.outbound.Load(k)
	if !ok {
		v, _ = s.outbound.LoadOrStore(k, &outboundEntry{})
	}
	e := v.(*outboundEntry)
	e.once.Do(func() {
		e.part, e.err = s.generateOutbound(k, on)
		e.done.Store(e.part)
	})
	return e.part, e.err
}

// generateOutbound runs the outboundGenerators for on, the node of outboundKey k (see
// outboundKeyOf). Those not marked routing are not run when the same part of the previous
// snapshot was made from the same input hashes: their resources, versions and skips are kept.
func (s *Snapshot) generateOutbound(k outboundKey, on Node) (*outboundPart, error) {
	var prev *outboundPart
	if s.prevOutbound != nil {
		if v, ok := s.prevOutbound.Load(k); ok {
			prev = v.(*outboundEntry).done.Load()
		}
	}
	g := newGen(s.in, s.m, on)
	for _, sk := range s.m.skips {
		g.skipped[sk] = true
	}
	g.computeVisible()
	out := newResources()
	for _, gr := range outboundGenerators {
		if gr.routing {
			if err := gr.run(g, out); err != nil {
				return nil, fmt.Errorf("generate %s: %w", gr.name, err)
			}
		}
	}
	if err := out.computeVersions(); err != nil {
		return nil, err
	}
	var free *freePart
	if prev != nil && prev.free.nodeInputs == s.nodeInputs && prev.free.destinationRules == s.destinationRules {
		free = prev.free
	} else {
		var err error
		if free, err = s.generateFree(on, g.visible); err != nil {
			return nil, err
		}
	}
	for _, t := range Types {
		fm := free.res.ByType(t)
		switch {
		case len(fm) == 0:
		case len(out.ByType(t)) == 0:
			out.setType(t, fm)
			out.Versions[t] = free.res.Versions[t]
		default: // not the case today: routing and the other generators make other types
			m, vs := out.ByType(t), out.Versions[t]
			for name, msg := range fm {
				m[name], vs[name] = msg, free.res.Versions[t][name]
			}
		}
	}
	for sk := range free.skipped {
		g.skipped[sk] = true
	}
	if prev != nil {
		intern(out, prev.res)
	}
	rc, _ := out.Routes[OutboundRouteName].(*routev3.RouteConfiguration)
	return &outboundPart{res: out, free: free, fault: rc != nil && usesFilter(rc, FaultFilterName), visible: g.visible, skipped: g.skipped,
		sorted: slices.Clip(sortedSkips(g.skipped))}, nil
}

// generateFree runs the outboundGenerators that are not marked routing for on, whose visible
// services are visible, on their own gen: what they skip is theirs alone.
func (s *Snapshot) generateFree(on Node, visible []*service) (*freePart, error) {
	g := newGen(s.in, s.m, on)
	g.visible = visible
	out := newResources()
	for _, gr := range outboundGenerators {
		if !gr.routing {
			if err := gr.run(g, out); err != nil {
				return nil, fmt.Errorf("generate %s: %w", gr.name, err)
			}
		}
	}
	if err := out.computeVersions(); err != nil {
		return nil, err
	}
	return &freePart{res: out, skipped: g.skipped, nodeInputs: s.nodeInputs, destinationRules: s.destinationRules}, nil
}

// intern gives out, for every type whose resources have the versions they have in prev (the
// same outbound part in the previous snapshot), prev's map and versions of that type, and the
// encodings prev made of them: a change re-encodes only the types it changes, and a proxy's
// layered types stay the maps they were (ownPart's memo).
func intern(out, prev *Resources) {
	var same [5]bool
	interned := false
	for i, t := range Types {
		if maps.Equal(out.Versions[t], prev.Versions[t]) {
			out.setType(t, prev.ByType(t))
			out.Versions[t] = prev.Versions[t]
			out.adoptSummary(i, prev)
			same[i], interned = true, true
		}
	}
	if !interned {
		return
	}
	prev.packed.Range(func(k, v any) bool {
		typeURL, _, _ := strings.Cut(k.(string), "\x00")
		if i := slices.Index(Types, typeURL); i >= 0 && same[i] {
			out.packed.Store(k, v)
		}
		return true
	})
}

// ownOf returns the resources of out (the nodeGenerators' output on top of shared's routes)
// that are not shared's, with their versions: the proxy's own, which only it encodes and hashes.
func ownOf(shared, out *Resources) (*Resources, error) {
	own := &Resources{Versions: map[string]map[string]string{}, memo: &layeredMemo{}}
	for _, t := range Types {
		b := shared.ByType(t)
		var m map[string]proto.Message
		for name, msg := range out.ByType(t) {
			if b[name] == msg {
				continue
			}
			v, err := resourceVersion(msg)
			if err != nil {
				return nil, fmt.Errorf("encode %s %q: %w", t, name, err)
			}
			if m == nil {
				m = map[string]proto.Message{}
				own.Versions[t] = map[string]string{}
			}
			m[name], own.Versions[t][name] = msg, v
		}
		own.setType(t, m)
	}
	return own, nil
}

// layer returns the resources of shared and own (ownOf) together. A type own adds nothing to
// keeps shared's map and versions; the others get new maps, where shared's resources keep their
// versions (computed once for all proxies) and own's have theirs (computed once per proxy).
// Shared's resources also keep their Any encodings (Resources.base).
func layer(shared, own *Resources) Resources {
	res := *newResources()
	res.base, res.memo = shared, own.memo
	for i, t := range Types {
		b, o := shared.ByType(t), own.ByType(t)
		m, vs := b, shared.Versions[t]
		var added []string
		if len(o) > 0 {
			m, vs, added = own.memo.layered(i, b)
		}
		if len(o) > 0 && m == nil {
			m, vs = maps.Clone(b), maps.Clone(shared.Versions[t])
			if m == nil {
				m, vs = map[string]proto.Message{}, map[string]string{}
			}
			for name, msg := range o {
				m[name], vs[name] = msg, own.Versions[t][name]
				added = append(added, name)
			}
			slices.Sort(added)
			own.memo.putLayered(i, b, m, vs, added)
		}
		res.setType(t, m)
		res.Versions[t] = vs
		if added == nil {
			res.fromBase |= 1 << i
		} else {
			res.added[i] = added
		}
	}
	return res
}

// sortedSkips lists set in the order of Resources.Skipped (nil when empty).
func sortedSkips(set map[Skip]bool) []Skip {
	var out []Skip
	for sk := range set {
		out = append(out, sk)
	}
	return sortSkips(out)
}

// sortSkips sorts list in the order of Resources.Skipped: by String.
func sortSkips(list []Skip) []Skip {
	type keyed struct {
		key string
		sk  Skip
	}
	ks := make([]keyed, len(list))
	for i, sk := range list {
		ks[i] = keyed{sk.String(), sk}
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i].key < ks[j].key })
	for i, k := range ks {
		list[i] = k.sk
	}
	return list
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
	if n.OutboundPort > 65535 || n.InboundPort > 65535 || n.CapturePort > 65535 {
		return errors.New("ports must be 0..65535")
	}
	if n.CapturePort != 0 && (n.CapturePort == n.OutboundPort || n.CapturePort == n.InboundPort) {
		return fmt.Errorf("capture port %d is the port of another listener", n.CapturePort)
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
