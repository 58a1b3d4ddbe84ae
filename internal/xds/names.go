package xds

import (
	"fmt"
	"strings"

	"canton.dev/canton/internal/resource"
)

// clusterLocalSuffix is the Kubernetes service domain Istio YAML often uses; Canton maps
// "<svc>.<ns>.svc.cluster.local" to "<svc>.<ns>.<mesh>".
const clusterLocalSuffix = ".svc.cluster.local"

// qualify returns the fully qualified form of host as written in a resource of namespace ns:
// a single label is a service of ns, "<svc>.<ns>.svc.cluster.local" maps into the mesh, a
// trailing dot is dropped and case is folded. Other names (and "*") are kept.
func qualify(host, ns, mesh string) string {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	switch {
	case h == "*" || h == "":
		return h
	case strings.HasSuffix(h, clusterLocalSuffix):
		name, rel, ok := strings.Cut(strings.TrimSuffix(h, clusterLocalSuffix), ".")
		if !ok {
			return h
		}
		return name + "." + resource.AbsoluteNamespace(rel, mesh)
	case !strings.Contains(h, "."):
		return h + "." + ns
	}
	return h
}

// hostMatches reports whether a host pattern ("*", "*.suffix" or a name) covers host. A
// wildcard host is covered by an equal or wider wildcard.
func hostMatches(pattern, host string) bool {
	switch {
	case pattern == "*":
		return true
	case pattern == host:
		return true
	case strings.HasPrefix(pattern, "*."):
		suffix := pattern[1:] // ".suffix"
		if strings.HasPrefix(host, "*.") {
			return strings.HasSuffix(host[1:], suffix)
		}
		return strings.HasSuffix(host, suffix)
	}
	return false
}

// exportedTo reports whether an object of namespace objNS with the given exportTo list is
// visible from namespace clientNS. An empty list exports to every namespace.
func exportedTo(exportTo []string, objNS, clientNS, mesh string) bool {
	if len(exportTo) == 0 {
		return true
	}
	for _, e := range exportTo {
		switch e {
		case "*":
			return true
		case ".":
			if objNS == clientNS {
				return true
			}
		case "~":
		default:
			if resource.AbsoluteNamespace(e, mesh) == clientNS {
				return true
			}
		}
	}
	return false
}

// labelsMatch reports whether every selector label is present in labels with the same value.
// An empty selector matches everything.
func labelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// clusterName is Istio's outbound cluster name: "outbound|<port>|<subset>|<host>".
func clusterName(port uint32, subset, host string) string {
	return fmt.Sprintf("outbound|%d|%s|%s", port, subset, host)
}

// inboundClusterName is the cluster of the local application: "inbound|<port>||".
func inboundClusterName(port uint32) string { return fmt.Sprintf("inbound|%d||", port) }

// sni is the SNI a client sends to a peer proxy: Istio's cluster name with "_." separators.
func sni(port uint32, subset, host string) string {
	return fmt.Sprintf("outbound_.%d_.%s_.%s", port, subset, host)
}
