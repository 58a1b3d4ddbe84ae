package xds

import (
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	security "istio.io/api/security/v1beta1"

	"canton.dev/canton/internal/resource"
)

// ruleMode decides what happens to a rule that uses something the translation does not
// support. Istio's rule, which fails closed: a DENY rule ignores the unsupported part (it so
// matches more requests, never fewer), an ALLOW or AUDIT rule is dropped (it allows nothing).
// A CUSTOM rule is treated as a DENY rule: it then sends more requests to the provider.
type ruleMode uint8

const (
	modeAllow ruleMode = iota
	modeDeny
	modeAudit
	modeCustom
)

// The metadata namespace and keys the jwt_authn filter of the canton proxy (and Istio's
// generated config) exposes the verified request principal and claims under.
const (
	authnMetadataNamespace = "istio_authn"
	spiffePrefix           = "spiffe://"
)

// ruleTranslator turns one AuthorizationPolicy rule into an Envoy RBAC policy: one permission
// (the "to" operations ORed, ANDed with the request-side conditions) and one principal (the
// "from" sources ORed, ANDed with the peer-side conditions).
type ruleTranslator struct {
	g    *gen
	ap   *authorizationPolicy
	path string
	mode ruleMode
	// tcp translates the rule for the network RBAC filter of a TCP chain: what a connection
	// has (peer, addresses, ports, SNI) is translated as for HTTP; the HTTP-only fields (see
	// httpOnly) are Istio's way: dropped from a DENY rule, which so matches more connections,
	// and making an ALLOW or AUDIT rule match none.
	tcp     bool
	dropped bool
}

// what names what the rule is evaluated on, for reports.
func (t *ruleTranslator) what() string {
	if t.tcp {
		return "connections"
	}
	return "requests"
}

// httpOnly handles a field a TCP connection does not have (request principals, hosts, methods,
// paths, request headers, request.auth.*) when the rule is translated for TCP (t.tcp), as
// Istio documents it: a DENY (or CUSTOM-as-DENY) rule ignores the field, so it matches more
// connections; an ALLOW or AUDIT rule using it matches no connection and is dropped. Either way
// the field is left out and reported. It returns false, doing nothing, for HTTP.
func (t *ruleTranslator) httpOnly(field, name string) bool {
	if !t.tcp {
		return false
	}
	reason := name + " is HTTP-only (a TCP connection has none)"
	if t.mode == modeDeny || t.mode == modeCustom {
		t.g.skip(t.ap.ref, t.path+"."+field, reason+": ignored in this DENY rule for TCP connections, which so matches more of them (Istio's rule for TCP)")
		return true
	}
	t.g.skip(t.ap.ref, t.path+"."+field, reason+": this rule matches no TCP connection (Istio's rule for TCP); it still applies to HTTP requests")
	t.dropped = true
	return true
}

// unsupported reports a part of the rule that cannot be translated. A DENY rule leaves that
// part out (a positive list with an unsupported value is left out whole, so the rule matches
// more); an ALLOW or AUDIT rule is dropped.
func (t *ruleTranslator) unsupported(field, reason string) {
	switch t.mode {
	case modeDeny:
		t.g.skip(t.ap.ref, t.path+"."+field, reason+"; ignored in this DENY rule, which so matches more "+t.what()+" (fail closed)")
		return
	case modeCustom:
		t.g.skip(t.ap.ref, t.path+"."+field, reason+"; ignored in this CUSTOM rule, which so sends more requests to the provider (fail closed)")
		return
	}
	t.g.skip(t.ap.ref, t.path+"."+field, reason+"; the whole rule is dropped (it grants nothing)")
	t.dropped = true
}

func (t *ruleTranslator) rule(r *security.Rule) *rbacconfigv3.Policy {
	var perms []*rbacconfigv3.Permission
	var princs []*rbacconfigv3.Principal
	var tos []*rbacconfigv3.Permission
	for i, to := range r.GetTo() {
		tos = append(tos, t.operation(to.GetOperation(), "to["+itoa(i)+"].operation"))
	}
	if len(tos) > 0 {
		perms = append(perms, orPerm(tos))
	}
	var froms []*rbacconfigv3.Principal
	for i, from := range r.GetFrom() {
		froms = append(froms, t.source(from.GetSource(), "from["+itoa(i)+"].source"))
	}
	if len(froms) > 0 {
		princs = append(princs, orPrinc(froms))
	}
	for i, c := range r.GetWhen() {
		pm, pr := t.condition(c, "when["+itoa(i)+"]")
		if pm != nil {
			perms = append(perms, pm)
		}
		if pr != nil {
			princs = append(princs, pr)
		}
	}
	if t.dropped {
		return nil
	}
	return &rbacconfigv3.Policy{Permissions: []*rbacconfigv3.Permission{andPerm(perms)}, Principals: []*rbacconfigv3.Principal{andPrinc(princs)}}
}

