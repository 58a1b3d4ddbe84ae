package xds

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"canton.dev/canton/internal/resource"
)

// Type URLs of the resources Generate produces, as used on the wire by xDS.
const (
	ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	RouteType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	ClusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	SecretType   = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
)

// Types lists the resource type URLs in the order a client should apply them (CDS before EDS,
// LDS before RDS, as Envoy's ADS ordering rules ask).
var Types = []string{ClusterType, EndpointType, ListenerType, RouteType, SecretType}

// Node kinds.
const (
	KindSidecar = "sidecar"
	KindGateway = "gateway"
	// KindProxyless is a gRPC client using grpc-go's xDS resolver: it gets an
	// API listener named after every host:port it may dial, no socket listeners.
	KindProxyless = "proxyless"
)

// Optional features a proxy may support. A Node whose Capabilities is nil supports all of them
// (it is taken to be Envoy); otherwise only those present in the set. Config needing a missing
// feature is left out and reported in Resources.Skipped.
const (
	// FeatureDNSCluster: STRICT_DNS and LOGICAL_DNS clusters (ServiceEntry resolution DNS,
	// DNS_ROUND_ROBIN and NONE).
	FeatureDNSCluster = "cluster.dns"
	// FeatureMaxRequestsPerConnection: HttpProtocolOptions.common_http_protocol_options.
	// max_requests_per_connection on clusters (DestinationRule connectionPool.http.
	// maxRequestsPerConnection).
	FeatureMaxRequestsPerConnection = "cluster.max_requests_per_connection"
	// FeatureCORS: the envoy.filters.http.cors filter and its per-route config (corsPolicy).
	FeatureCORS = "http.cors"
	// FeatureRetryPreviousHosts: retry_host_predicate envoy.retry_host_predicates.previous_hosts and
	// host_selection_retry_max_attempts on route retry policies (Istio's default).
	FeatureRetryPreviousHosts = "route.retry_previous_hosts"
	// FeatureTransportSocketMatches: Cluster.transport_socket_matches chosen by the endpoints'
	// envoy.transport_socket_match metadata (auto mutual TLS to a service some of whose
	// workloads serve plain text only).
	FeatureTransportSocketMatches = "cluster.transport_socket_matches"
	// FeatureLocalityWeightedLB: Cluster.common_lb_config.locality_weighted_lb_config, choosing a
	// locality by its load_balancing_weight before an endpoint in it (DestinationRule
	// localityLbSetting.distribute).
	FeatureLocalityWeightedLB = "cluster.locality_weighted_lb"
)

// Input is an immutable snapshot of one scope. Generate never modifies it.
type Input struct {
	// Mesh is the mesh root domain, e.g. "demo.mesh". Required.
	Mesh string
	// Scope is the domain the scope governs, e.g. "bookinfo.demo.mesh". Required.
	Scope string
	// Objects are all objects of the scope (any order; Generate sorts what it uses).
	// Objects of kinds the translation does not use (Alias, Anchor, ...) are ignored.
	Objects []resource.Object
	// Revision is the scope's applied Raft index the snapshot was taken at. It is not part
	// of any resource (so unchanged resources keep their version across revisions).
	Revision uint64
	// TrustBundle is the PEM bundle of CA certificates proxies of the scope trust. Empty: no
	// "ROOTCA" secret is generated.
	TrustBundle []byte
}

