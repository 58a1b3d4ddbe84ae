package xds

import (
	"fmt"

	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
)

// Names of the HTTP filters the inbound HttpConnectionManager gets for security policies, in
// the order they run. The RBAC filters share one type; their names tell them apart.
const (
	JWTFilterName         = "envoy.filters.http.jwt_authn"
	RBACCustomFilterName  = "envoy.filters.http.rbac.custom"
	RBACDenyFilterName    = "envoy.filters.http.rbac.deny"
	RBACAllowFilterName   = "envoy.filters.http.rbac.allow"
	RBACAuditFilterName   = "envoy.filters.http.rbac.audit"
	rbacPolicyNameFormat  = "ns[%s]-policy[%s]-rule[%d]"
	customProviderMissing = "CUSTOM (external authorization through provider %q): the mesh root namespace has no ExtensionProvider of that name with envoyExtAuthzGrpc, so requests matching this policy's rules are denied instead (fail closed)"
	customOverTCP         = "CUSTOM: external authorization is not supported for TCP connections (no network ext_authz filter), so the TCP connections matching this policy's rules are denied instead (fail closed); its HTTP requests go to the provider as usual"
)

// Names of the network filters the inbound TCP chains get for AuthorizationPolicies, before
// their tcp_proxy, in the order they run; stat prefix of every one (Istio's).
const (
	NetworkRBACCustomFilterName = "envoy.filters.network.rbac.custom"
	NetworkRBACDenyFilterName   = "envoy.filters.network.rbac.deny"
	NetworkRBACAllowFilterName  = "envoy.filters.network.rbac.allow"
	NetworkRBACAuditFilterName  = "envoy.filters.network.rbac.audit"
	networkRBACStatPrefix       = "tcp."
)

// appliesTo reports whether a policy of namespace ns with the given selector and target
// references applies to the node, with Istio's rules: a policy in the mesh root namespace
// without a selector applies to every workload, with a selector to the matching workloads of
// every namespace; a policy in the node's namespace applies to all its workloads without a
// selector, else to the matching ones; targetRefs name a Service (the node's service) or a
// Gateway (a gateway node of that service name) in the policy's namespace. Unsupported target
// kinds are reported and match nothing.
func (g *gen) appliesTo(ref, ns string, sel *typev1beta1.WorkloadSelector, one *typev1beta1.PolicyTargetReference,
	refs []*typev1beta1.PolicyTargetReference) bool {
	if one != nil {
		refs = append([]*typev1beta1.PolicyTargetReference{one}, refs...)
	}
	if len(refs) > 0 {
		if ns != g.node.Namespace {
			return false
		}
		for i, r := range refs {
			switch r.GetKind() {
			case "Service":
				if r.GetName() == g.node.Service && g.node.kind() == KindSidecar {
					return true
				}
			case "Gateway":
				if r.GetName() == g.node.Service && g.node.kind() == KindGateway {
					return true
				}
			default:
				g.skip(ref, "targetRefs["+itoa(i)+"]", "target kind "+r.GetKind()+" is not supported (Service and Gateway are); this reference selects nothing")
			}
		}
		return false
	}
	labels := sel.GetMatchLabels()
	switch {
	case ns == g.node.Namespace:
		return labelsMatch(labels, g.node.Labels)
	case ns == g.in.Mesh:
		return labelsMatch(labels, g.node.Labels)
	}
	return false
}

// authorizationPolicies returns the AuthorizationPolicies that apply to the node, oldest first.
func (g *gen) authorizationPolicies() []*authorizationPolicy {
	var out []*authorizationPolicy
	for _, ap := range g.m.aps {
		s := ap.spec
		if g.appliesTo(ap.ref, ap.namespace, s.GetSelector(), s.GetTargetRef(), s.GetTargetRefs()) {
			out = append(out, ap)
		}
	}
	return out
}

