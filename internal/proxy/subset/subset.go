package subset

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	// Register the extension types Any fields may hold.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// opaque marks a field whose content is checked elsewhere (HTTP filter configs by the filter chain
// builder) or carries no behaviour (metadata).
const opaque = "*"

// allowed lists, per message, the fields the proxy implements. A field mapped to opaque is accepted
// without looking inside.
var allowed = map[protoreflect.FullName]map[string]string{}

func allow(msg string, fields ...string) {
	m := map[string]string{}
	for _, f := range fields {
		name, mode, _ := strings.Cut(f, ":")
		m[name] = mode
	}
	allowed[protoreflect.FullName(msg)] = m
}

func init() {
	// Well-known leaf types.
	for _, w := range []string{"google.protobuf.UInt32Value", "google.protobuf.UInt64Value", "google.protobuf.BoolValue",
		"google.protobuf.Int64Value", "google.protobuf.StringValue"} {
		allow(w, "value")
	}
	allow("google.protobuf.Duration", "seconds", "nanos")
	allow("envoy.config.core.v3.Metadata", "filter_metadata:*", "typed_filter_metadata:*")

	// Listener.
	allow("envoy.config.listener.v3.Listener", "name", "address", "filter_chains", "default_filter_chain",
		"listener_filters", "listener_filters_timeout", "traffic_direction", "use_original_dst", "bind_to_port",
		"stat_prefix", "metadata")
	allow("envoy.config.core.v3.Address", "socket_address")
	allow("envoy.config.core.v3.SocketAddress", "protocol", "address", "port_value")
	allow("envoy.config.listener.v3.FilterChain", "name", "filter_chain_match", "filters", "transport_socket", "metadata")
	allow("envoy.config.listener.v3.FilterChainMatch", "server_names", "transport_protocol", "application_protocols", "destination_port")
	allow("envoy.config.listener.v3.Filter", "name", "typed_config")
	allow("envoy.config.listener.v3.ListenerFilter", "name", "typed_config")
	allow("envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector")
	allow("envoy.extensions.filters.listener.original_dst.v3.OriginalDst")
	allow("envoy.config.core.v3.TransportSocket", "name", "typed_config")

	// HTTP connection manager.
	allow("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
		"codec_type", "stat_prefix", "rds", "route_config", "http_filters", "common_http_protocol_options",
		"http2_protocol_options", "request_headers_timeout", "drain_timeout", "normalize_path", "merge_slashes", "path_with_escaped_slashes_action",
		"strip_any_host_port", "upgrade_configs", "max_request_headers_kb", "server_name", "use_remote_address",
		"generate_request_id", "stream_idle_timeout", "request_timeout", "strip_trailing_host_dot",
		"forward_client_cert_details", "set_current_client_cert_details")
	allow("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.SetCurrentClientCertDetails",
		"subject", "cert", "chain", "dns", "uri")
	allow("envoy.extensions.filters.network.http_connection_manager.v3.Rds", "config_source", "route_config_name")
	allow("envoy.config.core.v3.ConfigSource", "ads", "resource_api_version")
	allow("envoy.config.core.v3.AggregatedConfigSource")
	allow("envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter", "name", "typed_config:*")
	allow("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.UpgradeConfig", "upgrade_type", "enabled")
	allow("envoy.config.core.v3.HttpProtocolOptions", "idle_timeout", "max_headers_count", "max_connection_duration")
	allow("envoy.config.core.v3.Http1ProtocolOptions")
	allow("envoy.config.core.v3.Http2ProtocolOptions", "max_concurrent_streams", "initial_stream_window_size", "initial_connection_window_size")
	allow("envoy.extensions.filters.http.router.v3.Router")

	// TCP proxy.
	allow("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", "stat_prefix", "cluster", "weighted_clusters", "idle_timeout")
	allow("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster", "clusters")
	allow("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster.ClusterWeight", "name", "weight")

	// Network RBAC (before a tcp_proxy): the rules are checked by internal/filter (BuildNetwork).
	allow("envoy.extensions.filters.network.rbac.v3.RBAC", "rules:*", "shadow_rules:*", "stat_prefix", "shadow_rules_stat_prefix")

	// Routes.
	allow("envoy.config.route.v3.RouteConfiguration", "name", "virtual_hosts", "request_headers_to_add",
		"request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove",
		"typed_per_filter_config:*", "validate_clusters")
	allow("envoy.config.route.v3.VirtualHost", "name", "domains", "routes", "request_headers_to_add",
		"request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove", "retry_policy",
		"typed_per_filter_config:*", "metadata")
	allow("envoy.config.route.v3.Route", "name", "match", "route", "redirect", "direct_response",
		"non_forwarding_action", "request_headers_to_add", "request_headers_to_remove", "response_headers_to_add",
		"response_headers_to_remove", "typed_per_filter_config:*", "metadata")
	allow("envoy.config.route.v3.NonForwardingAction")
	allow("envoy.config.route.v3.RouteMatch", "prefix", "path", "safe_regex", "path_separated_prefix",
		"case_sensitive", "headers", "query_parameters", "grpc", "runtime_fraction")
	allow("envoy.config.route.v3.RouteMatch.GrpcRouteMatchOptions")
	allow("envoy.config.core.v3.RuntimeFractionalPercent", "default_value")
	allow("envoy.type.v3.FractionalPercent", "numerator", "denominator")
	allow("envoy.config.route.v3.HeaderMatcher", "name", "string_match", "exact_match", "prefix_match",
		"suffix_match", "contains_match", "safe_regex_match", "present_match", "range_match", "invert_match",
		"treat_missing_header_as_empty")
	allow("envoy.type.matcher.v3.StringMatcher", "exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case")
	allow("envoy.type.matcher.v3.RegexMatcher", "regex", "google_re2")
	allow("envoy.type.matcher.v3.RegexMatcher.GoogleRE2")
	allow("envoy.type.v3.Int64Range", "start", "end")
	allow("envoy.config.route.v3.QueryParameterMatcher", "name", "string_match", "present_match")
	allow("envoy.config.route.v3.RouteAction", "cluster", "cluster_header", "weighted_clusters",
		"cluster_not_found_response_code", "prefix_rewrite", "regex_rewrite", "host_rewrite_literal", "timeout", "idle_timeout",
		"retry_policy", "request_mirror_policies", "hash_policy", "upgrade_configs")
	allow("envoy.config.route.v3.WeightedCluster", "clusters")
	allow("envoy.config.route.v3.WeightedCluster.ClusterWeight", "name", "weight")
	allow("envoy.type.matcher.v3.RegexMatchAndSubstitute", "pattern", "substitution")
	allow("envoy.config.route.v3.RetryPolicy", "retry_on", "num_retries", "per_try_timeout", "retry_back_off", "retriable_status_codes",
		"retry_host_predicate", "host_selection_retry_max_attempts")
	allow("envoy.config.route.v3.RetryPolicy.RetryHostPredicate", "name", "typed_config")
	allow("envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate")
	allow("envoy.config.route.v3.RetryPolicy.RetryBackOff", "base_interval", "max_interval")
	allow("envoy.config.route.v3.RouteAction.RequestMirrorPolicy", "cluster", "runtime_fraction")
	allow("envoy.config.route.v3.RouteAction.HashPolicy", "header", "cookie", "connection_properties", "terminal")
	allow("envoy.config.route.v3.RouteAction.HashPolicy.Header", "header_name")
	allow("envoy.config.route.v3.RouteAction.HashPolicy.Cookie", "name")
	allow("envoy.config.route.v3.RouteAction.HashPolicy.ConnectionProperties", "source_ip")
	allow("envoy.config.route.v3.RouteAction.UpgradeConfig", "upgrade_type", "enabled")
	allow("envoy.config.route.v3.RedirectAction", "https_redirect", "scheme_redirect", "host_redirect",
		"port_redirect", "path_redirect", "prefix_rewrite", "regex_rewrite", "response_code", "strip_query")
	allow("envoy.config.route.v3.DirectResponseAction", "status", "body")
	allow("envoy.config.core.v3.DataSource", "inline_string", "inline_bytes")
	allow("envoy.config.core.v3.HeaderValueOption", "header", "append", "append_action", "keep_empty_value")
	allow("envoy.config.core.v3.HeaderValue", "key", "value", "raw_value")

	// Clusters and endpoints.
	allow("envoy.config.cluster.v3.Cluster", "name", "type", "eds_cluster_config", "connect_timeout", "lb_policy",
		"load_assignment", "circuit_breakers", "outlier_detection", "http2_protocol_options",
		"typed_extension_protocol_options", "transport_socket", "transport_socket_matches", "ring_hash_lb_config", "maglev_lb_config", "common_lb_config", "metadata")
	allow("envoy.config.cluster.v3.Cluster.CommonLbConfig", "locality_weighted_lb_config")
	allow("envoy.config.cluster.v3.Cluster.CommonLbConfig.LocalityWeightedLbConfig")
	allow("envoy.config.cluster.v3.Cluster.TransportSocketMatch", "name", "match", "transport_socket")
	allow("google.protobuf.Struct", "fields")
	allow("google.protobuf.Value", "string_value")
	allow("envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer")
	allow("envoy.config.cluster.v3.Cluster.EdsClusterConfig", "eds_config", "service_name")
	allow("envoy.config.cluster.v3.Cluster.RingHashLbConfig", "minimum_ring_size", "maximum_ring_size", "hash_function")
	allow("envoy.config.cluster.v3.Cluster.MaglevLbConfig", "table_size")
	allow("envoy.config.cluster.v3.CircuitBreakers", "thresholds")
	allow("envoy.config.cluster.v3.CircuitBreakers.Thresholds", "priority", "max_connections",
		"max_pending_requests", "max_requests", "max_retries", "retry_budget")
	allow("envoy.config.cluster.v3.CircuitBreakers.Thresholds.RetryBudget", "budget_percent", "min_retry_concurrency")
	allow("envoy.type.v3.Percent", "value")
	allow("envoy.config.cluster.v3.OutlierDetection", "consecutive_5xx", "consecutive_gateway_failure",
		"enforcing_consecutive_5xx", "enforcing_consecutive_gateway_failure", "interval", "base_ejection_time",
		"max_ejection_percent", "max_ejection_time")
	allow("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", "explicit_http_config", "common_http_protocol_options")
	allow("envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig", "http_protocol_options", "http2_protocol_options")
	allow("envoy.config.endpoint.v3.ClusterLoadAssignment", "cluster_name", "endpoints")
	allow("envoy.config.endpoint.v3.LocalityLbEndpoints", "locality", "lb_endpoints", "load_balancing_weight", "priority")
	allow("envoy.config.core.v3.Locality", "region", "zone", "sub_zone")
	allow("envoy.config.endpoint.v3.LbEndpoint", "endpoint", "health_status", "load_balancing_weight", "metadata")
	allow("envoy.config.endpoint.v3.Endpoint", "address", "hostname")

	// TLS and secrets.
	allow("envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext", "common_tls_context", "sni")
	allow("envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext", "common_tls_context", "require_client_certificate")
	allow("envoy.extensions.transport_sockets.tls.v3.CommonTlsContext", "tls_certificate_sds_secret_configs",
		"validation_context_sds_secret_config", "combined_validation_context", "alpn_protocols", "tls_params")
	allow("envoy.extensions.transport_sockets.tls.v3.CommonTlsContext.CombinedCertificateValidationContext",
		"default_validation_context", "validation_context_sds_secret_config")
	allow("envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig", "name", "sds_config")
	allow("envoy.extensions.transport_sockets.tls.v3.TlsParameters", "tls_minimum_protocol_version", "tls_maximum_protocol_version")
	allow("envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext", "trusted_ca", "match_typed_subject_alt_names")
	allow("envoy.extensions.transport_sockets.tls.v3.SubjectAltNameMatcher", "san_type", "matcher")
	allow("envoy.extensions.transport_sockets.tls.v3.Secret", "name", "tls_certificate", "validation_context")
	allow("envoy.extensions.transport_sockets.tls.v3.TlsCertificate", "certificate_chain", "private_key")
}

