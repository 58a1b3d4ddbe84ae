package filter

import (
	"context"
	"maps"
)

// rbacMetadataNamespace is the dynamic metadata namespace of Envoy's RBAC
// filter (whatever the HttpFilter's name): the results of shadow_rules.
const rbacMetadataNamespace = "envoy.filters.http.rbac"

// The keys RBAC publishes for its shadow rules, after shadow_rules_stat_prefix.
const (
	rbacShadowPolicyKey = "shadow_effective_policy_id"
	rbacShadowResultKey = "shadow_engine_result"
)

// Values of the shadow_engine_result key.
const (
	rbacResultAllowed = "allowed"
	rbacResultDenied  = "denied"
)

// The request's dynamic metadata is what filters learned about the request
// and published for the filters after them, Envoy's dynamic metadata keyed
// by namespace. Each namespace lives in the request context under its own
// key, written by one filter kind:
//
//   - envoy.filters.http.jwt_authn and istio_authn: the verified JWT (WithJWT,
//     JWTFrom), see JWT for the paths;
//   - envoy.filters.http.rbac: the flat string fields RBAC filters publish for
//     their shadow rules ([prefix]shadow_effective_policy_id,
//     [prefix]shadow_engine_result), merged across RBAC filters as Envoy
//     merges a namespace's struct (a later filter's key wins).
//
// MetadataMatchers (RBAC's metadata principal, ext_authz's
// filter_enabled_metadata) read every namespace through requestMetadata.
type rbacMetaKey struct{}

// withRBACMetadata returns a context whose envoy.filters.http.rbac metadata
// is the context's merged with fields. The stored map is never mutated.
func withRBACMetadata(ctx context.Context, fields map[string]string) context.Context {
	if prev, ok := ctx.Value(rbacMetaKey{}).(map[string]string); ok && len(prev) > 0 {
		merged := maps.Clone(prev)
		maps.Copy(merged, fields)
		fields = merged
	}
	return context.WithValue(ctx, rbacMetaKey{}, fields)
}

// RBACMetadata returns the envoy.filters.http.rbac dynamic metadata the RBAC
// filters published for the request so far (nil for none), e.g. for access
// logs. The map must not be modified.
func RBACMetadata(ctx context.Context) map[string]string {
	m, _ := ctx.Value(rbacMetaKey{}).(map[string]string)
	return m
}

// requestMetadata is a request's dynamic metadata, every namespace.
type requestMetadata struct {
	jwt  *JWT
	rbac map[string]string
}

func metadataOf(ctx context.Context) requestMetadata {
	j, _ := JWTFrom(ctx)
	return requestMetadata{jwt: j, rbac: RBACMetadata(ctx)}
}

// value looks path up in namespace filter; ok is false when it is missing.
func (m requestMetadata) value(filter string, path []string) (v any, ok bool) {
	if filter == rbacMetadataNamespace {
		if len(path) != 1 {
			return nil, false // the namespace's values are strings: no deeper path exists
		}
		s, found := m.rbac[path[0]]
		return s, found
	}
	return m.jwt.metadataValue(filter, path)
}