// authzFilters translates the AuthorizationPolicies of the node into HTTP filters, in Envoy's
// evaluation order: CUSTOM, DENY, ALLOW and AUDIT (LOG). A CUSTOM policy whose provider is an
// ExtensionProvider sends the requests its rules select to the ext_authz filter (see
// customAuthz); any other CUSTOM policy (unknown provider, a second provider) is enforced as
// DENY (fail closed) and reported. Without any policy no filter is added (allow all). With at
// least one ALLOW policy the ALLOW filter is present even if it has no rule left (deny all).
func (g *gen) authzFilters() []*hcmv3.HttpFilter {
	aps := g.authorizationPolicies()
	if len(aps) == 0 {
		return nil
	}
	var custom customAuthz
	groups := g.authzRules(aps, &custom)
	out := custom.filters()
	for _, gr := range groups {
		cfg := &rbacv3.RBAC{Rules: gr.rules}
		out = append(out, &hcmv3.HttpFilter{Name: gr.httpName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(cfg)}})
	}
	return out
}

// rbacGroup is the RBAC rules of one action group of AuthorizationPolicies.
type rbacGroup struct {
	httpName, networkName string // the names of its HTTP and network RBAC filters
	rules                 *rbacconfigv3.RBAC
}

// authzRules translates the AuthorizationPolicies aps into the RBAC rules of each action group,
// in Envoy's evaluation order (CUSTOM enforced as DENY, DENY, ALLOW, AUDIT), leaving out groups
// that enforce nothing: no policy of that action, or DENY, CUSTOM and AUDIT groups without
// rules. An ALLOW group with no rule left denies everything, which is what an ALLOW policy
// without (usable) rules means.
//
// With custom (HTTP), a CUSTOM policy custom takes (see customAuthz.take) goes to ext_authz;
// the others are enforced as DENY. Without (TCP: Canton has no network ext_authz filter),
// every CUSTOM policy with rules is enforced as DENY and reported, and the rules are
// translated for TCP connections (see ruleTranslator.tcp).
func (g *gen) authzRules(aps []*authorizationPolicy, custom *customAuthz) []rbacGroup {
	type group struct {
		rbacGroup
		action  rbacconfigv3.RBAC_Action
		mode    ruleMode
		present bool
		pols    map[string]*rbacconfigv3.Policy
	}
	groups := []*group{
		{rbacGroup: rbacGroup{httpName: RBACCustomFilterName, networkName: NetworkRBACCustomFilterName}, action: rbacconfigv3.RBAC_DENY, mode: modeDeny},
		{rbacGroup: rbacGroup{httpName: RBACDenyFilterName, networkName: NetworkRBACDenyFilterName}, action: rbacconfigv3.RBAC_DENY, mode: modeDeny},
		{rbacGroup: rbacGroup{httpName: RBACAllowFilterName, networkName: NetworkRBACAllowFilterName}, action: rbacconfigv3.RBAC_ALLOW, mode: modeAllow},
		{rbacGroup: rbacGroup{httpName: RBACAuditFilterName, networkName: NetworkRBACAuditFilterName}, action: rbacconfigv3.RBAC_LOG, mode: modeAudit},
	}
	tcp := custom == nil
	for _, ap := range aps {
		var gr *group
		switch ap.spec.GetAction() {
		case security.AuthorizationPolicy_CUSTOM:
			if tcp {
				if len(ap.spec.GetRules()) > 0 {
					g.skip(ap.ref, "action", customOverTCP)
				}
			} else if custom.take(g, ap) {
				continue
			}
			gr = groups[0]
		case security.AuthorizationPolicy_DENY:
			gr = groups[1]
		case security.AuthorizationPolicy_ALLOW:
			gr = groups[2]
		case security.AuthorizationPolicy_AUDIT:
			gr = groups[3]
		default:
			g.skip(ap.ref, "action", "unknown action "+ap.spec.GetAction().String())
			continue
		}
		gr.present = true
		if gr.pols == nil {
			gr.pols = map[string]*rbacconfigv3.Policy{}
		}
		for i, r := range ap.spec.GetRules() {
			t := &ruleTranslator{g: g, ap: ap, path: "rules[" + itoa(i) + "]", mode: gr.mode, tcp: tcp}
			if pol := t.rule(r); pol != nil {
				gr.pols[fmt.Sprintf(rbacPolicyNameFormat, ap.namespace, ap.name, i)] = pol
			}
		}
	}
	var out []rbacGroup
	for _, gr := range groups {
		if !gr.present || (len(gr.pols) == 0 && gr.action != rbacconfigv3.RBAC_ALLOW) {
			continue
		}
		gr.rules = &rbacconfigv3.RBAC{Action: gr.action, Policies: gr.pols}
		out = append(out, gr.rbacGroup)
	}
	return out
}
