package xds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	// Debounce is how long Notify waits for further changes before pushing. Zero means 100ms.
	Debounce time.Duration
	// Logger receives stream events. Nil means slog.Default().
	Logger *slog.Logger
}

// Server is an Aggregated Discovery Service (state of the world and delta) with its own
// per-stream cache: it answers only the resources a client subscribed to (all of them for
// wildcard LDS/CDS), tracks version and nonce per type and stream, never re-sends content a
// client has NACKed (the type is parked until its resources change), and pushes changes
// after Notify with a debounce.
type Server struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	opts ServerOptions
	log  *slog.Logger

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when a debounced change is published
	timer   *time.Timer

	nonce     atomic.Uint64
	responses atomic.Uint64 // responses sent, all streams (for tests and metrics)
	requests  atomic.Uint64 // requests handled, all streams
	generated atomic.Uint64 // per-stream generations (first request and every push)

	streams streams
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

// Register adds the ADS service to g.
func (s *Server) Register(g *grpc.Server) { discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, s) }

// Notify tells the server the scope changed. Changes within the debounce window are pushed
// together, Debounce after the first one.
func (s *Server) Notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timer != nil {
		return
	}
	s.timer = time.AfterFunc(s.opts.Debounce, func() {
		s.mu.Lock()
		close(s.changed)
		s.changed = make(chan struct{})
		s.timer = nil
		s.mu.Unlock()
	})
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
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
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
}

func (s *Server) refresh(st *nodeState) error {
	st.changed = s.changes() // take the channel first: a change during Generate is not lost
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
	wildcard   bool
	version    string // version of the last response
	nonce      string
	sent       bool
}

// StreamAggregatedResources serves state-of-the-world ADS.
func (s *Server) StreamAggregatedResources(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	ctx := stream.Context()
	reqs, errc := receive(ctx, stream.Recv)
	var st *nodeState
	var live *liveStream
	defer func() { s.streams.remove(live) }()
	types := map[string]*sotwType{}
	send := func(typeURL string, t *sotwType) error {
		all := st.res.ByType(typeURL)
		var names []string // sorted; for wildcard, taken once the version says they are sent
		var version string
		if t.wildcard {
			version = st.res.Version(typeURL)
		} else {
			names = []string{} // not nil: hashVersions reads nil as all of them
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
			return nil // the client has (or NACKed) exactly this
		}
		if t.wildcard {
			names = st.res.sortedNames(typeURL)
		}
		resp := &discoveryv3.DiscoveryResponse{TypeUrl: typeURL, VersionInfo: version, Nonce: s.nextNonce()}
		for _, n := range names {
			a, err := st.res.Packed(typeURL, n)
			if err != nil {
				return fmt.Errorf("pack %s %q: %w", typeURL, n, err)
			}
			resp.Resources = append(resp.Resources, a)
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
		s.responses.Add(1)
		t.version, t.nonce, t.sent = version, resp.Nonce, true
		return nil
	}
	var changed <-chan struct{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return ignoreEOF(err)
		case <-changed:
			if err := s.refresh(st); err != nil {
				return err
			}
			changed = st.changed
			for _, typeURL := range Types {
				if t := types[typeURL]; t != nil {
					if err := send(typeURL, t); err != nil {
						return err
					}
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
			t.subscribed = sortedKeys(t.names)
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
	send := func(typeURL string, t *deltaType, force bool) error {
		all := st.res.ByType(typeURL)
		versions := st.res.Versions[typeURL]
		resp := &discoveryv3.DeltaDiscoveryResponse{TypeUrl: typeURL, SystemVersionInfo: st.res.Version(typeURL)}
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
				return fmt.Errorf("pack %s %q: %w", typeURL, n, err)
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
			return nil
		}
		resp.Nonce = s.nextNonce()
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
		t.nonce, t.sent = resp.Nonce, true
		if len(t.pending) == maxPendingResponses { // a client that never answers: forget the oldest
			t.pending = append(t.pending[:0], t.pending[1:]...)
		}
		t.pending = append(t.pending, sentResponse{nonce: resp.Nonce, version: resp.SystemVersionInfo})
		return nil
	}
	var changed <-chan struct{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return ignoreEOF(err)
		case <-changed:
			if err := s.refresh(st); err != nil {
				return err
			}
			changed = st.changed
			for _, typeURL := range Types {
				if t := types[typeURL]; t != nil {
					if err := send(typeURL, t, false); err != nil {
						return err
					}
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
