package xds

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	security "istio.io/api/security/v1beta1"

	"canton.dev/canton/internal/resource"
)

// ExtAuthzFilterName is the name of the ext_authz HTTP filter that CUSTOM AuthorizationPolicies
// become; it runs before every RBAC filter.
const ExtAuthzFilterName = "envoy.filters.http.ext_authz"

// Reasons a CUSTOM policy stays enforced as DENY (fail closed) although its provider exists.
const (
	customScopedRules = "CUSTOM (external authorization through provider %q) is only supported with a rule that matches every request (rules: [{}]): canton cannot yet send only the requests matching from/to/when to the provider, so the requests matching this policy's rules are denied instead (fail closed)"
	customTwoProvider = "CUSTOM: provider %q conflicts with provider %q, used by an older CUSTOM policy for this workload (one provider per workload, as in Istio): the requests matching this policy's rules are denied instead (fail closed)"
)

// customAuthz collects the CUSTOM policies of a node that are sent to an ext_authz provider.
type customAuthz struct {
	providerName string
	provider     *resource.ExtAuthzGrpcProvider
}

// extAuthzProvider finds the ExtensionProvider named name in the mesh root namespace.
func (g *gen) extAuthzProvider(name string) (*resource.ExtAuthzGrpcProvider, bool) {
	if name == "" {
		return nil, false
	}
	for _, o := range g.in.Objects {
		if o.Kind != "ExtensionProvider" || o.Name != name || o.Namespace != g.in.Mesh {
			continue
		}
		typed, err := resource.Typed(o)
		if err != nil {
			g.skip(o.Ref(), "", "cannot decode spec: "+err.Error())
			return nil, false
		}
		if s, ok := typed.(*resource.ExtensionProviderSpec); ok && s.EnvoyExtAuthzGrpc != nil {
			return s.EnvoyExtAuthzGrpc, true
		}
		return nil, false
	}
	return nil, false
}

// matchesEverything reports whether one of the rules has no from, to or when: such a policy
// selects every request.
func matchesEverything(rules []*security.Rule) bool {
	for _, r := range rules {
		if r != nil && len(r.GetFrom()) == 0 && len(r.GetTo()) == 0 && len(r.GetWhen()) == 0 {
			return true
		}
	}
	return false
}

// take decides whether the CUSTOM policy ap is enforced by the ext_authz filter. It returns
// false (after reporting why) when the policy must fall back to DENY: unknown provider, rules
// that do not select every request, or a second provider for the same workload. A policy
// without rules selects nothing and is taken (it adds nothing).
func (c *customAuthz) take(g *gen, ap *authorizationPolicy) bool {
	name := ap.spec.GetProvider().GetName()
	p, ok := g.extAuthzProvider(name)
	if !ok {
		g.skip(ap.ref, "action", fmt.Sprintf(customProviderMissing, name))
		return false
	}
	if len(ap.spec.GetRules()) == 0 {
		return true
	}
	if !matchesEverything(ap.spec.GetRules()) {
		g.skip(ap.ref, "rules", fmt.Sprintf(customScopedRules, name))
		return false
	}
	if c.provider != nil && c.providerName != name {
		g.skip(ap.ref, "provider", fmt.Sprintf(customTwoProvider, name, c.providerName))
		return false
	}
	c.providerName, c.provider = name, p
	return true
}

// filter returns the ext_authz HTTP filter, or nil when no CUSTOM policy selects requests.
func (c *customAuthz) filter() *hcmv3.HttpFilter {
	if c.provider == nil {
		return nil
	}
	gs := &corev3.GrpcService{
		TargetSpecifier: &corev3.GrpcService_GoogleGrpc_{GoogleGrpc: &corev3.GrpcService_GoogleGrpc{
			TargetUri:  c.provider.Service,
			StatPrefix: "ext_authz." + c.providerName,
		}},
	}
	if d := c.provider.TimeoutDuration(); d > 0 {
		gs.Timeout = durationpb.New(d)
	}
	cfg := &extauthzv3.ExtAuthz{
		Services:            &extauthzv3.ExtAuthz_GrpcService{GrpcService: gs},
		TransportApiVersion: corev3.ApiVersion_V3,
		FailureModeAllow:    c.provider.FailOpen,
	}
	return &hcmv3.HttpFilter{Name: ExtAuthzFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(cfg)}}
}
