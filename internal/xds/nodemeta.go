package xds

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// Node metadata: how a proxy describes itself in the xDS node (string values
// under these keys; the node's id is Node.ID). docs/xds.md documents them.
const (
	MetaService           = "CANTON_SERVICE"
	MetaNamespace         = "CANTON_NAMESPACE"
	MetaLabels            = "CANTON_LABELS" // k=v,k=v sorted by key
	MetaKind              = "CANTON_KIND"
	MetaOutboundPort      = "CANTON_OUTBOUND_PORT"
	MetaCapturePort       = "CANTON_CAPTURE_PORT"
	MetaInboundPort       = "CANTON_INBOUND_PORT"
	MetaInboundAddress    = "CANTON_INBOUND_ADDRESS"
	MetaAppAddress        = "CANTON_APP_ADDRESS"
	MetaCapabilities      = "CANTON_CAPABILITIES" // comma-separated Feature* names; absent = all
	MetaPathNormalization = "CANTON_PATH_NORMALIZATION"
	MetaAdminAddress      = "CANTON_ADMIN_ADDRESS"
	MetaUpstreams         = "CANTON_UPSTREAMS" // NAME[:PORT]=IP:PORT,... (Upstream.String)
	maxMetaValue          = 4096
	maxLabelsInMetadata   = 64
	maxUpstreams          = 64
)

// NodeMetadata renders the metadata a proxy sends for n.
func NodeMetadata(n Node) map[string]string {
	m := map[string]string{
		MetaService:   n.Service,
		MetaNamespace: n.Namespace,
		MetaKind:      n.Kind,
	}
	if len(n.Labels) > 0 {
		keys := make([]string, 0, len(n.Labels))
		for k := range n.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + "=" + n.Labels[k]
		}
		m[MetaLabels] = strings.Join(parts, ",")
	}
	if n.OutboundPort != 0 {
		m[MetaOutboundPort] = strconv.Itoa(int(n.OutboundPort))
	}
	if n.CapturePort != 0 {
		m[MetaCapturePort] = strconv.Itoa(int(n.CapturePort))
	}
	if n.InboundPort != 0 {
		m[MetaInboundPort] = strconv.Itoa(int(n.InboundPort))
	}
	if n.InboundAddress != "" {
		m[MetaInboundAddress] = n.InboundAddress
	}
	if n.AppAddress != "" {
		m[MetaAppAddress] = n.AppAddress
	}
	if n.PathNormalization != "" {
		m[MetaPathNormalization] = n.PathNormalization
	}
	if n.AdminAddress != "" {
		m[MetaAdminAddress] = n.AdminAddress
	}
	if len(n.Upstreams) > 0 {
		parts := make([]string, len(n.Upstreams))
		for i, u := range n.Upstreams {
			parts[i] = u.String()
		}
		m[MetaUpstreams] = strings.Join(parts, ",")
	}
	if n.Capabilities != nil {
		var caps []string
		for c, ok := range n.Capabilities {
			if ok {
				caps = append(caps, c)
			}
		}
		sort.Strings(caps)
		// Present even when empty: "" means no optional feature, absent means all of them.
		m[MetaCapabilities] = strings.Join(caps, ",")
	}
	for k, v := range m {
		if v == "" && k != MetaCapabilities {
			delete(m, k)
		}
	}
	return m
}

