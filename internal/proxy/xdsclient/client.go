package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Resource type URLs of the types the client consumes.
const (
	ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	RouteType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	ClusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	SecretType   = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

	resourceWrapperType = "type.googleapis.com/envoy.service.discovery.v3.Resource"
)

// Types lists the consumed types in the order the client subscribes to them: Clusters before
// Listeners (as Envoy does), dependent types after the types that name them.
var Types = []string{ClusterType, EndpointType, ListenerType, RouteType, SecretType}

// wildcard reports whether typeURL is subscribed with a wildcard (all resources of the type, and every
// response carries the complete set).
func wildcard(typeURL string) bool { return typeURL == ListenerType || typeURL == ClusterType }

// Resources is the set of resources of one type by name. A Resources handed to a Consumer is never
// modified afterwards.
type Resources map[string]*Resource

// State is the accepted configuration: per type URL, resources and the version they were accepted at.
// A State handed to a Consumer is never modified afterwards.
type State struct {
	Resources map[string]Resources
	Versions  map[string]string
}

func (s State) with(typeURL, version string, res Resources) State {
	n := State{Resources: make(map[string]Resources, len(Types)), Versions: make(map[string]string, len(Types))}
	for k, v := range s.Resources {
		n.Resources[k] = v
	}
	for k, v := range s.Versions {
		n.Versions[k] = v
	}
	n.Resources[typeURL] = res
	n.Versions[typeURL] = version
	return n
}

// Subscriptions are the resource names wanted for the non-wildcard types (RouteType, EndpointType,
// SecretType). A type missing from the map keeps no subscription.
type Subscriptions map[string][]string

// Consumer validates and applies configuration.
type Consumer interface {
	// Apply is called when a response for typeURL arrives; next is the accepted state with typeURL
	// replaced by the response's content. An error rejects the response (NACK): it must name the
	// resource and the field. On success the consumer has applied next and returns the names of the
	// dependent resources next refers to.
	Apply(typeURL string, next State) (Subscriptions, error)
}

// Resubscriber is an optional Consumer interface, for consumers whose subscriptions change between
// responses (a secret that starts being served locally, for one). After Client.Resubscribe the client
// asks it for the current subscriptions and updates the server's.
type Resubscriber interface {
	Subscriptions() Subscriptions
}

// Options configure a Client. Servers and Consumer are required.
type Options struct {
	// Servers are the control-plane addresses (host:port), tried in order, round robin.
	Servers []string
	// Node identifies this proxy to the control plane; nil means an empty node.
	Node *corev3.Node
	// DialOptions are passed to grpc.NewClient (transport credentials among them). Empty means
	// insecure transport credentials.
	DialOptions []grpc.DialOption
	Consumer    Consumer
	// Logger receives connection events; nil means slog.New(slog.DiscardHandler).
	Logger *slog.Logger
	// BackoffBase and BackoffMax bound the reconnect delay; zero means 200ms and 10s.
	BackoffBase, BackoffMax time.Duration
	// Delta selects incremental xDS (DeltaAggregatedResources). A server that answers it with
	// codes.Unimplemented is used with state of the world instead, for the client's lifetime.
	Delta bool
}

// Status is what the client reports for readiness checks.
type Status struct {
	// Connected is true while a stream is up and has received at least one response.
	Connected bool
	// Server is the address of the current (or last) server.
	Server string
	// LastUpdate is when the last response was accepted; zero if none ever was.
	LastUpdate time.Time
	// Accepted and Rejected count ACKed and NACKed responses.
	Accepted, Rejected uint64
	// LastError is the text of the last NACK or stream error, empty if none.
	LastError string
	// Delta is true when the current (or last) stream is incremental xDS.
	Delta bool
}

// Client is an ADS client. Create it with New and run it with Run.
type Client struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	status Status
	state  State
	subs   Subscriptions
	// rv holds, per type URL, the version of each accepted resource as delta responses named it
	// ("" when unknown: received over state of the world). Updated together with state.
	rv map[string]map[string]string

	kick     chan struct{}   // Resubscribe requests, capacity 1
	sotwOnly map[string]bool // servers that do not implement delta; used by Run only
}

