package filter

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
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
// parsePermission and parsePrincipal. The engine (rbac_engine.go) is the
// network RBAC filter's too (rbac_network.go).
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
		if c.rules, err = parseRBACEngine(pb.GetRules(), path+".rules", scopeRequest); err != nil {
			return nil, err
		}
	}
	if pb.GetShadowRules() != nil {
		if c.shadow, err = parseRBACEngine(pb.GetShadowRules(), path+".shadow_rules", scopeRequest); err != nil {
			return nil, err
		}
		prefix := pb.GetShadowRulesStatPrefix()
		c.shadowPolicyKey, c.shadowResultKey = prefix+rbacShadowPolicyKey, prefix+rbacShadowResultKey
	}
	return c, nil
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
	in := requestInput(r, ri)
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
