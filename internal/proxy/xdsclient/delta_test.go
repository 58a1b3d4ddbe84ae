package xdsclient_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"canton.dev/canton/internal/proxy/xdsclient"
	"canton.dev/canton/internal/proxy/xdstest"
	"canton.dev/canton/internal/xds"
)

// adsServer is the control plane's own ADS server (internal/xds, state of the world and delta) on
// 127.0.0.1:0, serving resources set by the test and recording every delta request and response.
type adsServer struct {
	t    *testing.T
	Addr string
	srv  *xds.Server
	g    *grpc.Server

	mu    sync.Mutex
	res   map[string]map[string]proto.Message // type URL -> name -> resource
	reqs  []*discoveryv3.DeltaDiscoveryRequest
	resps []*discoveryv3.DeltaDiscoveryResponse
	wake  chan struct{} // closed and replaced on every recorded message
}

func startADS(t *testing.T) *adsServer {
	t.Helper()
	a := &adsServer{t: t, res: map[string]map[string]proto.Message{}, wake: make(chan struct{})}
	for _, typ := range xds.Types {
		a.res[typ] = map[string]proto.Message{}
	}
	srv, err := xds.NewServer(xds.ServerOptions{
		Generate: a.generate,
		NodeFromProto: func(_ context.Context, n *corev3.Node) (xds.Node, error) {
			return xds.Node{ID: n.GetId()}, nil
		},
		Debounce: 2 * time.Millisecond,
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.Addr, a.srv = lis.Addr().String(), srv
	a.g = grpc.NewServer(grpc.StreamInterceptor(func(s any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		return h(s, &recordingStream{ServerStream: ss, a: a})
	}))
	srv.Register(a.g)
	go a.g.Serve(lis)
	t.Cleanup(a.Stop)
	return a
}

// Stop stops the server, breaking every stream.
func (a *adsServer) Stop() { a.g.Stop() }

type recordingStream struct {
	grpc.ServerStream
	a *adsServer
}

func (r *recordingStream) RecvMsg(m any) error {
	err := r.ServerStream.RecvMsg(m)
	if req, ok := m.(*discoveryv3.DeltaDiscoveryRequest); ok && err == nil {
		r.a.record(func() { r.a.reqs = append(r.a.reqs, proto.Clone(req).(*discoveryv3.DeltaDiscoveryRequest)) })
	}
	return err
}

func (r *recordingStream) SendMsg(m any) error {
	if resp, ok := m.(*discoveryv3.DeltaDiscoveryResponse); ok {
		r.a.record(func() { r.a.resps = append(r.a.resps, proto.Clone(resp).(*discoveryv3.DeltaDiscoveryResponse)) })
	}
	return r.ServerStream.SendMsg(m)
}

func (a *adsServer) record(f func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f()
	close(a.wake)
	a.wake = make(chan struct{})
}

// generate hands the server a fresh copy of the current resources with content versions.
func (a *adsServer) generate(xds.Node) (xds.Resources, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := xds.Resources{Listeners: map[string]proto.Message{}, Routes: map[string]proto.Message{},
		Clusters: map[string]proto.Message{}, Endpoints: map[string]proto.Message{},
		Secrets: map[string]proto.Message{}, Versions: map[string]map[string]string{}}
	for typ, byName := range a.res {
		vs := map[string]string{}
		for n, m := range byName {
			r.ByType(typ)[n] = m
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
			if err != nil {
				return xds.Resources{}, err
			}
			sum := sha256.Sum256(b)
			vs[n] = hex.EncodeToString(sum[:8])
		}
		r.Versions[typ] = vs
	}
	return r, nil
}

// set replaces the resources of one type and notifies the server.
func (a *adsServer) set(typeURL string, res ...proto.Message) {
	byName := map[string]proto.Message{}
	for _, m := range res {
		byName[xdsclient.ResourceName(m)] = m
	}
	a.mu.Lock()
	a.res[typeURL] = byName
	a.mu.Unlock()
	a.srv.Notify()
}

// marks returns the number of requests and responses recorded so far, to wait for later ones.
func (a *adsServer) marks() (int, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.reqs), len(a.resps)
}

func (a *adsServer) responses() []*discoveryv3.DeltaDiscoveryResponse {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.resps)
}

