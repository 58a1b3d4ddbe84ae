package route

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// DefaultTimeout is the route timeout when a route action sets none (Envoy's default).
const DefaultTimeout = 15 * time.Second

// Forward is a route action that forwards upstream.
type Forward struct {
	// Exactly one of Cluster, ClusterHeader and Weighted is set.
	Cluster       string
	ClusterHeader string // canonical header key
	Weighted      []WeightedCluster
	totalWeight   uint64
	// NotFoundStatus is the status when the cluster does not exist (503 unless configured 404).
	NotFoundStatus int

	PrefixRewrite string
	regexRewrite  *regexp.Regexp
	regexSubst    string
	HostRewrite   string

	// Timeout bounds the whole request including retries; zero means none.
	Timeout time.Duration
	// IdleTimeout (idle_timeout) replaces the connection manager's stream idle timeout for this route
	// when HasIdleTimeout; zero then disables it.
	IdleTimeout    time.Duration
	HasIdleTimeout bool
	Retry          *RetryPolicy
	Mirrors        []Mirror
	Hash           []HashPolicy
	// Upgrades overrides the listener's upgrade types for this route: type (lower case) -> enabled.
	Upgrades map[string]bool
}

// WeightedCluster is one entry of weighted_clusters.
type WeightedCluster struct {
	Name   string
	Weight uint32
}

