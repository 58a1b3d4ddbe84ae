package proxy

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"canton.dev/canton/internal/filter"
	"canton.dev/canton/internal/proxy/cluster"
	"canton.dev/canton/internal/proxy/httpsafe"
	"canton.dev/canton/internal/proxy/route"
	"canton.dev/canton/internal/proxy/subset"
	"canton.dev/canton/internal/proxy/xdsclient"
)

// snapshot is one immutable, complete configuration. Request paths read it through Proxy.snap.
type snapshot struct {
	state     xdsclient.State
	listeners map[string]*listenerSpec
	routes    map[string]*route.Table
	clusters  map[string]*cluster.Cluster
	secrets   map[string]*secret
	// compiled memoizes compiled resources by their (immutable) Resource, so an update of one type
	// recompiles only that type.
	compiled map[*xdsclient.Resource]any
}

func emptySnapshot() *snapshot {
	return &snapshot{state: xdsclient.State{Resources: map[string]xdsclient.Resources{}, Versions: map[string]string{}},
		listeners: map[string]*listenerSpec{}, routes: map[string]*route.Table{}, clusters: map[string]*cluster.Cluster{},
		secrets: map[string]*secret{}, compiled: map[*xdsclient.Resource]any{}}
}

// listenerSpec is a compiled Listener.
type listenerSpec struct {
	name           string
	addr           string // host:port to bind
	chains         []*chainSpec
	def            *chainSpec
	inspectTLS     bool
	inspectTimeout time.Duration
	inbound        bool
	restoreDst     bool // original_dst listener filter: the local address is the original destination
	handOff        bool // use_original_dst: hand connections to the listener at their original destination
	virtual        bool // bind_to_port false: only receives connections handed off
}

// chainSpec is a compiled FilterChain. key identifies its content: connections are handed to the
// server of the chain with the same key, so an unchanged chain keeps its connections across updates.
type chainSpec struct {
	key         string
	name        string
	serverNames []string // lower case; "*.x" wildcards allowed
	transport   string   // "", "tls" or "raw_buffer"
	alpn        []string
	destPort    uint32
	tls         *tlsContext
	hcm         *hcmSpec
	tcp         *tcpSpec
	// network are the network filters before the tcp_proxy (envoy.filters.network.rbac), run
	// once per connection before anything is sent upstream; nil: none.
	network *filter.NetworkFilters
}

// hcmSpec is a compiled HttpConnectionManager.
type hcmSpec struct {
	statPrefix     string
	rdsName        string
	inline         *route.Table
	chain          filter.Handler
	path           httpsafe.PathOptions
	stripPort      bool
	stripHostDot   bool // strip_trailing_host_dot
	fcc            hcmv3.HttpConnectionManager_ForwardClientCertDetails
	fccSet         clientCertDetails // set_current_client_cert_details
	upgrades       map[string]bool
	codec          hcmv3.HttpConnectionManager_CodecType
	idleTimeout    time.Duration
	headersTimeout time.Duration
	drainTimeout   time.Duration
	streamIdle     time.Duration // stream_idle_timeout, zero: none
	requestTimeout time.Duration // request_timeout, zero: none
	streamWindow   int32
	connWindow     int32
	maxHeaderBytes int
	maxHeaders     int
	maxStreams     uint32
	serverName     string
	serverHdr      []string // {serverName}, shared by every response: header values are replaced, never edited in place
	requestID      bool
	remoteAddress  bool
}

// tcpSpec is a compiled TcpProxy.
type tcpSpec struct {
	statPrefix string
	cluster    string
	weighted   []route.WeightedCluster
	total      uint64
	idle       time.Duration
}

func resourceKind(typeURL string) string {
	switch typeURL {
	case xdsclient.ListenerType:
		return "listener"
	case xdsclient.RouteType:
		return "route configuration"
	case xdsclient.ClusterType:
		return "cluster"
	case xdsclient.EndpointType:
		return "cluster load assignment"
	case xdsclient.SecretType:
		return "secret"
	}
	return typeURL
}

