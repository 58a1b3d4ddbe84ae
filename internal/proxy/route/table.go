package route

import (
	"fmt"
	"slices"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// Table is a compiled RouteConfiguration. It is immutable.
type Table struct {
	Name   string
	exact  map[string]*VirtualHost
	suffix []wildHost // "*x", longest first
	prefix []wildHost // "x*", longest first
	star   *VirtualHost
	// StripAnyHostPort makes matching ignore a ":port" in the host.
	StripAnyHostPort bool
}

type wildHost struct {
	part string // lower-case, without the '*'
	vh   *VirtualHost
}

// VirtualHost is a compiled virtual host.
type VirtualHost struct {
	Name   string
	Routes []*Route
}

// Kind is what a route does.
type Kind uint8

// Route action kinds.
const (
	KindForward Kind = iota
	KindRedirect
	KindDirect
	KindNonForwarding
)

// Route is a compiled route.
type Route struct {
	Name        string
	VirtualHost *VirtualHost
	match       matcher
	Kind        Kind
	Forward     *Forward
	Redirect    *Redirect
	Direct      *Direct
	// FilterConfig is typed_per_filter_config merged from the route configuration, the virtual host
	// and the route (most specific wins), by filter name.
	FilterConfig map[string]*anypb.Any
	// RequestHeaders and ResponseHeaders are the mutations of the route, then the virtual host, then
	// the route configuration, in Envoy's order.
	RequestHeaders  []*Headers
	ResponseHeaders []*Headers
}

// Options are HttpConnectionManager settings that affect matching.
type Options struct {
	StripAnyHostPort bool
}

// Compile compiles rc. Errors name the field.
func Compile(rc *routev3.RouteConfiguration, o Options) (*Table, error) {
	t := &Table{Name: rc.GetName(), exact: map[string]*VirtualHost{}, StripAnyHostPort: o.StripAnyHostPort}
	tReq, err := compileHeaders(rc.GetRequestHeadersToAdd(), rc.GetRequestHeadersToRemove(), "request_headers")
	if err != nil {
		return nil, err
	}
	tResp, err := compileHeaders(rc.GetResponseHeadersToAdd(), rc.GetResponseHeadersToRemove(), "response_headers")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for i, v := range rc.GetVirtualHosts() {
		field := fmt.Sprintf("virtual_hosts[%d]", i)
		vh := &VirtualHost{Name: v.GetName()}
		vReq, err := compileHeaders(v.GetRequestHeadersToAdd(), v.GetRequestHeadersToRemove(), field+".request_headers")
		if err != nil {
			return nil, err
		}
		vResp, err := compileHeaders(v.GetResponseHeadersToAdd(), v.GetResponseHeadersToRemove(), field+".response_headers")
		if err != nil {
			return nil, err
		}
		var vRetry *RetryPolicy
		if rp := v.GetRetryPolicy(); rp != nil {
			if vRetry, err = compileRetry(rp, field+".retry_policy"); err != nil {
				return nil, err
			}
		}
		for j, r := range v.GetRoutes() {
			rf := fmt.Sprintf("%s.routes[%d]", field, j)
			rt := &Route{Name: r.GetName(), VirtualHost: vh}
			if rt.match, err = compileMatch(r.GetMatch(), rf+".match"); err != nil {
				return nil, err
			}
			switch a := r.GetAction().(type) {
			case *routev3.Route_Route:
				rt.Kind = KindForward
				if rt.Forward, err = compileForward(a.Route, rf+".route"); err != nil {
					return nil, err
				}
				if rt.Forward.Retry == nil {
					rt.Forward.Retry = vRetry
				}
			case *routev3.Route_Redirect:
				rt.Kind = KindRedirect
				if rt.Redirect, err = compileRedirect(a.Redirect, rf+".redirect"); err != nil {
					return nil, err
				}
			case *routev3.Route_DirectResponse:
				rt.Kind = KindDirect
				if rt.Direct, err = compileDirect(a.DirectResponse, rf+".direct_response"); err != nil {
					return nil, err
				}
			case *routev3.Route_NonForwardingAction:
				rt.Kind = KindNonForwarding
			default:
				return nil, fmt.Errorf("%s: unsupported action %T", rf, a)
			}
			rReq, err := compileHeaders(r.GetRequestHeadersToAdd(), r.GetRequestHeadersToRemove(), rf+".request_headers")
			if err != nil {
				return nil, err
			}
			rResp, err := compileHeaders(r.GetResponseHeadersToAdd(), r.GetResponseHeadersToRemove(), rf+".response_headers")
			if err != nil {
				return nil, err
			}
			for _, h := range []*Headers{&rReq, &vReq, &tReq} {
				if !h.Empty() {
					rt.RequestHeaders = append(rt.RequestHeaders, h)
				}
			}
			for _, h := range []*Headers{&rResp, &vResp, &tResp} {
				if !h.Empty() {
					rt.ResponseHeaders = append(rt.ResponseHeaders, h)
				}
			}
			rt.FilterConfig = mergeFilterConfig(rc.GetTypedPerFilterConfig(), v.GetTypedPerFilterConfig(), r.GetTypedPerFilterConfig())
			vh.Routes = append(vh.Routes, rt)
		}
		if len(v.GetDomains()) == 0 {
			return nil, fmt.Errorf("%s.domains: empty", field)
		}
		for k, d := range v.GetDomains() {
			d = strings.ToLower(d)
			df := fmt.Sprintf("%s.domains[%d]", field, k)
			if seen[d] {
				return nil, fmt.Errorf("%s: domain %q appears twice in the route configuration", df, d)
			}
			seen[d] = true
			switch {
			case d == "*":
				t.star = vh
			case strings.Count(d, "*") > 1 || strings.Contains(strings.Trim(d, "*"), "*"):
				return nil, fmt.Errorf("%s: %q: a wildcard may only be the first or last character", df, d)
			case strings.HasPrefix(d, "*"):
				t.suffix = append(t.suffix, wildHost{part: d[1:], vh: vh})
			case strings.HasSuffix(d, "*"):
				t.prefix = append(t.prefix, wildHost{part: d[:len(d)-1], vh: vh})
			default:
				t.exact[d] = vh
			}
		}
	}
	longestFirst := func(a, b wildHost) int { return len(b.part) - len(a.part) }
	slices.SortStableFunc(t.suffix, longestFirst)
	slices.SortStableFunc(t.prefix, longestFirst)
	return t, nil
}

func mergeFilterConfig(levels ...map[string]*anypb.Any) map[string]*anypb.Any {
	var out map[string]*anypb.Any
	for _, l := range levels {
		for k, v := range l {
			if out == nil {
				out = map[string]*anypb.Any{}
			}
			out[k] = v
		}
	}
	return out
}

// Clusters returns the cluster names the table's routes name (fixed and weighted; not cluster_header
// or mirrors), without duplicates.
func (t *Table) Clusters() []string {
	seen := map[string]bool{}
	var out []string
	add := func(n string) {
		if n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	vhs := []*VirtualHost{t.star}
	for _, vh := range t.exact {
		vhs = append(vhs, vh)
	}
	for _, w := range append(slices.Clone(t.suffix), t.prefix...) {
		vhs = append(vhs, w.vh)
	}
	for _, vh := range vhs {
		if vh == nil {
			continue
		}
		for _, rt := range vh.Routes {
			if rt.Forward == nil {
				continue
			}
			add(rt.Forward.Cluster)
			for _, w := range rt.Forward.Weighted {
				add(w.Name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// VirtualHost returns the virtual host for host (case-insensitive), or nil.
func (t *Table) VirtualHost(host string) *VirtualHost {
	if t.StripAnyHostPort {
		host = stripPort(host)
	}
	var buf [256]byte
	lower := host
	if hasUpper(host) {
		if len(host) <= len(buf) {
			n := copy(buf[:], host)
			for i := 0; i < n; i++ {
				if c := buf[i]; 'A' <= c && c <= 'Z' {
					buf[i] = c + 'a' - 'A'
				}
			}
			if vh, ok := t.exact[string(buf[:n])]; ok {
				return vh
			}
			return t.wild(host)
		}
		lower = strings.ToLower(host)
	}
	if vh, ok := t.exact[lower]; ok {
		return vh
	}
	return t.wild(host)
}

func (t *Table) wild(host string) *VirtualHost {
	for _, w := range t.suffix {
		// The wildcard stands for at least one character.
		if len(host) > len(w.part) && strings.EqualFold(host[len(host)-len(w.part):], w.part) {
			return w.vh
		}
	}
	for _, w := range t.prefix {
		if len(host) > len(w.part) && strings.EqualFold(host[:len(w.part)], w.part) {
			return w.vh
		}
	}
	return t.star
}

// Match returns the first route of vh that matches r, or nil.
func (vh *VirtualHost) Match(r *Request) *Route {
	for _, rt := range vh.Routes {
		if rt.match.match(r) {
			return rt
		}
	}
	return nil
}

// Select returns the virtual host and route for r; either may be nil.
func (t *Table) Select(r *Request) (*VirtualHost, *Route) {
	vh := t.VirtualHost(r.Host)
	if vh == nil {
		return nil, nil
	}
	return vh, vh.Match(r)
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

func stripPort(h string) string {
	i := strings.LastIndexByte(h, ':')
	if i < 0 || strings.Contains(h[i:], "]") {
		return h
	}
	return h[:i]
}
