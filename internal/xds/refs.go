package xds

import (
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"canton.dev/canton/internal/resource"
)

// ReferencedHosts lists the fully qualified service names the policies of a
// scope refer to: VirtualService hosts and route destinations, DestinationRule
// hosts, and Sidecar egress hosts ("ns/host"). Wildcards are left out. The
// anchors import the ones governed by other scopes, so proxies can reach them.
func ReferencedHosts(objs []resource.Object, mesh string) []string {
	set := map[string]bool{}
	add := func(host, ns string) {
		if h := qualify(host, ns, mesh); h != "" && !strings.Contains(h, "*") && strings.HasSuffix(h, "."+mesh) {
			set[h] = true
		}
	}
	for _, o := range objs {
		switch o.Kind {
		case "VirtualService", "DestinationRule", "Sidecar":
		default:
			continue
		}
		t, err := resource.Typed(o)
		if err != nil {
			continue
		}
		switch spec := t.(type) {
		case *networking.VirtualService:
			for _, h := range spec.GetHosts() {
				add(h, o.Namespace)
			}
			for _, r := range spec.GetHttp() {
				for _, d := range r.GetRoute() {
					add(d.GetDestination().GetHost(), o.Namespace)
				}
				if m := r.GetMirror(); m != nil {
					add(m.GetHost(), o.Namespace)
				}
			}
			for _, r := range spec.GetTcp() {
				for _, d := range r.GetRoute() {
					add(d.GetDestination().GetHost(), o.Namespace)
				}
			}
			for _, r := range spec.GetTls() {
				for _, d := range r.GetRoute() {
					add(d.GetDestination().GetHost(), o.Namespace)
				}
			}
		case *networking.DestinationRule:
			add(spec.GetHost(), o.Namespace)
		case *networking.Sidecar:
			for _, eg := range spec.GetEgress() {
				for _, h := range eg.GetHosts() {
					ns, host, ok := strings.Cut(h, "/")
					switch {
					case !ok || ns == "~":
						continue
					case ns == "*":
						// Any namespace: only a fully qualified host names one service.
						if strings.Contains(host, ".") {
							add(host, o.Namespace)
						}
						continue
					}
					if ns == "." {
						ns = o.Namespace
					} else {
						ns = resource.AbsoluteNamespace(ns, mesh)
					}
					add(host, ns)
				}
			}
		}
	}
	out := make([]string, 0, len(set))
	for h := range set {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}
