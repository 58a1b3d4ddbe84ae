package xds

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	security "istio.io/api/security/v1beta1"

	"canton.dev/canton/internal/resource"
)

// ExtAuthzFilterName is the name of the ext_authz HTTP filter that CUSTOM AuthorizationPolicies
// become; it runs before every RBAC filter but RBACExtAuthzFilterName.
const ExtAuthzFilterName = "envoy.filters.http.ext_authz"

// How the requests CUSTOM rules select reach ext_authz, Istio's mechanism: an RBAC filter
// evaluates the rules as shadow rules (never enforced) and publishes the name of the first
// matching one as dynamic metadata; ext_authz is enabled only for requests whose metadata
// names such a policy.
const (
	// RBACExtAuthzFilterName is the RBAC filter holding the CUSTOM rules as shadow rules; it
	// runs just before ext_authz.
	RBACExtAuthzFilterName = "envoy.filters.http.rbac.ext_authz"
	// extAuthzShadowPrefix is Istio's shadow_rules_stat_prefix for CUSTOM rules: the matched
	// policy is published as envoy.filters.http.rbac / istio_ext_authz_shadow_effective_policy_id.
	extAuthzShadowPrefix = "istio_ext_authz_"
	// extAuthzPolicyPrefix starts the name of every CUSTOM shadow policy, which ext_authz's
	// filter_enabled_metadata matches.
	extAuthzPolicyPrefix      = "istio-ext-authz"
	rbacMetadataNamespace     = "envoy.filters.http.rbac"
	rbacShadowEffectivePolicy = "shadow_effective_policy_id"
)

// Reasons a CUSTOM policy stays enforced as DENY (fail closed) although its provider exists.
const (
	customTwoProvider = "CUSTOM: provider %q conflicts with provider %q, used by an older CUSTOM policy for this workload (one provider per workload, as in Istio): the requests matching this policy's rules are denied instead (fail closed)"
)

// customAuthz collects the CUSTOM policies of a node that are sent to an ext_authz provider.
type customAuthz struct {
	providerName string
	provider     *resource.ExtAuthzGrpcProvider
	// all is set when a rule selects every request: ext_authz then checks every request.
	all bool
	// shadow holds the rules of the other CUSTOM policies, by policy name.
	shadow map[string]*rbacconfigv3.Policy
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
// false (after reporting why) when the policy must fall back to DENY: unknown provider, or a
// second provider for the same workload. A policy without rules selects nothing and is taken
// (it adds nothing). The rules of a taken policy become shadow rules (see filters); a part of
// a rule that cannot be translated is left out, so the rule selects more requests for the
// provider to check, never fewer.
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
	if c.provider != nil && c.providerName != name {
		g.skip(ap.ref, "provider", fmt.Sprintf(customTwoProvider, name, c.providerName))
		return false
	}
	c.providerName, c.provider = name, p
	if matchesEverything(ap.spec.GetRules()) {
		c.all = true
		return true
	}
	for i, r := range ap.spec.GetRules() {
		t := &ruleTranslator{g: g, ap: ap, path: "rules[" + itoa(i) + "]", mode: modeCustom}
		if pol := t.rule(r); pol != nil {
			if c.shadow == nil {
				c.shadow = map[string]*rbacconfigv3.Policy{}
			}
			c.shadow[extAuthzPolicyPrefix+"-"+fmt.Sprintf(rbacPolicyNameFormat, ap.namespace, ap.name, i)] = pol
		}
	}
	return true
}

// filters returns the HTTP filters of the taken CUSTOM policies: none when no policy selects
// requests; the ext_authz filter alone when one selects every request; else, as Istio
// generates them, an RBAC filter with the rules as shadow_rules (action DENY: a request
// matching one is "denied" by the shadow engine, which publishes the policy's name) and the
// ext_authz filter with filter_enabled_metadata on that name, so that only the requests the
// rules select are sent to the provider.
func (c *customAuthz) filters() []*hcmv3.HttpFilter {
	if c.provider == nil || !c.all && len(c.shadow) == 0 {
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
	if c.all {
		return []*hcmv3.HttpFilter{{Name: ExtAuthzFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(cfg)}}}
	}
	cfg.FilterEnabledMetadata = &matcherv3.MetadataMatcher{
		Filter: rbacMetadataNamespace,
		Path:   []*matcherv3.MetadataMatcher_PathSegment{{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: extAuthzShadowPrefix + rbacShadowEffectivePolicy}}},
		Value: &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: extAuthzPolicyPrefix}}}},
	}
	shadow := &rbacv3.RBAC{
		ShadowRules:           &rbacconfigv3.RBAC{Action: rbacconfigv3.RBAC_DENY, Policies: c.shadow},
		ShadowRulesStatPrefix: extAuthzShadowPrefix,
	}
	return []*hcmv3.HttpFilter{
		{Name: RBACExtAuthzFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(shadow)}},
		{Name: ExtAuthzFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(cfg)}},
	}
}