// Node is the identity of the proxy asking for configuration.
type Node struct {
	// ID identifies the proxy, e.g. "reviews-v2-1". Required.
	ID string
	// Service is the name of the service the proxy fronts, e.g. "reviews". Empty: a
	// client-only proxy (no inbound listener).
	Service string
	// Namespace is the proxy's ABSOLUTE namespace, e.g. "bookinfo.demo.mesh". Required.
	Namespace string
	// Labels of the proxy's workload, e.g. {"app": "reviews", "version": "v2"}. They select
	// Sidecars, PeerAuthentications, Gateways and sourceLabels matches.
	Labels map[string]string
	// Kind is KindSidecar (the default when empty) or KindGateway.
	Kind string
	// OutboundPort is the port of the proxy's outbound HTTP listener on 127.0.0.1, which
	// routes by Host/:authority. Zero: no outbound listener.
	OutboundPort uint32
	// CapturePort is the port of the transparent-capture listener on 127.0.0.1, where
	// iptables redirects the workload's outbound connections (docs/transparent-capture.md).
	// Every service the proxy may reach that has a VIP gets an unbound listener per port at
	// VIP:port, served like an upstream binding; a redirected connection is handed to the one
	// at its original destination, and closed when there is none. Zero: no capture.
	CapturePort uint32
	// InboundPort is where other proxies reach this one with mTLS. Zero: no inbound listener.
	InboundPort uint32
	// InboundAddress is the IP the inbound listener binds. Empty means "0.0.0.0".
	InboundAddress string
	// AppAddress is host:port of the local application the inbound listener forwards to.
	// Required when InboundPort is set.
	AppAddress string
	// AdminAddress is where the proxy serves /stats/prometheus (host:port), for the
	// dashboard; empty: none. Informational: nothing is generated from it.
	AdminAddress string
	// PathNormalization is how the proxy normalizes request paths before matching and
	// forwarding, one of Istio's meshConfig.pathNormalization options (PathNormalization*).
	// Empty means PathNormalizationDecodeAndMergeSlashes, the strictest, where Istio's default
	// is BASE: Canton has no MeshConfig, so the proxy's own configuration chooses.
	PathNormalization string
	// Capabilities is the set of optional features (Feature*) the proxy supports; nil means
	// all of them.
	Capabilities map[string]bool
	// Upstreams are local ports bound to one service each (canton proxy --upstream): every
	// one gets a listener "upstream.<address>" (docs/xds-translation.md, "Upstream
	// listeners"). Addresses are loopback, distinct, with a non-zero port.
	Upstreams []Upstream
	// CertificateChain and PrivateKey (PEM) are the proxy's current SVID when the anchor
	// holds it for SDS. Empty: no "default" secret is generated (the proxy gets its key pair
	// elsewhere).
	CertificateChain []byte
	PrivateKey       []byte
}

// Upstream binds a local address to one port of one service: `canton proxy --upstream
// NAME[:PORT]=HOST:PORT`, for TCP clients and for HTTP clients that cannot use a proxy.
type Upstream struct {
	// Service names the service as the user wrote it, lower case without a trailing dot: a
	// short name (a service of the proxy's namespace), "<svc>.<namespace relative to the
	// mesh>", "<svc>.<ns>.svc.cluster.local" or a fully qualified name. Required.
	Service string `json:"service"`
	// Port is the service port; 0 means the service's only port.
	Port uint32 `json:"port,omitempty"`
	// Address is the loopback IP:port the listener binds, e.g. "127.0.0.1:15432" or
	// "[::1]:15432" (netip.AddrPort form). Port 0 is accepted by ParseUpstreams only: whoever
	// binds the socket reports the port it got.
	Address string `json:"address"`
}

// String is the entry's --upstream (and node metadata) form, NAME[:PORT]=HOST:PORT.
func (u Upstream) String() string {
	name := u.Service
	if u.Port != 0 {
		name += ":" + itoa(int(u.Port))
	}
	return name + "=" + u.Address
}

func (n Node) supports(feature string) bool { return n.Capabilities == nil || n.Capabilities[feature] }

func (n Node) kind() string {
	if n.Kind == "" {
		return KindSidecar
	}
	return n.Kind
}

// Skip records config that was not translated: which object, which field, and why.
type Skip struct {
	// Object is "Kind namespace/name", or "node" for limits of the proxy.
	Object string `json:"object"`
	// Field is the field path inside the object's spec, e.g. "http[0].corsPolicy".
	Field string `json:"field,omitempty"`
	// Reason says what was not done and why.
	Reason string `json:"reason"`
}

