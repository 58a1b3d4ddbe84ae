package resource

import (
	"net"
	"net/netip"
	"strconv"
	"time"
)

// ExtensionProviderSpec is the spec of an ExtensionProvider (canton.dev/v1):
// Canton's counterpart of one entry of Istio's MeshConfig.extensionProviders,
// kept in the mesh root namespace. The object's name is the provider name
// that AuthorizationPolicies with action CUSTOM reference in provider.name.
// Exactly one provider type must be set; today the only one is
// envoyExtAuthzGrpc.
type ExtensionProviderSpec struct {
	// EnvoyExtAuthzGrpc is an authorization service speaking Envoy's
	// ext_authz gRPC protocol (envoy.service.auth.v3.Authorization).
	EnvoyExtAuthzGrpc *ExtAuthzGrpcProvider `json:"envoyExtAuthzGrpc,omitempty"`
}

// ExtAuthzGrpcProvider is an ext_authz gRPC service reached in plaintext
// HTTP/2.
type ExtAuthzGrpcProvider struct {
	// Service is host:port of the authorization service, the host an IP
	// address or a DNS name. Required.
	Service string `json:"service"`
	// Timeout bounds each Check call, a Go duration between 1ms and 1m
	// (e.g. "500ms"). Empty: Envoy's default, 200ms.
	Timeout string `json:"timeout,omitempty"`
	// FailOpen lets requests through when the service cannot be reached or
	// does not answer in time. False (the default) denies them.
	FailOpen bool `json:"failOpen,omitempty"`
}

// Bounds of ExtAuthzGrpcProvider.Timeout.
const (
	minExtAuthzTimeout = time.Millisecond
	maxExtAuthzTimeout = time.Minute
)

// TimeoutDuration returns the parsed Timeout, 0 when empty. The spec must
// have been validated.
func (p *ExtAuthzGrpcProvider) TimeoutDuration() time.Duration {
	d, _ := time.ParseDuration(p.Timeout)
	return d
}

func (s *ExtensionProviderSpec) validate(o Object) error {
	g := s.EnvoyExtAuthzGrpc
	if g == nil {
		return errorf(field(specPath, "envoyExtAuthzGrpc"), "required (the only supported provider type)")
	}
	base := field(specPath, "envoyExtAuthzGrpc")
	p := field(base, "service")
	host, port, err := net.SplitHostPort(g.Service)
	if err != nil || host == "" {
		return errorf(p, "%q must be host:port", g.Service)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return errorf(p, "%q: port must be 1..65535", g.Service)
	}
	if _, err := netip.ParseAddr(host); err != nil && !isHostname(host) {
		return errorf(p, "%q: host must be an IP address or a DNS name", g.Service)
	}
	if g.Timeout != "" {
		d, err := time.ParseDuration(g.Timeout)
		if err != nil {
			return errorf(field(base, "timeout"), "%q is not a duration (e.g. \"500ms\")", g.Timeout)
		}
		if d < minExtAuthzTimeout || d > maxExtAuthzTimeout {
			return errorf(field(base, "timeout"), "%s is out of range (%s..%s)", d, minExtAuthzTimeout, maxExtAuthzTimeout)
		}
	}
	return nil
}