// source translates one "from" source: its fields ANDed, the values of a field ORed.
func (t *ruleTranslator) source(s *security.Source, path string) *rbacconfigv3.Principal {
	var parts []*rbacconfigv3.Principal
	add := func(field string, values []string, not bool, conv func(v, field string) *rbacconfigv3.Principal) {
		if len(values) == 0 {
			return
		}
		if (field == "requestPrincipals" || field == "notRequestPrincipals") && t.httpOnly(path+"."+field, field) {
			return
		}
		ors := condValues(values, path+"."+field, conv)
		if len(ors) == 0 || !not && len(ors) < len(values) {
			return // DENY: an unsupported value widens a positive list to "any"
		}
		p := orPrinc(ors)
		if not {
			p = notPrinc(p)
		}
		parts = append(parts, p)
	}
	add("principals", s.GetPrincipals(), false, t.principal(false))
	add("notPrincipals", s.GetNotPrincipals(), true, t.principal(true))
	add("requestPrincipals", s.GetRequestPrincipals(), false, t.requestPrincipal)
	add("notRequestPrincipals", s.GetNotRequestPrincipals(), true, t.requestPrincipal)
	add("namespaces", s.GetNamespaces(), false, t.namespace)
	add("notNamespaces", s.GetNotNamespaces(), true, t.namespace)
	add("serviceAccounts", s.GetServiceAccounts(), false, t.serviceAccount)
	add("notServiceAccounts", s.GetNotServiceAccounts(), true, t.serviceAccount)
	add("ipBlocks", s.GetIpBlocks(), false, t.ipBlock(false))
	add("notIpBlocks", s.GetNotIpBlocks(), true, t.ipBlock(false))
	add("remoteIpBlocks", s.GetRemoteIpBlocks(), false, t.ipBlock(true))
	add("notRemoteIpBlocks", s.GetNotRemoteIpBlocks(), true, t.ipBlock(true))
	if len(s.GetTrustDomains()) > 0 {
		t.unsupported(path+".trustDomains", "trust domains are not supported (in Canton the trust domain is the namespace: use namespaces)")
	}
	if len(s.GetNotTrustDomains()) > 0 {
		t.unsupported(path+".notTrustDomains", "trust domains are not supported (in Canton the trust domain is the namespace: use notNamespaces)")
	}
	return andPrinc(parts) // nothing left (DENY ignored every field): any source
}

// operation translates one "to" operation.
func (t *ruleTranslator) operation(o *security.Operation, path string) *rbacconfigv3.Permission {
	var parts []*rbacconfigv3.Permission
	add := func(field string, values []string, not bool, conv func(v, field string) *rbacconfigv3.Permission) {
		if len(values) == 0 {
			return
		}
		if field != "ports" && field != "notPorts" && t.httpOnly(path+"."+field, field) {
			return // hosts, methods, paths
		}
		ors := condValues(values, path+"."+field, conv)
		if len(ors) == 0 || !not && len(ors) < len(values) {
			return // DENY: an unsupported value widens a positive list to "any"
		}
		p := orPerm(ors)
		if not {
			p = notPerm(p)
		}
		parts = append(parts, p)
	}
	add("hosts", o.GetHosts(), false, t.host)
	add("notHosts", o.GetNotHosts(), true, t.host)
	add("ports", o.GetPorts(), false, t.port(false))
	add("notPorts", o.GetNotPorts(), true, t.port(true))
	add("methods", o.GetMethods(), false, t.method)
	add("notMethods", o.GetNotMethods(), true, t.method)
	add("paths", o.GetPaths(), false, t.urlPath)
	add("notPaths", o.GetNotPaths(), true, t.urlPath)
	return andPerm(parts) // nothing left (DENY ignored every field): any operation
}