// extensions are the message types a google.protobuf.Any may hold.
var extensions = map[protoreflect.FullName]bool{
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager": true,
	"envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy":                            true,
	"envoy.extensions.filters.network.rbac.v3.RBAC":                                     true,
	"envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector":                   true,
	"envoy.extensions.filters.listener.original_dst.v3.OriginalDst":                     true,
	"envoy.extensions.filters.http.router.v3.Router":                                    true,
	"envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext":                      true,
	"envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer":                        true,
	"envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext":                    true,
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions":                            true,
	"envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate":              true,
}

// Check returns an error naming the first field of m (in field-number order, depth first) that is
// outside the supported subset, or nil.
func Check(m proto.Message) error {
	return check(m.ProtoReflect(), "")
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func check(m protoreflect.Message, path string) error {
	name := m.Descriptor().FullName()
	if name == "google.protobuf.Any" {
		a := m.Interface().(*anypb.Any)
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s: extension type %q is not supported", path, strings.TrimPrefix(a.GetTypeUrl(), "type.googleapis.com/"))
		}
		if !extensions[inner.ProtoReflect().Descriptor().FullName()] {
			return fmt.Errorf("%s: extension type %q is not supported", path, inner.ProtoReflect().Descriptor().FullName())
		}
		return check(inner.ProtoReflect(), path)
	}
	fields, ok := allowed[name]
	if !ok {
		return fmt.Errorf("%s: message type %s is not supported", path, name)
	}
	type entry struct {
		fd protoreflect.FieldDescriptor
		v  protoreflect.Value
	}
	var set []entry
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		set = append(set, entry{fd, v})
		return true
	})
	slices.SortFunc(set, func(a, b entry) int { return int(a.fd.Number()) - int(b.fd.Number()) })
	if len(m.GetUnknown()) > 0 {
		return fmt.Errorf("%s: unknown fields (a newer API version?) are not supported", orRoot(path))
	}
	for _, e := range set {
		fname := string(e.fd.Name())
		fpath := join(path, fname)
		mode, ok := fields[fname]
		if !ok {
			return fmt.Errorf("%s: field not supported", fpath)
		}
		if mode == opaque {
			continue
		}
		if err := checkValue(e.fd, e.v, fpath); err != nil {
			return err
		}
	}
	return nil
}

func orRoot(p string) string {
	if p == "" {
		return "(resource)"
	}
	return p
}

func checkValue(fd protoreflect.FieldDescriptor, v protoreflect.Value, path string) error {
	switch {
	case fd.IsList():
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return nil
		}
		l := v.List()
		for i := 0; i < l.Len(); i++ {
			if err := check(l.Get(i).Message(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case fd.IsMap():
		if fd.MapValue().Kind() != protoreflect.MessageKind {
			return nil
		}
		var err error
		v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
			err = check(mv.Message(), fmt.Sprintf("%s[%q]", path, k.String()))
			return err == nil
		})
		return err
	case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
		return check(v.Message(), path)
	}
	return nil
}
