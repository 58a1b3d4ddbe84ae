package xds

import (
	"fmt"
	"net"
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
	MetaInboundPort       = "CANTON_INBOUND_PORT"
	MetaInboundAddress    = "CANTON_INBOUND_ADDRESS"
	MetaAppAddress        = "CANTON_APP_ADDRESS"
	MetaCapabilities      = "CANTON_CAPABILITIES" // comma-separated Feature* names; absent = all
	MetaPathNormalization = "CANTON_PATH_NORMALIZATION"
	MetaAdminAddress      = "CANTON_ADMIN_ADDRESS"
	maxMetaValue          = 4096
	maxLabelsInMetadata   = 64
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
