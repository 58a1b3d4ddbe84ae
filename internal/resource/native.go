package resource

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// nativeSpec is implemented by the spec structs of the Canton-native kinds.
type nativeSpec interface {
	// validate runs the semantic checks; o is the object carrying the spec.
	validate(o Object) error
}

// ServiceSpec is the spec of a Service (canton.dev/v1). The state machine gives every
// Service a stable UID.
type ServiceSpec struct {
	// Ports the service listens on; at least one, names and numbers unique.
	Ports []ServicePort `json:"ports"`
	// ExportTo lists the namespaces that may see the service: "." (own namespace), "*" (all),
	// "~" (none) or namespace names. Empty means "*" (everyone), as in Istio.
	ExportTo []string `json:"exportTo,omitempty"`
}

// ServicePort is one port of a Service.
type ServicePort struct {
	// Name is a DNS-1123 label, e.g. "http". Required.
	Name string `json:"name"`
	// Port is 1..65535. Required.
	Port uint32 `json:"port"`
	// Protocol is one of HTTP, HTTP2, GRPC, TCP, TLS. Empty means HTTP.
	Protocol string `json:"protocol,omitempty"`
}

// Protocols accepted by ServicePort.Protocol.
var serviceProtocols = []string{"HTTP", "HTTP2", "GRPC", "TCP", "TLS"}

// WorkloadSpec is the spec of a Workload (canton.dev/v1): one endpoint of a Service,
// registered by its proxy under a lease.
type WorkloadSpec struct {
	// Service is the name of the Service (same namespace) this workload serves. Required.
	Service string `json:"service"`
	// Address is the workload's IP address. Required.
	Address string `json:"address"`
	// Port is where the workload (its proxy's inbound listener) accepts traffic, 1..65535.
	Port uint32 `json:"port"`
	// Labels of the workload, e.g. version: v2. Kubernetes label syntax.
	Labels map[string]string `json:"labels,omitempty"`
	// Proxy is the identifier of the proxy that registered the workload. Empty: unknown.
	Proxy string `json:"proxy,omitempty"`
	// Lease is the ID of the lease the workload lives under; the workload is deleted with it.
	// Required (non-zero); the scope checks that the lease exists.
	Lease uint64 `json:"lease"`
	// Gateway is true when the workload's proxy runs as a gateway (canton proxy --gateway):
	// it serves the Gateways whose selector matches Labels and has no inbound listener, so
	// nothing listens on Port. False (the zero value): a sidecar. The anchors serve gateway
	// configuration only to the proxy a gateway Workload names (Proxy, then required).
	Gateway bool `json:"gateway,omitempty"`
}

// AliasSpec is the spec of an Alias (canton.dev/v1): another name for a UID or a name.
type AliasSpec struct {
	// Target is a UID or a fully qualified name (e.g. "reviews.bookinfo.demo.mesh"). Required.
	Target string `json:"target"`
	// Actions the alias may be used for: resolve, invoke, admin. At least one, no duplicates.
	Actions []string `json:"actions"`
}

// Alias actions.
var aliasActions = []string{"resolve", "invoke", "admin"}

// DelegationSpec is the spec of a Delegation (canton.dev/v1): a zone cut handing a child
// domain to its own scope.
type DelegationSpec struct {
	// Domain is the child domain, strictly below the object's namespace. Required.
	Domain string `json:"domain"`
	// Anchors are the IDs of the anchors replicating the child scope. At least one, unique.
	Anchors []string `json:"anchors"`
	// CACert is the PEM certificate of the child scope's CA. Empty: not yet known.
	CACert string `json:"caCert,omitempty"`
}

// AnchorSpec is the spec of an Anchor (canton.dev/v1): one entry of the anchors' address
// book, kept in the root scope. The object's name is the anchor ID.
type AnchorSpec struct {
	// Address is host:port of the anchor's API. Required.
	Address string `json:"address"`
	// NodeID is the anchor's Raft node ID, non-zero.
	NodeID uint64 `json:"nodeId"`
}

// decodeNativeSpec checks the generic value against the struct (for paths), then decodes it
// strictly with encoding/json and re-encodes it canonically.
//
// raw, when not nil, is the spec's JSON as given, which decodes to generic (the fast path
// of decodeJSON took it): once checkGo passed, every key of it names its field exactly and
// none repeats, so encoding/json decodes raw to the same struct as generic re-encoded, and
// the re-encoding is skipped.
func decodeNativeSpec(k Kind, generic any, raw []byte) (any, json.RawMessage, error) {
	spec := k.newNative()
	t := reflect.TypeOf(spec).Elem()
	if !goMatches(generic, t) {
		if err := checkGo(specPath, generic, t); err != nil {
			return nil, nil, err
		}
	} else if spec, canon, ok := decodeNativeFast(k, generic); ok {
		return spec, canon, nil
	}
	in := raw
	if in == nil {
		var err error
		if in, err = encodeJSON(generic); err != nil {
			return nil, nil, err
		}
	}
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.DisallowUnknownFields()
	if err := dec.Decode(spec); err != nil {
		return nil, nil, errorf(specPath, "%v", err)
	}
	out, err := json.Marshal(spec)
	if err != nil {
		return nil, nil, fmt.Errorf("encode %s spec: %w", k.Name, err)
	}
	canon, err := normalizeJSON(out)
	if err != nil {
		return nil, nil, fmt.Errorf("normalise %s spec: %w", k.Name, err)
	}
	return spec, canon, nil
}

