package xdstest

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Server is an ADS server on 127.0.0.1 with resources set by the test.
type Server struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	Addr string

	t    testing.TB
	gs   *grpc.Server
	lis  net.Listener
	mu   sync.Mutex
	res  map[string][]proto.Message // by type URL
	ver  map[string]string
	reqs []*discoveryv3.DiscoveryRequest
	subs []*stream
	seq  int
	wake chan struct{} // closed and replaced on every recorded request
}

type stream struct {
	send  chan *discoveryv3.DiscoveryResponse
	names map[string][]string // subscribed names per type (nil slice: wildcard)
	known map[string]bool     // types the client subscribed to
	done  chan struct{}
}

// Start starts a server; it stops at the end of the test.
func Start(t testing.TB) *Server {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("xdstest: listen: %v", err)
	}
	s := &Server{Addr: lis.Addr().String(), t: t, gs: grpc.NewServer(), lis: lis,
		res: map[string][]proto.Message{}, ver: map[string]string{}, wake: make(chan struct{})}
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s.gs, s)
	go s.gs.Serve(lis)
	t.Cleanup(s.Stop)
	return s
}

// Stop stops the server, breaking every stream.
func (s *Server) Stop() { s.gs.Stop() }

// Set replaces the resources of one type at version and pushes them to subscribed streams.
func (s *Server) Set(typeURL, version string, res ...proto.Message) {
	s.mu.Lock()
	s.res[typeURL] = res
	s.ver[typeURL] = version
	subs := slices.Clone(s.subs)
	s.mu.Unlock()
	for _, st := range subs {
		s.push(st, typeURL)
	}
}

// Requests returns the requests received so far.
func (s *Server) Requests() []*discoveryv3.DiscoveryRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

// WaitRequest waits until a received request satisfies ok and returns it; it fails the test after timeout.
func (s *Server) WaitRequest(timeout time.Duration, what string, ok func(*discoveryv3.DiscoveryRequest) bool) *discoveryv3.DiscoveryRequest {
	s.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := 0
	for {
		s.mu.Lock()
		reqs, wake := s.reqs[seen:], s.wake
		s.mu.Unlock()
		for _, r := range reqs {
			seen++
			if ok(r) {
				return r
			}
		}
		select {
		case <-wake:
		case <-deadline.C:
			s.t.Fatalf("xdstest: no request %s within %v", what, timeout)
			return nil
		}
	}
}

func (s *Server) push(st *stream, typeURL string) {
	s.mu.Lock()
	if !st.known[typeURL] {
		s.mu.Unlock()
		return
	}
	s.seq++
	resp := &discoveryv3.DiscoveryResponse{VersionInfo: s.ver[typeURL], TypeUrl: typeURL, Nonce: strconv.Itoa(s.seq)}
	names := st.names[typeURL]
	for _, m := range s.res[typeURL] {
		if names != nil && !slices.Contains(names, resourceName(m)) {
			continue
		}
		a, err := anypb.New(m)
		if err != nil {
			s.mu.Unlock()
			s.t.Errorf("xdstest: marshal: %v", err)
			return
		}
		resp.Resources = append(resp.Resources, a)
	}
	s.mu.Unlock()
	select {
	case st.send <- resp:
	case <-st.done:
	}
}

// StreamAggregatedResources implements ADS (state of the world).
func (s *Server) StreamAggregatedResources(ss discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	st := &stream{send: make(chan *discoveryv3.DiscoveryResponse, 64), names: map[string][]string{},
		known: map[string]bool{}, done: make(chan struct{})}
	defer close(st.done)
	s.mu.Lock()
	s.subs = append(s.subs, st)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.subs = slices.DeleteFunc(s.subs, func(x *stream) bool { return x == st })
		s.mu.Unlock()
	}()
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		for {
			select {
			case r := <-st.send:
				if err := ss.Send(r); err != nil {
					errc <- err
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		req, err := ss.Recv()
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.reqs = append(s.reqs, req)
		close(s.wake)
		s.wake = make(chan struct{})
		t := req.GetTypeUrl()
		wild := t == "type.googleapis.com/envoy.config.listener.v3.Listener" || t == "type.googleapis.com/envoy.config.cluster.v3.Cluster"
		var names []string
		if !wild {
			names = slices.Clone(req.GetResourceNames())
			if names == nil {
				names = []string{}
			}
		}
		changed := !st.known[t] || !slices.Equal(names, st.names[t])
		// A request that is not an ACK of the current version (initial, or a NACK) or that changes the
		// subscription gets a response; an ACK or NACK of the current version does not (no resend loop).
		fresh := req.GetResponseNonce() == ""
		st.known[t] = true
		st.names[t] = names
		s.mu.Unlock()
		if changed || fresh {
			go s.push(st, t)
		}
		select {
		case err := <-errc:
			return err
		default:
		}
	}
}

func resourceName(m proto.Message) string {
	switch v := m.(type) {
	case interface{ GetClusterName() string }:
		return v.GetClusterName()
	case interface{ GetName() string }:
		return v.GetName()
	}
	panic(fmt.Sprintf("xdstest: resource %T has no name", m))
}
