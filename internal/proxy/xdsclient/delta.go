package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errDeltaUnimplemented reports a server that answered DeltaAggregatedResources with
// codes.Unimplemented before sending anything.
var errDeltaUnimplemented = errors.New("delta xds not implemented by the server")

// maxPruneDepth bounds the unsubscribe -> Apply -> new subscriptions chain of one resubscribe.
const maxPruneDepth = 4

// deltaStream runs one incremental ADS stream to server. It reports whether any response was
// received. An Unimplemented answer before any response is errDeltaUnimplemented.
func (c *Client) deltaStream(ctx context.Context, server string) (bool, error) {
	conn, err := c.dial(server)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	c.mu.Lock()
	c.status.Delta = true
	subs := c.subs
	c.mu.Unlock()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(sctx)
	if err != nil {
		return false, deltaErr(server, "open stream", err, false)
	}
	s := &deltaSession{c: c, st: st, subs: map[string]map[string]bool{}}
	// The first request of each type carries what the client holds (initial_resource_versions), so
	// that the server sends only what changed while the client was away.
	for _, t := range Types {
		var err error
		if wildcard(t) {
			err = s.subscribe(t, []string{"*"}, nil)
		} else if len(subs[t]) > 0 {
			err = s.subscribe(t, subs[t], nil)
		}
		if err != nil {
			return false, s.sendErr(server, err)
		}
	}
	recv, rerr, recvDone := pump(sctx, st.Recv)
	defer func() { cancel(); <-recvDone }()
	got := false
	for {
		select {
		case <-sctx.Done():
			// The receiving goroutine may have quit on ctx without reporting an error.
			return got, fmt.Errorf("xds server %s: %w", server, ctx.Err())
		case err := <-rerr:
			return got, deltaErr(server, "receive", err, got)
		case <-c.kick:
			r, ok := c.opts.Consumer.(Resubscriber)
			if !ok {
				continue
			}
			if err := s.resubscribe(r.Subscriptions(), 0); err != nil {
				return got, fmt.Errorf("xds server %s: send: %w", server, err)
			}
		case resp := <-recv:
			if !got {
				got = true
				c.connected(server)
			}
			if err := s.handle(resp); err != nil {
				return got, fmt.Errorf("xds server %s: send: %w", server, err)
			}
		}
	}
}

// deltaErr wraps a stream error, turning an Unimplemented status before any response into
// errDeltaUnimplemented.
func deltaErr(server, op string, err error, got bool) error {
	if !got && status.Code(err) == codes.Unimplemented {
		return fmt.Errorf("xds server %s: %s: %w: %w", server, op, errDeltaUnimplemented, err)
	}
	return fmt.Errorf("xds server %s: %s: %w", server, op, err)
}

type deltaSession struct {
	c        *Client
	st       discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	nodeSent bool
	// subs holds the names subscribed on this stream per non-wildcard type; a type is present once
	// its first request was sent.
	subs map[string]map[string]bool
}

// sendErr wraps a failure of the initial sends (before the receiving goroutine starts). A failed
// Send on a gRPC stream returns io.EOF; the stream's status comes from Recv.
func (s *deltaSession) sendErr(server string, err error) error {
	if errors.Is(err, io.EOF) {
		if _, rerr := s.st.Recv(); rerr != nil {
			return deltaErr(server, "send", rerr, false)
		}
	}
	return fmt.Errorf("xds server %s: send: %w", server, err)
}

func (s *deltaSession) send(req *discoveryv3.DeltaDiscoveryRequest) error {
	if !s.nodeSent {
		req.Node = s.c.opts.Node // the node is needed on the first request of a stream only
		s.nodeSent = true
	}
	return s.st.Send(req)
}

// subscribe sends a subscription change for typeURL. The first request of a type on the stream
// also lists the resources held, with their versions ("" when unknown): all of them for a wildcard
// type, the subscribed ones otherwise.
func (s *deltaSession) subscribe(typeURL string, add, remove []string) error {
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL, ResourceNamesSubscribe: add, ResourceNamesUnsubscribe: remove}
	cur, first := s.subs[typeURL]
	if !first {
		cur = map[string]bool{}
		s.subs[typeURL] = cur
	}
	for _, n := range add {
		cur[n] = true
	}
	for _, n := range remove {
		delete(cur, n)
	}
	if !first {
		s.c.mu.Lock()
		for n := range s.c.state.Resources[typeURL] {
			if wildcard(typeURL) || cur[n] {
				if req.InitialResourceVersions == nil {
					req.InitialResourceVersions = map[string]string{}
				}
				req.InitialResourceVersions[n] = s.c.rv[typeURL][n]
			}
		}
		s.c.mu.Unlock()
	}
	return s.send(req)
}

// keeps reports whether a resource of typeURL named name belongs in the state: every name of a
// wildcard type, the subscribed names of the others.
func (s *deltaSession) keeps(typeURL, name string) bool {
	return wildcard(typeURL) || s.subs[typeURL][name]
}