// waitReq returns the first request from index from on that satisfies ok.
func (a *adsServer) waitReq(from int, what string, ok func(*discoveryv3.DeltaDiscoveryRequest) bool) *discoveryv3.DeltaDiscoveryRequest {
	a.t.Helper()
	return waitRecorded(a, from, what, func() []*discoveryv3.DeltaDiscoveryRequest { return a.reqs }, ok)
}

// waitResp returns the first response from index from on that satisfies ok.
func (a *adsServer) waitResp(from int, what string, ok func(*discoveryv3.DeltaDiscoveryResponse) bool) *discoveryv3.DeltaDiscoveryResponse {
	a.t.Helper()
	return waitRecorded(a, from, what, func() []*discoveryv3.DeltaDiscoveryResponse { return a.resps }, ok)
}

func waitRecorded[T any](a *adsServer, from int, what string, list func() []T, ok func(T) bool) T {
	a.t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		a.mu.Lock()
		l, wake := list(), a.wake
		a.mu.Unlock()
		for ; from < len(l); from++ {
			if ok(l[from]) {
				return l[from]
			}
		}
		select {
		case <-wake:
		case <-deadline.C:
			a.t.Fatalf("no %s within %v", what, wait)
			var zero T
			return zero
		}
	}
}

func deltaOf(typeURL string) func(*discoveryv3.DeltaDiscoveryResponse) bool {
	return func(r *discoveryv3.DeltaDiscoveryResponse) bool { return r.GetTypeUrl() == typeURL }
}

func names(r *discoveryv3.DeltaDiscoveryResponse) []string {
	var out []string
	for _, res := range r.GetResources() {
		out = append(out, res.GetName())
	}
	slices.Sort(out)
	return out
}

// deltaConsumer rejects clusters with a load-balancing policy other than ROUND_ROBIN, subscribes
// to one ClusterLoadAssignment per cluster and to the secrets in secrets (a Resubscriber).
type deltaConsumer struct {
	mu      sync.Mutex
	applied []xdsclient.State
	secrets []string
}