// build compiles next into a snapshot, reusing what old compiled from the same messages. Errors name
// the resource and the field. It does not touch running state, except creating new clusters, which
// the caller closes on error (returned in created).
func (p *Proxy) build(old *snapshot, typeURL string, next xdsclient.State) (s *snapshot, created []*cluster.Cluster, err error) {
	kind := resourceKind(typeURL)
	names := sortedNames(next.Resources[typeURL])
	for _, n := range names {
		r := next.Resources[typeURL][n]
		if _, done := old.compiled[r]; done || old.state.Resources[typeURL][n].SameBytes(r) {
			continue // checked when it was accepted
		}
		m, err := r.Message()
		if err == nil {
			err = subset.Check(m)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s %q: %w", kind, n, err)
		}
	}
	s = &snapshot{state: next, listeners: map[string]*listenerSpec{}, routes: map[string]*route.Table{},
		clusters: map[string]*cluster.Cluster{}, secrets: map[string]*secret{}, compiled: map[*xdsclient.Resource]any{}}
	defer func() {
		if err != nil {
			for _, c := range created {
				c.Close(0)
			}
			created = nil
		}
	}()
	// memo returns what old compiled from r, or compiles r's message with f.
	memo := func(r *xdsclient.Resource, f func(proto.Message) (any, error)) (any, error) {
		if v, ok := old.compiled[r]; ok {
			s.compiled[r] = v
			return v, nil
		}
		m, err := r.Message()
		if err != nil {
			return nil, err
		}
		v, err := f(m)
		if err == nil {
			s.compiled[r] = v
		}
		return v, err
	}
	for name, r := range next.Resources[xdsclient.SecretType] {
		v, err := memo(r, func(m proto.Message) (any, error) { return compileSecret(m.(*tlsv3.Secret)) })
		if err != nil {
			return nil, created, fmt.Errorf("secret %q: %w", name, err)
		}
		s.secrets[name] = v.(*secret)
	}
	validate := map[string]bool{} // route configurations with validate_clusters
	for name, r := range next.Resources[xdsclient.RouteType] {
		v, err := memo(r, func(m proto.Message) (any, error) {
			rc := m.(*routev3.RouteConfiguration)
			t, err := compileRoutes(rc)
			return compiledRoutes{t, rc.GetValidateClusters().GetValue()}, err
		})
		if err != nil {
			return nil, created, fmt.Errorf("route configuration %q: %w", name, err)
		}
		s.routes[name] = v.(compiledRoutes).table
		validate[name] = v.(compiledRoutes).validateClusters
	}
	for _, name := range sortedNames(next.Resources[xdsclient.ClusterType]) {
		r := next.Resources[xdsclient.ClusterType][name]
		if cl := old.clusters[name]; cl != nil && sameResource(old.state.Resources[xdsclient.ClusterType][name], r) {
			s.clusters[name] = cl
			continue
		}
		m, err := r.Message()
		if err != nil {
			return nil, created, fmt.Errorf("cluster %q: %w", name, err)
		}
		c := m.(*clusterv3.Cluster)
		o, err := p.clusterOptions(c)
		if err != nil {
			return nil, created, fmt.Errorf("cluster %q: %w", name, err)
		}
		cl, err := cluster.New(c, o)
		if err != nil {
			return nil, created, fmt.Errorf("cluster %q: %w", name, err)
		}
		created = append(created, cl)
		s.clusters[name] = cl
	}
	// validate_clusters: a route configuration that asks for it may only name existing clusters.
	for name := range next.Resources[xdsclient.RouteType] {
		if typeURL != xdsclient.RouteType || !validate[name] {
			continue
		}
		for _, c := range s.routes[name].Clusters() {
			if s.clusters[c] == nil {
				return nil, created, fmt.Errorf("route configuration %q: validate_clusters: cluster %q does not exist", name, c)
			}
		}
	}
	// Endpoints: check every assignment first, then apply, so a bad one changes nothing.
	for name, r := range next.Resources[xdsclient.EndpointType] {
		if _, ok := old.compiled[r]; ok {
			continue
		}
		m, err := r.Message()
		if err == nil {
			err = cluster.CheckEndpoints(m.(*endpointv3.ClusterLoadAssignment))
		}
		if err != nil {
			return nil, created, fmt.Errorf("cluster load assignment %q: %w", name, err)
		}
	}
	for _, r := range next.Resources[xdsclient.EndpointType] {
		s.compiled[r] = true
	}
	for name, r := range next.Resources[xdsclient.ListenerType] {
		v, err := memo(r, func(m proto.Message) (any, error) { return p.compileListener(m.(*listenerv3.Listener)) })
		if err != nil {
			return nil, created, fmt.Errorf("listener %q: %w", name, err)
		}
		s.listeners[name] = v.(*listenerSpec)
	}
	if err := checkAddresses(s.listeners); err != nil {
		return nil, created, err
	}
	return s, created, nil
}

