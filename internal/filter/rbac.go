package filter

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync/atomic"

	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// rbacDeniedBody is Envoy's body for a request refused by RBAC.
const rbacDeniedBody = "RBAC: access denied"

// rbac is envoy.filters.http.rbac: it allows or denies each request by the
// policies of its rules, and evaluates shadow_rules without enforcing them.
//
// Supported RBAC filter fields: rules, shadow_rules, rules_stat_prefix and
// shadow_rules_stat_prefix (canton has no per-filter stats; the shadow
// prefix also prefixes the metadata keys, as in Envoy). Per route, RBACPerRoute.rbac replaces the filter's
// config; an RBACPerRoute without rbac disables the filter on that route.
// Rejected: matcher, shadow_matcher, track_per_rule_stats, and in the
// policies audit_logging_options, condition, checked_condition,
// cel_config. The supported permissions and principals are listed on
// parseRule.
//
// shadow_rules are evaluated on every request and never enforced; their
// outcome is published as the request's dynamic metadata in the namespace
// envoy.filters.http.rbac (Envoy's): [prefix]shadow_engine_result
// ("allowed" or "denied") always, and [prefix]shadow_effective_policy_id
// (the first matching policy's name, in name order) when a policy matched.
// Later filters match it with a MetadataMatcher: this is how Istio's CUSTOM
// action sends only the requests matching its rules to ext_authz
// (filter_enabled_metadata).
//
// Semantics are Envoy's: with action ALLOW a request passes iff some policy
// matches; with DENY it passes iff none matches; LOG always passes. A policy
// matches when one of its permissions and one of its principals match.
// A denied request gets 403 "RBAC: access denied" (grpc-status 7,
// PERMISSION_DENIED, for gRPC requests). Absent rules enforce nothing; rules
// with no policies and action ALLOW deny everything.
//
// Request attributes come from the request and its context, never from
// headers a client could forge: the authenticated peer from PeerFrom (a
// request without an authenticated principal never matches authenticated,
// and so does match not_id over it: DENY rules with notPrincipals catch
// plaintext peers), source_ip, direct_remote_ip and remote_ip from the
// peer's IP or else r.RemoteAddr (canton does not derive the remote address
// from X-Forwarded-For), destination_ip/port from WithDestination or else
// the server's local address (http.LocalAddrContextKey),
// requested_server_name from r.TLS, url_path from the escaped path without
// the query (r.URL.RawPath, which the proxy sets to its normalized path, else
// r.URL.Path), and metadata from the request's dynamic metadata (the
// verified JWT, JWTFrom, and earlier RBAC filters' shadow results). Matching does
// not allocate, except for the joined value of a header that occurs several
// times, a ":path" header matcher on a request with a query, and a safe_regex
// over a principal name.
type rbac struct {
	spec
	def   *rbacConfig
	stats rbacStats
}

// rbacConfig is a decoded RBAC filter (or per-route) config.
type rbacConfig struct {
	rules  *rbacEngine // nil: nothing enforced
	shadow *rbacEngine // nil: no shadow evaluation
	// shadowPolicyKey and shadowResultKey are the metadata keys of the shadow
	// result: shadow_rules_stat_prefix + Envoy's key names.
	shadowPolicyKey, shadowResultKey string
}

// rbacStats counts decisions, like Envoy's rbac.* statistics.
type rbacStats struct {
	allowed, denied, logged     atomic.Uint64
	shadowAllowed, shadowDenied atomic.Uint64
}

var rbacRoutes = &routeCache[*rbacConfig]{
	typeURL: typeURL(&rbacv3.RBACPerRoute{}),
	parse:   parseRBACPerRouteAny,
}

func buildRBAC(s spec, cfg *anypb.Any, path string) (Filter, error) {
	f := &rbac{spec: s, def: &rbacConfig{}}
	if cfg != nil {
		var pb rbacv3.RBAC
		if err := unmarshalAny(cfg, &pb, path); err != nil {
			return nil, err
		}
		c, err := parseRBACFilter(&pb, path)
		if err != nil {
			return nil, err
		}
		f.def = c
	}
	return f, nil
}

func checkRBACPerRoute(cfg *anypb.Any, path string) error {
	_, err := parseRBACPerRouteAny(cfg, path)
	return err
}

