package filter

import (
	"fmt"
	"net/netip"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// Conn is a downstream connection as network filters see it when it
// starts: after the TLS handshake of a filter chain that terminates TLS,
// before anything is sent upstream.
type Conn struct {
	// Peer is the downstream peer: Principal and Namespace only after a
	// verified mTLS handshake (else empty), IP always (the source address).
	Peer Peer
	// Destination is the address the downstream connected to: the
	// listener's local address, or a captured connection's original
	// destination.
	Destination netip.AddrPort
	// ServerName is the SNI the client requested ("" for none or plain text).
	ServerName string
}

// NetworkFilters is the compiled list of network filters a filter chain
// runs on each connection before its terminal filter (tcp_proxy), in order.
// The supported filters are listed in registry.go (networkRegistry). A nil
// *NetworkFilters lets every connection through.
type NetworkFilters struct {
	filters []connFilter
}

// connFilter is one network filter: it decides once per connection, when
// the connection starts, whether it may go on.
type connFilter interface {
	// allow reports whether c may go on; when it may not, details is
	// Envoy's connection termination details for the access log.
	allow(c *Conn) (ok bool, details string)
}

// BuildNetwork compiles the network filters that precede a filter chain's
// terminal filter; path names the chain's filters list in errors (e.g.
// "filter_chains[0].filters"). A filter without typed_config, of an
// unsupported type, or with an unsupported field or invalid value is an
// error naming filters[i], its name and the field path, as Build does for
// HTTP filters.
func BuildNetwork(filters []*listenerv3.Filter, path string) (*NetworkFilters, error) {
	if len(filters) == 0 {
		return nil, nil
	}
	n := &NetworkFilters{}
	for i, f := range filters {
		p := fmt.Sprintf("%s[%d](%s)", path, i, f.GetName())
		cfg := f.GetTypedConfig()
		if cfg == nil {
			return nil, fmt.Errorf("%s.typed_config: required", p)
		}
		k, ok := lookupNetwork(cfg.GetTypeUrl())
		if !ok {
			return nil, fmt.Errorf("%s.typed_config: network filter type %q is not supported before the terminal filter (supported: %s)",
				p, cfg.GetTypeUrl(), networkNames())
		}
		cf, err := k.build(cfg, p+".typed_config")
		if err != nil {
			return nil, err
		}
		n.filters = append(n.filters, cf)
	}
	return n, nil
}

// Allow runs the filters on c in order and reports whether the connection
// may go on. When it may not, details is Envoy's connection termination
// details (e.g. "rbac_access_denied_matched_policy[none]"), and the caller
// closes the connection without sending anything upstream.
func (n *NetworkFilters) Allow(c *Conn) (ok bool, details string) {
	if n == nil {
		return true, ""
	}
	for _, f := range n.filters {
		if ok, details := f.allow(c); !ok {
			return false, details
		}
	}
	return true, ""
}

// networkRBAC is envoy.filters.network.rbac: it allows or denies each
// connection, once, by the policies of its rules, with the engine and rules
// of the HTTP RBAC filter (see rbac) evaluated over the connection's
// attributes: the authenticated principal, source_ip, direct_remote_ip and
// remote_ip (the downstream address: a connection carries no
// X-Forwarded-For), destination_ip and destination_port, and
// requested_server_name.
//
// Supported fields: rules, shadow_rules (evaluated and counted, never
// enforced; a connection has no dynamic metadata to publish them in),
// stat_prefix (required, as in Envoy; informational) and
// shadow_rules_stat_prefix (informational). Rejected: matcher,
// shadow_matcher, enforcement_type CONTINUOUS, delay_deny, and in the rules
// header, url_path and metadata (HTTP rules: Envoy rejects header rules in
// this filter; a connection has no path or metadata either).
//
// The decision is taken when the connection starts, before the upstream is
// dialled: a denied connection is closed without a byte reaching the
// upstream. (Envoy's default, ONE_TIME_ON_FIRST_BYTE, decides on the first
// bytes the client sends, and its tcp_proxy has dialled by then.) Absent
// rules enforce nothing; rules with no policies and action ALLOW deny
// every connection.
type networkRBAC struct {
	rules, shadow *rbacEngine
	stats         rbacStats
}

func buildNetworkRBAC(cfg *anypb.Any, path string) (connFilter, error) {
	var pb netrbacv3.RBAC
	if err := unmarshalAny(cfg, &pb, path); err != nil {
		return nil, err
	}
	if err := onlyFields(&pb, path, "rules", "shadow_rules", "stat_prefix", "shadow_rules_stat_prefix"); err != nil {
		return nil, err
	}
	if pb.GetStatPrefix() == "" {
		return nil, fmt.Errorf("%s.stat_prefix: required", path)
	}
	f := &networkRBAC{}
	var err error
	if pb.GetRules() != nil {
		if f.rules, err = parseRBACEngine(pb.GetRules(), path+".rules", scopeConn); err != nil {
			return nil, err
		}
	}
	if pb.GetShadowRules() != nil {
		if f.shadow, err = parseRBACEngine(pb.GetShadowRules(), path+".shadow_rules", scopeConn); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// rbacDeniedDetails is Envoy's connection termination details for a
// connection the network RBAC filter denied.
func rbacDeniedDetails(policy string) string {
	if policy == "" {
		policy = "none"
	}
	return "rbac_access_denied_matched_policy[" + policy + "]"
}

func (f *networkRBAC) allow(c *Conn) (bool, string) {
	in := connInput(c)
	if f.shadow != nil {
		if allowed, _ := f.shadow.eval(&in); allowed {
			f.stats.shadowAllowed.Add(1)
		} else {
			f.stats.shadowDenied.Add(1)
		}
	}
	if f.rules == nil {
		return true, ""
	}
	allowed, policy := f.rules.eval(&in)
	if !allowed {
		f.stats.denied.Add(1)
		return false, rbacDeniedDetails(policy)
	}
	f.stats.allowed.Add(1)
	if f.rules.action == rbacconfigv3.RBAC_LOG && policy != "" {
		f.stats.logged.Add(1)
	}
	return true, ""
}