// goMatches reports whether checkGo(path, v, t) passes, without building the paths its
// errors need (checkGo runs only when this fails, to word the error).
func goMatches(v any, t reflect.Type) bool {
	if v == nil {
		return true
	}
	if t.Implements(genericCheckerType) {
		return reflect.Zero(t).Interface().(genericChecker).checkGeneric("", v) == nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		return goMatches(v, t.Elem())
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return false
		}
		fields := jsonFields(t)
		for k, e := range obj {
			f, ok := fields[k]
			if !ok || !goMatches(e, f.Type) {
				return false
			}
		}
		return true
	case reflect.Slice:
		l, ok := v.([]any)
		if !ok {
			return false
		}
		for _, e := range l {
			if e == nil || !goMatches(e, t.Elem()) {
				return false
			}
		}
		return true
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		for _, e := range m {
			if e == nil || !goMatches(e, t.Elem()) {
				return false
			}
		}
		return true
	case reflect.String:
		_, ok := v.(string)
		return ok
	case reflect.Bool:
		_, ok := v.(bool)
		return ok
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint:
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		_, err := strconv.ParseUint(string(n), 10, t.Bits())
		return err == nil
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Int:
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		_, err := strconv.ParseInt(string(n), 10, t.Bits())
		return err == nil
	}
	return false
}

// jsonFieldCache maps a struct type to its fields by JSON name (see jsonFields).
var jsonFieldCache sync.Map // reflect.Type -> map[string]reflect.StructField

// jsonFields returns the fields of struct type t by the name of their json tag, as checkGo
// finds them.
func jsonFields(t reflect.Type) map[string]reflect.StructField {
	if m, ok := jsonFieldCache.Load(t); ok {
		return m.(map[string]reflect.StructField)
	}
	m := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		m[name] = f
	}
	jsonFieldCache.Store(t, m)
	return m
}