// PickCluster returns the cluster for r: the fixed cluster, the named header's value, or a weighted
// random choice.
func (f *Forward) PickCluster(r *Request) string {
	switch {
	case f.Cluster != "":
		return f.Cluster
	case f.ClusterHeader != "":
		if v := r.Header[f.ClusterHeader]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	n := rand.Uint64N(f.totalWeight)
	for i := range f.Weighted {
		if n < uint64(f.Weighted[i].Weight) {
			return f.Weighted[i].Name
		}
		n -= uint64(f.Weighted[i].Weight)
	}
	return f.Weighted[len(f.Weighted)-1].Name
}

// RewritePath applies prefix_rewrite (given the matched route's prefix) or regex_rewrite to path;
// it returns path unchanged when neither is set.
func (f *Forward) RewritePath(rt *Route, path string) string {
	return rewritePath(path, f.PrefixRewrite, f.regexRewrite, f.regexSubst, rt)
}

func rewritePath(path, prefix string, re *regexp.Regexp, subst string, rt *Route) string {
	switch {
	case re != nil:
		return re.ReplaceAllString(path, subst)
	case prefix != "" && (rt.match.kind == pathPrefix || rt.match.kind == pathSeparated || rt.match.kind == pathExact):
		n := min(len(rt.match.value), len(path))
		return prefix + path[n:]
	case prefix != "":
		return prefix
	}
	return path
}

// RetryOn is a set of retry conditions.
type RetryOn uint16

// Retry conditions (Envoy's x-envoy-retry-on values).
const (
	Retry5xx RetryOn = 1 << iota
	RetryGatewayError
	RetryConnectFailure
	RetryReset
	RetryRetriableStatusCodes
	RetryRefusedStream
	RetryRetriable4xx
	RetryEnvoyRateLimited
	RetryGRPCCancelled
	RetryGRPCDeadlineExceeded
	RetryGRPCInternal
	RetryGRPCResourceExhausted
	RetryGRPCUnavailable
)

var retryOnNames = map[string]RetryOn{
	"5xx": Retry5xx, "gateway-error": RetryGatewayError, "connect-failure": RetryConnectFailure,
	"reset": RetryReset, "retriable-status-codes": RetryRetriableStatusCodes,
	"refused-stream": RetryRefusedStream, "retriable-4xx": RetryRetriable4xx, "envoy-ratelimited": RetryEnvoyRateLimited,
	"cancelled": RetryGRPCCancelled, "deadline-exceeded": RetryGRPCDeadlineExceeded, "internal": RetryGRPCInternal,
	"resource-exhausted": RetryGRPCResourceExhausted, "unavailable": RetryGRPCUnavailable,
}

// grpcRetryCodes maps the gRPC retry conditions to the grpc-status they retry.
var grpcRetryCodes = []struct {
	on   RetryOn
	code string
}{
	{RetryGRPCCancelled, "1"}, {RetryGRPCDeadlineExceeded, "4"}, {RetryGRPCInternal, "13"},
	{RetryGRPCResourceExhausted, "8"}, {RetryGRPCUnavailable, "14"},
}

// RetryPolicy is a compiled retry_policy.
type RetryPolicy struct {
	On          RetryOn
	NumRetries  int
	PerTry      time.Duration // zero: none
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	StatusCodes []int
	// OtherHosts is the previous_hosts retry host predicate: a retry avoids the hosts already
	// tried, re-picking up to HostAttempts times (host_selection_retry_max_attempts, default 1).
	OtherHosts   bool
	HostAttempts int
}

// RetryResponse reports whether a response (status code and headers) warrants a retry. For gRPC the
// grpc-status of a trailers-only response counts, as in Envoy.
func (p *RetryPolicy) RetryResponse(code int, h http.Header) bool {
	if p.RetryStatus(code) {
		return true
	}
	if p.On&RetryEnvoyRateLimited != 0 && len(h["X-Envoy-Ratelimited"]) > 0 {
		return true
	}
	if gs := h["Grpc-Status"]; len(gs) > 0 {
		for _, g := range grpcRetryCodes {
			if p.On&g.on != 0 && gs[0] == g.code {
				return true
			}
		}
	}
	return false
}

// RetryStatus reports whether a response with status code warrants a retry.
func (p *RetryPolicy) RetryStatus(code int) bool {
	switch {
	case p.On&Retry5xx != 0 && code >= 500:
		return true
	case p.On&RetryGatewayError != 0 && (code == 502 || code == 503 || code == 504):
		return true
	case p.On&RetryRetriable4xx != 0 && code == 409:
		return true
	case p.On&RetryRetriableStatusCodes != 0:
		for _, c := range p.StatusCodes {
			if c == code {
				return true
			}
		}
	}
	return false
}

// RetryError reports whether a failed attempt (no response) warrants a retry. connect tells whether the
// failure happened before a connection was made.
func (p *RetryPolicy) RetryError(connect bool) bool {
	if p.On&(Retry5xx|RetryGatewayError) != 0 {
		return true // Envoy counts connect failures and resets as 5xx and gateway errors.
	}
	if connect {
		return p.On&RetryConnectFailure != 0
	}
	return p.On&RetryReset != 0
}

// Backoff returns the wait before retry number n (1-based): a full-jitter draw from
// [0, min(base*2^(n-1), max)], as Envoy does.
func (p *RetryPolicy) Backoff(n int) time.Duration {
	d := p.BaseBackoff << min(n-1, 20)
	if d > p.MaxBackoff || d <= 0 {
		d = p.MaxBackoff
	}
	return time.Duration(rand.Int64N(int64(d) + 1))
}

func compileRetry(rp *routev3.RetryPolicy, field string) (*RetryPolicy, error) {
	p := &RetryPolicy{NumRetries: 1, BaseBackoff: 25 * time.Millisecond}
	for _, s := range strings.Split(rp.GetRetryOn(), ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		on, ok := retryOnNames[s]
		if !ok {
			return nil, fmt.Errorf("%s.retry_on: unsupported condition %q", field, s)
		}
		p.On |= on
	}
	if n := rp.GetNumRetries(); n != nil {
		p.NumRetries = int(n.GetValue())
	}
	if d := rp.GetPerTryTimeout(); d != nil {
		p.PerTry = d.AsDuration()
	}
	if b := rp.GetRetryBackOff(); b != nil {
		if b.GetBaseInterval() == nil || b.GetBaseInterval().AsDuration() <= 0 {
			return nil, fmt.Errorf("%s.retry_back_off.base_interval: must be positive", field)
		}
		p.BaseBackoff = b.GetBaseInterval().AsDuration()
		if m := b.GetMaxInterval(); m != nil {
			p.MaxBackoff = m.AsDuration()
		}
	}
	if p.MaxBackoff == 0 {
		p.MaxBackoff = 10 * p.BaseBackoff
	}
	if p.MaxBackoff < p.BaseBackoff {
		return nil, fmt.Errorf("%s.retry_back_off.max_interval: below base_interval", field)
	}
	for _, c := range rp.GetRetriableStatusCodes() {
		p.StatusCodes = append(p.StatusCodes, int(c))
	}
	for i, hp := range rp.GetRetryHostPredicate() {
		f := fmt.Sprintf("%s.retry_host_predicate[%d]", field, i)
		switch {
		case hp.GetName() == "envoy.retry_host_predicates.previous_hosts",
			hp.GetTypedConfig().GetTypeUrl() == "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate":
			p.OtherHosts = true
		default:
			return nil, fmt.Errorf("%s: only envoy.retry_host_predicates.previous_hosts is supported", f)
		}
	}
	p.HostAttempts = max(int(rp.GetHostSelectionRetryMaxAttempts()), 1)
	return p, nil
}

// Mirror is a compiled request_mirror_policy: a share of requests is copied to Cluster, the
// response discarded.
type Mirror struct {
	Cluster    string
	PerMillion uint32
}

// HashKind is the source of a hash policy.
type HashKind uint8

// Hash policy sources.
const (
	HashHeader HashKind = iota
	HashCookie
	HashSourceIP
)

// HashPolicy is a compiled hash_policy entry.
type HashPolicy struct {
	Kind     HashKind
	Name     string // canonical header key or cookie name
	Terminal bool
}

// Redirect is a route action answering with a redirect.
type Redirect struct {
	Scheme, Host  string
	Port          int
	Path          string
	PrefixRewrite string
	regexRewrite  *regexp.Regexp
	regexSubst    string
	Status        int
	StripQuery    bool
}

// Location returns the redirect target for r, matched by rt.
func (d *Redirect) Location(rt *Route, r *Request) string {
	scheme := r.Scheme
	if d.Scheme != "" {
		scheme = d.Scheme
	}
	host, port := splitHostPort(r.Host)
	if d.Host != "" {
		host = d.Host
	}
	if d.Port != 0 {
		port = strconv.Itoa(d.Port)
	} else if d.Scheme != "" && d.Scheme != r.Scheme {
		port = "" // a scheme change drops the port, as Envoy does
	}
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	path := r.Path
	if d.Path != "" {
		path = d.Path
	} else {
		path = rewritePath(path, d.PrefixRewrite, d.regexRewrite, d.regexSubst, rt)
	}
	var b strings.Builder
	b.WriteString(scheme)
	b.WriteString("://")
	b.WriteString(host)
	if port != "" {
		b.WriteByte(':')
		b.WriteString(port)
	}
	b.WriteString(path)
	if !d.StripQuery && r.Query != "" && !strings.Contains(d.Path, "?") {
		b.WriteByte('?')
		b.WriteString(r.Query)
	}
	return b.String()
}

func splitHostPort(hp string) (string, string) {
	if i := strings.LastIndexByte(hp, ':'); i >= 0 && !strings.Contains(hp[i:], "]") {
		return hp[:i], hp[i+1:]
	}
	return hp, ""
}

// Direct is a route action answering with a fixed response.
type Direct struct {
	Status int
	Body   string
}

func compileForward(a *routev3.RouteAction, field string) (*Forward, error) {
	f := &Forward{NotFoundStatus: http.StatusServiceUnavailable, Timeout: DefaultTimeout}
	switch c := a.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		if c.Cluster == "" {
			return nil, fmt.Errorf("%s.cluster: empty", field)
		}
		f.Cluster = c.Cluster
	case *routev3.RouteAction_ClusterHeader:
		f.ClusterHeader = http.CanonicalHeaderKey(c.ClusterHeader)
	case *routev3.RouteAction_WeightedClusters:
		for i, wc := range c.WeightedClusters.GetClusters() {
			if wc.GetName() == "" {
				return nil, fmt.Errorf("%s.weighted_clusters.clusters[%d].name: empty", field, i)
			}
			w := wc.GetWeight().GetValue()
			f.Weighted = append(f.Weighted, WeightedCluster{Name: wc.GetName(), Weight: w})
			f.totalWeight += uint64(w)
		}
		if f.totalWeight == 0 {
			return nil, fmt.Errorf("%s.weighted_clusters: weights sum to zero", field)
		}
	default:
		return nil, fmt.Errorf("%s: unsupported cluster specifier %T", field, c)
	}
	if a.GetClusterNotFoundResponseCode() == routev3.RouteAction_NOT_FOUND {
		f.NotFoundStatus = http.StatusNotFound
	}
	f.PrefixRewrite = a.GetPrefixRewrite()
	if rr := a.GetRegexRewrite(); rr != nil {
		if f.PrefixRewrite != "" {
			return nil, fmt.Errorf("%s: prefix_rewrite and regex_rewrite are exclusive", field)
		}
		re, err := regexp.Compile(rr.GetPattern().GetRegex())
		if err != nil {
			return nil, fmt.Errorf("%s.regex_rewrite.pattern: %w", field, err)
		}
		f.regexRewrite, f.regexSubst = re, envoySubst(rr.GetSubstitution())
	}
	f.HostRewrite = a.GetHostRewriteLiteral()
	if t := a.GetIdleTimeout(); t != nil {
		f.IdleTimeout, f.HasIdleTimeout = t.AsDuration(), true
	}
	if t := a.GetTimeout(); t != nil {
		f.Timeout = t.AsDuration()
	}
	if rp := a.GetRetryPolicy(); rp != nil {
		p, err := compileRetry(rp, field+".retry_policy")
		if err != nil {
			return nil, err
		}
		f.Retry = p
	}
	for i, m := range a.GetRequestMirrorPolicies() {
		if m.GetCluster() == "" {
			return nil, fmt.Errorf("%s.request_mirror_policies[%d].cluster: empty", field, i)
		}
		mm := Mirror{Cluster: m.GetCluster(), PerMillion: 1e6}
		if rf := m.GetRuntimeFraction(); rf != nil {
			mm.PerMillion = perMillion(rf.GetDefaultValue())
		}
		f.Mirrors = append(f.Mirrors, mm)
	}
	for i, h := range a.GetHashPolicy() {
		hp := HashPolicy{Terminal: h.GetTerminal()}
		switch p := h.GetPolicySpecifier().(type) {
		case *routev3.RouteAction_HashPolicy_Header_:
			hp.Kind, hp.Name = HashHeader, http.CanonicalHeaderKey(p.Header.GetHeaderName())
		case *routev3.RouteAction_HashPolicy_Cookie_:
			hp.Kind, hp.Name = HashCookie, p.Cookie.GetName()
		case *routev3.RouteAction_HashPolicy_ConnectionProperties_:
			if !p.ConnectionProperties.GetSourceIp() {
				return nil, fmt.Errorf("%s.hash_policy[%d].connection_properties.source_ip: must be true", field, i)
			}
			hp.Kind = HashSourceIP
		default:
			return nil, fmt.Errorf("%s.hash_policy[%d]: unsupported policy %T", field, i, p)
		}
		f.Hash = append(f.Hash, hp)
	}
	for i, u := range a.GetUpgradeConfigs() {
		if f.Upgrades == nil {
			f.Upgrades = map[string]bool{}
		}
		if u.GetUpgradeType() == "" {
			return nil, fmt.Errorf("%s.upgrade_configs[%d].upgrade_type: empty", field, i)
		}
		f.Upgrades[strings.ToLower(u.GetUpgradeType())] = u.GetEnabled() == nil || u.GetEnabled().GetValue()
	}
	return f, nil
}