// condition translates one "when" condition into a permission or a principal.
func (t *ruleTranslator) condition(c *security.Condition, path string) (*rbacconfigv3.Permission, *rbacconfigv3.Principal) {
	key := c.GetKey()
	type conv struct {
		perm  func(v, field string) *rbacconfigv3.Permission
		princ func(v, field string) *rbacconfigv3.Principal
		// notPerm and notPrinc convert notValues when they need another conversion than values.
		notPerm  func(v, field string) *rbacconfigv3.Permission
		notPrinc func(v, field string) *rbacconfigv3.Principal
	}
	var cv conv
	switch {
	case strings.HasPrefix(key, "request.") && t.httpOnly(path+".key", key):
		return nil, nil // request.headers[...], request.auth.*
	case strings.HasPrefix(key, "request.headers[") && strings.HasSuffix(key, "]"):
		name := strings.ToLower(key[len("request.headers[") : len(key)-1])
		if name == "" {
			t.unsupported(path+".key", "empty header name")
			return nil, nil
		}
		cv.perm = func(v, field string) *rbacconfigv3.Permission {
			hm := t.headerMatcher(name, v, false, field)
			if hm == nil {
				return nil
			}
			return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_Header{Header: hm}}
		}
	case key == "source.ip":
		cv.princ = t.ipBlock(false)
	case key == "remote.ip":
		cv.princ = t.ipBlock(true)
	case key == "source.namespace":
		cv.princ = t.namespace
	case key == "source.principal":
		cv.princ, cv.notPrinc = t.principal(false), t.principal(true)
	case key == "source.serviceAccount":
		cv.princ = t.serviceAccount
	case key == "request.auth.principal", key == "request.auth.audiences", key == "request.auth.presenter":
		cv.princ = func(v, field string) *rbacconfigv3.Principal {
			return t.metadata([]string{key}, v, false, field)
		}
	case strings.HasPrefix(key, "request.auth.claims["):
		claims, ok := claimPath(key[len("request.auth.claims"):])
		if !ok {
			t.unsupported(path+".key", "malformed claim key "+strconv.Quote(key)+" (want request.auth.claims[name][nested]...)")
			return nil, nil
		}
		cv.princ = func(v, field string) *rbacconfigv3.Principal {
			return t.metadata(append([]string{"request.auth.claims"}, claims...), v, true, field)
		}
	case key == "destination.ip":
		cv.perm = func(v, field string) *rbacconfigv3.Permission {
			cidr := t.cidr(v, field)
			if cidr == nil {
				return nil
			}
			return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_DestinationIp{DestinationIp: cidr}}
		}
	case key == "destination.port":
		cv.perm, cv.notPerm = t.port(false), t.port(true)
	case key == "connection.sni":
		cv.perm = func(v, field string) *rbacconfigv3.Permission {
			sm := t.stringMatch(v, false, field)
			if sm == nil {
				return nil
			}
			return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_RequestedServerName{RequestedServerName: sm}}
		}
	default:
		t.unsupported(path+".key", "condition key "+strconv.Quote(key)+" is not supported")
		return nil, nil
	}
	if cv.perm != nil {
		if cv.notPerm == nil {
			cv.notPerm = cv.perm
		}
		var p []*rbacconfigv3.Permission
		if ps := condValues(c.GetValues(), path+".values", cv.perm); len(ps) > 0 && len(ps) == len(c.GetValues()) {
			p = append(p, orPerm(ps))
		}
		if ps := condValues(c.GetNotValues(), path+".notValues", cv.notPerm); len(ps) > 0 {
			p = append(p, notPerm(orPerm(ps)))
		}
		if len(p) == 0 {
			return nil, nil
		}
		return andPerm(p), nil
	}
	if cv.notPrinc == nil {
		cv.notPrinc = cv.princ
	}
	var p []*rbacconfigv3.Principal
	if ps := condValues(c.GetValues(), path+".values", cv.princ); len(ps) > 0 && len(ps) == len(c.GetValues()) {
		p = append(p, orPrinc(ps))
	}
	if ps := condValues(c.GetNotValues(), path+".notValues", cv.notPrinc); len(ps) > 0 {
		p = append(p, notPrinc(orPrinc(ps)))
	}
	if len(p) == 0 {
		return nil, nil
	}
	return nil, andPrinc(p)
}

func condValues[T any](values []string, path string, conv func(v, field string) *T) []*T {
	var out []*T
	for i, v := range values {
		if x := conv(v, path+"["+itoa(i)+"]"); x != nil {
			out = append(out, x)
		}
	}
	return out
}