// handle processes one response: decode, merge into the held resources of its type, hand the full
// state to the consumer, ACK or NACK by nonce, update subscriptions.
func (s *deltaSession) handle(resp *discoveryv3.DeltaDiscoveryResponse) error {
	t := resp.GetTypeUrl()
	c := s.c
	if !slices.Contains(Types, t) {
		err := fmt.Errorf("unsupported resource type %q", t)
		c.rejected(t, resp.GetSystemVersionInfo(), err)
		return s.reply(t, resp.GetNonce(), err)
	}
	c.mu.Lock()
	cur, curRV := c.state, c.rv[t]
	c.mu.Unlock()

	upd, vers, err := decodeDelta(t, resp)
	var newSubs Subscriptions
	if err == nil {
		merged, rv := Resources{}, map[string]string{}
		for n, m := range cur.Resources[t] {
			if s.keeps(t, n) {
				merged[n], rv[n] = m, curRV[n]
			}
		}
		for n, m := range upd {
			if s.keeps(t, n) { // a resource not subscribed to is dropped, as with state of the world
				merged[n], rv[n] = m, vers[n]
			}
		}
		for _, n := range resp.GetRemovedResources() {
			delete(merged, n)
			delete(rv, n)
		}
		next := cur.with(t, resp.GetSystemVersionInfo(), merged)
		newSubs, err = c.opts.Consumer.Apply(t, next)
		if err == nil {
			c.mu.Lock()
			c.state = next
			c.rv[t] = rv
			c.status.LastUpdate = time.Now()
			c.status.Accepted++
			c.mu.Unlock()
		}
	}
	if err != nil {
		c.rejected(t, resp.GetSystemVersionInfo(), err)
		return s.reply(t, resp.GetNonce(), err)
	}
	if err := s.reply(t, resp.GetNonce(), nil); err != nil {
		return err
	}
	return s.resubscribe(newSubs, 0)
}

// reply ACKs (nack nil) or NACKs the response with nonce.
func (s *deltaSession) reply(typeURL, nonce string, nack error) error {
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL, ResponseNonce: nonce}
	if nack != nil {
		req.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: nack.Error()}
	}
	return s.send(req)
}

// resubscribe records the wanted names and sends the differences to the server. Resources
// unsubscribed from leave the state at once (a delta server does not confirm an unsubscription
// with a response), through the consumer, as a state-of-the-world response without them would.
func (s *deltaSession) resubscribe(want Subscriptions, depth int) error {
	norm := Subscriptions{}
	for t, names := range want {
		n := slices.Clone(names)
		slices.Sort(n)
		norm[t] = slices.Compact(n)
	}
	c := s.c
	c.mu.Lock()
	c.subs = norm
	c.mu.Unlock()
	var prune []string
	for _, t := range Types {
		if wildcard(t) {
			continue
		}
		cur := s.subs[t]
		var add, remove []string
		for _, n := range norm[t] {
			if !cur[n] {
				add = append(add, n)
			}
		}
		for _, n := range slices.Sorted(maps.Keys(cur)) {
			if !slices.Contains(norm[t], n) {
				remove = append(remove, n)
			}
		}
		if len(add) == 0 && len(remove) == 0 {
			continue
		}
		if err := s.subscribe(t, add, remove); err != nil {
			return err
		}
		if len(remove) > 0 {
			prune = append(prune, t)
		}
	}
	for _, t := range prune {
		if err := s.prune(t, depth); err != nil {
			return err
		}
	}
	return nil
}

// prune drops the resources of typeURL no longer subscribed to from the state, through the
// consumer. A consumer error leaves them in place (they are dropped with the next response of the
// type); it is logged, there is no response to NACK.
func (s *deltaSession) prune(typeURL string, depth int) error {
	c := s.c
	c.mu.Lock()
	cur, curRV := c.state, c.rv[typeURL]
	c.mu.Unlock()
	kept, rv := Resources{}, map[string]string{}
	for n, m := range cur.Resources[typeURL] {
		if s.keeps(typeURL, n) {
			kept[n], rv[n] = m, curRV[n]
		}
	}
	if len(kept) == len(cur.Resources[typeURL]) {
		return nil
	}
	next := cur.with(typeURL, cur.Versions[typeURL], kept)
	newSubs, err := c.opts.Consumer.Apply(typeURL, next)
	if err != nil {
		c.log.Warn("xds unsubscribed resources not removed", "type", typeURL, "err", err)
		return nil
	}
	c.mu.Lock()
	c.state = next
	c.rv[typeURL] = rv
	c.mu.Unlock()
	if depth+1 >= maxPruneDepth {
		return nil
	}
	return s.resubscribe(newSubs, depth+1)
}

// decodeDelta unpacks the resources of a delta response, by name, with their versions. Errors
// name the resource as state-of-the-world decoding does, plus the delta-only checks: a wrapper
// without a resource, a wrapper name differing from the resource's, TTL or cache control (not
// supported), a name both updated and removed.
func decodeDelta(typeURL string, resp *discoveryv3.DeltaDiscoveryResponse) (Resources, map[string]string, error) {
	res := make(Resources, len(resp.GetResources()))
	vers := make(map[string]string, len(resp.GetResources()))
	short := shortType(typeURL)
	for i, r := range resp.GetResources() {
		if r.GetResource() == nil {
			return nil, nil, fmt.Errorf("resources[%d]: %s %q: no resource (heartbeats are not supported)", i, short, r.GetName())
		}
		if r.GetTtl() != nil {
			return nil, nil, fmt.Errorf("resources[%d]: %s %q: field ttl: not supported", i, short, r.GetName())
		}
		if r.GetCacheControl() != nil {
			return nil, nil, fmt.Errorf("resources[%d]: %s %q: field cache_control: not supported", i, short, r.GetName())
		}
		name, m, err := decodeOne(i, typeURL, r.GetResource())
		if err != nil {
			return nil, nil, err
		}
		if r.GetName() != "" && r.GetName() != name {
			return nil, nil, fmt.Errorf("resources[%d]: %s %q: field name: differs from the resource's name %q", i, short, r.GetName(), name)
		}
		if _, dup := res[name]; dup {
			return nil, nil, fmt.Errorf("%s %q: sent twice in one response", short, name)
		}
		res[name] = m
		vers[name] = r.GetVersion()
	}
	for _, n := range resp.GetRemovedResources() {
		if _, ok := res[n]; ok {
			return nil, nil, fmt.Errorf("%s %q: both updated and removed in one response", short, n)
		}
	}
	return res, vers, nil
}