// NodeFromProto reads the Node a proxy described in its xDS node. It checks
// shape only; whether the stream's peer may speak for that node is the
// server's decision.
func NodeFromProto(pn *corev3.Node) (Node, error) {
	if pn == nil || pn.GetId() == "" {
		return Node{}, fmt.Errorf("xds node: id is required")
	}
	n := Node{ID: pn.GetId()}
	fields := pn.GetMetadata().GetFields()
	str := func(key string) (string, error) {
		v, ok := fields[key]
		if !ok {
			return "", nil
		}
		s, ok := v.GetKind().(*structpb.Value_StringValue)
		if !ok {
			return "", fmt.Errorf("xds node %s: metadata %s: want a string", n.ID, key)
		}
		if len(s.StringValue) > maxMetaValue {
			return "", fmt.Errorf("xds node %s: metadata %s: longer than %d bytes", n.ID, key, maxMetaValue)
		}
		return s.StringValue, nil
	}
	port := func(key string) (uint32, error) {
		s, err := str(key)
		if err != nil || s == "" {
			return 0, err
		}
		p, err := strconv.ParseUint(s, 10, 16)
		if err != nil || p == 0 {
			return 0, fmt.Errorf("xds node %s: metadata %s: %q is not a port", n.ID, key, s)
		}
		return uint32(p), nil
	}
	var err error
	if n.Service, err = str(MetaService); err != nil {
		return Node{}, err
	}
	if n.Namespace, err = str(MetaNamespace); err != nil {
		return Node{}, err
	}
	if n.Namespace == "" {
		return Node{}, fmt.Errorf("xds node %s: metadata %s is required", n.ID, MetaNamespace)
	}
	if n.Kind, err = str(MetaKind); err != nil {
		return Node{}, err
	}
	if n.OutboundPort, err = port(MetaOutboundPort); err != nil {
		return Node{}, err
	}
	if n.CapturePort, err = port(MetaCapturePort); err != nil {
		return Node{}, err
	}
	if n.InboundPort, err = port(MetaInboundPort); err != nil {
		return Node{}, err
	}
	if n.InboundAddress, err = str(MetaInboundAddress); err != nil {
		return Node{}, err
	}
	if n.InboundAddress != "" && net.ParseIP(n.InboundAddress) == nil {
		return Node{}, fmt.Errorf("xds node %s: metadata %s: %q is not an IP", n.ID, MetaInboundAddress, n.InboundAddress)
	}
	if n.AppAddress, err = str(MetaAppAddress); err != nil {
		return Node{}, err
	}
	if n.AdminAddress, err = str(MetaAdminAddress); err != nil {
		return Node{}, err
	}
	if n.PathNormalization, err = str(MetaPathNormalization); err != nil {
		return Node{}, err
	}
	if err := checkPathNormalization(n.PathNormalization); err != nil {
		return Node{}, fmt.Errorf("xds node %s: metadata %s: %w", n.ID, MetaPathNormalization, err)
	}
	ups, err := str(MetaUpstreams)
	if err != nil {
		return Node{}, err
	}
	if n.Upstreams, err = parseUpstreams(ups, false); err != nil {
		return Node{}, fmt.Errorf("xds node %s: metadata %s: %w", n.ID, MetaUpstreams, err)
	}
	labels, err := str(MetaLabels)
	if err != nil {
		return Node{}, err
	}
	if labels != "" {
		n.Labels = map[string]string{}
		for _, kv := range strings.Split(labels, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return Node{}, fmt.Errorf("xds node %s: metadata %s: %q is not key=value", n.ID, MetaLabels, kv)
			}
			n.Labels[k] = v
		}
		if len(n.Labels) > maxLabelsInMetadata {
			return Node{}, fmt.Errorf("xds node %s: metadata %s: more than %d labels", n.ID, MetaLabels, maxLabelsInMetadata)
		}
	}
	if _, ok := fields[MetaCapabilities]; ok {
		s, err := str(MetaCapabilities)
		if err != nil {
			return Node{}, err
		}
		n.Capabilities = map[string]bool{}
		for _, c := range strings.Split(s, ",") {
			if c != "" {
				n.Capabilities[c] = true
			}
		}
	}
	return n, nil
}

// ParseUpstreams reads a --upstream list, NAME[:PORT]=HOST:PORT entries separated by commas:
// NAME a service (see Upstream.Service), PORT its port when it has several, HOST:PORT a
// loopback IP and port to bind (port 0: any free port). Addresses with a port must differ.
func ParseUpstreams(list string) ([]Upstream, error) { return parseUpstreams(list, true) }

// parseUpstreams is ParseUpstreams; without zeroPort, every address must have its port.
func parseUpstreams(list string, zeroPort bool) ([]Upstream, error) {
	var out []Upstream
	seen := map[string]bool{}
	for _, entry := range strings.Split(list, ",") {
		if entry = strings.TrimSpace(entry); entry == "" {
			continue
		}
		u, err := parseUpstream(entry, zeroPort)
		if err != nil {
			return nil, fmt.Errorf("upstream %q: %w", entry, err)
		}
		if ap := netip.MustParseAddrPort(u.Address); ap.Port() != 0 {
			if seen[u.Address] {
				return nil, fmt.Errorf("upstream %q: address %s is bound twice", entry, u.Address)
			}
			seen[u.Address] = true
		}
		if out = append(out, u); len(out) > maxUpstreams {
			return nil, fmt.Errorf("more than %d upstreams", maxUpstreams)
		}
	}
	return out, nil
}

func parseUpstream(entry string, zeroPort bool) (Upstream, error) {
	name, addr, ok := strings.Cut(entry, "=")
	if !ok {
		return Upstream{}, errors.New("want NAME[:PORT]=HOST:PORT")
	}
	var u Upstream
	if host, port, ok := strings.Cut(name, ":"); ok {
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 {
			return Upstream{}, fmt.Errorf("service port %q must be 1..65535", port)
		}
		name, u.Port = host, uint32(p)
	}
	u.Service = strings.ToLower(strings.TrimSuffix(name, "."))
	if err := checkServiceName(u.Service); err != nil {
		return Upstream{}, err
	}
	ap, err := netip.ParseAddrPort(strings.TrimSpace(addr))
	if err != nil {
		return Upstream{}, fmt.Errorf("address %q: want IP:PORT (an IP literal; IPv6 as [::1]:PORT)", addr)
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if !ap.Addr().IsLoopback() || ap.Addr().Zone() != "" {
		return Upstream{}, fmt.Errorf("address %s: must be a loopback address (127.0.0.0/8 or ::1): the listener carries this proxy's identity", ap)
	}
	if ap.Port() == 0 && !zeroPort {
		return Upstream{}, fmt.Errorf("address %s: port must not be 0", ap)
	}
	u.Address = ap.String()
	return u, nil
}

// checkServiceName accepts host names: dot-separated labels of letters, digits and '-'.
func checkServiceName(name string) error {
	if name == "" || len(name) > 253 {
		return fmt.Errorf("service name %q must be 1..253 characters", name)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("service name %q: %q is not a DNS label", name, label)
		}
		for _, c := range label {
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return fmt.Errorf("service name %q: %q is not a DNS label", name, label)
			}
		}
	}
	return nil
}
