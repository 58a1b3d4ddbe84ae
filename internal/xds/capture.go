package xds

import (
	"net/netip"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
)

// Transparent capture (Node.CapturePort, docs/design/0006-service-vips.md): iptables redirects
// the workload's connections to the service VIP range to the capture listener on
// 127.0.0.1:CapturePort. That listener hands each connection to the listener at its original
// destination (use_original_dst): one unbound listener per VIP and port of every service the
// proxy may reach, configured exactly like an upstream binding of that port (routes, TCP and
// TLS rules, mTLS to the endpoints). A destination without a listener (an unknown VIP, a port
// the service does not have) reaches the capture listener's own chain, which closes it: the
// capture is registry-only, like Istio's outboundTrafficPolicy REGISTRY_ONLY, for the ranges
// that are redirected.

// CaptureListenerName is the listener at Node.CapturePort.
const CaptureListenerName = "capture"

// VIPListenerName is the unbound listener for a service VIP and port, "vip.<ip>:<port>" (and,
// for an HTTP port, its route configuration).
func VIPListenerName(ap netip.AddrPort) string { return "vip." + ap.String() }

// generateCapture builds the capture listener and the VIP listeners of a node with a
// CapturePort.
func generateCapture(g *gen, out *Resources) error {
	if g.node.CapturePort == 0 {
		return nil
	}
	out.Listeners[CaptureListenerName] = &listenerv3.Listener{
		Name:             CaptureListenerName,
		Address:          socketAddress("127.0.0.1", g.node.CapturePort),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		UseOriginalDst:   wrapBool(true),
		FilterChains:     []*listenerv3.FilterChain{blackHoleChain(CaptureListenerName)},
	}
	owner := map[netip.AddrPort]*service{}
	for _, s := range g.visible { // sorted by host: who wins a collision is deterministic
		if !s.vip.IsValid() || !g.routable(s) {
			continue
		}
		for _, p := range s.ports {
			ap := netip.AddrPortFrom(s.vip, uint16(p.number))
			if other, taken := owner[ap]; taken {
				// VIPs are unique within a scope; services of two scopes may meet (rarely: the
				// range has 2^27 addresses). The first host keeps the address.
				g.skip(s.ref, "", "VIP "+ap.String()+" is also "+other.host+"'s; captured connections to it reach "+other.host)
				continue
			}
			owner[ap] = s
			l := g.servicePortListener(VIPListenerName(ap), ap, s, p, out)
			l.BindToPort = wrapBool(false)
			out.Listeners[l.Name] = l
		}
	}
	return nil
}
