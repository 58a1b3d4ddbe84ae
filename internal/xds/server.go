package xds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
)

// ServerOptions configure an ADS server.
type ServerOptions struct {
	// Generate returns the resources of a proxy from the current scope state (typically
	// Snapshot.Generate of the latest applied revision). Required.
	Generate func(node Node) (Resources, error)
	// NodeFromProto turns the xDS node of a stream's first request into a Node; ctx is the
	// stream's context, carrying its TLS peer (identity
	// checks belong here). Required.
	NodeFromProto func(ctx context.Context, n *corev3.Node) (Node, error)
	// Debounce bounds how often changes are pushed: the first change after a quiet period
	// (no push within Debounce) is pushed at once, and changes notified within Debounce of a
	// push are pushed together, Debounce after it. Zero means 100ms.
	Debounce time.Duration
	// Logger receives stream events. Nil means slog.Default().
	Logger *slog.Logger
}

// Server is an Aggregated Discovery Service (state of the world and delta) with its own
// per-stream cache: it answers only the resources a client subscribed to (all of them for
// wildcard LDS/CDS), tracks version and nonce per type and stream, never re-sends content a
// client has NACKed (the type is parked until its resources change), and pushes changes
// after Notify (see ServerOptions.Debounce).
type Server struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	opts ServerOptions
	log  *slog.Logger

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when a change is published
	push    uint64        // changes published: the push that closing changed starts
	// window is running from a push until Debounce after it; pending is set when a change is
	// notified meanwhile, and published when the window ends (which starts another window).
	window  *time.Timer
	pending bool

	notified  atomic.Uint64 // Notify calls
	nonce     atomic.Uint64
	responses atomic.Uint64 // responses sent, all streams (for tests and metrics)
	requests  atomic.Uint64 // requests handled, all streams
	generated atomic.Uint64 // per-stream generations (first request and every push)

	streams streams
	shared  sharedResponses
}

// NewServer returns a server; register it with Register.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.Generate == nil || opts.NodeFromProto == nil {
		return nil, errors.New("xds server: Generate and NodeFromProto are required")
	}
	if opts.Debounce == 0 {
		opts.Debounce = 100 * time.Millisecond
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Server{opts: opts, log: log, changed: make(chan struct{})}, nil
}

// pushSlots bounds the streams generating and comparing a push at once, over every Server of
// the process (they share its CPUs), to GOMAXPROCS: a change wakes every stream, and a
// thousand runnable goroutines would delay everything else of the process (Raft, the reply to
// the write that made the change) until all of them are done. Streams send outside the slots
// (a slow client blocks only its own stream).
var pushSlots = make(chan struct{}, runtime.GOMAXPROCS(0))

// pushedResponse is a response prepared for one subscribed type of a stream.
type pushedResponse[T any, R comparable] struct {
	t    *T
	resp R
}

// prepareChange regenerates st's configuration after a change, in a push slot, and prepares the
// response every subscribed type (types, in Types order) needs; types that need none are left out.
// The caller sends them outside the slot, so a slow client holds no slot.
func prepareChange[T any, R comparable](s *Server, ctx context.Context, st *nodeState, types map[string]*T,
	prepare func(typeURL string, t *T) (R, error)) ([]pushedResponse[T, R], error) {
	var push []pushedResponse[T, R]
	var none R
	err := s.pushing(ctx, func() error {
		if err := s.refresh(st); err != nil {
			return err
		}
		for _, typeURL := range Types {
			if t := types[typeURL]; t != nil {
				resp, err := prepare(typeURL, t)
				if err != nil {
					return err
				}
				if resp != none {
					push = append(push, pushedResponse[T, R]{t, resp})
				}
			}
		}
		return nil
	})
	return push, err
}

// pushing runs f, a stream's generation and comparison of a push, in one of the push slots,
// waiting for one until ctx ends.
func (s *Server) pushing(ctx context.Context, f func() error) error {
	select {
	case pushSlots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-pushSlots }()
	return f()
}

// Register adds the ADS service to g.
func (s *Server) Register(g *grpc.Server) { discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, s) }

// Notify tells the server the scope changed. The first change after a quiet period is pushed
// at once; those that follow within Debounce of a push are pushed together when Debounce has
// passed, so a burst of changes costs at most one push per Debounce.
func (s *Server) Notify() {
	s.notified.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.window != nil {
		s.pending = true
		return
	}
	s.publishLocked()
	s.window = time.AfterFunc(s.opts.Debounce, s.windowEnded)
}

