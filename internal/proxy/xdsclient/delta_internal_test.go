package xdsclient

import (
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// fakeDeltaStream records what a deltaSession sends; only Send is used.
type fakeDeltaStream struct {
	discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	sent []*discoveryv3.DeltaDiscoveryRequest
}

func (f *fakeDeltaStream) Send(r *discoveryv3.DeltaDiscoveryRequest) error {
	f.sent = append(f.sent, r)
	return nil
}

// acceptAll accepts everything and keeps the subscriptions in subs.
type acceptAll struct {
	calls int
	subs  Subscriptions
}

func (a *acceptAll) Apply(string, State) (Subscriptions, error) { a.calls++; return a.subs, nil }

func res(t *testing.T, name, version string, m proto.Message) *discoveryv3.Resource {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return &discoveryv3.Resource{Name: name, Version: version, Resource: a}
}

func newTestSession(t *testing.T) (*deltaSession, *fakeDeltaStream, *acceptAll) {
	t.Helper()
	cons := &acceptAll{}
	c, err := New(Options{Servers: []string{"127.0.0.1:1"}, Consumer: cons, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeDeltaStream{}
	return &deltaSession{c: c, st: f, subs: map[string]map[string]bool{}}, f, cons
}

func TestDeltaHandleDropsUnsubscribedNames(t *testing.T) {
	s, f, cons := newTestSession(t)
	cons.subs = Subscriptions{EndpointType: {"a"}}
	if err := s.subscribe(EndpointType, []string{"a"}, nil); err != nil {
		t.Fatal(err)
	}
	resp := &discoveryv3.DeltaDiscoveryResponse{TypeUrl: EndpointType, Nonce: "1", SystemVersionInfo: "s1",
		Resources: []*discoveryv3.Resource{
			res(t, "a", "va", &endpointv3.ClusterLoadAssignment{ClusterName: "a"}),
			res(t, "other", "vo", &endpointv3.ClusterLoadAssignment{ClusterName: "other"}),
		}}
	if err := s.handle(resp); err != nil {
		t.Fatal(err)
	}
	st := s.c.State()
	if _, ok := st.Resources[EndpointType]["other"]; ok || st.Resources[EndpointType]["a"] == nil {
		t.Errorf("state = %v, want a only", st.Resources[EndpointType])
	}
	if got := s.c.rv[EndpointType]; len(got) != 1 || got["a"] != "va" {
		t.Errorf("resource versions = %v, want a=va", got)
	}
	if st.Versions[EndpointType] != "s1" {
		t.Errorf("state version %q, want the system_version_info", st.Versions[EndpointType])
	}
	ack := f.sent[len(f.sent)-1]
	if ack.GetResponseNonce() != "1" || ack.GetErrorDetail() != nil || ack.GetNode() != nil {
		t.Errorf("ACK = %v", ack)
	}
}

func TestDeltaNACKMessages(t *testing.T) {
	good := &clusterv3.Cluster{Name: "a", ConnectTimeout: durationpb.New(1)}
	for _, tc := range []struct {
		name string
		resp func(t *testing.T) *discoveryv3.DeltaDiscoveryResponse
		want string
	}{
		{"unsupported type", func(*testing.T) *discoveryv3.DeltaDiscoveryResponse {
			return &discoveryv3.DeltaDiscoveryResponse{TypeUrl: "type.googleapis.com/x.Y"}
		}, `unsupported resource type "type.googleapis.com/x.Y"`},
		{"wrong type", func(t *testing.T) *discoveryv3.DeltaDiscoveryResponse {
			return &discoveryv3.DeltaDiscoveryResponse{TypeUrl: ClusterType,
				Resources: []*discoveryv3.Resource{res(t, "x", "1", &endpointv3.ClusterLoadAssignment{ClusterName: "x"})}}
		}, `resources[0]: type "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment" in a response for "` + ClusterType + `"`},
		{"name mismatch", func(t *testing.T) *discoveryv3.DeltaDiscoveryResponse {
			return &discoveryv3.DeltaDiscoveryResponse{TypeUrl: ClusterType, Resources: []*discoveryv3.Resource{res(t, "b", "1", good)}}
		}, `resources[0]: Cluster "b": field name: differs from the resource's name "a"`},
		{"duplicate", func(t *testing.T) *discoveryv3.DeltaDiscoveryResponse {
			return &discoveryv3.DeltaDiscoveryResponse{TypeUrl: ClusterType,
				Resources: []*discoveryv3.Resource{res(t, "a", "1", good), res(t, "", "2", good)}}
		}, `Cluster "a": sent twice in one response`},
		{"updated and removed", func(t *testing.T) *discoveryv3.DeltaDiscoveryResponse {
			return &discoveryv3.DeltaDiscoveryResponse{TypeUrl: ClusterType,
				Resources: []*discoveryv3.Resource{res(t, "a", "1", good)}, RemovedResources: []string{"a"}}
		}, `Cluster "a": both updated and removed in one response`},
		{"no body", func(*testing.T) *discoveryv3.DeltaDiscoveryResponse {
			return &discoveryv3.DeltaDiscoveryResponse{TypeUrl: ClusterType, Resources: []*discoveryv3.Resource{{Name: "a", Version: "1"}}}
		}, `resources[0]: Cluster "a": no resource (heartbeats are not supported)`},
		{"ttl", func(t *testing.T) *discoveryv3.DeltaDiscoveryResponse {
			r := res(t, "a", "1", good)
			r.Ttl = durationpb.New(1)
			return &discoveryv3.DeltaDiscoveryResponse{TypeUrl: ClusterType, Resources: []*discoveryv3.Resource{r}}
		}, `resources[0]: Cluster "a": field ttl: not supported`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, f, cons := newTestSession(t)
			resp := tc.resp(t)
			resp.Nonce = "n7"
			if err := s.handle(resp); err != nil {
				t.Fatal(err)
			}
			if cons.calls != 0 {
				t.Errorf("a rejected response reached the consumer")
			}
			nack := f.sent[len(f.sent)-1]
			if nack.GetResponseNonce() != "n7" || nack.GetErrorDetail().GetMessage() != tc.want {
				t.Errorf("NACK nonce %q message %q, want n7 and %q", nack.GetResponseNonce(), nack.GetErrorDetail().GetMessage(), tc.want)
			}
			if st := s.c.Status(); st.Rejected != 1 || st.LastError != tc.want {
				t.Errorf("status = %+v", st)
			}
		})
	}
}

func TestDeltaPruneConsumerError(t *testing.T) {
	s, f, _ := newTestSession(t)
	failing := consumerFunc(func(string, State) (Subscriptions, error) { return nil, errors.New("no") })
	if err := s.subscribe(EndpointType, []string{"a", "b"}, nil); err != nil {
		t.Fatal(err)
	}
	held := Resources{}
	for _, n := range []string{"a", "b"} {
		r, err := NewResource(&endpointv3.ClusterLoadAssignment{ClusterName: n})
		if err != nil {
			t.Fatal(err)
		}
		held[n] = r
	}
	s.c.state = s.c.state.with(EndpointType, "v", held)
	s.c.opts.Consumer = failing
	if err := s.resubscribe(Subscriptions{EndpointType: {"a"}}, 0); err != nil {
		t.Fatal(err)
	}
	last := f.sent[len(f.sent)-1]
	if !slices.Equal(last.GetResourceNamesUnsubscribe(), []string{"b"}) {
		t.Errorf("last request = %v, want unsubscribe b", last)
	}
	// The consumer refused: the state is unchanged (b goes with the next EDS response).
	if len(s.c.State().Resources[EndpointType]) != 2 {
		t.Errorf("state changed although the consumer refused")
	}
}

type consumerFunc func(string, State) (Subscriptions, error)

func (f consumerFunc) Apply(t string, s State) (Subscriptions, error) { return f(t, s) }

// FuzzDecodeDelta feeds arbitrary DeltaDiscoveryResponses to the delta decoder: it never panics and
// what it accepts is well formed.
func FuzzDecodeDelta(f *testing.F) {
	for _, r := range []*discoveryv3.DeltaDiscoveryResponse{
		{TypeUrl: ClusterType},
		{TypeUrl: ClusterType, RemovedResources: []string{"a", "b"}},
		{TypeUrl: ClusterType, Resources: []*discoveryv3.Resource{{Name: "a"}}},
	} {
		b, _ := proto.Marshal(r)
		f.Add(b)
	}
	a, _ := anypb.New(&clusterv3.Cluster{Name: "a"})
	b, _ := proto.Marshal(&discoveryv3.DeltaDiscoveryResponse{TypeUrl: ClusterType, Nonce: "1",
		Resources: []*discoveryv3.Resource{{Name: "a", Version: "1", Resource: a}, {Version: "2", Resource: a}}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		resp := &discoveryv3.DeltaDiscoveryResponse{}
		if proto.Unmarshal(data, resp) != nil {
			return
		}
		got, vers, err := decodeDelta(ClusterType, resp)
		if err != nil {
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatal("empty error")
			}
			return
		}
		if len(got) != len(resp.GetResources()) || len(vers) != len(got) {
			t.Fatalf("%d resources decoded from %d", len(got), len(resp.GetResources()))
		}
		for n, r := range got {
			m, err := r.Message()
			if err != nil {
				t.Fatalf("resource %q: %v", n, err)
			}
			if n == "" || ResourceName(m) != n {
				t.Fatalf("resource %q decoded under name %q", ResourceName(m), n)
			}
			if slices.Contains(resp.GetRemovedResources(), n) {
				t.Fatalf("%q both updated and removed", n)
			}
		}
	})
}
