package filter

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"

	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
)

// This file holds the RBAC engine both RBAC filters share: the HTTP filter
// (rbac.go) evaluates it on each request, the network filter
// (rbac_network.go) once on each connection. The compiled rules
// (rbac_rule.go) read the attributes they match through rbacInput, which
// either kind of input fills.

// ruleScope is what an engine is evaluated on; it decides which rules the
// parser accepts.
type ruleScope uint8

const (
	// scopeRequest: an HTTP request (envoy.filters.http.rbac). Every rule
	// canton supports.
	scopeRequest ruleScope = iota
	// scopeConn: a connection (envoy.filters.network.rbac). A connection
	// has no headers, path or dynamic metadata, so header, url_path and
	// metadata rules are rejected (Envoy rejects header rules there too).
	scopeConn
)

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

func parseRBACEngine(pb *rbacconfigv3.RBAC, path string, scope ruleScope) (*rbacEngine, error) {
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
		pol, err := parseRBACPolicy(pb.GetPolicies()[name], p, scope)
		if err != nil {
			return nil, err
		}
		pol.name = name
		e.policies = append(e.policies, pol)
	}
	return e, nil
}

func parseRBACPolicy(pb *rbacconfigv3.Policy, path string, scope ruleScope) (rbacPolicy, error) {
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
		r, err := parsePermission(pm, fmt.Sprintf("%s.permissions[%d]", path, i), 0, scope)
		if err != nil {
			return rbacPolicy{}, err
		}
		pol.permissions = append(pol.permissions, r)
	}
	for i, pr := range pb.GetPrincipals() {
		r, err := parsePrincipal(pr, fmt.Sprintf("%s.principals[%d]", path, i), 0, scope)
		if err != nil {
			return rbacPolicy{}, err
		}
		pol.principals = append(pol.principals, r)
	}
	return pol, nil
}

// eval applies the engine to a request or connection: allowed is the
// engine's decision, policy the name of the first matching policy ("" for
// none).
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

// rbacInput is what the matchers read from one request or connection. It
// lives on the evaluating goroutine's stack.
//
// The connection's attributes (the authenticated peer, the source and
// destination addresses, the requested server name) are there for both
// kinds of input. The request's (headers, path, dynamic metadata) only for
// a request: r is nil for a connection, whose engines have no rule reading
// them (scopeConn). For a request, the attributes that cost a lookup are
// computed on first use.
type rbacInput struct {
	peer *Peer  // the recorded peer; nil for none (its Principal is "" when unauthenticated)
	sni  string // requested server name, "" for none

	srcDone, dstDone bool
	src              netip.Addr     // unmapped
	dst              netip.AddrPort // unmapped

	r        *http.Request // nil for a connection
	metaDone bool
	meta     requestMetadata
}

// requestInput is the input of one HTTP request; ri is the proxy's
// per-request info (nil when the request carries none).
func requestInput(r *http.Request, ri *reqInfo) rbacInput {
	in := rbacInput{r: r}
	if ri != nil && ri.hasPeer {
		in.peer = &ri.peer
	}
	if r.TLS != nil {
		in.sni = r.TLS.ServerName
	}
	return in
}

// connInput is the input of one connection.
func connInput(c *Conn) rbacInput {
	return rbacInput{peer: &c.Peer, sni: c.ServerName,
		srcDone: true, src: c.Peer.IP.Unmap(),
		dstDone: true, dst: netip.AddrPortFrom(c.Destination.Addr().Unmap(), c.Destination.Port())}
}

// principal returns the authenticated peer's principal ("" for none).
func (in *rbacInput) principal() string {
	if in.peer == nil {
		return ""
	}
	return in.peer.Principal
}

// source is the downstream address: the peer's IP as the proxy recorded
// it, else the request's RemoteAddr.
func (in *rbacInput) source() netip.Addr {
	if !in.srcDone {
		in.srcDone = true
		if in.peer != nil && in.peer.IP.IsValid() {
			in.src = in.peer.IP.Unmap()
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
// RBAC filters' shadow results); a connection has none.
func (in *rbacInput) metadata() requestMetadata {
	if !in.metaDone {
		in.metaDone = true
		if in.r != nil {
			in.meta = metadataOf(in.r.Context())
		}
	}
	return in.meta
}