// compiledRoutes is a compiled RouteConfiguration with its validate_clusters.
type compiledRoutes struct {
	table            *route.Table
	validateClusters bool
}

// clusterOptions compiles the transport sockets of c: its own and those of its
// transport_socket_matches (an UpstreamTlsContext, or raw_buffer for plain text).
func (p *Proxy) clusterOptions(c *clusterv3.Cluster) (cluster.Options, error) {
	o := cluster.Options{DrainTime: p.opts.DrainTime}
	var err error
	if o.TLS, o.Mesh, err = p.upstreamTransport(c.GetTransportSocket(), "transport_socket"); err != nil {
		return o, err
	}
	for i, m := range c.GetTransportSocketMatches() {
		field := fmt.Sprintf("transport_socket_matches[%d]", i)
		tm := cluster.TransportMatch{Name: m.GetName(), Match: map[string]string{}}
		for k, v := range m.GetMatch().GetFields() {
			sv, ok := v.GetKind().(*structpb.Value_StringValue)
			if !ok {
				return o, fmt.Errorf("%s.match[%q]: only string values are supported", field, k)
			}
			tm.Match[k] = sv.StringValue
		}
		if m.GetTransportSocket() == nil {
			return o, fmt.Errorf("%s.transport_socket: required", field)
		}
		if tm.TLS, tm.Mesh, err = p.upstreamTransport(m.GetTransportSocket(), field+".transport_socket"); err != nil {
			return o, err
		}
		o.Matches = append(o.Matches, tm)
	}
	return o, nil
}

// upstreamTransport compiles an upstream transport socket (nil or raw_buffer: plain text), named
// field in errors.
func (p *Proxy) upstreamTransport(ts *corev3.TransportSocket, field string) (*tls.Config, bool, error) {
	if ts == nil || ts.GetTypedConfig().GetTypeUrl() == rawBufferType || (ts.GetTypedConfig() == nil && ts.GetName() == "envoy.transport_sockets.raw_buffer") {
		return nil, false, nil
	}
	tc, err := upstreamTLSContext(ts)
	if err != nil {
		return nil, false, fmt.Errorf("%s%s", strings.TrimSuffix(field, "transport_socket"), err)
	}
	return p.clientTLS(tc), tc.mesh(), nil
}

const rawBufferType = "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"

// applyEndpoints hands each EDS cluster its assignment (none: no endpoints) when it changed.
func (s *snapshot) applyEndpoints(old *snapshot) {
	for _, cl := range s.clusters {
		if cl.EDSName == "" {
			continue
		}
		r := s.state.Resources[xdsclient.EndpointType][cl.EDSName]
		if old.clusters[cl.Name] == cl && old.state.Resources[xdsclient.EndpointType][cl.EDSName] == r {
			continue
		}
		var cla *endpointv3.ClusterLoadAssignment
		if r != nil {
			m, _ := r.Message() // decoded (and checked) by build
			cla, _ = m.(*endpointv3.ClusterLoadAssignment)
		}
		_ = cl.SetEndpoints(cla) // checked by build
	}
}

// sameResource reports whether old and r hold equal messages (without decoding them when they
// were sent as the same bytes). The proxy keeps a cluster whose resource did not change, with its
// connections and its hosts' state.
func sameResource(old, r *xdsclient.Resource) bool {
	if old == nil || r == nil {
		return old == r
	}
	if old.SameBytes(r) {
		return true
	}
	a, err := old.Message()
	if err != nil {
		return false
	}
	b, err := r.Message()
	return err == nil && proto.Equal(a, b)
}

