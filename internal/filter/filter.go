package filter

import (
	"context"
	"net/http"
	"net/netip"
	"strings"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// Handler serves one HTTP request. A Handler that wrote a response (even an
// error status such as a 503) returns nil. A non-nil error means nothing was
// written to w; the caller (the proxy) answers the downstream itself, usually
// with a 500, and logs the error.
type Handler interface {
	ServeHTTP(w http.ResponseWriter, r *http.Request) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// ServeHTTP calls f(w, r).
func (f HandlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) error { return f(w, r) }

// Filter is one step of an HTTP filter chain. next is never nil; a filter
// either answers the request itself (and does not call next) or calls next
// exactly once, possibly after changing the request. The error contract is
// the one of Handler.
type Filter interface {
	ServeHTTP(w http.ResponseWriter, r *http.Request, next Handler) error
}

// Build builds the chain for an HttpConnectionManager's http_filters list,
// in order. The list must end with envoy.filters.http.router. An unsupported
// filter (unless is_optional), an unsupported typed_config field, or an
// invalid value is an error naming the filter index, its name and the field
// path; the proxy NACKs the resource with that error. The terminal step of
// the chain calls router, which must not be nil.
//
// Filters are identified by the type URL of their typed_config (as Envoy
// does) and, when no typed_config is given, by their well-known name. The
// supported set and its order of registration live in registry.go.
func Build(filters []*hcmv3.HttpFilter, router Handler) (Handler, error) {
	return build(filters, router)
}

// Peer is the authenticated identity of the downstream peer, set by the proxy
// after the mTLS handshake. The zero Peer means "unauthenticated".
type Peer struct {
	// Principal is the SPIFFE ID without its "spiffe://" scheme, as Istio
	// reports it, e.g. "bookinfo.demo.mesh/sa/reviews". Empty if none.
	Principal string
	// Namespace is the peer's namespace domain, e.g. "bookinfo.demo.mesh".
	Namespace string
	// IP is the downstream address the connection came from.
	IP netip.Addr
}

// Flags is a set of Envoy response flags a filter reports for a request, for
// access logs and for the response_flags label of Istio metrics.
type Flags uint32

// The response flags set by the filters of this package. Their String form
// is Envoy's short code.
const (
	// FlagDelayInjected (DI): the request was delayed by fault injection.
	FlagDelayInjected Flags = 1 << iota
	// FlagFaultInjected (FI): the request was aborted by fault injection.
	FlagFaultInjected
	// FlagRateLimited (RL): the request was refused by local rate limiting.
	FlagRateLimited
	flagEnd
)

var flagCodes = [...]string{"DI", "FI", "RL"}

// flagStrings caches the String of every combination, so the hot path that
// labels a metric with response_flags does not allocate.
var flagStrings = func() []string {
	s := make([]string, flagEnd)
	for f := Flags(0); f < flagEnd; f++ {
		s[f] = f.format()
	}
	return s
}()

// String returns the flags as Envoy writes them in access logs: short codes
// joined by "," in a fixed order, or "-" for none (which is also what Istio
// puts in the response_flags label).
func (f Flags) String() string {
	if f < flagEnd {
		return flagStrings[f]
	}
	return f.format()
}

func (f Flags) format() string {
	if f == 0 {
		return "-"
	}
	var b strings.Builder
	for i, code := range flagCodes {
		if f&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(code)
		}
	}
	if f >= flagEnd {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString("?")
	}
	return b.String()
}

// reqInfo is the per-request data the proxy hands to filters through the
// context. It is copied, never mutated, when one of its fields is replaced;
// flags points to a record owned by the proxy and shared by every copy.
type reqInfo struct {
	route   map[string]*anypb.Any
	peer    Peer
	hasPeer bool
	flags   *Flags
}

type infoKey struct{}

func infoFrom(ctx context.Context) *reqInfo {
	ri, _ := ctx.Value(infoKey{}).(*reqInfo)
	return ri
}

func derive(ctx context.Context) *reqInfo {
	n := new(reqInfo)
	if ri := infoFrom(ctx); ri != nil {
		*n = *ri
	}
	return n
}

// WithRequest returns a context carrying, in one step (two allocations), the
// route's per-filter config, the authenticated peer (nil for none) and the
// flags record filters report into (nil to discard flags). It is the cheap
// form of WithRouteConfig + WithPeer + WithFlags for the proxy's hot path.
func WithRequest(ctx context.Context, cfg map[string]*anypb.Any, peer *Peer, flags *Flags) context.Context {
	ri := &reqInfo{route: cfg, flags: flags}
	if peer != nil {
		ri.peer, ri.hasPeer = *peer, true
	}
	return context.WithValue(ctx, infoKey{}, ri)
}

// WithRouteConfig returns a context carrying the selected route's
// typed_per_filter_config, already merged with its virtual host's (route
// entries win). The proxy selects the route before running the chain.
func WithRouteConfig(ctx context.Context, cfg map[string]*anypb.Any) context.Context {
	ri := derive(ctx)
	ri.route = cfg
	return context.WithValue(ctx, infoKey{}, ri)
}

// RouteConfig returns the per-route config stored for the filter named
// filterName (the name given in the HttpConnectionManager's http_filters).
// The value may be an envoy.config.route.v3.FilterConfig wrapper.
func RouteConfig(ctx context.Context, filterName string) (*anypb.Any, bool) {
	ri := infoFrom(ctx)
	if ri == nil || ri.route == nil {
		return nil, false
	}
	a, ok := ri.route[filterName]
	return a, ok && a != nil
}

// WithPeer returns a context carrying the authenticated downstream peer.
func WithPeer(ctx context.Context, p Peer) context.Context {
	ri := derive(ctx)
	ri.peer, ri.hasPeer = p, true
	return context.WithValue(ctx, infoKey{}, ri)
}

// PeerFrom returns the peer stored by WithPeer or WithRequest.
func PeerFrom(ctx context.Context) (Peer, bool) {
	ri := infoFrom(ctx)
	if ri == nil || !ri.hasPeer {
		return Peer{}, false
	}
	return ri.peer, true
}

// WithFlags returns a context whose filters report response flags into *f.
// The proxy reads *f after the chain returned, on the same goroutine; the
// record is not safe for concurrent use.
func WithFlags(ctx context.Context, f *Flags) context.Context {
	ri := derive(ctx)
	ri.flags = f
	return context.WithValue(ctx, infoKey{}, ri)
}

// AddFlags records f for the request; it does nothing when the context
// carries no flags record.
func AddFlags(ctx context.Context, f Flags) {
	if ri := infoFrom(ctx); ri != nil && ri.flags != nil {
		*ri.flags |= f
	}
}

// FlagsFrom returns the flags reported so far for the request.
func FlagsFrom(ctx context.Context) Flags {
	if ri := infoFrom(ctx); ri != nil && ri.flags != nil {
		return *ri.flags
	}
	return 0
}
