package resource

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// Object is one resource as stored by a scope.
type Object struct {
	// Kind is the canonical kind name (see Lookup), e.g. "VirtualService".
	Kind string `json:"kind"`
	// Namespace is the ABSOLUTE namespace domain, e.g. "bookinfo.demo.mesh".
	Namespace string `json:"namespace"`
	// Name is a DNS-1123 subdomain, unique per kind and namespace.
	Name string `json:"name"`
	// Labels and Annotations follow the Kubernetes syntax rules. Nil and empty are equivalent.
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// Spec is the kind's spec as JSON; canonical (see Canonical) once stored by a scope.
	Spec json.RawMessage `json:"spec"`

	// The fields below are set by the scope state machine. Parse fills UID and Version from
	// metadata.uid and metadata.resourceVersion when a manifest carries them (so the output
	// of Manifest reads back); the state machine ignores whatever a proposer puts there.

	// UID is stable for the life of the object and never reused.
	UID string `json:"uid,omitempty"`
	// Version is the resource version: the Raft index of the last change.
	Version uint64 `json:"version,omitempty"`
	// Created is the Raft index of creation.
	Created uint64 `json:"created,omitempty"`
	// VIPs are a Service's virtual IPs (see AllocateVIP), given by the scope at creation and
	// kept for the Service's life: today one IPv4 address. Empty for other kinds.
	VIPs []string `json:"vips,omitempty"`
}

// Ref returns "Kind namespace/name", for messages.
func (o Object) Ref() string { return o.Kind + " " + o.Namespace + "/" + o.Name }

// RelativeNamespace returns ns relative to meshDomain: "bookinfo.demo.mesh" -> "bookinfo".
// The mesh domain itself, names outside it and an empty meshDomain give ns unchanged.
func RelativeNamespace(ns, meshDomain string) string {
	if meshDomain != "" && strings.HasSuffix(ns, "."+meshDomain) {
		return strings.TrimSuffix(ns, "."+meshDomain)
	}
	return ns
}

// AbsoluteNamespace maps a namespace as written by a user to its absolute domain:
// "bookinfo" -> "bookinfo.demo.mesh"; "bookinfo.demo.mesh" and "demo.mesh" are kept; a
// trailing dot is removed. With an empty meshDomain every namespace is taken as absolute.
func AbsoluteNamespace(ns, meshDomain string) string {
	ns = strings.TrimSuffix(ns, ".")
	if ns == "" || meshDomain == "" || ns == meshDomain || strings.HasSuffix(ns, "."+meshDomain) {
		return ns
	}
	return ns + "." + meshDomain
}

// Manifest renders o as an Istio-style manifest (apiVersion, kind, metadata, spec) for
// `canton get -o yaml|json`. metadata.namespace is relative to meshDomain when it is inside
// it (so Parse with the same meshDomain reads it back to the same absolute namespace).
func Manifest(o Object, meshDomain string) map[string]any {
	apiVersion := ""
	if k, ok := Lookup(o.Kind); ok {
		apiVersion = k.APIVersion()
	}
	meta := map[string]any{"name": o.Name}
	if o.Namespace != "" {
		meta["namespace"] = RelativeNamespace(o.Namespace, meshDomain)
	}
	if len(o.Labels) > 0 {
		meta["labels"] = copyStringMap(o.Labels)
	}
	if len(o.Annotations) > 0 {
		meta["annotations"] = copyStringMap(o.Annotations)
	}
	if o.Version != 0 {
		meta["resourceVersion"] = strconv.FormatUint(o.Version, 10)
	}
	if o.UID != "" {
		meta["uid"] = o.UID
	}
	m := map[string]any{"apiVersion": apiVersion, "kind": o.Kind, "metadata": meta}
	var spec any = map[string]any{}
	if len(o.Spec) > 0 {
		dec := json.NewDecoder(bytes.NewReader(o.Spec))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err == nil && v != nil {
			spec = v
		}
	}
	m["spec"] = spec
	if len(o.VIPs) > 0 {
		// Set by the scope, like metadata.uid; Parse ignores status.
		m["status"] = map[string]any{"vips": append([]string(nil), o.VIPs...)}
	}
	return m
}

// ToYAML renders objects as a multi-document YAML stream ("---" between documents).
func ToYAML(objs []Object, meshDomain string) ([]byte, error) {
	var buf bytes.Buffer
	for i, o := range objs {
		if i > 0 {
			buf.WriteString("---\n")
		}
		b, err := yaml.Marshal(Manifest(o, meshDomain))
		if err != nil {
			return nil, fmt.Errorf("render %s as yaml: %w", o.Ref(), err)
		}
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

func copyStringMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
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