func sortedNames(r xdsclient.Resources) []string {
	out := make([]string, 0, len(r))
	for n := range r {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func checkAddresses(ls map[string]*listenerSpec) error {
	seen := map[string]string{}
	for _, n := range slices.Sorted(mapKeys(ls)) {
		a := ls[n].addr
		if strings.HasSuffix(a, ":0") {
			continue
		}
		if other, dup := seen[a]; dup {
			return fmt.Errorf("listener %q: address %s is also used by listener %q", n, a, other)
		}
		seen[a] = n
	}
	return nil
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func compileRoutes(rc *routev3.RouteConfiguration) (*route.Table, error) {
	if err := filter.CheckRouteConfig(rc.GetTypedPerFilterConfig()); err != nil {
		return nil, fmt.Errorf("typed_per_filter_config: %w", err)
	}
	for i, vh := range rc.GetVirtualHosts() {
		if err := filter.CheckRouteConfig(vh.GetTypedPerFilterConfig()); err != nil {
			return nil, fmt.Errorf("virtual_hosts[%d].typed_per_filter_config: %w", i, err)
		}
		for j, r := range vh.GetRoutes() {
			if err := filter.CheckRouteConfig(r.GetTypedPerFilterConfig()); err != nil {
				return nil, fmt.Errorf("virtual_hosts[%d].routes[%d].typed_per_filter_config: %w", i, j, err)
			}
		}
	}
	return route.Compile(rc, route.Options{})
}

func (p *Proxy) compileListener(l *listenerv3.Listener) (*listenerSpec, error) {
	sa := l.GetAddress().GetSocketAddress()
	if sa == nil {
		return nil, fmt.Errorf("address: a socket_address is required")
	}
	if sa.GetProtocol() != corev3.SocketAddress_TCP {
		return nil, fmt.Errorf("address.socket_address.protocol: only TCP is supported")
	}
	if net.ParseIP(sa.GetAddress()) == nil {
		return nil, fmt.Errorf("address.socket_address.address: %q is not an IP address", sa.GetAddress())
	}
	if sa.GetPortValue() > 65535 {
		return nil, fmt.Errorf("address.socket_address.port_value: %d out of range", sa.GetPortValue())
	}
	ls := &listenerSpec{name: l.GetName(), addr: net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))),
		inspectTimeout: 15 * time.Second, inbound: l.GetTrafficDirection() == corev3.TrafficDirection_INBOUND}
	if d := l.GetListenerFiltersTimeout(); d != nil {
		ls.inspectTimeout = d.AsDuration()
	}
	for i, lf := range l.GetListenerFilters() {
		switch lf.GetTypedConfig().GetTypeUrl() {
		case "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector":
			ls.inspectTLS = true
		case origDstFilterType: // compileCapture
		default:
			return nil, fmt.Errorf("listener_filters[%d]: only envoy.filters.listener.tls_inspector and original_dst are supported", i)
		}
	}
	if err := compileCapture(l, ls); err != nil {
		return nil, err
	}
	for i, fc := range l.GetFilterChains() {
		c, err := p.compileChain(fc, fmt.Sprintf("filter_chains[%d]", i))
		if err != nil {
			return nil, err
		}
		ls.chains = append(ls.chains, c)
	}
	if fc := l.GetDefaultFilterChain(); fc != nil {
		c, err := p.compileChain(fc, "default_filter_chain")
		if err != nil {
			return nil, err
		}
		ls.def = c
	}
	if len(ls.chains) == 0 && ls.def == nil {
		return nil, fmt.Errorf("filter_chains: none")
	}
	for _, c := range ls.chains {
		if len(c.serverNames) > 0 || c.transport != "" || len(c.alpn) > 0 {
			if !ls.inspectTLS && (len(c.serverNames) > 0 || c.transport == "tls") {
				return nil, fmt.Errorf("filter_chains: matching on server_names or transport_protocol needs the tls_inspector listener filter")
			}
		}
	}
	// Two chains with the same match would make the choice ambiguous.
	seen := map[string]bool{}
	for i, c := range ls.chains {
		k := fmt.Sprint(c.serverNames, c.transport, c.alpn, c.destPort)
		if seen[k] {
			return nil, fmt.Errorf("filter_chains[%d].filter_chain_match: same match as an earlier chain", i)
		}
		seen[k] = true
	}
	return ls, nil
}

