package xds

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"canton.dev/canton/internal/resource"
)

// scopeState is a mutable scope for server tests.
type scopeState struct {
	mu   sync.Mutex
	snap *Snapshot
}

func (s *scopeState) set(t *testing.T, in Input) {
	snap, err := NewSnapshot(in)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.snap = snap
	s.mu.Unlock()
}

func (s *scopeState) generate(n Node) (Resources, error) {
	s.mu.Lock()
	snap := s.snap
	s.mu.Unlock()
	return snap.Generate(n)
}

// startServer serves ADS on 127.0.0.1:0 and returns a connected ADS client.
func startServer(t *testing.T, scope *scopeState, debounce time.Duration) (*Server, discoveryv3.AggregatedDiscoveryServiceClient) {
	t.Helper()
	srv, err := NewServer(ServerOptions{
		Generate: scope.generate,
		NodeFromProto: func(_ context.Context, n *corev3.Node) (Node, error) {
			node := defaultNode()
			node.ID = n.GetId()
			return node, nil
		},
		Debounce: debounce,
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return srv, discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
}

// recvTimeout receives one message or fails after d.
func recvTimeout[T any](t *testing.T, recv func() (T, error), d time.Duration) T {
	t.Helper()
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() { v, err := recv(); ch <- result{v, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.v
	case <-time.After(d):
		t.Fatalf("no response within %v", d)
	}
	panic("unreachable")
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

var xdsNode = &corev3.Node{Id: "productpage-v1-1"}

func TestServerAnswersSubsetSubscription(t *testing.T) {
	scope := &scopeState{}
	scope.set(t, loadInput(t, "testdata/reviews-jason"))
	_, client := startServer(t, scope, 10*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := client.StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// grpc-go style: ask for one named cluster and one named endpoint assignment.
	want := "outbound|9080|v2|reviews.bookinfo.demo.mesh"
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: xdsNode, TypeUrl: ClusterType, ResourceNames: []string{want}}); err != nil {
		t.Fatal(err)
	}
	resp := recvTimeout(t, stream.Recv, 5*time.Second)
	if resp.GetTypeUrl() != ClusterType || len(resp.GetResources()) != 1 {
		t.Fatalf("got %d %s resources, want exactly the one subscribed", len(resp.GetResources()), resp.GetTypeUrl())
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: EndpointType, ResourceNames: []string{want}}); err != nil {
		t.Fatal(err)
	}
	resp = recvTimeout(t, stream.Recv, 5*time.Second)
	if resp.GetTypeUrl() != EndpointType || len(resp.GetResources()) != 1 {
		t.Fatalf("EDS: got %d %s resources", len(resp.GetResources()), resp.GetTypeUrl())
	}
	if !strings.Contains(resp.GetResources()[0].String(), "15104") {
		t.Fatalf("v2 endpoints should hold only reviews-v2 (port 15104): %v", resp.GetResources()[0])
	}
	// Wildcard CDS on a new stream gets every cluster.
	stream2, err := client.StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream2.Send(&discoveryv3.DiscoveryRequest{Node: xdsNode, TypeUrl: ClusterType}); err != nil {
		t.Fatal(err)
	}
	resp = recvTimeout(t, stream2.Recv, 5*time.Second)
	if len(resp.GetResources()) != 11 {
		t.Fatalf("wildcard CDS: %d clusters, want 11", len(resp.GetResources()))
	}
}

// reviewsVS returns in with the reviews VirtualService's jason route retargeted to subset.
func withJasonSubset(in Input, subset string) Input {
	out := in
	out.Objects = append([]resource.Object(nil), in.Objects...)
	for i, o := range out.Objects {
		if o.Kind == "VirtualService" && o.Name == "reviews" {
			o.Spec = []byte(strings.Replace(string(o.Spec), `"v2"`, `"`+subset+`"`, 1))
			out.Objects[i] = o
		}
	}
	return out
}

func TestServerParksNACKedConfigAndPushesChanges(t *testing.T) {
	base := loadInput(t, "testdata/reviews-jason")
	scope := &scopeState{}
	scope.set(t, base)
	debounce := 20 * time.Millisecond
	srv, client := startServer(t, scope, debounce)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := client.StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: xdsNode, TypeUrl: RouteType, ResourceNames: []string{OutboundRouteName}}); err != nil {
		t.Fatal(err)
	}
	first := recvTimeout(t, stream.Recv, 5*time.Second)
	// NACK it.
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: RouteType, ResourceNames: []string{OutboundRouteName},
		ResponseNonce: first.GetNonce(), ErrorDetail: &status.Status{Code: 3, Message: "rejected for the test"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the NACK to be handled", func() bool { return srv.Stats().Requests >= 2 })
	if ss := srv.Streams(); len(ss) != 1 || ss[0].Nack == nil || ss[0].Nack.Message != "rejected for the test" || ss[0].Nack.Version != first.GetVersionInfo() {
		t.Fatalf("streams after a NACK: %+v", ss)
	}
	// A scope change that leaves this proxy's routes unchanged must not resend them.
	sentBefore := srv.Stats().Responses
	scope.set(t, base)
	srv.Notify()
	waitFor(t, "the no-op change to be generated", func() bool { return srv.Stats().Generated >= 2 })
	if sent := srv.Stats().Responses; sent != sentBefore {
		t.Fatalf("a change that does not touch the NACKed routes caused %d responses", sent-sentBefore)
	}
	// Push a real change: exactly one new response, carrying the new config, within the
	// debounce plus slack.
	scope.set(t, withJasonSubset(base, "v3"))
	start := time.Now()
	srv.Notify()
	next := recvTimeout(t, stream.Recv, 5*time.Second)
	elapsed := time.Since(start)
	if next.GetVersionInfo() == first.GetVersionInfo() {
		t.Fatal("the NACKed version was sent again")
	}
	if !strings.Contains(next.GetResources()[0].String(), "v3|reviews") {
		t.Fatal("pushed routes do not carry the change")
	}
	if elapsed > debounce+time.Second {
		t.Fatalf("push took %v with a debounce of %v", elapsed, debounce)
	}
	if sent := srv.Stats().Responses; sent != sentBefore+1 {
		t.Fatalf("%d responses after the NACK, want exactly 1 (no resend loop)", sent-sentBefore)
	}
	// ACK it: nothing more is sent, even after another no-op change.
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: RouteType, ResourceNames: []string{OutboundRouteName},
		VersionInfo: next.GetVersionInfo(), ResponseNonce: next.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the ACK to be handled", func() bool { return srv.Stats().Requests >= 3 })
	if ss := srv.Streams(); len(ss) != 1 || ss[0].Nack != nil || ss[0].Acked[RouteType] != next.GetVersionInfo() || ss[0].Node.ID != xdsNode.GetId() {
		t.Fatalf("streams after an ACK: %+v", ss)
	}
	if sent := srv.Stats().Responses; sent != sentBefore+1 {
		t.Fatalf("an ACK caused %d more responses", sent-sentBefore-1)
	}
}

func TestServerDeltaSendsOnlyChanges(t *testing.T) {
	base := loadInput(t, "testdata/reviews-jason")
	scope := &scopeState{}
	scope.set(t, base)
	srv, client := startServer(t, scope, 10*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := client.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: xdsNode, TypeUrl: ClusterType}); err != nil {
		t.Fatal(err)
	}
	resp := recvTimeout(t, stream.Recv, 5*time.Second)
	if len(resp.GetResources()) != 11 {
		t.Fatalf("wildcard delta CDS: %d clusters, want 11", len(resp.GetResources()))
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: ClusterType, ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	// Drop the reviews DestinationRule's v3 subset: exactly one cluster is removed, none re-sent.
	changed := base
	changed.Objects = append([]resource.Object(nil), base.Objects...)
	for i, o := range changed.Objects {
		if o.Kind == "DestinationRule" && o.Name == "reviews" {
			o.Spec = []byte(strings.Replace(string(o.Spec), `,{"labels":{"version":"v3"},"name":"v3"}`, "", 1))
			changed.Objects[i] = o
		}
	}
	scope.set(t, changed)
	srv.Notify()
	resp = recvTimeout(t, stream.Recv, 5*time.Second)
	if len(resp.GetResources()) != 0 || len(resp.GetRemovedResources()) != 1 || resp.GetRemovedResources()[0] != "outbound|9080|v3|reviews.bookinfo.demo.mesh" {
		t.Fatalf("delta push: %d resources, removed %v; want only the v3 cluster removed", len(resp.GetResources()), resp.GetRemovedResources())
	}
}

// A request that answers the current nonce without an error but reports another version than
// the one sent is not an ACK: after a NACK, a subscription change carries the nonce and the
// version the client still runs. It must neither record the rejected version as ACKed nor
// clear the NACK.
func TestServerSubscriptionChangeAfterNACKIsNoACK(t *testing.T) {
	scope := &scopeState{}
	scope.set(t, loadInput(t, "testdata/reviews-jason"))
	srv, client := startServer(t, scope, 10*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := client.StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: xdsNode, TypeUrl: ClusterType}); err != nil {
		t.Fatal(err)
	}
	first := recvTimeout(t, stream.Recv, 5*time.Second)
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: ClusterType, ResponseNonce: first.GetNonce(),
		ErrorDetail: &status.Status{Code: 3, Message: "rejected for the test"}}); err != nil {
		t.Fatal(err)
	}
	// The client changes its subscription (here: one named cluster), still at no accepted version.
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: ClusterType, ResponseNonce: first.GetNonce(),
		ResourceNames: []string{"outbound|9080|v2|reviews.bookinfo.demo.mesh"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the requests to be handled", func() bool { return srv.Stats().Requests >= 3 })
	ss := srv.Streams()
	if len(ss) != 1 || ss[0].Nack == nil || ss[0].Nack.Version != first.GetVersionInfo() {
		t.Fatalf("the NACK of version %s was cleared: %+v", first.GetVersionInfo(), ss)
	}
	if v, ok := ss[0].Acked[ClusterType]; ok {
		t.Fatalf("the rejected version is recorded as ACKed (%q)", v)
	}
}