// claimPath splits "[a][b]" into [a b].
func claimPath(s string) ([]string, bool) {
	var out []string
	for s != "" {
		if s[0] != '[' {
			return nil, false
		}
		end := strings.IndexByte(s, ']')
		if end <= 1 {
			return nil, false
		}
		out = append(out, s[1:end])
		s = s[end+1:]
	}
	return out, len(out) > 0
}

// mapPrincipal turns a principal into the form of Canton's SPIFFE IDs (without "spiffe://"):
// a workload is "<namespace domain>/sa/<account>". Istio's "<trust domain>/ns/<namespace>/sa/<account>"
// is mapped to it when its trust domain is cluster.local, the mesh domain or "*": Canton takes
// them as aliases of its own trust domains (Istio's trustDomainAliases; Canton has no
// MeshConfig to declare others). Any other value is returned as written.
//
// foreign is set when the trust domain of the result is neither the mesh domain nor inside it
// (and has no wildcard): no Canton workload has such an ID, only a peer of another trust
// domain admitted by the trust bundle could present it. alias is then what the value means
// were that trust domain an alias of the mesh: for the Istio form the mapped ID, otherwise the
// trust domain read as a namespace of the mesh, as namespaces are.
func (t *ruleTranslator) mapPrincipal(v string) (p, alias string, foreign bool) {
	mesh := t.g.in.Mesh
	v = strings.TrimPrefix(v, spiffePrefix)
	td, rest, istio := strings.Cut(v, "/ns/")
	ns, sa, ok := strings.Cut(rest, "/sa/")
	istio = istio && ok && ns != "" && !strings.ContainsAny(ns, "/*") && !strings.Contains(td, "/")
	if istio && (td == "cluster.local" || td == mesh || td == "*") {
		return resource.AbsoluteNamespace(ns, mesh) + "/sa/" + sa, "", false
	}
	td, path, ok := strings.Cut(v, "/")
	if !ok || td == "" || strings.Contains(td, "*") || td == mesh || strings.HasSuffix(td, "."+mesh) {
		return v, "", false
	}
	if istio {
		return v, resource.AbsoluteNamespace(ns, mesh) + "/sa/" + sa, true
	}
	return v, resource.AbsoluteNamespace(td, mesh) + "/" + path, true
}

// principal returns the converter of principal values: they match the peer's verified SPIFFE
// ID (a plaintext peer has none, so it never matches, and a not-list over it always does). not
// tells whether the values are a not-list (notPrincipals, notValues).
//
// A principal of a foreign trust domain (see mapPrincipal) is matched as written, as Istio
// does, so it still matches if such a peer ever connects; where the rule would otherwise be
// weaker than meant if that trust domain were an alias of the mesh (the values of a DENY or
// CUSTOM rule, the not-values of an ALLOW or AUDIT rule), it also matches the alias, so the
// rule fails closed. Either way it is reported.
func (t *ruleTranslator) principal(not bool) func(v, field string) *rbacconfigv3.Principal {
	return func(v, field string) *rbacconfigv3.Principal {
		p, alias, foreign := t.mapPrincipal(v)
		m := t.principalMatcher(v, p, field)
		if m == nil || !foreign {
			return m
		}
		td, _, _ := strings.Cut(p, "/")
		reason := "principal " + strconv.Quote(v) + ": trust domain " + td + " is neither cluster.local nor in the mesh (" + t.g.in.Mesh +
			"), whose workloads are spiffe://<namespace>." + t.g.in.Mesh + "/sa/<account>; it is matched as written (only a peer of that trust domain, if the trust bundle admits one, presents it)"
		widen := (t.mode == modeDeny || t.mode == modeCustom) != not
		if !widen {
			t.g.skip(t.ap.ref, t.path+"."+field, reason+"; it is not taken as "+alias+", which would make this rule weaker")
			return m
		}
		am := t.principalMatcher(v, alias, field)
		if am == nil {
			t.g.skip(t.ap.ref, t.path+"."+field, reason)
			return m
		}
		t.g.skip(t.ap.ref, t.path+"."+field, reason+" and, in case "+td+" is an alias of this mesh, as "+alias+" (fail closed)")
		return orPrinc([]*rbacconfigv3.Principal{m, am})
	}
}

