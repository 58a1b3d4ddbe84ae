package filter

import (
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// buildRouter validates the terminal router's config. The routing itself is
// the proxy's router Handler given to Build; this step only makes sure the
// config asks for nothing that handler does not do.
//
// Supported: dynamic_stats (canton keeps no per-cluster dynamic stats, so
// either value means the same). Everything else (upstream_log,
// upstream_http_filters, suppress_envoy_headers, strict_check_headers,
// start_child_span, ...) is rejected.
func buildRouter(_ spec, cfg *anypb.Any, path string) (Filter, error) {
	if cfg == nil {
		return nil, nil
	}
	var rc routerv3.Router
	if err := unmarshalAny(cfg, &rc, path); err != nil {
		return nil, err
	}
	return nil, onlyFields(&rc, path, "dynamic_stats")
}
