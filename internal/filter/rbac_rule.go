package filter

import (
	"fmt"
	"net/netip"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// maxMatcherDepth bounds the nesting of and/or/not rules and value
// matchers, so that matching (which recurses) stays bounded.
const maxMatcherDepth = 32

type ruleKind uint8

const (
	ruleAny ruleKind = iota
	ruleAnd
	ruleOr
	ruleNot
	ruleHeader
	rulePath
	ruleDstIP
	ruleDstPort // [lo, hi]
	ruleSNI
	ruleAuthenticated // str set when hasStr
	ruleSrcIP         // source_ip, direct_remote_ip and remote_ip
	ruleMetadata
)

// rule is one compiled Permission or Principal. Both trees share the node
// type: they differ only in which leaves the parser accepts.
type rule struct {
	kind   ruleKind
	sub    []rule // and/or; not has exactly one
	str    strMatcher
	hasStr bool
	hdr    *hdrMatcher
	prefix netip.Prefix
	lo, hi uint32
	meta   *metaMatcher
}

// spiffeScheme is the scheme the proxy strips from Peer.Principal and Envoy
// keeps in the URI SAN that authenticated.principal_name matches.
const spiffeScheme = "spiffe://"

// parsePermission compiles a Permission. Supported: any, and_rules,
// or_rules, not_rule, header, url_path, destination_ip, destination_port,
// destination_port_range, requested_server_name. Rejected (error naming
// the field): metadata, matcher, uri_template, sourced_metadata; and, in
// scopeConn (the network filter), header and url_path.
func parsePermission(pb *rbacconfigv3.Permission, path string, depth int, scope ruleScope) (rule, error) {
	if pb == nil {
		return rule{}, fmt.Errorf("%s: empty permission", path)
	}
	if depth > maxMatcherDepth {
		return rule{}, fmt.Errorf("%s: nested deeper than %d", path, maxMatcherDepth)
	}
	switch r := pb.GetRule().(type) {
	case *rbacconfigv3.Permission_Any:
		if !r.Any {
			return rule{}, fmt.Errorf("%s.any: must be true", path)
		}
		return rule{kind: ruleAny}, nil
	case *rbacconfigv3.Permission_AndRules:
		return parsePermissionSet(ruleAnd, r.AndRules.GetRules(), path+".and_rules.rules", depth, scope)
	case *rbacconfigv3.Permission_OrRules:
		return parsePermissionSet(ruleOr, r.OrRules.GetRules(), path+".or_rules.rules", depth, scope)
	case *rbacconfigv3.Permission_NotRule:
		sub, err := parsePermission(r.NotRule, path+".not_rule", depth+1, scope)
		return rule{kind: ruleNot, sub: []rule{sub}}, err
	case *rbacconfigv3.Permission_Header:
		if scope == scopeConn {
			return rule{}, connOnly(path, "header")
		}
		h, err := parseHeaderMatcher(r.Header, path+".header")
		return rule{kind: ruleHeader, hdr: h}, err
	case *rbacconfigv3.Permission_UrlPath:
		if scope == scopeConn {
			return rule{}, connOnly(path, "url_path")
		}
		return parsePathRule(r.UrlPath, path+".url_path")
	case *rbacconfigv3.Permission_DestinationIp:
		p, err := parseCIDR(r.DestinationIp, path+".destination_ip")
		return rule{kind: ruleDstIP, prefix: p}, err
	case *rbacconfigv3.Permission_DestinationPort:
		if r.DestinationPort > 65535 {
			return rule{}, fmt.Errorf("%s.destination_port: %d above 65535", path, r.DestinationPort)
		}
		return rule{kind: ruleDstPort, lo: r.DestinationPort, hi: r.DestinationPort}, nil
	case *rbacconfigv3.Permission_DestinationPortRange:
		rg, p := r.DestinationPortRange, path+".destination_port_range"
		if err := onlyFields(rg, p, "start", "end"); err != nil {
			return rule{}, err
		}
		if rg.GetStart() < 0 || rg.GetEnd() > 65536 || rg.GetStart() >= rg.GetEnd() {
			return rule{}, fmt.Errorf("%s: [%d, %d) is not a port range", p, rg.GetStart(), rg.GetEnd())
		}
		return rule{kind: ruleDstPort, lo: uint32(rg.GetStart()), hi: uint32(rg.GetEnd() - 1)}, nil
	case *rbacconfigv3.Permission_RequestedServerName:
		sm, err := parseStringMatcher(r.RequestedServerName, path+".requested_server_name")
		return rule{kind: ruleSNI, str: sm}, err
	case nil:
		return rule{}, fmt.Errorf("%s: a rule is required", path)
	}
	return rule{}, fmt.Errorf("%s: permission %s is not supported by canton", path, oneofName(pb))
}

func parsePermissionSet(kind ruleKind, rules []*rbacconfigv3.Permission, path string, depth int, scope ruleScope) (rule, error) {
	if len(rules) == 0 {
		return rule{}, fmt.Errorf("%s: at least one rule required", path)
	}
	rl := rule{kind: kind, sub: make([]rule, len(rules))}
	for i, pm := range rules {
		var err error
		if rl.sub[i], err = parsePermission(pm, fmt.Sprintf("%s[%d]", path, i), depth+1, scope); err != nil {
			return rule{}, err
		}
	}
	return rl, nil
}

// parsePrincipal compiles a Principal. Supported: any, and_ids, or_ids,
// not_id, authenticated (with or without principal_name), source_ip,
// direct_remote_ip, remote_ip, header, url_path, metadata (the JWT
// namespaces, see JWT, and envoy.filters.http.rbac, see requestMetadata).
// Rejected: filter_state, sourced_metadata, custom; and, in scopeConn (the
// network filter), header, url_path and metadata.
func parsePrincipal(pb *rbacconfigv3.Principal, path string, depth int, scope ruleScope) (rule, error) {
	if pb == nil {
		return rule{}, fmt.Errorf("%s: empty principal", path)
	}
	if depth > maxMatcherDepth {
		return rule{}, fmt.Errorf("%s: nested deeper than %d", path, maxMatcherDepth)
	}
	switch id := pb.GetIdentifier().(type) {
	case *rbacconfigv3.Principal_Any:
		if !id.Any {
			return rule{}, fmt.Errorf("%s.any: must be true", path)
		}
		return rule{kind: ruleAny}, nil
	case *rbacconfigv3.Principal_AndIds:
		return parsePrincipalSet(ruleAnd, id.AndIds.GetIds(), path+".and_ids.ids", depth, scope)
	case *rbacconfigv3.Principal_OrIds:
		return parsePrincipalSet(ruleOr, id.OrIds.GetIds(), path+".or_ids.ids", depth, scope)
	case *rbacconfigv3.Principal_NotId:
		sub, err := parsePrincipal(id.NotId, path+".not_id", depth+1, scope)
		return rule{kind: ruleNot, sub: []rule{sub}}, err
	case *rbacconfigv3.Principal_Authenticated_:
		p := path + ".authenticated"
		if err := onlyFields(id.Authenticated, p, "principal_name"); err != nil {
			return rule{}, err
		}
		rl := rule{kind: ruleAuthenticated}
		if pn := id.Authenticated.GetPrincipalName(); pn != nil {
			sm, err := parseStringMatcher(pn, p+".principal_name")
			if err != nil {
				return rule{}, err
			}
			rl.str, rl.hasStr = sm, true
		}
		return rl, nil
	case *rbacconfigv3.Principal_SourceIp:
		pfx, err := parseCIDR(id.SourceIp, path+".source_ip")
		return rule{kind: ruleSrcIP, prefix: pfx}, err
	case *rbacconfigv3.Principal_DirectRemoteIp:
		pfx, err := parseCIDR(id.DirectRemoteIp, path+".direct_remote_ip")
		return rule{kind: ruleSrcIP, prefix: pfx}, err
	case *rbacconfigv3.Principal_RemoteIp:
		pfx, err := parseCIDR(id.RemoteIp, path+".remote_ip")
		return rule{kind: ruleSrcIP, prefix: pfx}, err
	case *rbacconfigv3.Principal_Header:
		if scope == scopeConn {
			return rule{}, connOnly(path, "header")
		}
		h, err := parseHeaderMatcher(id.Header, path+".header")
		return rule{kind: ruleHeader, hdr: h}, err
	case *rbacconfigv3.Principal_UrlPath:
		if scope == scopeConn {
			return rule{}, connOnly(path, "url_path")
		}
		return parsePathRule(id.UrlPath, path+".url_path")
	case *rbacconfigv3.Principal_Metadata:
		if scope == scopeConn {
			return rule{}, connOnly(path, "metadata")
		}
		m, err := parseMetadataMatcher(id.Metadata, path+".metadata")
		return rule{kind: ruleMetadata, meta: m}, err
	case nil:
		return rule{}, fmt.Errorf("%s: an identifier is required", path)
	}
	return rule{}, fmt.Errorf("%s: principal %s is not supported by canton", path, oneofName(pb))
}

func parsePrincipalSet(kind ruleKind, ids []*rbacconfigv3.Principal, path string, depth int, scope ruleScope) (rule, error) {
	if len(ids) == 0 {
		return rule{}, fmt.Errorf("%s: at least one id required", path)
	}
	rl := rule{kind: kind, sub: make([]rule, len(ids))}
	for i, pr := range ids {
		var err error
		if rl.sub[i], err = parsePrincipal(pr, fmt.Sprintf("%s[%d]", path, i), depth+1, scope); err != nil {
			return rule{}, err
		}
	}
	return rl, nil
}

func parsePathRule(pm *matcherv3.PathMatcher, path string) (rule, error) {
	if err := onlyFields(pm, path, "path"); err != nil {
		return rule{}, err
	}
	sm, err := parseStringMatcher(pm.GetPath(), path+".path")
	return rule{kind: rulePath, str: sm}, err
}

// connOnly is the error for a rule the network RBAC filter cannot evaluate:
// it reads an HTTP request's attributes, and a connection has none.
func connOnly(path, field string) error {
	return fmt.Errorf("%s.%s: an HTTP rule, not supported by the network RBAC filter (a connection has no headers, path or metadata)", path, field)
}

// parseCIDR decodes a CidrRange. An absent prefix_len is 0 (every address
// of the family, as in Envoy).
func parseCIDR(c *corev3.CidrRange, path string) (netip.Prefix, error) {
	if c == nil {
		return netip.Prefix{}, fmt.Errorf("%s: required", path)
	}
	if err := onlyFields(c, path, "address_prefix", "prefix_len"); err != nil {
		return netip.Prefix{}, err
	}
	a, err := netip.ParseAddr(c.GetAddressPrefix())
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%s.address_prefix: %q is not an IP address", path, c.GetAddressPrefix())
	}
	a = a.Unmap()
	bits := int(c.GetPrefixLen().GetValue())
	if c.GetPrefixLen().GetValue() > uint32(a.BitLen()) {
		return netip.Prefix{}, fmt.Errorf("%s.prefix_len: %d above %d", path, c.GetPrefixLen().GetValue(), a.BitLen())
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}

// oneofName names the populated field of a message with one oneof (for
// errors about unsupported rules).
func oneofName(m proto.Message) string {
	var name string
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		name = string(fd.Name())
		return false
	})
	return name
}

