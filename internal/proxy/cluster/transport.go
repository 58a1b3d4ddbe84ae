package cluster

import (
	"crypto/tls"
	"net/http"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// TransportMatchFilter is the endpoint metadata namespace transport socket matches are matched
// against (Envoy's).
const TransportMatchFilter = "envoy.transport_socket_match"

// TransportMatch is one of a cluster's transport_socket_matches: the endpoints whose
// TransportMatchFilter metadata holds every key of Match with the same string value are reached
// over TLS (nil: plain text) instead of the cluster's own transport socket. The first match in
// the cluster's order wins; an endpoint no match selects uses the cluster's own (Options.TLS).
type TransportMatch struct {
	Name  string
	Match map[string]string
	TLS   *tls.Config
	// Mesh is Options.Mesh for the endpoints this match selects.
	Mesh bool
}

// matchedTransport is the pooled transport of one TransportMatch.
type matchedTransport struct {
	match  map[string]string
	scheme string
	tls    *tls.Config
	t      *http.Transport // HTTP/1.1 clusters only, for what h1 does not carry
	h1     *h1Pool         // HTTP/1.1 clusters only
	h2     *h2Pool         // HTTP/2 clusters only
}

// newMatchedTransports builds the transports of o.Matches; New calls it once the cluster's
// protocol and timeouts are known.
func (c *Cluster) newMatchedTransports(o Options) {
	for _, m := range o.Matches {
		mt := &matchedTransport{match: m.Match, scheme: "http", tls: m.TLS}
		if m.TLS != nil {
			mt.scheme = "https"
		}
		if c.HTTP2 {
			mt.h2 = newH2Pool(c.dial, m.TLS, c.ConnectTimeout, c.IdleTimeout)
		} else {
			mt.t = c.newTransport(m.TLS)
			mt.h1 = newH1Pool(c.dial, m.TLS, c.ConnectTimeout, c.IdleTimeout)
		}
		c.matched = append(c.matched, mt)
		c.Mesh = c.Mesh && m.Mesh
	}
}

// matchIndex returns which transport an endpoint with metadata md uses: 0 for the cluster's own,
// i for c.matched[i-1].
func (c *Cluster) matchIndex(md *corev3.Metadata) int {
	fields := md.GetFilterMetadata()[TransportMatchFilter].GetFields()
	for i, m := range c.matched {
		if matchesAll(m.match, fields) {
			return i + 1
		}
	}
	return 0
}

func matchesAll(want map[string]string, have map[string]*structpb.Value) bool {
	for k, v := range want {
		sv, ok := have[k].GetKind().(*structpb.Value_StringValue)
		if !ok || sv.StringValue != v {
			return false
		}
	}
	return true
}

// matchedFor returns the transport of a transport socket match that the current endpoint at addr
// (host:port) uses, nil for the cluster's own (also for an address that is no longer an endpoint).
func (c *Cluster) matchedFor(addr string) *matchedTransport {
	if len(c.matched) == 0 {
		return nil
	}
	if i := c.set.Load().matchOf[addr]; i > 0 {
		return c.matched[i-1]
	}
	return nil
}

// roundTrip sends r over m: the URL scheme becomes m's (the caller built it with Cluster.Scheme).
func (m *matchedTransport) roundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != m.scheme {
		u := *r.URL
		u.Scheme = m.scheme
		r = r.WithContext(r.Context()) // a shallow copy
		r.URL = &u
	}
	if m.h2 != nil {
		return m.h2.roundTrip(r)
	}
	if m.h1 != nil && h1Eligible(r) {
		return m.h1.roundTrip(r)
	}
	return m.t.RoundTrip(r)
}

func (m *matchedTransport) closeIdle(final bool) {
	if m.t != nil {
		m.t.CloseIdleConnections()
	}
	if m.h1 != nil {
		m.h1.closeIdle(final)
	}
	if m.h2 != nil {
		m.h2.closeIdle(final)
	}
}