// envoySubst converts an RE2 substitution with \N references to Go's ${N}.
func envoySubst(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9' {
			b.WriteString("${" + string(s[i+1]) + "}")
			i++
			continue
		}
		if s[i] == '$' {
			b.WriteString("$$")
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

var redirectCodes = map[routev3.RedirectAction_RedirectResponseCode]int{
	routev3.RedirectAction_MOVED_PERMANENTLY:  301,
	routev3.RedirectAction_FOUND:              302,
	routev3.RedirectAction_SEE_OTHER:          303,
	routev3.RedirectAction_TEMPORARY_REDIRECT: 307,
	routev3.RedirectAction_PERMANENT_REDIRECT: 308,
}

func compileRedirect(a *routev3.RedirectAction, field string) (*Redirect, error) {
	d := &Redirect{Host: a.GetHostRedirect(), Port: int(a.GetPortRedirect()), StripQuery: a.GetStripQuery()}
	if a.GetHttpsRedirect() {
		d.Scheme = "https"
	} else if s := a.GetSchemeRedirect(); s != "" {
		d.Scheme = strings.ToLower(s)
	}
	d.Path = a.GetPathRedirect()
	d.PrefixRewrite = a.GetPrefixRewrite()
	if rr := a.GetRegexRewrite(); rr != nil {
		re, err := regexp.Compile(rr.GetPattern().GetRegex())
		if err != nil {
			return nil, fmt.Errorf("%s.regex_rewrite.pattern: %w", field, err)
		}
		d.regexRewrite, d.regexSubst = re, envoySubst(rr.GetSubstitution())
	}
	code, ok := redirectCodes[a.GetResponseCode()]
	if !ok {
		return nil, fmt.Errorf("%s.response_code: unsupported %v", field, a.GetResponseCode())
	}
	d.Status = code
	return d, nil
}

func compileDirect(a *routev3.DirectResponseAction, field string) (*Direct, error) {
	d := &Direct{Status: int(a.GetStatus())}
	if d.Status < 200 || d.Status > 599 {
		return nil, fmt.Errorf("%s.status: %d outside 200..599", field, d.Status)
	}
	switch b := a.GetBody().GetSpecifier().(type) {
	case nil:
	case *corev3.DataSource_InlineString:
		d.Body = b.InlineString
	case *corev3.DataSource_InlineBytes:
		d.Body = string(b.InlineBytes)
	default:
		return nil, fmt.Errorf("%s.body: only inline_string and inline_bytes are supported", field)
	}
	return d, nil
}