// principalMatcher matches the SPIFFE ID p (Canton form, see mapPrincipal) of value v.
func (t *ruleTranslator) principalMatcher(v, p, field string) *rbacconfigv3.Principal {
	if p == "*" {
		return authenticated(nil)
	}
	var sm *matcherv3.StringMatcher
	switch {
	case strings.Count(p, "*") > 1 || strings.Contains(strings.Trim(p, "*"), "*"):
		t.unsupported(field, "principal "+strconv.Quote(v)+": only exact values, prefix*, *suffix and * are supported")
		return nil
	case strings.HasPrefix(p, "*"):
		sm = strSuffix(p[1:], false)
	case strings.HasSuffix(p, "*"):
		sm = strPrefix(spiffePrefix+p[:len(p)-1], false)
	default:
		sm = strExact(spiffePrefix+p, false)
	}
	return authenticated(sm)
}

// serviceAccount matches "namespace/account" or "account" (in the policy's namespace).
func (t *ruleTranslator) serviceAccount(v, field string) *rbacconfigv3.Principal {
	ns, sa, ok := strings.Cut(v, "/")
	if !ok {
		ns, sa = t.ap.namespace, v
	}
	if ns == "" || sa == "" || strings.ContainsAny(v, "*") {
		t.unsupported(field, "service account "+strconv.Quote(v)+" must be \"namespace/account\" or \"account\" without wildcards")
		return nil
	}
	return authenticated(strExact(spiffePrefix+resource.AbsoluteNamespace(ns, t.g.in.Mesh)+"/sa/"+sa, false))
}

// namespace matches peers whose SPIFFE trust domain (= their namespace domain) is v. Relative
// names are taken inside the mesh.
func (t *ruleTranslator) namespace(v, field string) *rbacconfigv3.Principal {
	mesh := t.g.in.Mesh
	switch {
	case v == "*":
		return authenticated(nil)
	case strings.Count(v, "*") > 1 || strings.Contains(strings.Trim(v, "*"), "*"):
		t.unsupported(field, "namespace "+strconv.Quote(v)+": only exact values, prefix*, *suffix and * are supported")
		return nil
	case strings.HasPrefix(v, "*"):
		sfx := v[1:]
		if sfx != mesh && !strings.HasSuffix(sfx, "."+mesh) {
			sfx += "." + mesh
		}
		return authenticated(strRegex(regexp.QuoteMeta(spiffePrefix) + `[^/]*` + regexp.QuoteMeta(sfx) + `/.*`))
	case strings.HasSuffix(v, "*"):
		return authenticated(strRegex(regexp.QuoteMeta(spiffePrefix+v[:len(v)-1]) + `[^/]*/.*`))
	}
	return authenticated(strPrefix(spiffePrefix+resource.AbsoluteNamespace(v, mesh)+"/", false))
}

// requestPrincipal matches the "<iss>/<sub>" of the verified JWT.
func (t *ruleTranslator) requestPrincipal(v, field string) *rbacconfigv3.Principal {
	return t.metadata([]string{"request.auth.principal"}, v, false, field)
}

// metadata matches a value the jwt_authn filter published under istio_authn; list makes it a
// list match (claims, whose string values the proxy presents as one-element lists).
func (t *ruleTranslator) metadata(path []string, v string, list bool, field string) *rbacconfigv3.Principal {
	var vm *matcherv3.ValueMatcher
	if v == "*" {
		vm = &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_PresentMatch{PresentMatch: true}}
	} else {
		sm := t.stringMatch(v, false, field)
		if sm == nil {
			return nil
		}
		vm = &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: sm}}
		if list {
			vm = &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_ListMatch{ListMatch: &matcherv3.ListMatcher{
				MatchPattern: &matcherv3.ListMatcher_OneOf{OneOf: vm}}}}
		}
	}
	mm := &matcherv3.MetadataMatcher{Filter: authnMetadataNamespace, Value: vm}
	for _, k := range path {
		mm.Path = append(mm.Path, &matcherv3.MetadataMatcher_PathSegment{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: k}})
	}
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_Metadata{Metadata: mm}}
}

// ipBlock matches the downstream address (remote: the original client, which for Canton is
// the same address: X-Forwarded-For is not trusted).
func (t *ruleTranslator) ipBlock(remote bool) func(v, field string) *rbacconfigv3.Principal {
	return func(v, field string) *rbacconfigv3.Principal {
		cidr := t.cidr(v, field)
		if cidr == nil {
			return nil
		}
		if remote {
			return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_RemoteIp{RemoteIp: cidr}}
		}
		return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_DirectRemoteIp{DirectRemoteIp: cidr}}
	}
}