func anyMatch(rules []rule, in *rbacInput) bool {
	for i := range rules {
		if rules[i].match(in) {
			return true
		}
	}
	return false
}

func (rl *rule) match(in *rbacInput) bool {
	switch rl.kind {
	case ruleAny:
		return true
	case ruleAnd:
		for i := range rl.sub {
			if !rl.sub[i].match(in) {
				return false
			}
		}
		return true
	case ruleOr:
		return anyMatch(rl.sub, in)
	case ruleNot:
		return !rl.sub[0].match(in)
	case ruleHeader: // request rules: never in an engine evaluated on a connection (scopeConn)
		return in.r != nil && rl.hdr.match(in.r)
	case rulePath:
		return in.r != nil && rl.str.match(requestPath(in.r))
	case ruleDstIP:
		return rl.prefix.Contains(in.destination().Addr())
	case ruleDstPort:
		p := uint32(in.destination().Port())
		return in.destination().IsValid() && p >= rl.lo && p <= rl.hi
	case ruleSNI:
		return rl.str.match(in.sni)
	case ruleAuthenticated:
		p := in.principal()
		if p == "" {
			return false // plaintext or unauthenticated peer: never a principal
		}
		return !rl.hasStr || rl.str.matchJoined(spiffeScheme, p)
	case ruleSrcIP:
		return rl.prefix.Contains(in.source())
	case ruleMetadata:
		return rl.meta.match(in.metadata())
	}
	return false
}
