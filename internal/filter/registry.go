package filter

import (
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	lrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// kind describes one supported HTTP filter.
type kind struct {
	// name is the filter's well-known Envoy name, used when an HttpFilter
	// carries no typed_config.
	name string
	// typeURL is the type URL of the filter's typed_config.
	typeURL string
	// terminal is true for the router: it must be last and has no Filter.
	terminal bool
	// build constructs the filter from its config (nil when the HttpFilter
	// carried no typed_config); path names the config in errors.
	build func(s spec, cfg *anypb.Any, path string) (Filter, error)
	// perRoute validates a typed_per_filter_config value of this filter
	// (nil when the filter accepts no per-route config).
	perRoute func(cfg *anypb.Any, path string) error
}

// registry lists every supported HTTP filter. Adding a filter means adding
// one line here and one file implementing it; nothing registers itself.
var registry = []kind{
	{name: "envoy.filters.http.fault", typeURL: typeURL(&faultv3.HTTPFault{}), build: buildFault, perRoute: checkFaultPerRoute},
	{name: "envoy.filters.http.local_ratelimit", typeURL: typeURL(&lrlv3.LocalRateLimit{}), build: buildLocalRateLimit, perRoute: checkLocalRateLimitPerRoute},
	{name: "envoy.filters.http.rbac", typeURL: typeURL(&rbacv3.RBAC{}), build: buildRBAC},
	// RBAC's and jwt_authn's per-route configs have their own types; their
	// second lines let CheckRouteConfig find them, and refuse them as
	// http_filters configs.
	{name: "envoy.filters.http.rbac", typeURL: typeURL(&rbacv3.RBACPerRoute{}), build: perRouteOnly, perRoute: checkRBACPerRoute},
	{name: "envoy.filters.http.jwt_authn", typeURL: typeURL(&jwtv3.JwtAuthentication{}), build: buildJWTAuthn},
	{name: "envoy.filters.http.jwt_authn", typeURL: typeURL(&jwtv3.PerRouteConfig{}), build: perRouteOnly, perRoute: checkJWTPerRoute},
	{name: "envoy.filters.http.ext_authz", typeURL: typeURL(&extauthzv3.ExtAuthz{}), build: buildExtAuthz},
	{name: "envoy.filters.http.router", typeURL: typeURL(&routerv3.Router{}), terminal: true, build: buildRouter},
}

// networkKind describes one supported network filter: one a filter chain
// may run before its terminal filter (tcp_proxy).
type networkKind struct {
	// name is the filter's well-known Envoy name (for errors; network
	// filters are identified by the type URL of their typed_config).
	name    string
	typeURL string
	// build constructs the filter from its config; path names the config
	// in errors.
	build func(cfg *anypb.Any, path string) (connFilter, error)
}

// networkRegistry lists every supported network filter, as registry does
// for HTTP filters.
var networkRegistry = []networkKind{
	{name: "envoy.filters.network.rbac", typeURL: typeURL(&netrbacv3.RBAC{}), build: buildNetworkRBAC},
}

func lookupNetwork(typeURL string) (*networkKind, bool) {
	for i := range networkRegistry {
		if networkRegistry[i].typeURL == typeURL {
			return &networkRegistry[i], true
		}
	}
	return nil, false
}

// networkNames lists the supported network filters, for errors.
func networkNames() string {
	var s string
	for i, k := range networkRegistry {
		if i > 0 {
			s += ", "
		}
		s += k.name
	}
	return s
}

func typeURL(m proto.Message) string {
	return "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName())
}

// lookup finds the kind for a type URL (preferred, as Envoy does) or, when
// typeURL is empty, for a well-known filter name.
func lookup(typeURL, name string) (*kind, bool) {
	for i := range registry {
		k := &registry[i]
		if typeURL != "" && k.typeURL == typeURL || typeURL == "" && k.name == name {
			return k, true
		}
	}
	return nil, false
}