func (s Skip) String() string {
	if s.Field == "" {
		return s.Object + ": " + s.Reason
	}
	return s.Object + ": " + s.Field + ": " + s.Reason
}

// Resources is the configuration of one proxy. Maps are keyed by resource name.
type Resources struct {
	Listeners map[string]proto.Message // *listenerv3.Listener
	Routes    map[string]proto.Message // *routev3.RouteConfiguration
	Clusters  map[string]proto.Message // *clusterv3.Cluster
	Endpoints map[string]proto.Message // *endpointv3.ClusterLoadAssignment
	Secrets   map[string]proto.Message // *tlsv3.Secret
	// Versions maps type URL, then resource name, to the resource's version: a hash of its
	// deterministic protobuf encoding. Equal versions mean equal resources.
	Versions map[string]map[string]string
	// Skipped lists config left out, sorted.
	Skipped []Skip

	// packed caches each resource's Any encoding, shared by every stream
	// (and every copy of this value) that sends it.
	packed *sync.Map // typeURL + "\x00" + name -> *anypb.Any
	// base holds resources shared with other proxies' Resources (Snapshot's outbound part):
	// a resource that is base's under the same name (the same message) takes its version and
	// Any encoding from base, computed once for all of them.
	base *Resources
	// fromBase has bit i set when the resources of Types[i] are base's, map and versions:
	// their sorted names and type version are base's too. Otherwise added[i] lists, sorted,
	// the names of the resources of Types[i] that are not base's.
	fromBase uint8
	added    [5][]string
	// summaries caches, per type (index in Types), the sorted names and the version of all
	// resources.
	summaries *[5]typeSummary
	// memo, for Resources layered on base, is shared by every Resources layered from the same
	// own resources (see layer): the type versions they had on a base of the same type versions.
	memo *layeredMemo
}

// layeredMemo remembers, per type (index in Types), what layer and Version last made of own
// resources on a base: the layered map, versions and added names on base's map of that type
// (the same map: a later snapshot's outbound part keeps it while its resources do not change,
// see intern), and the type version on a base whose type version was base: on any base of
// that version (the same resources) it is the same.
type layeredMemo struct {
	mu      sync.Mutex
	base    [5]string
	version [5]string
	on      [5]map[string]proto.Message // base's map the layered map was made on; kept, so that its identity is not reused
	m       [5]map[string]proto.Message
	vs      [5]map[string]string
	added   [5][]string
}