// New checks opts and returns a client ready to Run.
func New(opts Options) (*Client, error) {
	if len(opts.Servers) == 0 {
		return nil, errors.New("xdsclient: options: no servers")
	}
	if opts.Consumer == nil {
		return nil, errors.New("xdsclient: options: no consumer")
	}
	if opts.Node == nil {
		opts.Node = &corev3.Node{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.BackoffBase <= 0 {
		opts.BackoffBase = 200 * time.Millisecond
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = 10 * time.Second
	}
	return &Client{
		opts:  opts,
		log:   opts.Logger,
		state: State{Resources: map[string]Resources{}, Versions: map[string]string{}},
		subs:  Subscriptions{},
		rv:    map[string]map[string]string{},
		kick:  make(chan struct{}, 1),

		sotwOnly: map[string]bool{},
	}, nil
}

// Resubscribe asks the client to update its subscriptions from the Consumer (which must implement
// Resubscriber) on the current stream, or when the next one starts. It does not block.
func (c *Client) Resubscribe() {
	select {
	case c.kick <- struct{}{}:
	default: // one is pending already
	}
}

// Status returns the current connection status.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// State returns the accepted state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Run connects and streams until ctx is done; it returns ctx's error.
func (c *Client) Run(ctx context.Context) error {
	backoff := c.opts.BackoffBase
	for i := 0; ; i++ {
		server := c.opts.Servers[i%len(c.opts.Servers)]
		c.mu.Lock()
		c.status.Server = server
		c.mu.Unlock()
		gotResponse, err := c.connect(ctx, server)
		c.mu.Lock()
		c.status.Connected = false
		if err != nil && ctx.Err() == nil {
			c.status.LastError = err.Error()
		}
		c.mu.Unlock()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if gotResponse {
			backoff = c.opts.BackoffBase
		}
		c.log.Warn("xds stream ended", "server", server, "err", err, "retry_in", backoff)
		// Full jitter on the upper half: wait in [backoff/2, backoff).
		d := backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(backoff*2, c.opts.BackoffMax)
	}
}

// connect runs one stream to server, delta or state of the world as configured, falling back to
// state of the world at once when the server does not implement delta.
func (c *Client) connect(ctx context.Context, server string) (bool, error) {
	if !c.opts.Delta || c.sotwOnly[server] {
		return c.stream(ctx, server)
	}
	got, err := c.deltaStream(ctx, server)
	if !errors.Is(err, errDeltaUnimplemented) {
		return got, err
	}
	c.sotwOnly[server] = true
	c.log.Warn("xds server does not implement delta, using state of the world", "server", server)
	return c.stream(ctx, server)
}

// dial opens a connection to server.
func (c *Client) dial(server string) (*grpc.ClientConn, error) {
	dopts := c.opts.DialOptions
	if len(dopts) == 0 {
		dopts = []grpc.DialOption{grpc.WithTransportCredentials(insecureCreds())}
	}
	conn, err := grpc.NewClient(server, dopts...)
	if err != nil {
		return nil, fmt.Errorf("xds server %s: dial: %w", server, err)
	}
	return conn, nil
}

// pump receives from a stream in a goroutine until recv fails (the error goes to errc) or ctx is
// done, so that the sending goroutine can serve Resubscribe between responses. done is closed
// when the goroutine has returned.
func pump[T any](ctx context.Context, recv func() (T, error)) (msgs <-chan T, errc <-chan error, done <-chan struct{}) {
	m, e, d := make(chan T), make(chan error, 1), make(chan struct{})
	go func() {
		defer close(d)
		for {
			r, err := recv()
			if err != nil {
				e <- err
				return
			}
			select {
			case m <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	return m, e, d
}

// connected records the first response of a stream.
func (c *Client) connected(server string) {
	c.mu.Lock()
	c.status.Connected = true
	c.mu.Unlock()
	c.log.Info("xds connected", "server", server, "delta", c.Status().Delta)
}

// stream runs one state-of-the-world ADS stream to server. It reports whether any response was
// received.
func (c *Client) stream(ctx context.Context, server string) (bool, error) {
	conn, err := c.dial(server)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	c.mu.Lock()
	c.status.Delta = false
	c.mu.Unlock()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	if err != nil {
		return false, fmt.Errorf("xds server %s: open stream: %w", server, err)
	}
	s := &session{c: c, st: st, nonces: map[string]string{}, sent: map[string][]string{}}
	c.mu.Lock()
	subs := c.subs
	c.mu.Unlock()
	// Initial requests carry the accepted versions so a server that already sent them can skip them.
	for _, t := range Types {
		if wildcard(t) || len(subs[t]) > 0 {
			if err := s.request(t, subs[t], nil); err != nil {
				return false, fmt.Errorf("xds server %s: send: %w", server, err)
			}
		}
	}
	// Sends stay on this goroutine (one sender at a time on a gRPC stream).
	recv, rerr, recvDone := pump(sctx, st.Recv)
	defer func() { cancel(); <-recvDone }()
	got := false
	for {
		select {
		case <-sctx.Done():
			// The receiving goroutine may have quit on ctx without reporting an error.
			return got, fmt.Errorf("xds server %s: %w", server, ctx.Err())
		case err := <-rerr:
			return got, fmt.Errorf("xds server %s: receive: %w", server, err)
		case <-c.kick:
			r, ok := c.opts.Consumer.(Resubscriber)
			if !ok {
				continue
			}
			if err := s.resubscribe(r.Subscriptions()); err != nil {
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

type session struct {
	c      *Client
	st     discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	nonces map[string]string   // last nonce received per type
	sent   map[string][]string // names last requested per type
}

func (s *session) request(typeURL string, names []string, nack error) error {
	s.c.mu.Lock()
	version := s.c.state.Versions[typeURL]
	s.c.mu.Unlock()
	req := &discoveryv3.DiscoveryRequest{
		VersionInfo:   version,
		Node:          s.c.opts.Node,
		ResourceNames: names,
		TypeUrl:       typeURL,
		ResponseNonce: s.nonces[typeURL],
	}
	if nack != nil {
		req.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: nack.Error()}
	}
	s.sent[typeURL] = names
	return s.st.Send(req)
}

// handle processes one response: decode, hand to the consumer, ACK or NACK, update subscriptions.
func (s *session) handle(resp *discoveryv3.DiscoveryResponse) error {
	t := resp.GetTypeUrl()
	s.nonces[t] = resp.GetNonce()
	if !slices.Contains(Types, t) {
		// Not a type we asked for: NACK it so the server knows.
		err := fmt.Errorf("unsupported resource type %q", t)
		s.c.rejected(t, resp.GetVersionInfo(), err)
		return s.request(t, nil, err)
	}
	c := s.c
	c.mu.Lock()
	cur, subs := c.state, c.subs
	c.mu.Unlock()

	res, err := decode(t, resp.GetResources())
	if err == nil && !wildcard(t) {
		// Non-wildcard responses may carry only some of the subscribed names: merge with what we
		// hold, keeping only subscribed names.
		merged := Resources{}
		for _, n := range subs[t] {
			if m, ok := cur.Resources[t][n]; ok {
				merged[n] = m
			}
		}
		for n, m := range res {
			if slices.Contains(subs[t], n) {
				merged[n] = m
			}
		}
		res = merged
	}
	var newSubs Subscriptions
	if err == nil {
		next := cur.with(t, resp.GetVersionInfo(), res)
		newSubs, err = c.opts.Consumer.Apply(t, next)
		if err == nil {
			c.mu.Lock()
			c.state = next
			delete(c.rv, t) // state of the world carries no per-resource versions
			c.status.LastUpdate = time.Now()
			c.status.Accepted++
			c.mu.Unlock()
		}
	}
	if err != nil {
		c.rejected(t, resp.GetVersionInfo(), err)
		return s.request(t, s.sent[t], err)
	}
	if err := s.request(t, s.sent[t], nil); err != nil { // ACK
		return err
	}
	return s.resubscribe(newSubs)
}

// rejected records and logs a NACKed response.
func (c *Client) rejected(typeURL, version string, err error) {
	c.mu.Lock()
	c.status.Rejected++
	c.status.LastError = err.Error()
	c.mu.Unlock()
	c.log.Warn("xds response rejected", "type", typeURL, "version", version, "err", err)
}

// resubscribe records the wanted names and sends a request for each dependent type whose names changed.
func (s *session) resubscribe(want Subscriptions) error {
	norm := Subscriptions{}
	for t, names := range want {
		n := slices.Clone(names)
		slices.Sort(n)
		norm[t] = slices.Compact(n)
	}
	s.c.mu.Lock()
	s.c.subs = norm
	s.c.mu.Unlock()
	for _, t := range Types {
		if wildcard(t) {
			continue
		}
		if slices.Equal(norm[t], s.sent[t]) {
			continue
		}
		if _, ok := s.sent[t]; !ok && len(norm[t]) == 0 {
			continue
		}
		if err := s.request(t, norm[t], nil); err != nil {
			return err
		}
	}
	return nil
}

// decode unpacks the resources of one response, by name. Duplicate names, wrong types and unnamed
// resources are errors.
func decode(typeURL string, anys []*anypb.Any) (Resources, error) {
	res := make(Resources, len(anys))
	for i, a := range anys {
		if a.GetTypeUrl() == resourceWrapperType {
			w := &discoveryv3.Resource{}
			if err := a.UnmarshalTo(w); err != nil {
				return nil, fmt.Errorf("resources[%d]: decode Resource wrapper: %w", i, err)
			}
			a = w.GetResource()
		}
		name, r, err := decodeOne(i, typeURL, a)
		if err != nil {
			return nil, err
		}
		if _, dup := res[name]; dup {
			return nil, fmt.Errorf("%s %q: sent twice in one response", shortType(typeURL), name)
		}
		res[name] = r
	}
	return res, nil
}

// decodeOne checks resources[i] of a response for typeURL (by decoding it) and returns it with its
// name.
func decodeOne(i int, typeURL string, a *anypb.Any) (string, *Resource, error) {
	if a.GetTypeUrl() != typeURL {
		return "", nil, fmt.Errorf("resources[%d]: type %q in a response for %q", i, a.GetTypeUrl(), typeURL)
	}
	r, m, err := decodeAny(a)
	if err != nil {
		return "", nil, fmt.Errorf("resources[%d]: decode %s: %w", i, shortType(typeURL), err)
	}
	name := ResourceName(m)
	if name == "" {
		return "", nil, fmt.Errorf("resources[%d]: %s without a name", i, shortType(typeURL))
	}
	return name, r, nil
}

// ResourceName returns the name of an xDS resource (cluster_name for a ClusterLoadAssignment).
func ResourceName(m proto.Message) string {
	switch v := m.(type) {
	case interface{ GetClusterName() string }:
		return v.GetClusterName()
	case interface{ GetName() string }:
		return v.GetName()
	}
	return ""
}

func shortType(typeURL string) string {
	return typeURL[strings.LastIndexByte(typeURL, '.')+1:]
}