func (t *ruleTranslator) cidr(v, field string) *corev3.CidrRange {
	var pfx netip.Prefix
	if a, err := netip.ParseAddr(v); err == nil {
		pfx = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
	} else if p, err := netip.ParsePrefix(v); err == nil {
		pfx = p.Masked()
	} else {
		t.unsupported(field, strconv.Quote(v)+" is not an IP address or CIDR prefix")
		return nil
	}
	return &corev3.CidrRange{AddressPrefix: pfx.Addr().String(), PrefixLen: wrapU32(uint32(pfx.Bits()))}
}

// host matches the :authority case-insensitively, with or without a port.
func (t *ruleTranslator) host(v, field string) *rbacconfigv3.Permission {
	var re string
	switch {
	case v == "*":
		return permAny()
	case strings.Count(v, "*") > 1 || strings.Contains(strings.Trim(v, "*"), "*"):
		t.unsupported(field, "host "+strconv.Quote(v)+": only exact values, prefix*, *suffix and * are supported")
		return nil
	case strings.HasPrefix(v, "*"):
		re = `(?i).*` + regexp.QuoteMeta(v[1:]) + `(:[0-9]+)?`
	case strings.HasSuffix(v, "*"):
		re = `(?i)` + regexp.QuoteMeta(v[:len(v)-1]) + `.*`
	default:
		re = `(?i)` + regexp.QuoteMeta(v) + `(:[0-9]+)?`
	}
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_Header{Header: &routev3.HeaderMatcher{Name: ":authority",
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: strRegex(re)}}}}
}

func (t *ruleTranslator) method(v, field string) *rbacconfigv3.Permission {
	hm := t.headerMatcher(":method", v, false, field)
	if hm == nil {
		return nil
	}
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_Header{Header: hm}}
}

func (t *ruleTranslator) urlPath(v, field string) *rbacconfigv3.Permission {
	if strings.ContainsAny(v, "{}") {
		t.unsupported(field, "path template "+strconv.Quote(v)+" is not supported")
		return nil
	}
	if v == "*" {
		return permAny()
	}
	sm := t.stringMatch(v, false, field)
	if sm == nil {
		return nil
	}
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
		Rule: &matcherv3.PathMatcher_Path{Path: sm}}}}
}

// port returns the converter of port values (not: a not-list, notPorts or notValues). They
// match the destination port of the request's connection at run time (RBAC's
// destination_port: the listener's local address, which the original_dst listener filter
// makes the address a captured connection was sent to). On a gateway that is the port of the
// listener the request arrived on.
//
// On the inbound listener Istio's ports are the workload's (target) ports, not its Service's.
// Every request the inbound listener accepts goes to the application, Node.AppAddress: a
// connection to the listener's own port (InboundPort, how callers reach the workload without
// transparent capture) is for the application's port, and a captured connection is for the
// port it was sent to. So the application's port matches connections to either; InboundPort
// itself, when it is not the application's port, never matches; any other port matches a
// captured connection sent to it.
//
// A port of the node's Service that is not the application's port is reported: requests for
// it arrive like all others and are delivered to the application's port. Where the rule would
// otherwise be weaker than meant (the values of a DENY or CUSTOM rule, the not-values of an
// ALLOW or AUDIT rule), it also matches every connection to the listener's own port, which
// may be such a request (fail closed).
func (t *ruleTranslator) port(not bool) func(v, field string) *rbacconfigv3.Permission {
	return func(v, field string) *rbacconfigv3.Permission {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			t.unsupported(field, strconv.Quote(v)+" is not a port number")
			return nil
		}
		port := uint32(n)
		if t.g.gatewayListener {
			return dstPort(port)
		}
		app, listener := t.g.appPort, t.g.node.InboundPort
		switch {
		case port == app && listener != app:
			return orPerm([]*rbacconfigv3.Permission{dstPort(listener), dstPort(app)})
		case port == app:
			return dstPort(port)
		case port == listener:
			return notPerm(permAny())
		case !slices.Contains(t.g.workloadPorts(), port):
			return dstPort(port)
		}
		reason := "port " + v + " is a port of Service " + t.g.node.Service + ", not of the workload, whose application port is " +
			itoa(int(app)) + ": Istio's ports are workload (target) ports, and requests for service port " + v + " are delivered to " + itoa(int(app))
		if (t.mode == modeDeny || t.mode == modeCustom) == not {
			t.g.skip(t.ap.ref, t.path+"."+field, reason+", so they do not match")
			return dstPort(port)
		}
		t.g.skip(t.ap.ref, t.path+"."+field, reason+" and cannot be told from the others: this rule matches every connection to the inbound listener's own port (fail closed)")
		return orPerm([]*rbacconfigv3.Permission{dstPort(port), dstPort(listener)})
	}
}