// layered returns the layered map, versions and added names made on base's map b of type i (nil
// if the last were made on another map).
func (m *layeredMemo) layered(i int, b map[string]proto.Message) (map[string]proto.Message, map[string]string, []string) {
	if m == nil || b == nil {
		return nil, nil, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.on[i] == nil || reflect.ValueOf(m.on[i]).UnsafePointer() != reflect.ValueOf(b).UnsafePointer() {
		return nil, nil, nil
	}
	return m.m[i], m.vs[i], m.added[i]
}

func (m *layeredMemo) putLayered(i int, b, layered map[string]proto.Message, vs map[string]string, added []string) {
	if m == nil || b == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.on[i], m.m[i], m.vs[i], m.added[i] = b, layered, vs, added
}

func (m *layeredMemo) get(i int, base string) (string, bool) {
	if m == nil {
		return "", false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.version[i], m.base[i] == base && base != ""
}

func (m *layeredMemo) put(i int, base, version string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.base[i], m.version[i] = base, version
}

// typeSummary is what a stream needs of the resources of one type besides them: their names,
// sorted (kept for shared Resources only, see sortedNames), and the version of all of them
// (Resources.Version), each computed once.
type typeSummary struct {
	namesOnce, versionOnce sync.Once
	names                  []string
	version                string
	// lines are the "name=version\n" lines of names, which the version hashes, and offsets
	// where each starts: kept where other Resources layer theirs on these (Resources.base),
	// so that they hash their own lines only.
	lines   []byte
	offsets []int
}

func newResources() *Resources {
	return &Resources{
		Listeners: map[string]proto.Message{}, Routes: map[string]proto.Message{},
		Clusters: map[string]proto.Message{}, Endpoints: map[string]proto.Message{},
		Secrets: map[string]proto.Message{}, Versions: map[string]map[string]string{},
		packed: &sync.Map{}, summaries: &[5]typeSummary{},
	}
}

// Packed returns the Any encoding of one resource, marshalled once and then
// shared. The result must not be modified.
func (r *Resources) Packed(typeURL, name string) (*anypb.Any, error) {
	m := r.ByType(typeURL)[name]
	if m == nil {
		return nil, fmt.Errorf("no %s %q", typeURL, name)
	}
	if r.base != nil && r.base.ByType(typeURL)[name] == m {
		return r.base.Packed(typeURL, name)
	}
	if r.packed == nil {
		return anypb.New(m)
	}
	key := typeURL + "\x00" + name
	if v, ok := r.packed.Load(key); ok {
		return v.(*anypb.Any), nil
	}
	a, err := anypb.New(m)
	if err != nil {
		return nil, err
	}
	r.packed.Store(key, a)
	return a, nil
}

// setType sets the resources of one type URL.
func (r *Resources) setType(typeURL string, m map[string]proto.Message) {
	switch typeURL {
	case ListenerType:
		r.Listeners = m
	case RouteType:
		r.Routes = m
	case ClusterType:
		r.Clusters = m
	case EndpointType:
		r.Endpoints = m
	case SecretType:
		r.Secrets = m
	}
}

// ByType returns the resources of one type URL (nil for an unknown type).
func (r *Resources) ByType(typeURL string) map[string]proto.Message {
	switch typeURL {
	case ListenerType:
		return r.Listeners
	case RouteType:
		return r.Routes
	case ClusterType:
		return r.Clusters
	case EndpointType:
		return r.Endpoints
	case SecretType:
		return r.Secrets
	}
	return nil
}

// Version returns a hash over every resource version of one type: the version a
// state-of-the-world response of all resources of that type carries.
func (r *Resources) Version(typeURL string) string {
	i := slices.Index(Types, typeURL)
	switch {
	case i < 0 || r.summaries == nil:
		return hashVersions(r.Versions[typeURL], nil)
	case r.fromBase&(1<<i) != 0:
		return r.base.Version(typeURL)
	}
	ts := &r.summaries[i]
	ts.versionOnce.Do(func() {
		if r.base == nil {
			ts.lines, ts.offsets = versionLines(r.Versions[typeURL], r.sortedNames(typeURL))
			sum := sha256.Sum256(ts.lines)
			ts.version = hex.EncodeToString(sum[:12])
			return
		}
		bv := r.base.Version(typeURL)
		if v, ok := r.memo.get(i, bv); ok {
			ts.version = v
			return
		}
		ts.version = r.base.layeredVersion(typeURL, r.added[i], r.Versions[typeURL])
		r.memo.put(i, bv, ts.version)
	})
	return ts.version
}

// adoptSummary gives r, which is being built and has no base, the sorted names and version of
// the resources of Types[i] that from (no base either) has, whose resources of that type r has
// taken (intern): the names are the same slice, so that a stream can tell by identity that they
// are still the ones it compared its subscription with.
func (r *Resources) adoptSummary(i int, from *Resources) {
	if r.base != nil || from.base != nil || r.summaries == nil || from.summaries == nil {
		return
	}
	t := Types[i]
	names := from.sortedNames(t)
	from.Version(t)
	fs, ts := &from.summaries[i], &r.summaries[i]
	ts.namesOnce.Do(func() { ts.names = names })
	ts.versionOnce.Do(func() { ts.version, ts.lines, ts.offsets = fs.version, fs.lines, fs.offsets })
}

// sortedNames returns the names of the resources of one type, sorted. The result may be shared:
// it must not be modified. Shared Resources (no base) compute them once; the others, which
// need them only to send the type, merge their own into base's each time (not kept).
func (r *Resources) sortedNames(typeURL string) []string {
	i := slices.Index(Types, typeURL)
	switch {
	case i < 0 || r.summaries == nil:
		return sortedKeys(r.Versions[typeURL])
	case r.fromBase&(1<<i) != 0:
		return r.base.sortedNames(typeURL)
	case r.base != nil:
		return mergeSorted(r.base.sortedNames(typeURL), r.added[i])
	}
	ts := &r.summaries[i]
	ts.namesOnce.Do(func() { ts.names = sortedKeys(r.Versions[typeURL]) })
	return ts.names
}

// layeredVersion is the Version of one type of Resources layered on r: r's resources of that
// type with added (sorted names, replacing r's of the same name) whose versions are in vs. It
// hashes the same lines as Version would, taking r's from r's summary.
func (r *Resources) layeredVersion(typeURL string, added []string, vs map[string]string) string {
	if r.base != nil || r.summaries == nil { // r keeps no lines
		return hashVersions(vs, mergeSorted(r.sortedNames(typeURL), added))
	}
	r.Version(typeURL) // r's lines
	ts := &r.summaries[slices.Index(Types, typeURL)]
	names := r.sortedNames(typeURL)
	h := sha256.New()
	pos := 0 // r's lines up to names[pos] are hashed
	for _, name := range added {
		at, found := slices.BinarySearch(names, name)
		h.Write(ts.lines[ts.offsets[pos]:ts.offsets[at]])
		h.Write([]byte(name + "=" + vs[name] + "\n"))
		pos = at
		if found {
			pos++ // replaced
		}
	}
	h.Write(ts.lines[ts.offsets[pos]:])
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// versionLines returns the lines hashVersions hashes for names, and where each starts; offsets
// has one more entry, the end.
func versionLines(v map[string]string, names []string) ([]byte, []int) {
	n := 0
	for _, name := range names {
		n += len(name) + len(v[name]) + 2
	}
	b, offsets := make([]byte, 0, n), make([]int, 0, len(names)+1)
	for _, name := range names {
		offsets = append(offsets, len(b))
		b = append(append(append(append(b, name...), '='), v[name]...), '\n')
	}
	return b, append(offsets, len(b))
}

// mergeSorted returns the union of two sorted lists of distinct names, sorted.
func mergeSorted(a, b []string) []string {
	out := make([]string, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		switch {
		case a[0] < b[0]:
			out, a = append(out, a[0]), a[1:]
		case b[0] < a[0]:
			out, b = append(out, b[0]), b[1:]
		default:
			out, a, b = append(out, a[0]), a[1:], b[1:]
		}
	}
	return append(append(out, a...), b...)
}

// hashVersions hashes name=version pairs in name order, restricted to names when not nil.
func hashVersions(v map[string]string, names []string) string {
	if names == nil {
		names = sortedKeys(v)
	} else if !sort.StringsAreSorted(names) {
		names = slices.Clone(names)
		sort.Strings(names)
	}
	lines, _ := versionLines(v, names)
	sum := sha256.Sum256(lines)
	return hex.EncodeToString(sum[:12])
}

// resourceVersion is the version of one resource: a hash of its deterministic encoding.
func resourceVersion(m proto.Message) (string, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12]), nil
}

// computeVersions fills r.Versions from the resources.
func (r *Resources) computeVersions() error {
	for _, t := range Types {
		m := r.ByType(t)
		vs := make(map[string]string, len(m))
		for name, msg := range m {
			v, err := resourceVersion(msg)
			if err != nil {
				return fmt.Errorf("encode %s %q: %w", t, name, err)
			}
			vs[name] = v
		}
		r.Versions[t] = vs
	}
	return nil
}

// sortedKeys returns the keys of m in increasing order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