func (p *Proxy) compileChain(fc *listenerv3.FilterChain, field string) (*chainSpec, error) {
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(fc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	sum := sha256.Sum256(raw)
	c := &chainSpec{key: hex.EncodeToString(sum[:12]), name: fc.GetName()}
	if m := fc.GetFilterChainMatch(); m != nil {
		for _, n := range m.GetServerNames() {
			c.serverNames = append(c.serverNames, strings.ToLower(n))
		}
		c.transport = m.GetTransportProtocol()
		if c.transport != "" && c.transport != "tls" && c.transport != "raw_buffer" {
			return nil, fmt.Errorf("%s.filter_chain_match.transport_protocol: %q (tls or raw_buffer)", field, c.transport)
		}
		c.alpn = m.GetApplicationProtocols()
		c.destPort = m.GetDestinationPort().GetValue()
	}
	if ts := fc.GetTransportSocket(); ts != nil {
		dt := &tlsv3.DownstreamTlsContext{}
		if err := ts.GetTypedConfig().UnmarshalTo(dt); err != nil {
			return nil, fmt.Errorf("%s.transport_socket.typed_config: must be a DownstreamTlsContext", field)
		}
		tc, _, err := compileCommonTLS(dt.GetCommonTlsContext(), field+".transport_socket.typed_config.common_tls_context")
		if err != nil {
			return nil, err
		}
		if tc.certSecret == "" {
			return nil, fmt.Errorf("%s.transport_socket.typed_config.common_tls_context.tls_certificate_sds_secret_configs: a server certificate is required", field)
		}
		tc.requireClientCert = dt.GetRequireClientCertificate().GetValue()
		c.tls = tc
	}
	// The last network filter is the terminal one (http_connection_manager or tcp_proxy); a
	// tcp_proxy may come after network RBAC filters, built by internal/filter.
	filters := fc.GetFilters()
	if len(filters) == 0 {
		return nil, fmt.Errorf("%s.filters: a network filter (http_connection_manager or tcp_proxy) is required", field)
	}
	last := len(filters) - 1
	f := filters[last]
	ff := fmt.Sprintf("%s.filters[%d].typed_config", field, last)
	switch f.GetTypedConfig().GetTypeUrl() {
	case "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager":
		h := &hcmv3.HttpConnectionManager{}
		if err := f.GetTypedConfig().UnmarshalTo(h); err != nil {
			return nil, fmt.Errorf("%s: %w", ff, err)
		}
		if c.hcm, err = p.compileHCM(h, ff); err != nil {
			return nil, err
		}
	case "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy":
		t := &tcpproxyv3.TcpProxy{}
		if err := f.GetTypedConfig().UnmarshalTo(t); err != nil {
			return nil, fmt.Errorf("%s: %w", ff, err)
		}
		if c.tcp, err = compileTCP(t, ff); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%s: network filter %q is not supported (the last filter must be http_connection_manager or tcp_proxy)", ff, f.GetTypedConfig().GetTypeUrl())
	}
	if last > 0 {
		if c.tcp == nil {
			return nil, fmt.Errorf("%s.filters: only http_connection_manager is supported on an HTTP filter chain (network filters such as envoy.filters.network.rbac may only precede a tcp_proxy)", field)
		}
		if c.network, err = filter.BuildNetwork(filters[:last], field+".filters"); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func compileTCP(t *tcpproxyv3.TcpProxy, field string) (*tcpSpec, error) {
	s := &tcpSpec{statPrefix: t.GetStatPrefix(), idle: time.Hour}
	switch c := t.GetClusterSpecifier().(type) {
	case *tcpproxyv3.TcpProxy_Cluster:
		s.cluster = c.Cluster
	case *tcpproxyv3.TcpProxy_WeightedClusters:
		for i, w := range c.WeightedClusters.GetClusters() {
			if w.GetName() == "" {
				return nil, fmt.Errorf("%s.weighted_clusters.clusters[%d].name: empty", field, i)
			}
			s.weighted = append(s.weighted, route.WeightedCluster{Name: w.GetName(), Weight: w.GetWeight()})
			s.total += uint64(w.GetWeight())
		}
		if s.total == 0 {
			return nil, fmt.Errorf("%s.weighted_clusters: weights sum to zero", field)
		}
	default:
		return nil, fmt.Errorf("%s: cluster or weighted_clusters is required", field)
	}
	if d := t.GetIdleTimeout(); d != nil {
		s.idle = d.AsDuration()
	}
	return s, nil
}

func (p *Proxy) compileHCM(h *hcmv3.HttpConnectionManager, field string) (*hcmSpec, error) {
	s := &hcmSpec{statPrefix: h.GetStatPrefix(), codec: h.GetCodecType(), stripPort: h.GetStripAnyHostPort(),
		idleTimeout: time.Hour, headersTimeout: 10 * time.Second, maxHeaderBytes: 60 << 10, maxHeaders: 100,
		maxStreams: 100, serverName: h.GetServerName(), requestID: true, remoteAddress: h.GetUseRemoteAddress().GetValue(),
		upgrades: map[string]bool{}}
	if s.serverName == "" {
		s.serverName = "canton"
	}
	s.serverHdr = []string{s.serverName}
	switch rs := h.GetRouteSpecifier().(type) {
	case *hcmv3.HttpConnectionManager_Rds:
		if cs := rs.Rds.GetConfigSource(); cs != nil && cs.GetAds() == nil {
			return nil, fmt.Errorf("%s.rds.config_source: only ads is supported", field)
		}
		if rs.Rds.GetRouteConfigName() == "" {
			return nil, fmt.Errorf("%s.rds.route_config_name: empty", field)
		}
		s.rdsName = rs.Rds.GetRouteConfigName()
	case *hcmv3.HttpConnectionManager_RouteConfig:
		t, err := compileRoutes(rs.RouteConfig)
		if err != nil {
			return nil, fmt.Errorf("%s.route_config.%w", field, err)
		}
		s.inline = t
	default:
		return nil, fmt.Errorf("%s: rds or route_config is required", field)
	}
	// Normalization as Envoy reads these fields: normalize_path unset is false, merge_slashes false,
	// IMPLEMENTATION_SPECIFIC_DEFAULT keeps escaped slashes. Whatever they say, the one path the
	// proxy computes is the path filters match, routes select on and the upstream receives.
	s.path.Normalize = h.GetNormalizePath().GetValue()
	s.path.MergeSlashes = h.GetMergeSlashes()
	s.stripHostDot = h.GetStripTrailingHostDot()
	s.fcc = h.GetForwardClientCertDetails()
	if d := h.GetSetCurrentClientCertDetails(); d != nil {
		s.fccSet = clientCertDetails{subject: d.GetSubject().GetValue(), cert: d.GetCert(), chain: d.GetChain(), dns: d.GetDns(), uri: d.GetUri()}
	}
	switch h.GetPathWithEscapedSlashesAction() {
	case hcmv3.HttpConnectionManager_IMPLEMENTATION_SPECIFIC_DEFAULT, hcmv3.HttpConnectionManager_KEEP_UNCHANGED:
		s.path.EscapedSlashes = httpsafe.KeepEscapedSlashes
	case hcmv3.HttpConnectionManager_REJECT_REQUEST:
		s.path.EscapedSlashes = httpsafe.RejectEscapedSlashes
	case hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT:
		s.path.EscapedSlashes = httpsafe.UnescapeSlashesAndRedirect
	case hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD:
		s.path.EscapedSlashes = httpsafe.UnescapeSlashesAndForward
	}
	if po := h.GetCommonHttpProtocolOptions(); po != nil {
		if d := po.GetIdleTimeout(); d != nil {
			s.idleTimeout = d.AsDuration()
		}
		if n := po.GetMaxHeadersCount(); n != nil {
			s.maxHeaders = int(n.GetValue())
		}
		if po.GetMaxConnectionDuration() != nil {
			return nil, fmt.Errorf("%s.common_http_protocol_options.max_connection_duration: not supported", field)
		}
	}
	if n := h.GetMaxRequestHeadersKb(); n != nil {
		s.maxHeaderBytes = int(n.GetValue()) << 10
	}
	if d := h.GetRequestHeadersTimeout(); d != nil && d.AsDuration() > 0 {
		s.headersTimeout = d.AsDuration()
	}
	if d := h.GetDrainTimeout(); d != nil {
		s.drainTimeout = d.AsDuration()
	}
	s.streamIdle = 5 * time.Minute // Envoy's default
	if d := h.GetStreamIdleTimeout(); d != nil {
		s.streamIdle = d.AsDuration()
	}
	if d := h.GetRequestTimeout(); d != nil {
		s.requestTimeout = d.AsDuration()
	}
	if o := h.GetHttp2ProtocolOptions(); o != nil {
		if v := o.GetMaxConcurrentStreams(); v != nil {
			s.maxStreams = v.GetValue()
		}
		s.streamWindow = int32(min(o.GetInitialStreamWindowSize().GetValue(), 1<<31-1))
		s.connWindow = int32(min(o.GetInitialConnectionWindowSize().GetValue(), 1<<31-1))
	}
	if g := h.GetGenerateRequestId(); g != nil {
		s.requestID = g.GetValue()
	}
	for i, u := range h.GetUpgradeConfigs() {
		t := strings.ToLower(u.GetUpgradeType())
		if t == "" {
			return nil, fmt.Errorf("%s.upgrade_configs[%d].upgrade_type: empty", field, i)
		}
		if t == "connect" {
			return nil, fmt.Errorf("%s.upgrade_configs[%d].upgrade_type: CONNECT is not supported", field, i)
		}
		s.upgrades[t] = u.GetEnabled() == nil || u.GetEnabled().GetValue()
	}
	chain, err := filter.Build(h.GetHttpFilters(), filter.HandlerFunc(p.routeRequest))
	if err != nil {
		return nil, fmt.Errorf("%s.%w", field, err)
	}
	s.chain = chain
	return s, nil
}

// allowedMethods is the method token check net/http does not do (it accepts any token).
func validMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete,
		http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}