func parseRBACPerRouteAny(a *anypb.Any, path string) (*rbacConfig, error) {
	var pb rbacv3.RBACPerRoute
	if err := unmarshalAny(a, &pb, path); err != nil {
		return nil, err
	}
	if err := onlyFields(&pb, path, "rbac"); err != nil {
		return nil, err
	}
	if pb.GetRbac() == nil {
		return &rbacConfig{}, nil // Envoy: the filter's policy is disabled for this route
	}
	return parseRBACFilter(pb.GetRbac(), path+".rbac")
}

func parseRBACFilter(pb *rbacv3.RBAC, path string) (*rbacConfig, error) {
	if err := onlyFields(pb, path, "rules", "shadow_rules", "rules_stat_prefix", "shadow_rules_stat_prefix"); err != nil {
		return nil, err
	}
	c := &rbacConfig{}
	var err error
	if pb.GetRules() != nil {
		if c.rules, err = parseRBACEngine(pb.GetRules(), path+".rules"); err != nil {
			return nil, err
		}
	}
	if pb.GetShadowRules() != nil {
		if c.shadow, err = parseRBACEngine(pb.GetShadowRules(), path+".shadow_rules"); err != nil {
			return nil, err
		}
		prefix := pb.GetShadowRulesStatPrefix()
		c.shadowPolicyKey, c.shadowResultKey = prefix+rbacShadowPolicyKey, prefix+rbacShadowResultKey
	}
	return c, nil
}

// rbacEngine is a decoded envoy.config.rbac.v3.RBAC.
type rbacEngine struct {
	action   rbacconfigv3.RBAC_Action
	policies []rbacPolicy // sorted by name, as Envoy iterates them
}

type rbacPolicy struct {
	name        string
	permissions []rule
	principals  []rule
}

func parseRBACEngine(pb *rbacconfigv3.RBAC, path string) (*rbacEngine, error) {
	if err := onlyFields(pb, path, "action", "policies"); err != nil {
		return nil, err
	}
	e := &rbacEngine{action: pb.GetAction()}
	switch e.action {
	case rbacconfigv3.RBAC_ALLOW, rbacconfigv3.RBAC_DENY, rbacconfigv3.RBAC_LOG:
	default:
		return nil, fmt.Errorf("%s.action: unknown value %d", path, e.action)
	}
	names := make([]string, 0, len(pb.GetPolicies()))
	for name := range pb.GetPolicies() {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		p := fmt.Sprintf("%s.policies[%q]", path, name)
		pol, err := parseRBACPolicy(pb.GetPolicies()[name], p)
		if err != nil {
			return nil, err
		}
		pol.name = name
		e.policies = append(e.policies, pol)
	}
	return e, nil
}

func parseRBACPolicy(pb *rbacconfigv3.Policy, path string) (rbacPolicy, error) {
	if pb == nil {
		return rbacPolicy{}, fmt.Errorf("%s: empty policy", path)
	}
	if err := onlyFields(pb, path, "permissions", "principals"); err != nil {
		return rbacPolicy{}, err
	}
	if len(pb.GetPermissions()) == 0 {
		return rbacPolicy{}, fmt.Errorf("%s.permissions: at least one required", path)
	}
	if len(pb.GetPrincipals()) == 0 {
		return rbacPolicy{}, fmt.Errorf("%s.principals: at least one required", path)
	}
	var pol rbacPolicy
	for i, pm := range pb.GetPermissions() {
		r, err := parsePermission(pm, fmt.Sprintf("%s.permissions[%d]", path, i), 0)
		if err != nil {
			return rbacPolicy{}, err
		}
		pol.permissions = append(pol.permissions, r)
	}
	for i, pr := range pb.GetPrincipals() {
		r, err := parsePrincipal(pr, fmt.Sprintf("%s.principals[%d]", path, i), 0)
		if err != nil {
			return rbacPolicy{}, err
		}
		pol.principals = append(pol.principals, r)
	}
	return pol, nil
}

// eval applies the engine to a request: allowed is the engine's decision,
// policy the name of the first matching policy ("" for none).
func (e *rbacEngine) eval(in *rbacInput) (allowed bool, policy string) {
	for i := range e.policies {
		p := &e.policies[i]
		if anyMatch(p.permissions, in) && anyMatch(p.principals, in) {
			policy = p.name
			break
		}
	}
	switch e.action {
	case rbacconfigv3.RBAC_ALLOW:
		return policy != "", policy
	case rbacconfigv3.RBAC_DENY:
		return policy == "", policy
	}
	return true, policy // LOG
}