// Notified returns how many times Notify has been called. What Generate reads besides the state
// that comes with each Notify can be cached until this changes: a caller that notes it before
// reading its inputs, and is notified after every change of them, reads them again after
// every change.
func (s *Server) Notified() uint64 { return s.notified.Load() }

// windowEnded publishes the changes notified during the window that just ended, and starts
// another window if there were some.
func (s *Server) windowEnded() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.pending {
		s.window = nil
		return
	}
	s.pending = false
	s.publishLocked()
	s.window.Reset(s.opts.Debounce)
}

// publishLocked wakes every stream to push the current configuration. s.mu is held.
func (s *Server) publishLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
	s.push++
}

// Stats counts, since start and over all streams, the requests handled, the responses sent
// and the configurations generated.
type Stats struct {
	Requests, Responses, Generated uint64
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{Requests: s.requests.Load(), Responses: s.responses.Load(), Generated: s.generated.Load()}
}

func (s *Server) changes() <-chan struct{} {
	ch, _ := s.nextChange()
	return ch
}

// nextChange returns the channel closed by the next publish, and the number of that publish.
func (s *Server) nextChange() (<-chan struct{}, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed, s.push + 1
}

func (s *Server) nextNonce() string { return strconv.FormatUint(s.nonce.Add(1), 10) }

// wildcardAllowed reports whether an empty subscription means "everything" for a type.
func wildcardAllowed(typeURL string) bool { return typeURL == ListenerType || typeURL == ClusterType }