func (c *deltaConsumer) Apply(typeURL string, next xdsclient.State) (xdsclient.Subscriptions, error) {
	if typeURL == xdsclient.ClusterType {
		for _, n := range slices.Sorted(maps.Keys(next.Resources[typeURL])) {
			if p := heldCluster(next, n).GetLbPolicy(); p != clusterv3.Cluster_ROUND_ROBIN {
				return nil, fmt.Errorf("cluster %q: field lb_policy: unsupported value %s", n, p)
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.applied = append(c.applied, next)
	return c.subsLocked(next), nil
}

// heldCluster returns the cluster named name in s decoded, nil if s holds none.
func heldCluster(s xdsclient.State, name string) *clusterv3.Cluster {
	r := s.Resources[xdsclient.ClusterType][name]
	if r == nil {
		return nil
	}
	m, err := r.Message()
	if err != nil {
		return nil
	}
	return m.(*clusterv3.Cluster)
}

func (c *deltaConsumer) subsLocked(s xdsclient.State) xdsclient.Subscriptions {
	subs := xdsclient.Subscriptions{}
	for name := range s.Resources[xdsclient.ClusterType] {
		subs[xdsclient.EndpointType] = append(subs[xdsclient.EndpointType], name)
	}
	if len(c.secrets) > 0 {
		subs[xdsclient.SecretType] = slices.Clone(c.secrets)
	}
	return subs
}

func (c *deltaConsumer) Subscriptions() xdsclient.Subscriptions {
	c.mu.Lock()
	defer c.mu.Unlock()
	var last xdsclient.State
	if len(c.applied) > 0 {
		last = c.applied[len(c.applied)-1]
	}
	return c.subsLocked(last)
}

func (c *deltaConsumer) setSecrets(s ...string) {
	c.mu.Lock()
	c.secrets = s
	c.mu.Unlock()
}

// waitState polls the consumer's latest state until ok holds.
func (c *deltaConsumer) waitState(t *testing.T, what string, ok func(xdsclient.State) bool) xdsclient.State {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		c.mu.Lock()
		var last xdsclient.State
		if len(c.applied) > 0 {
			last = c.applied[len(c.applied)-1]
		}
		c.mu.Unlock()
		if ok(last) {
			return last
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer state never had %s; last: %v", what, last.Resources)
		}
		time.Sleep(2 * time.Millisecond) // polling with a deadline
	}
}

// has reports whether s holds exactly the names of typeURL.
func has(s xdsclient.State, typeURL string, want ...string) bool {
	got := slices.Sorted(maps.Keys(s.Resources[typeURL]))
	slices.Sort(want)
	return slices.Equal(got, want)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func startDelta(t *testing.T, cons xdsclient.Consumer, servers ...string) (*xdsclient.Client, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	c, err := xdsclient.New(xdsclient.Options{Servers: servers, Consumer: cons, Delta: true,
		Node:        &corev3.Node{Id: "proxy-1"},
		Logger:      slog.New(slog.NewTextHandler(logs, nil)),
		BackoffBase: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
	return c, logs
}

func cluster(name string, timeout time.Duration) *clusterv3.Cluster {
	return &clusterv3.Cluster{Name: name, ConnectTimeout: durationpb.New(timeout)}
}

func cla(name string) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{ClusterName: name}
}

func TestDeltaSyncChangeAndRemoval(t *testing.T) {
	srv := startADS(t)
	srv.set(xdsclient.ClusterType, cluster("a", time.Second), cluster("b", time.Second))
	srv.set(xdsclient.EndpointType, cla("a"), cla("b"), cla("unsubscribed"))
	srv.set(xdsclient.ListenerType, &listenerv3.Listener{Name: "l1"})
	cons := &deltaConsumer{}
	c, _ := startDelta(t, cons, srv.Addr)

	// Initial sync: wildcard subscriptions spelled "*", the node on the first request only, EDS
	// by the names the consumer returns.
	first := srv.waitReq(0, "first request", func(*discoveryv3.DeltaDiscoveryRequest) bool { return true })
	if first.GetTypeUrl() != xdsclient.ClusterType || !slices.Equal(first.GetResourceNamesSubscribe(), []string{"*"}) ||
		first.GetNode().GetId() != "proxy-1" || len(first.GetInitialResourceVersions()) != 0 {
		t.Errorf("first request = %v, want CDS subscribing \"*\" with the node and no initial versions", first)
	}
	lds := srv.waitReq(0, "LDS subscription", func(r *discoveryv3.DeltaDiscoveryRequest) bool {
		return r.GetTypeUrl() == xdsclient.ListenerType && r.GetResponseNonce() == ""
	})
	if !slices.Equal(lds.GetResourceNamesSubscribe(), []string{"*"}) || lds.GetNode() != nil {
		t.Errorf("LDS subscription = %v, want \"*\" and no node", lds)
	}
	eds := srv.waitReq(0, "EDS subscription", func(r *discoveryv3.DeltaDiscoveryRequest) bool {
		return r.GetTypeUrl() == xdsclient.EndpointType && len(r.GetResourceNamesSubscribe()) > 0
	})
	if !slices.Equal(eds.GetResourceNamesSubscribe(), []string{"a", "b"}) {
		t.Errorf("EDS subscribe = %v, want [a b]", eds.GetResourceNamesSubscribe())
	}
	st := cons.waitState(t, "the initial resources", func(s xdsclient.State) bool {
		return has(s, xdsclient.ClusterType, "a", "b") && has(s, xdsclient.EndpointType, "a", "b") && has(s, xdsclient.ListenerType, "l1")
	})
	cdsResp := srv.waitResp(0, "CDS response", deltaOf(xdsclient.ClusterType))
	if st.Versions[xdsclient.ClusterType] != cdsResp.GetSystemVersionInfo() {
		t.Errorf("CDS state version %q, want the system_version_info %q", st.Versions[xdsclient.ClusterType], cdsResp.GetSystemVersionInfo())
	}
	ack := srv.waitReq(0, "CDS ACK", func(r *discoveryv3.DeltaDiscoveryRequest) bool { return r.GetResponseNonce() == cdsResp.GetNonce() })
	if ack.GetErrorDetail() != nil || ack.GetTypeUrl() != xdsclient.ClusterType {
		t.Errorf("CDS ACK = %v", ack)
	}
	if s := c.Status(); !s.Connected || !s.Delta || s.Rejected != 0 {
		t.Errorf("status = %+v, want connected over delta without rejections", s)
	}
	oldA := st.Resources[xdsclient.ClusterType]["a"]

	// A change to b pushes b alone; the consumer still sees the full set.
	_, respMark := srv.marks()
	srv.set(xdsclient.ClusterType, cluster("a", time.Second), cluster("b", 2*time.Second))
	push := srv.waitResp(respMark, "CDS push", deltaOf(xdsclient.ClusterType))
	if got := names(push); !slices.Equal(got, []string{"b"}) || len(push.GetRemovedResources()) != 0 {
		t.Errorf("CDS push carried %v, removed %v; want only b", got, push.GetRemovedResources())
	}
	st = cons.waitState(t, "the changed b", func(s xdsclient.State) bool {
		b := heldCluster(s, "b")
		return b.GetConnectTimeout().AsDuration() == 2*time.Second
	})
	if !has(st, xdsclient.ClusterType, "a", "b") || st.Resources[xdsclient.ClusterType]["a"] != oldA {
		t.Errorf("after the change the state holds %v, want a (unchanged) and b", st.Resources[xdsclient.ClusterType])
	}

	// Removing b: a removal only; b leaves the state, and so does its ClusterLoadAssignment (which the
	// consumer no longer subscribes to).
	reqMark, respMark := srv.marks()
	srv.set(xdsclient.ClusterType, cluster("a", time.Second))
	push = srv.waitResp(respMark, "CDS removal", deltaOf(xdsclient.ClusterType))
	if len(push.GetResources()) != 0 || !slices.Equal(push.GetRemovedResources(), []string{"b"}) {
		t.Errorf("CDS removal push carried %v, removed %v; want only b removed", names(push), push.GetRemovedResources())
	}
	unsub := srv.waitReq(reqMark, "EDS unsubscription", func(r *discoveryv3.DeltaDiscoveryRequest) bool {
		return r.GetTypeUrl() == xdsclient.EndpointType && len(r.GetResourceNamesUnsubscribe()) > 0
	})
	if !slices.Equal(unsub.GetResourceNamesUnsubscribe(), []string{"b"}) || len(unsub.GetResourceNamesSubscribe()) != 0 {
		t.Errorf("EDS subscription change = %v, want unsubscribe [b]", unsub)
	}
	cons.waitState(t, "b removed everywhere", func(s xdsclient.State) bool {
		return has(s, xdsclient.ClusterType, "a") && has(s, xdsclient.EndpointType, "a")
	})
	for _, r := range srv.responses() {
		if slices.Contains(names(r), "unsubscribed") {
			t.Errorf("server sent a ClusterLoadAssignment nobody subscribed to")
		}
	}
	if s := c.Status(); s.Rejected != 0 {
		t.Errorf("status = %+v, want no rejections", s)
	}
}

func TestDeltaNACKKeepsLastGoodResource(t *testing.T) {
	srv := startADS(t)
	srv.set(xdsclient.ClusterType, cluster("a", time.Second), cluster("b", time.Second))
	cons := &deltaConsumer{}
	c, _ := startDelta(t, cons, srv.Addr)
	cons.waitState(t, "a and b", func(s xdsclient.State) bool { return has(s, xdsclient.ClusterType, "a", "b") })

	reqMark, respMark := srv.marks()
	bad := cluster("a", time.Second)
	bad.LbPolicy = clusterv3.Cluster_MAGLEV
	srv.set(xdsclient.ClusterType, bad, cluster("b", time.Second))
	push := srv.waitResp(respMark, "the bad push", deltaOf(xdsclient.ClusterType))
	if !slices.Equal(names(push), []string{"a"}) {
		t.Errorf("bad push carried %v, want only a", names(push))
	}
	nack := srv.waitReq(reqMark, "the NACK", func(r *discoveryv3.DeltaDiscoveryRequest) bool { return r.GetErrorDetail() != nil })
	if nack.GetResponseNonce() != push.GetNonce() || nack.GetTypeUrl() != xdsclient.ClusterType {
		t.Errorf("NACK = %v, want the nonce %q of the bad push", nack, push.GetNonce())
	}
	if msg := nack.GetErrorDetail().GetMessage(); msg != `cluster "a": field lb_policy: unsupported value MAGLEV` {
		t.Errorf("NACK message %q, want the consumer's error naming the cluster and the field", msg)
	}
	if s := c.Status(); s.Rejected != 1 || !strings.Contains(s.LastError, `cluster "a"`) {
		t.Errorf("status = %+v, want one rejection naming a", s)
	}
	if a := heldCluster(c.State(), "a"); a.GetLbPolicy() != clusterv3.Cluster_ROUND_ROBIN {
		t.Errorf("the rejected a replaced the last good one")
	}

	// A corrected a is accepted (ACK by the new nonce) and replaces the old one.
	reqMark, respMark = srv.marks()
	srv.set(xdsclient.ClusterType, cluster("a", 3*time.Second), cluster("b", time.Second))
	push = srv.waitResp(respMark, "the fixed push", deltaOf(xdsclient.ClusterType))
	ack := srv.waitReq(reqMark, "the ACK", func(r *discoveryv3.DeltaDiscoveryRequest) bool { return r.GetResponseNonce() == push.GetNonce() })
	if ack.GetErrorDetail() != nil {
		t.Errorf("fixed push NACKed: %v", ack.GetErrorDetail())
	}
	cons.waitState(t, "the fixed a", func(s xdsclient.State) bool {
		a := heldCluster(s, "a")
		return a.GetConnectTimeout().AsDuration() == 3*time.Second && has(s, xdsclient.ClusterType, "a", "b")
	})
}

func TestDeltaReconnectSendsInitialVersions(t *testing.T) {
	first, second := startADS(t), startADS(t)
	first.set(xdsclient.ClusterType, cluster("a", time.Second), cluster("b", time.Second), cluster("d", time.Second))
	first.set(xdsclient.EndpointType, cla("a"), cla("b"), cla("d"))
	// The second server has a unchanged, b changed, c added and d gone.
	second.set(xdsclient.ClusterType, cluster("a", time.Second), cluster("b", 2*time.Second), cluster("c", time.Second))
	second.set(xdsclient.EndpointType, cla("a"), cla("b"), cla("c"))
	cons := &deltaConsumer{}
	c, _ := startDelta(t, cons, first.Addr, second.Addr)
	st := cons.waitState(t, "the first server's resources", func(s xdsclient.State) bool {
		return has(s, xdsclient.ClusterType, "a", "b", "d") && has(s, xdsclient.EndpointType, "a", "b", "d")
	})
	var versions map[string]string
	for _, r := range first.responses() {
		if r.GetTypeUrl() == xdsclient.ClusterType {
			versions = map[string]string{}
			for _, res := range r.GetResources() {
				versions[res.GetName()] = res.GetVersion()
			}
			break
		}
	}
	oldA := st.Resources[xdsclient.ClusterType]["a"]

	first.Stop()
	cds := second.waitReq(0, "CDS on the new stream", func(r *discoveryv3.DeltaDiscoveryRequest) bool {
		return r.GetTypeUrl() == xdsclient.ClusterType
	})
	if !slices.Equal(cds.GetResourceNamesSubscribe(), []string{"*"}) || cds.GetNode().GetId() != "proxy-1" {
		t.Errorf("CDS on reconnect = %v, want \"*\" and the node", cds)
	}
	if !maps.Equal(cds.GetInitialResourceVersions(), versions) {
		t.Errorf("CDS initial_resource_versions = %v, want %v (what the client holds)", cds.GetInitialResourceVersions(), versions)
	}
	eds := second.waitReq(0, "EDS on the new stream", func(r *discoveryv3.DeltaDiscoveryRequest) bool {
		return r.GetTypeUrl() == xdsclient.EndpointType
	})
	if !slices.Equal(eds.GetResourceNamesSubscribe(), []string{"a", "b", "d"}) ||
		!slices.Equal(slices.Sorted(maps.Keys(eds.GetInitialResourceVersions())), []string{"a", "b", "d"}) {
		t.Errorf("EDS on reconnect = %v, want a, b and d subscribed with their versions", eds)
	}
	resp := second.waitResp(0, "CDS response", deltaOf(xdsclient.ClusterType))
	if got := names(resp); !slices.Equal(got, []string{"b", "c"}) || !slices.Equal(resp.GetRemovedResources(), []string{"d"}) {
		t.Errorf("CDS after reconnect carried %v, removed %v; want b and c, d removed (a is unchanged)", got, resp.GetRemovedResources())
	}
	st = cons.waitState(t, "the second server's resources", func(s xdsclient.State) bool {
		b := heldCluster(s, "b")
		return has(s, xdsclient.ClusterType, "a", "b", "c") && b.GetConnectTimeout().AsDuration() == 2*time.Second &&
			has(s, xdsclient.EndpointType, "a", "b", "c")
	})
	if st.Resources[xdsclient.ClusterType]["a"] != oldA {
		t.Errorf("a was replaced although unchanged")
	}
	for _, r := range second.responses() {
		if r.GetTypeUrl() == xdsclient.EndpointType && (slices.Contains(names(r), "a") || slices.Contains(names(r), "b")) {
			t.Errorf("the second server re-sent unchanged endpoints: %v", names(r))
		}
	}
	// Static stability: with no server left, the state stays.
	second.Stop()
	waitStatus(t, c, func(s xdsclient.Status) bool { return !s.Connected })
	if !has(c.State(), xdsclient.ClusterType, "a", "b", "c") {
		t.Errorf("state lost with no server reachable: %v", c.State().Resources[xdsclient.ClusterType])
	}
}

func TestDeltaResubscribe(t *testing.T) {
	srv := startADS(t)
	srv.set(xdsclient.SecretType, &tlsv3.Secret{Name: "s1"}, &tlsv3.Secret{Name: "s2"})
	cons := &deltaConsumer{}
	cons.setSecrets("s1")
	c, _ := startDelta(t, cons, srv.Addr)
	// No cluster exists, so the first Apply (CDS) returns the secret subscription.
	cons.waitState(t, "s1", func(s xdsclient.State) bool { return has(s, xdsclient.SecretType, "s1") })

	reqMark, _ := srv.marks()
	cons.setSecrets("s2")
	c.Resubscribe()
	req := srv.waitReq(reqMark, "SDS subscription change", func(r *discoveryv3.DeltaDiscoveryRequest) bool {
		return r.GetTypeUrl() == xdsclient.SecretType && r.GetResponseNonce() == ""
	})
	if !slices.Equal(req.GetResourceNamesSubscribe(), []string{"s2"}) || !slices.Equal(req.GetResourceNamesUnsubscribe(), []string{"s1"}) {
		t.Errorf("subscription change = %v, want +s2 -s1", req)
	}
	cons.waitState(t, "s2 only", func(s xdsclient.State) bool { return has(s, xdsclient.SecretType, "s2") })
}

func TestDeltaFallsBackToStateOfTheWorld(t *testing.T) {
	srv := xdstest.Start(t) // state of the world only: delta is Unimplemented
	srv.Set(xdsclient.ClusterType, "v1", cluster("a", time.Second))
	cons := &deltaConsumer{}
	c, logs := startDelta(t, cons, srv.Addr)
	ack := srv.WaitRequest(wait, "CDS ACK over state of the world", func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetTypeUrl() == xdsclient.ClusterType && r.GetVersionInfo() == "v1"
	})
	if ack.GetErrorDetail() != nil {
		t.Errorf("ACK carries an error: %v", ack.GetErrorDetail())
	}
	cons.waitState(t, "a", func(s xdsclient.State) bool { return has(s, xdsclient.ClusterType, "a") })
	if s := c.Status(); !s.Connected || s.Delta {
		t.Errorf("status = %+v, want connected over state of the world", s)
	}
	if !strings.Contains(logs.String(), "does not implement delta") || !strings.Contains(logs.String(), srv.Addr) {
		t.Errorf("fallback not logged with the server: %s", logs.String())
	}
	// Further changes flow over state of the world.
	srv.Set(xdsclient.ClusterType, "v2", cluster("a", time.Second), cluster("b", time.Second))
	cons.waitState(t, "a and b", func(s xdsclient.State) bool { return has(s, xdsclient.ClusterType, "a", "b") })
}