// checkGo walks a generic JSON value against a Go type with json tags, reporting unknown
// fields and type mismatches with their path.
func checkGo(path string, v any, t reflect.Type) error {
	if v == nil {
		return nil
	}
	if t.Implements(genericCheckerType) {
		return reflect.Zero(t).Interface().(genericChecker).checkGeneric(path, v)
	}
	switch t.Kind() {
	case reflect.Pointer:
		return checkGo(path, v, t.Elem())
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return errorf(path, "must be an object, not %s", jsonType(v))
		}
		byName := map[string]reflect.StructField{}
		var names []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			byName[name] = f
			names = append(names, name)
		}
		for _, k := range sortedKeys(obj) {
			f, ok := byName[k]
			if !ok {
				return errorf(field(path, k), "unknown field %q (known fields: %s)", k, strings.Join(names, ", "))
			}
			if err := checkGo(field(path, k), obj[k], f.Type); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		l, ok := v.([]any)
		if !ok {
			return errorf(path, "must be a list, not %s", jsonType(v))
		}
		for i, e := range l {
			if e == nil {
				return errorf(index(path, i), "null is not allowed in a list")
			}
			if err := checkGo(index(path, i), e, t.Elem()); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return errorf(path, "must be an object (a map), not %s", jsonType(v))
		}
		for _, k := range sortedKeys(m) {
			if m[k] == nil {
				return errorf(key(path, k), "null is not allowed as a map value")
			}
			if err := checkGo(key(path, k), m[k], t.Elem()); err != nil {
				return err
			}
		}
		return nil
	case reflect.String:
		if _, ok := v.(string); !ok {
			return errorf(path, "must be a string, not %s", jsonType(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return errorf(path, "must be true or false, not %s", jsonType(v))
		}
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint:
		n, ok := v.(json.Number)
		if !ok {
			return errorf(path, "must be a number, not %s", jsonType(v))
		}
		if _, err := strconv.ParseUint(string(n), 10, t.Bits()); err != nil {
			return errorf(path, "must be an integer in 0..%d, not %s", uint64(1)<<t.Bits()-1, n)
		}
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Int:
		n, ok := v.(json.Number)
		if !ok {
			return errorf(path, "must be a number, not %s", jsonType(v))
		}
		if _, err := strconv.ParseInt(string(n), 10, t.Bits()); err != nil {
			return errorf(path, "must be an integer, not %s", n)
		}
	default:
		return errorf(path, "unsupported field type %s", t)
	}
	return nil
}

func (s *ServiceSpec) validate(o Object) error {
	p := field(specPath, "ports")
	if len(s.Ports) == 0 {
		return errorf(p, "at least one port is required")
	}
	names := map[string]int{}
	numbers := map[uint32]int{}
	for i, port := range s.Ports {
		pi := index(p, i)
		if !isDNSLabel(port.Name) {
			return errorf(field(pi, "name"), "%q must be a DNS-1123 label (lower-case letters, digits, '-')", port.Name)
		}
		if j, dup := names[port.Name]; dup {
			return errorf(field(pi, "name"), "duplicate port name %q (also ports[%d])", port.Name, j)
		}
		names[port.Name] = i
		if err := checkPort(field(pi, "port"), port.Port); err != nil {
			return err
		}
		if j, dup := numbers[port.Port]; dup {
			return errorf(field(pi, "port"), "duplicate port %d (also ports[%d])", port.Port, j)
		}
		numbers[port.Port] = i
		if port.Protocol != "" && !oneOf(port.Protocol, serviceProtocols) {
			return errorf(field(pi, "protocol"), "%q must be one of %s", port.Protocol, strings.Join(serviceProtocols, ", "))
		}
	}
	return checkExportTo(field(specPath, "exportTo"), s.ExportTo)
}

func (s *WorkloadSpec) validate(o Object) error {
	if !isDNSLabel(s.Service) {
		return errorf(field(specPath, "service"), "%q must be the name of a Service (a DNS-1123 label)", s.Service)
	}
	if _, err := netip.ParseAddr(s.Address); err != nil {
		return errorf(field(specPath, "address"), "%q must be an IP address", s.Address)
	}
	if err := checkPort(field(specPath, "port"), s.Port); err != nil {
		return err
	}
	if err := checkLabels(field(specPath, "labels"), s.Labels); err != nil {
		return err
	}
	if len(s.Proxy) > 253 {
		return errorf(field(specPath, "proxy"), "longer than 253 characters")
	}
	if s.Gateway && s.Proxy == "" {
		return errorf(field(specPath, "proxy"), "required for a gateway (the ID of the proxy that runs it: only that proxy gets its gateway configuration)")
	}
	if s.Lease == 0 {
		return errorf(field(specPath, "lease"), "required (the ID of the lease the workload lives under)")
	}
	return nil
}

func (s *AliasSpec) validate(o Object) error {
	if s.Target == "" {
		return errorf(field(specPath, "target"), "required (a UID or a fully qualified name)")
	}
	if len(s.Target) > 253 || strings.ContainsAny(s.Target, " \t\r\n/") {
		return errorf(field(specPath, "target"), "%q is not a UID or a fully qualified name", s.Target)
	}
	p := field(specPath, "actions")
	if len(s.Actions) == 0 {
		return errorf(p, "at least one of %s is required", strings.Join(aliasActions, ", "))
	}
	seen := map[string]bool{}
	for i, a := range s.Actions {
		if !oneOf(a, aliasActions) {
			return errorf(index(p, i), "%q must be one of %s", a, strings.Join(aliasActions, ", "))
		}
		if seen[a] {
			return errorf(index(p, i), "duplicate action %q", a)
		}
		seen[a] = true
	}
	return nil
}

func (s *DelegationSpec) validate(o Object) error {
	p := field(specPath, "domain")
	if err := checkNamespace(p, s.Domain); err != nil {
		return err
	}
	if !IsSubdomain(s.Domain, o.Namespace) || s.Domain == o.Namespace {
		return errorf(p, "%q must be a subdomain of the namespace %q", s.Domain, o.Namespace)
	}
	pa := field(specPath, "anchors")
	if len(s.Anchors) == 0 {
		return errorf(pa, "at least one anchor is required")
	}
	seen := map[string]bool{}
	for i, a := range s.Anchors {
		if !isDNSSubdomain(a) {
			return errorf(index(pa, i), "%q is not a valid anchor ID", a)
		}
		if seen[a] {
			return errorf(index(pa, i), "duplicate anchor %q", a)
		}
		seen[a] = true
	}
	if s.CACert != "" {
		block, rest := pem.Decode([]byte(s.CACert))
		if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
			return errorf(field(specPath, "caCert"), "must be exactly one PEM CERTIFICATE block")
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return errorf(field(specPath, "caCert"), "invalid certificate: %v", err)
		}
		if !cert.IsCA {
			return errorf(field(specPath, "caCert"), "certificate is not a CA certificate")
		}
	}
	return nil
}

func (s *AnchorSpec) validate(o Object) error {
	p := field(specPath, "address")
	host, port, err := net.SplitHostPort(s.Address)
	if err != nil || host == "" {
		return errorf(p, "%q must be host:port", s.Address)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return errorf(p, "%q: port must be 1..65535", s.Address)
	}
	if _, err := netip.ParseAddr(host); err != nil && !isHostname(host) {
		return errorf(p, "%q: host must be an IP address or a DNS name", s.Address)
	}
	if s.NodeID == 0 {
		return errorf(field(specPath, "nodeId"), "required (non-zero Raft node ID)")
	}
	return nil
}

// IsSubdomain reports whether name equals domain or lies below it (DNS label boundaries).
func IsSubdomain(name, domain string) bool {
	return name == domain || strings.HasSuffix(name, "."+domain)
}

func oneOf(s string, list []string) bool {
	for _, e := range list {
		if s == e {
			return true
		}
	}
	return false
}