// receive runs recv in a goroutine and delivers requests on a channel until it fails.
func receive[T any](ctx context.Context, recv func() (T, error)) (<-chan T, <-chan error) {
	reqs, errc := make(chan T), make(chan error, 1)
	go func() {
		for {
			r, err := recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case reqs <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	return reqs, errc
}

// nodeState is the generated configuration of a stream's node, refreshed on change.
type nodeState struct {
	node    Node
	res     Resources
	changed <-chan struct{}
	// push is the number of the publish that closes changed. A stream prepares one push when
	// it is closed, and then waits for a later one: the numbers of its pushes increase (see
	// sharedResponses).
	push uint64
}

func (s *Server) refresh(st *nodeState) error {
	st.changed, st.push = s.nextChange() // take the channel first: a change during Generate is not lost
	res, err := s.opts.Generate(st.node)
	if err != nil {
		return fmt.Errorf("generate for node %q: %w", st.node.ID, err)
	}
	st.res = res
	s.generated.Add(1)
	return nil
}

// sotwType is the state of one type on a state-of-the-world stream.
type sotwType struct {
	names      map[string]bool // subscribed names; nil with wildcard
	subscribed []string        // names, sorted
	// all is, when not nil, a list of the names of all resources of the type (sortedNames) that
	// subscribed was found equal to: when sortedNames returns it again (the same slice), they
	// are still equal.
	all      []string
	wildcard bool
	version  string // version of the last response
	nonce    string
	sent     bool
}

// isAll reports whether t's subscription is names, the sorted names of all resources of the type.
func (t *sotwType) isAll(names []string) bool {
	if len(names) > 0 && len(t.all) == len(names) && &t.all[0] == &names[0] {
		return true
	}
	if !slices.Equal(t.subscribed, names) {
		return false
	}
	t.all = names
	return true
}

// sotwResponse is a state-of-the-world response ready to send: resp, or its encoding msg when
// it is shared by the streams of a push (sharedResponses).
type sotwResponse struct {
	version, nonce string
	resp           *discoveryv3.DiscoveryResponse
	msg            *grpc.PreparedMsg
}

// sharedResponses are the state-of-the-world responses of one push, encoded once and sent to
// every stream of the push whose type is at the same version: a change sends the same route
// configuration to a thousand proxies, and encoding it for each would cost as much as the rest
// of the push. Equal versions mean equal resources (Resources.Versions); the streams of a push
// share the response's nonce too, which is unique on each of them: a stream pushes once per
// push number, and the numbers of its pushes increase (nodeState.push), while every other
// response takes a new nonce. Only the responses of the latest push number are kept.
type sharedResponses struct {
	mu   sync.Mutex
	push uint64
	m    map[sharedKey]*sharedResponse
}

type sharedKey struct{ typeURL, version string }

type sharedResponse struct {
	once  sync.Once
	nonce string
	msg   *grpc.PreparedMsg
	err   error
}

// get returns the response of push for typeURL at version, to be made once (by the first stream
// to ask); nil for a push older than the latest asked for, which then is not shared.
func (c *sharedResponses) get(push uint64, typeURL, version string) *sharedResponse {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case push < c.push:
		return nil
	case push > c.push || c.m == nil:
		c.push, c.m = push, map[sharedKey]*sharedResponse{}
	}
	k := sharedKey{typeURL, version}
	r := c.m[k]
	if r == nil {
		r = &sharedResponse{}
		c.m[k] = r
	}
	return r
}

// plainEncoding reports whether stream's messages are encoded as protobuf without compression,
// as a shared response is: it may use one.
func plainEncoding(stream grpc.ServerStream) bool {
	ts, ok := grpc.ServerTransportStreamFromContext(stream.Context()).(interface {
		SendCompress() string
		ContentSubtype() string
	})
	if !ok {
		return false
	}
	sub := ts.ContentSubtype()
	return ts.SendCompress() == "" && (sub == "" || sub == "proto")
}

// StreamAggregatedResources serves state-of-the-world ADS.
func (s *Server) StreamAggregatedResources(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	ctx := stream.Context()
	reqs, errc := receive(ctx, stream.Recv)
	var st *nodeState
	var live *liveStream
	defer func() { s.streams.remove(live) }()
	types := map[string]*sotwType{}
	// prepare returns the response that brings the client to the current resources of one type
	// (nil: it has them, or NACKed exactly them). A push (push, not 0) takes it from the
	// responses shared by the streams of that push when the stream can use them.
	prepare := func(typeURL string, t *sotwType, push uint64) (*sotwResponse, error) {
		all := st.res.ByType(typeURL)
		var names []string // sorted; for wildcard, taken once the version says they are sent
		var version string
		if t.wildcard {
			version = st.res.Version(typeURL)
		} else if len(t.subscribed) == len(all) && t.isAll(st.res.sortedNames(typeURL)) {
			names, version = t.subscribed, st.res.Version(typeURL) // all of them: computed once
		} else {
			names = make([]string, 0, min(len(t.subscribed), len(all))) // not nil: hashVersions reads nil as all of them
			for _, n := range t.subscribed {
				if _, ok := all[n]; ok {
					names = append(names, n)
				}
			}
			if len(names) == len(all) {
				version = st.res.Version(typeURL) // names are all of them: computed once
			} else {
				version = hashVersions(st.res.Versions[typeURL], names)
			}
		}
		if t.sent && version == t.version {
			return nil, nil // the client has (or NACKed) exactly this
		}
		if t.wildcard {
			names = st.res.sortedNames(typeURL)
		}
		build := func() (*discoveryv3.DiscoveryResponse, error) {
			resp := &discoveryv3.DiscoveryResponse{TypeUrl: typeURL, VersionInfo: version, Nonce: s.nextNonce()}
			for _, n := range names {
				a, err := st.res.Packed(typeURL, n)
				if err != nil {
					return nil, fmt.Errorf("pack %s %q: %w", typeURL, n, err)
				}
				resp.Resources = append(resp.Resources, a)
			}
			return resp, nil
		}
		if push != 0 && plainEncoding(stream) {
			if sh := s.shared.get(push, typeURL, version); sh != nil {
				sh.once.Do(func() {
					var resp *discoveryv3.DiscoveryResponse
					if resp, sh.err = build(); sh.err != nil {
						return
					}
					sh.nonce, sh.msg = resp.Nonce, &grpc.PreparedMsg{}
					if sh.err = sh.msg.Encode(stream, resp); sh.err != nil {
						sh.err = fmt.Errorf("encode %s response: %w", typeURL, sh.err)
					}
				})
				if sh.err != nil {
					return nil, sh.err
				}
				return &sotwResponse{version: version, nonce: sh.nonce, msg: sh.msg}, nil
			}
		}
		resp, err := build()
		if err != nil {
			return nil, err
		}
		return &sotwResponse{version: version, nonce: resp.Nonce, resp: resp}, nil
	}
	// transmit sends a response of prepare and records it as the type's latest.
	transmit := func(t *sotwType, r *sotwResponse) error {
		var err error
		if r.msg != nil {
			err = stream.SendMsg(r.msg)
		} else {
			err = stream.Send(r.resp)
		}
		if err != nil {
			return err
		}
		s.responses.Add(1)
		t.version, t.nonce, t.sent = r.version, r.nonce, true
		return nil
	}
	send := func(typeURL string, t *sotwType) error {
		resp, err := prepare(typeURL, t, 0)
		if resp == nil || err != nil {
			return err
		}
		return transmit(t, resp)
	}
	var changed <-chan struct{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return ignoreEOF(err)
		case <-changed:
			pushNo := st.push
			push, err := prepareChange(s, ctx, st, types, func(typeURL string, t *sotwType) (*sotwResponse, error) {
				return prepare(typeURL, t, pushNo)
			})
			if err != nil {
				return ignoreEOF(err)
			}
			changed = st.changed
			for _, p := range push {
				if err := transmit(p.t, p.resp); err != nil {
					return err
				}
			}
		case req := <-reqs:
			s.requests.Add(1)
			if st == nil {
				var err error
				if st, live, err = s.open(stream.Context(), req.GetNode(), false); err != nil {
					return fmt.Errorf("xds stream: %w", err)
				}
				changed = st.changed
			}
			live.skipped(st.res.Skipped)
			typeURL := req.GetTypeUrl()
			if typeURL == "" || st.res.ByType(typeURL) == nil {
				s.log.Warn("xds request for an unsupported type", "node", st.node.ID, "type", typeURL)
				continue
			}
			t := types[typeURL]
			if t == nil {
				t = &sotwType{}
				types[typeURL] = t
			}
			if t.sent && req.GetResponseNonce() != t.nonce {
				continue // stale: answers an older response
			}
			// The request answers the latest response (nonce). With an error it rejects that
			// response's version; without, it acknowledges it only if it reports that version
			// as applied: a request that changes the subscription after a NACK carries the
			// nonce too, but the version the client still runs.
			if d := req.GetErrorDetail(); d != nil {
				s.log.Warn("xds nack", "node", st.node.ID, "type", typeURL, "version", t.version, "error", d.GetMessage())
				live.nack(typeURL, t.version, d.GetMessage())
			} else if t.sent && req.GetVersionInfo() == t.version {
				live.ack(typeURL, t.version)
			}
			t.wildcard = wildcardAllowed(typeURL) && (len(req.GetResourceNames()) == 0 && (!t.sent || t.wildcard) || contains(req.GetResourceNames(), "*"))
			t.names = map[string]bool{}
			for _, n := range req.GetResourceNames() {
				t.names[n] = true
			}
			t.subscribed, t.all = sortedKeys(t.names), nil
			if !t.sent || req.GetErrorDetail() == nil {
				if err := send(typeURL, t); err != nil {
					return err
				}
			}
		}
	}
}