func (f *rbac) ServeHTTP(w http.ResponseWriter, r *http.Request, next Handler) error {
	ri := infoFrom(r.Context())
	c, ok, err := resolve(routeLookup{ri}, rbacRoutes, f.name, f.disabled, f.def)
	if err != nil {
		return err
	}
	if !ok || (c.rules == nil && c.shadow == nil) {
		return next.ServeHTTP(w, r)
	}
	in := rbacInput{r: r, ri: ri}
	if c.shadow != nil {
		allowed, policy := c.shadow.eval(&in)
		result := rbacResultAllowed
		if allowed {
			f.stats.shadowAllowed.Add(1)
		} else {
			f.stats.shadowDenied.Add(1)
			result = rbacResultDenied
		}
		// Envoy's dynamic metadata: the engine's result always, the matched
		// policy only when one matched. Published before enforcement, as
		// Envoy does, so a denied request's access log has it too.
		fields := map[string]string{c.shadowResultKey: result}
		if policy != "" {
			fields[c.shadowPolicyKey] = policy
		}
		r = r.WithContext(withRBACMetadata(r.Context(), fields))
		in.r, in.metaDone = r, false
	}
	if c.rules != nil {
		allowed, policy := c.rules.eval(&in)
		if !allowed {
			f.stats.denied.Add(1)
			localReply(w, r, http.StatusForbidden, -1, rbacDeniedBody)
			return nil
		}
		f.stats.allowed.Add(1)
		if c.rules.action == rbacconfigv3.RBAC_LOG && policy != "" {
			f.stats.logged.Add(1)
		}
	}
	return next.ServeHTTP(w, r)
}

// rbacInput is what the matchers read from one request. It lives on the
// evaluating goroutine's stack; the attributes that cost a lookup are
// computed on first use.
type rbacInput struct {
	r  *http.Request
	ri *reqInfo

	srcDone, dstDone, metaDone bool
	src                        netip.Addr
	dst                        netip.AddrPort
	meta                       requestMetadata
}

// principal returns the authenticated peer's principal ("" for none).
func (in *rbacInput) principal() string {
	if in.ri == nil || !in.ri.hasPeer {
		return ""
	}
	return in.ri.peer.Principal
}

// source is the downstream address: the peer's IP as the proxy recorded
// it, else the request's RemoteAddr.
func (in *rbacInput) source() netip.Addr {
	if !in.srcDone {
		in.srcDone = true
		if in.ri != nil && in.ri.hasPeer && in.ri.peer.IP.IsValid() {
			in.src = in.ri.peer.IP.Unmap()
		} else if ap, err := netip.ParseAddrPort(in.r.RemoteAddr); err == nil {
			in.src = ap.Addr().Unmap()
		} else if a, err := netip.ParseAddr(in.r.RemoteAddr); err == nil {
			in.src = a.Unmap()
		}
	}
	return in.src
}

// destination is the address the downstream connected to.
func (in *rbacInput) destination() netip.AddrPort {
	if !in.dstDone {
		in.dstDone = true
		ctx := in.r.Context()
		if d, ok := ctx.Value(destKey{}).(netip.AddrPort); ok {
			in.dst = d
		} else if ta, ok := ctx.Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
			in.dst = ta.AddrPort()
		}
		in.dst = netip.AddrPortFrom(in.dst.Addr().Unmap(), in.dst.Port())
	}
	return in.dst
}

// metadata is the request's dynamic metadata (the verified JWT, earlier
// RBAC filters' shadow results).
func (in *rbacInput) metadata() requestMetadata {
	if !in.metaDone {
		in.metaDone = true
		in.meta = metadataOf(in.r.Context())
	}
	return in.meta
}

type destKey struct{}

// WithDestination returns a context carrying the destination address of the
// request's connection, which RBAC's destination_ip and destination_port
// match. The proxy sets it when the address the client targeted differs
// from the listener's local address (the default, taken from
// http.LocalAddrContextKey), e.g. an inbound listener in front of the
// application's port.
func WithDestination(ctx context.Context, dst netip.AddrPort) context.Context {
	return context.WithValue(ctx, destKey{}, dst)
}

// perRouteOnly is the build step of registry lines that exist only so that
// a filter's per-route config type (distinct from its filter config type) is
// recognized: such a type is not a filter config.
func perRouteOnly(_ spec, cfg *anypb.Any, path string) (Filter, error) {
	return nil, fmt.Errorf("%s: %s is a per-route config (typed_per_filter_config), not a filter config", path, cfg.GetTypeUrl())
}