func dstPort(port uint32) *rbacconfigv3.Permission {
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_DestinationPort{DestinationPort: port}}
}

// headerMatcher matches header name against an Istio value: exact, prefix*, *suffix, or *
// (present).
func (t *ruleTranslator) headerMatcher(name, v string, fold bool, field string) *routev3.HeaderMatcher {
	if v == "*" {
		return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}
	}
	sm := t.stringMatch(v, fold, field)
	if sm == nil {
		return nil
	}
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm}}
}

// stringMatch converts an Istio value with an optional leading or trailing "*" ("*" alone:
// any non-empty value).
func (t *ruleTranslator) stringMatch(v string, fold bool, field string) *matcherv3.StringMatcher {
	switch {
	case v == "*":
		return strRegex(`.+`)
	case strings.Count(v, "*") > 1 || strings.Contains(strings.Trim(v, "*"), "*"):
		t.unsupported(field, strconv.Quote(v)+": only exact values, prefix*, *suffix and * are supported")
		return nil
	case strings.HasPrefix(v, "*"):
		return strSuffix(v[1:], fold)
	case strings.HasSuffix(v, "*"):
		return strPrefix(v[:len(v)-1], fold)
	}
	return strExact(v, fold)
}

func strExact(s string, fold bool) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}, IgnoreCase: fold}
}

func strPrefix(s string, fold bool) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s}, IgnoreCase: fold}
}

func strSuffix(s string, fold bool) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: s}, IgnoreCase: fold}
}

func strRegex(re string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}
}

func authenticated(name *matcherv3.StringMatcher) *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_Authenticated_{Authenticated: &rbacconfigv3.Principal_Authenticated{PrincipalName: name}}}
}

func permAny() *rbacconfigv3.Permission {
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_Any{Any: true}}
}

func princAny() *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_Any{Any: true}}
}

func notPerm(p *rbacconfigv3.Permission) *rbacconfigv3.Permission {
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_NotRule{NotRule: p}}
}

func notPrinc(p *rbacconfigv3.Principal) *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_NotId{NotId: p}}
}

// andPerm is the conjunction of ps (any when empty, ps[0] alone).
func andPerm(ps []*rbacconfigv3.Permission) *rbacconfigv3.Permission {
	switch len(ps) {
	case 0:
		return permAny()
	case 1:
		return ps[0]
	}
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_AndRules{AndRules: &rbacconfigv3.Permission_Set{Rules: ps}}}
}

func orPerm(ps []*rbacconfigv3.Permission) *rbacconfigv3.Permission {
	if len(ps) == 1 {
		return ps[0]
	}
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_OrRules{OrRules: &rbacconfigv3.Permission_Set{Rules: ps}}}
}

func andPrinc(ps []*rbacconfigv3.Principal) *rbacconfigv3.Principal {
	switch len(ps) {
	case 0:
		return princAny()
	case 1:
		return ps[0]
	}
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_AndIds{AndIds: &rbacconfigv3.Principal_Set{Ids: ps}}}
}

func orPrinc(ps []*rbacconfigv3.Principal) *rbacconfigv3.Principal {
	if len(ps) == 1 {
		return ps[0]
	}
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_OrIds{OrIds: &rbacconfigv3.Principal_Set{Ids: ps}}}
}

// workloadPorts are the ports the node's inbound listener serves: the application's port and
// the ports of the node's Service.
func (g *gen) workloadPorts() []uint32 {
	var out []uint32
	if g.appPort != 0 {
		out = append(out, g.appPort)
	}
	if s := g.m.services[g.node.Service+"."+g.node.Namespace]; s != nil && g.node.Service != "" {
		for _, p := range s.ports {
			if !slices.Contains(out, p.number) {
				out = append(out, p.number)
			}
		}
	}
	return out
}