// TestServerDeltaParksNACKedConfigAndPushesChanges is TestServerParksNACKedConfigAndPushesChanges
// for delta ADS: the NACK records the rejected version (not the nonce), nothing is re-sent
// until the resources change, then only the change is sent, once.
func TestServerDeltaParksNACKedConfigAndPushesChanges(t *testing.T) {
	base := loadInput(t, "testdata/reviews-jason")
	scope := &scopeState{}
	scope.set(t, base)
	debounce := 20 * time.Millisecond
	srv, client := startServer(t, scope, debounce)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := client.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: xdsNode, TypeUrl: RouteType, ResourceNamesSubscribe: []string{OutboundRouteName}}); err != nil {
		t.Fatal(err)
	}
	first := recvTimeout(t, stream.Recv, 5*time.Second)
	if len(first.GetResources()) != 1 || first.GetSystemVersionInfo() == "" {
		t.Fatalf("first response: %d resources, system version %q", len(first.GetResources()), first.GetSystemVersionInfo())
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: RouteType, ResponseNonce: first.GetNonce(),
		ErrorDetail: &status.Status{Code: 3, Message: "rejected for the test"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the NACK to be handled", func() bool { return srv.Stats().Requests >= 2 })
	if ss := srv.Streams(); len(ss) != 1 || ss[0].Nack == nil || ss[0].Nack.Message != "rejected for the test" || ss[0].Nack.Version != first.GetSystemVersionInfo() {
		t.Fatalf("streams after a NACK: %+v, want the NACK of version %s", ss, first.GetSystemVersionInfo())
	}
	// A scope change that leaves this proxy's routes unchanged must not resend them.
	sentBefore := srv.Stats().Responses
	scope.set(t, base)
	srv.Notify()
	waitFor(t, "the no-op change to be generated", func() bool { return srv.Stats().Generated >= 2 })
	if sent := srv.Stats().Responses; sent != sentBefore {
		t.Fatalf("a change that does not touch the NACKed routes caused %d responses", sent-sentBefore)
	}
	// A real change: exactly one response, carrying the new routes.
	scope.set(t, withJasonSubset(base, "v3"))
	srv.Notify()
	next := recvTimeout(t, stream.Recv, 5*time.Second)
	if len(next.GetResources()) != 1 || next.GetResources()[0].GetVersion() == first.GetResources()[0].GetVersion() {
		t.Fatal("the NACKed version was sent again")
	}
	if !strings.Contains(next.GetResources()[0].GetResource().String(), "v3|reviews") {
		t.Fatal("pushed routes do not carry the change")
	}
	// The server counts a response once its Send returns, which may be after the client got it.
	waitFor(t, "the response to be counted", func() bool { return srv.Stats().Responses >= sentBefore+1 })
	if sent := srv.Stats().Responses; sent != sentBefore+1 {
		t.Fatalf("%d responses after the NACK, want exactly 1 (no resend loop)", sent-sentBefore)
	}
	// ACK it: the NACK is cleared, the version recorded, nothing more sent.
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: RouteType, ResponseNonce: next.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the ACK to be handled", func() bool { return srv.Stats().Requests >= 3 })
	if ss := srv.Streams(); len(ss) != 1 || ss[0].Nack != nil || ss[0].Acked[RouteType] != next.GetSystemVersionInfo() {
		t.Fatalf("streams after an ACK: %+v", ss)
	}
	if sent := srv.Stats().Responses; sent != sentBefore+1 {
		t.Fatalf("an ACK caused %d more responses", sent-sentBefore-1)
	}
}

// TestNotifyPushesAtOnceAndCoalescesBursts checks the debounce: the first change after a quiet
// period is published at once; changes within Debounce of a push wait for the window's end and
// are published together, once; a window without changes ends quietly, and the next change is
// published at once again. The window's end is called directly (Debounce is an hour).
func TestNotifyPushesAtOnceAndCoalescesBursts(t *testing.T) {
	srv, err := NewServer(ServerOptions{
		Generate:      func(Node) (Resources, error) { return Resources{}, nil },
		NodeFromProto: func(context.Context, *corev3.Node) (Node, error) { return Node{}, nil },
		Debounce:      time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	closed := func(c <-chan struct{}) bool {
		select {
		case <-c:
			return true
		default:
			return false
		}
	}
	quiet := srv.changes()
	srv.Notify()
	if !closed(quiet) {
		t.Fatal("the first change after a quiet period was not published at once")
	}
	burst := srv.changes()
	srv.Notify()
	srv.Notify()
	if closed(burst) {
		t.Fatal("a change within the debounce of a push was published before the window ended")
	}
	srv.windowEnded()
	if !closed(burst) {
		t.Fatal("the changes of a window were not published when it ended")
	}
	after := srv.changes()
	srv.windowEnded() // the window started by the burst's push ends without changes
	if closed(after) {
		t.Fatal("a window without changes published one")
	}
	srv.Notify()
	if !closed(after) {
		t.Fatal("the first change after the windows ended was not published at once")
	}
	srv.mu.Lock()
	srv.window.Stop()
	srv.mu.Unlock()
}

// TestServerPushSharesOneResponsePerVersion checks the responses a push shares between streams
// (sharedResponses): every stream of a push at the same version gets the same response, nonce
// included, with the resources it would get alone; it is ACKed like any other; and a stream
// never gets a nonce twice, also when its routes return to a version it had before.
func TestServerPushSharesOneResponsePerVersion(t *testing.T) {
	base := loadInput(t, "testdata/reviews-jason")
	scope := &scopeState{}
	scope.set(t, base)
	srv, client := startServer(t, scope, time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n = 3
	streams := make([]discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, n)
	nonces := make([]map[string]bool, n)
	last := make([]*discoveryv3.DiscoveryResponse, n)
	for i := range streams {
		var err error
		if streams[i], err = client.StreamAggregatedResources(ctx); err != nil {
			t.Fatal(err)
		}
		node := &corev3.Node{Id: "productpage-v1-" + itoa(i)}
		if err := streams[i].Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: RouteType, ResourceNames: []string{OutboundRouteName}}); err != nil {
			t.Fatal(err)
		}
		last[i] = recvTimeout(t, streams[i].Recv, 5*time.Second)
		nonces[i] = map[string]bool{last[i].GetNonce(): true}
	}
	ack := func(i int) {
		t.Helper()
		if err := streams[i].Send(&discoveryv3.DiscoveryRequest{TypeUrl: RouteType, ResourceNames: []string{OutboundRouteName},
			VersionInfo: last[i].GetVersionInfo(), ResponseNonce: last[i].GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}
	requests := uint64(n)
	for round, in := range []Input{withJasonSubset(base, "v3"), base, withJasonSubset(base, "v3")} {
		for i := range streams {
			ack(i)
		}
		requests += n
		waitFor(t, "the ACKs to be handled", func() bool { return srv.Stats().Requests >= requests })
		for _, ss := range srv.Streams() {
			if ss.Acked[RouteType] != last[0].GetVersionInfo() {
				t.Fatalf("round %d: stream of %s acked %q, want %q", round, ss.Node.ID, ss.Acked[RouteType], last[0].GetVersionInfo())
			}
		}
		scope.set(t, in)
		srv.Notify()
		for i := range streams {
			resp := recvTimeout(t, streams[i].Recv, 5*time.Second)
			if nonces[i][resp.GetNonce()] {
				t.Fatalf("round %d: stream %d got nonce %s a second time", round, i, resp.GetNonce())
			}
			nonces[i][resp.GetNonce()] = true
			if i > 0 && (resp.GetNonce() != last[0].GetNonce() || resp.GetVersionInfo() != last[0].GetVersionInfo() ||
				!proto.Equal(resp, last[0])) {
				t.Fatalf("round %d: stream %d got another response than stream 0 in one push", round, i)
			}
			last[i] = resp
		}
		want, err := scope.generate(defaultNode())
		if err != nil {
			t.Fatal(err)
		}
		if v := want.Version(RouteType); last[0].GetVersionInfo() != v || len(last[0].GetResources()) != 1 {
			t.Fatalf("round %d: pushed version %s with %d resources, want %s with 1", round, last[0].GetVersionInfo(), len(last[0].GetResources()), v)
		}
		var rc routev3.RouteConfiguration
		if err := last[0].GetResources()[0].UnmarshalTo(&rc); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&rc, want.Routes[OutboundRouteName]) {
			t.Fatalf("round %d: the pushed route configuration is not the generated one", round)
		}
	}
}

// TestServerDeltaAnswersSubscriptionChangesAtOneVersion checks that a delta stream whose type did
// not change since it was last brought up to date (deltaType.synced) still answers a change of
// its subscription: a name unsubscribed and subscribed again, at the same version, is sent again,
// and an ACK or a push at that version sends nothing.
func TestServerDeltaAnswersSubscriptionChangesAtOneVersion(t *testing.T) {
	scope := &scopeState{}
	scope.set(t, loadInput(t, "testdata/reviews-jason"))
	srv, client := startServer(t, scope, time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := client.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(req *discoveryv3.DeltaDiscoveryRequest) {
		t.Helper()
		req.TypeUrl = RouteType
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	send(&discoveryv3.DeltaDiscoveryRequest{Node: xdsNode, ResourceNamesSubscribe: []string{OutboundRouteName}})
	first := recvTimeout(t, stream.Recv, 5*time.Second)
	if len(first.GetResources()) != 1 {
		t.Fatalf("subscribed to %s: %d resources", OutboundRouteName, len(first.GetResources()))
	}
	send(&discoveryv3.DeltaDiscoveryRequest{ResponseNonce: first.GetNonce()}) // ACK
	waitFor(t, "the ACK to be handled", func() bool { return srv.Stats().Requests >= 2 })
	generated := srv.Stats().Generated
	srv.Notify() // the same scope: nothing to push
	waitFor(t, "the push to be prepared", func() bool { return srv.Stats().Generated > generated })
	send(&discoveryv3.DeltaDiscoveryRequest{ResourceNamesUnsubscribe: []string{OutboundRouteName}})
	send(&discoveryv3.DeltaDiscoveryRequest{ResourceNamesSubscribe: []string{OutboundRouteName}})
	again := recvTimeout(t, stream.Recv, 5*time.Second)
	if len(again.GetResources()) != 1 || again.GetResources()[0].GetVersion() != first.GetResources()[0].GetVersion() {
		t.Fatalf("subscribed again at the same version: %d resources, want the route configuration again", len(again.GetResources()))
	}
	if sent := srv.Stats().Responses; sent != 2 {
		t.Fatalf("%d responses, want 2 (the ACK, the push and the unsubscription send nothing)", sent)
	}
}