// deltaType is the state of one type on a delta stream.
type deltaType struct {
	names    map[string]bool
	wildcard bool
	known    map[string]string // name -> version the client has (or rejected)
	nonce    string
	sent     bool
	// pending lists the responses not answered yet, oldest first: their nonce and the
	// system version they carried, the version an ACK or NACK of that nonce is about.
	pending []sentResponse
	// synced is the type's version (Resources.Version) at which the client was last brought
	// to all it subscribes to (known holds their versions), unless the subscription changed
	// since (empty): at that version again there is nothing to send.
	synced string
}

type sentResponse struct{ nonce, version string }

// maxPendingResponses bounds deltaType.pending per type and stream.
const maxPendingResponses = 16

// answered removes the response nonce and the older ones (a client answers the responses of a
// type in order) from t.pending and returns its version; ok is false for an unknown nonce.
func (t *deltaType) answered(nonce string) (version string, ok bool) {
	for i, r := range t.pending {
		if r.nonce == nonce {
			t.pending = t.pending[i+1:]
			return r.version, true
		}
	}
	return "", false
}

// DeltaAggregatedResources serves incremental (delta) ADS.
func (s *Server) DeltaAggregatedResources(stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	ctx := stream.Context()
	reqs, errc := receive(ctx, stream.Recv)
	var st *nodeState
	var live *liveStream
	defer func() { s.streams.remove(live) }()
	types := map[string]*deltaType{}
	// prepare returns the response that brings the client to the current resources of one type
	// (nil: it has them, unless force).
	prepare := func(typeURL string, t *deltaType, force bool) (*discoveryv3.DeltaDiscoveryResponse, error) {
		version := st.res.Version(typeURL)
		if version == t.synced && !force {
			return nil, nil
		}
		all := st.res.ByType(typeURL)
		versions := st.res.Versions[typeURL]
		resp := &discoveryv3.DeltaDiscoveryResponse{TypeUrl: typeURL, SystemVersionInfo: version}
		wanted := func(n string) bool { return t.wildcard || t.names[n] }
		var changed []string
		for n := range all {
			if wanted(n) && t.known[n] != versions[n] {
				changed = append(changed, n)
			}
		}
		sort.Strings(changed)
		for _, n := range changed {
			a, err := st.res.Packed(typeURL, n)
			if err != nil {
				return nil, fmt.Errorf("pack %s %q: %w", typeURL, n, err)
			}
			resp.Resources = append(resp.Resources, &discoveryv3.Resource{Name: n, Version: versions[n], Resource: a})
		}
		for n := range t.known {
			if _, ok := all[n]; !ok {
				resp.RemovedResources = append(resp.RemovedResources, n)
			}
		}
		sort.Strings(resp.RemovedResources)
		if len(resp.Resources) == 0 && len(resp.RemovedResources) == 0 && !force {
			t.synced = version
			return nil, nil
		}
		resp.Nonce = s.nextNonce()
		return resp, nil
	}
	// transmit sends a response of prepare and records what the client has.
	transmit := func(t *deltaType, resp *discoveryv3.DeltaDiscoveryResponse) error {
		if err := stream.Send(resp); err != nil {
			return err
		}
		s.responses.Add(1)
		for _, r := range resp.Resources {
			t.known[r.Name] = r.Version
		}
		for _, n := range resp.RemovedResources {
			delete(t.known, n)
		}
		t.synced = resp.SystemVersionInfo
		t.nonce, t.sent = resp.Nonce, true
		if len(t.pending) == maxPendingResponses { // a client that never answers: forget the oldest
			t.pending = append(t.pending[:0], t.pending[1:]...)
		}
		t.pending = append(t.pending, sentResponse{nonce: resp.Nonce, version: resp.SystemVersionInfo})
		return nil
	}
	send := func(typeURL string, t *deltaType, force bool) error {
		resp, err := prepare(typeURL, t, force)
		if resp == nil || err != nil {
			return err
		}
		return transmit(t, resp)
	}
	var changed <-chan struct{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return ignoreEOF(err)
		case <-changed:
			push, err := prepareChange(s, ctx, st, types, func(typeURL string, t *deltaType) (*discoveryv3.DeltaDiscoveryResponse, error) {
				return prepare(typeURL, t, false)
			})
			if err != nil {
				return ignoreEOF(err)
			}
			changed = st.changed
			for _, p := range push {
				if err := transmit(p.t, p.resp); err != nil {
					return err
				}
			}
		case req := <-reqs:
			s.requests.Add(1)
			if st == nil {
				var err error
				if st, live, err = s.open(stream.Context(), req.GetNode(), true); err != nil {
					return fmt.Errorf("xds delta stream: %w", err)
				}
				changed = st.changed
			}
			live.skipped(st.res.Skipped)
			typeURL := req.GetTypeUrl()
			if typeURL == "" || st.res.ByType(typeURL) == nil {
				s.log.Warn("xds delta request for an unsupported type", "node", st.node.ID, "type", typeURL)
				continue
			}
			t := types[typeURL]
			first := t == nil
			if first {
				t = &deltaType{names: map[string]bool{}, known: map[string]string{}}
				for n, v := range req.GetInitialResourceVersions() {
					t.known[n] = v
				}
				t.wildcard = wildcardAllowed(typeURL) && len(req.GetResourceNamesSubscribe()) == 0
				types[typeURL] = t
			}
			if len(req.GetResourceNamesSubscribe()) > 0 || len(req.GetResourceNamesUnsubscribe()) > 0 {
				t.synced = ""
			}
			for _, n := range req.GetResourceNamesSubscribe() {
				if n == "*" {
					t.wildcard = true
					continue
				}
				t.names[n] = true
			}
			for _, n := range req.GetResourceNamesUnsubscribe() {
				if n == "*" {
					t.wildcard = false
					continue
				}
				delete(t.names, n)
				delete(t.known, n)
			}
			version, answers := "", false
			if n := req.GetResponseNonce(); n != "" {
				version, answers = t.answered(n)
			}
			if d := req.GetErrorDetail(); d != nil {
				// The rejected versions stay in known: they are not re-sent until they change.
				s.log.Warn("xds delta nack", "node", st.node.ID, "type", typeURL, "nonce", req.GetResponseNonce(), "version", version, "error", d.GetMessage())
				live.nack(typeURL, version, d.GetMessage())
				continue
			}
			if answers && req.GetResponseNonce() == t.nonce {
				live.ack(typeURL, version)
			}
			if err := send(typeURL, t, first); err != nil {
				return err
			}
		}
	}
}

// open admits a stream's node (the first request names it), generates its
// resources and registers the stream for Streams.
func (s *Server) open(ctx context.Context, pn *corev3.Node, delta bool) (*nodeState, *liveStream, error) {
	n, err := s.opts.NodeFromProto(ctx, pn)
	if err != nil {
		return nil, nil, err
	}
	st := &nodeState{node: n}
	if err := s.refresh(st); err != nil {
		return nil, nil, err
	}
	return st, s.streams.add(n, delta), nil
}

func ignoreEOF(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
