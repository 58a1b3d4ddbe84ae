package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"canton.dev/canton/internal/resource"
)

// shape is the size of the benchmark scope.
type shape struct {
	Services int // services svc-00, svc-01, ...
	Versions int // versions v1..vN per service, one Workload each
	// Egress, when not 0, gives every service a Sidecar whose egress hosts are the next
	// Egress services (svc-(i+1) ... svc-(i+Egress), wrapping): each proxy then only gets the
	// configuration of those, and a change to one service concerns only its callers.
	Egress int
}

// affected reports whether clients of service i route the flipped service.
func (sh shape) affected(i int) bool {
	if sh.Egress == 0 {
		return true
	}
	for d := 1; d <= sh.Egress; d++ {
		if (i+d)%sh.Services == flipService {
			return true
		}
	}
	return false
}

func serviceName(i int) string { return fmt.Sprintf("svc-%02d", i) }

// flipService is the service whose VirtualService the benchmark changes.
const flipService = 0

// policyYAML is the Istio and Canton YAML of the scope: per service a Service, a
// DestinationRule with one subset per version and a traffic policy, and a VirtualService
// with a header-match route and a weighted default route (flipped with flip).
func policyYAML(sh shape, flip bool) string {
	var b strings.Builder
	for i := range sh.Services {
		b.WriteString(serviceYAML(i, sh))
		b.WriteString(virtualServiceYAML(i, sh, flip && i == flipService))
		if sh.Egress > 0 {
			b.WriteString(sidecarYAML(i, sh))
		}
	}
	return b.String()
}

// sidecarYAML scopes the proxies of service i to the next sh.Egress services.
func sidecarYAML(i int, sh shape) string {
	var hosts []string
	for d := 1; d <= sh.Egress; d++ {
		hosts = append(hosts, "./"+serviceName((i+d)%sh.Services))
	}
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: %[1]s}
spec:
  workloadSelector: {labels: {app: %[1]s}}
  egress:
  - hosts: [%[2]s]
---
`, serviceName(i), strings.Join(hosts, ", "))
}

func serviceYAML(i int, sh shape) string {
	name := serviceName(i)
	var subsets strings.Builder
	for v := 1; v <= sh.Versions; v++ {
		fmt.Fprintf(&subsets, "  - {name: v%d, labels: {version: v%d}}\n", v, v)
	}
	return fmt.Sprintf(`apiVersion: canton.dev/v1
kind: Service
metadata: {name: %[1]s}
spec:
  ports: [{name: http, port: 9080, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: %[1]s}
spec:
  host: %[1]s
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 100}
      http: {http1MaxPendingRequests: 64, maxRequestsPerConnection: 100}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}
  subsets:
%[2]s---
`, name, subsets.String())
}

// virtualServiceYAML routes "end-user: tester" to the last version and splits the rest
// between v1 and v2 (90/10, or 10/90 when flipped), with a timeout and retries.
func virtualServiceYAML(i int, sh shape, flip bool) string {
	name := serviceName(i)
	w1, w2 := 90, 10
	if flip {
		w1, w2 = 10, 90
	}
	last := sh.Versions
	if sh.Versions < 2 {
		return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: %[1]s}
spec:
  hosts: [%[1]s]
  http:
  - route:
    - destination: {host: %[1]s, subset: v1}
---
`, name)
	}
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: %[1]s}
spec:
  hosts: [%[1]s]
  http:
  - match:
    - headers: {end-user: {exact: tester}}
    route:
    - destination: {host: %[1]s, subset: v%[4]d}
  - route:
    - destination: {host: %[1]s, subset: v1}
      weight: %[2]d
    - destination: {host: %[1]s, subset: v2}
      weight: %[3]d
    timeout: 5s
    retries: {attempts: 2, perTryTimeout: 2s, retryOn: "5xx,reset"}
---
`, name, w1, w2, last)
}

// workloads returns one Workload per service and version, under lease, on 127.0.0.1 with
// distinct ports (nothing is dialled: the clients only receive configuration).
func workloads(sh shape, ns string, lease uint64) ([]resource.Object, error) {
	var out []resource.Object
	for i := range sh.Services {
		for v := 1; v <= sh.Versions; v++ {
			name := fmt.Sprintf("%s-v%d", serviceName(i), v)
			spec, err := json.Marshal(resource.WorkloadSpec{
				Service: serviceName(i), Address: "127.0.0.1", Port: uint32(20000 + i*sh.Versions + v),
				Labels: map[string]string{"app": serviceName(i), "version": fmt.Sprintf("v%d", v)},
				Proxy:  name, Lease: lease,
			})
			if err != nil {
				return nil, err
			}
			out = append(out, resource.Object{Kind: "Workload", Namespace: ns, Name: name, Spec: spec})
		}
	}
	return out, nil
}

// clientWorkloads returns the Workload of each of the first n clients, under lease, as
// `canton proxy` registers its own before it connects: named after the proxy's ID, with its
// service, labels, inbound address and port (the anchors admit a sidecar's xDS stream only as
// its Workload registers it). They are endpoints of their services too, as real proxies are.
func clientWorkloads(ns string, sh shape, identical bool, n int, lease uint64) ([]resource.Object, error) {
	out := make([]resource.Object, 0, n)
	for i := range n {
		node := clientNode(ns, sh, identical, i)
		spec, err := json.Marshal(resource.WorkloadSpec{Service: node.Service, Address: node.InboundAddress, Port: node.InboundPort,
			Labels: node.Labels, Proxy: node.ID, Lease: lease})
		if err != nil {
			return nil, err
		}
		out = append(out, resource.Object{Kind: "Workload", Namespace: ns, Name: node.ID, Spec: spec})
	}
	return out, nil
}
