package xdsclient_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"canton.dev/canton/internal/proxy/xdsclient"
	"canton.dev/canton/internal/proxy/xdstest"
)

// consumer rejects clusters named "bad" and subscribes to one ClusterLoadAssignment per cluster.
type consumer struct {
	mu      sync.Mutex
	applied []xdsclient.State
}

func (c *consumer) Apply(typeURL string, next xdsclient.State) (xdsclient.Subscriptions, error) {
	for name := range next.Resources[typeURL] {
		if name == "bad" {
			return nil, fmt.Errorf("cluster %q: field lb_policy: unsupported", name)
		}
	}
	c.mu.Lock()
	c.applied = append(c.applied, next)
	c.mu.Unlock()
	subs := xdsclient.Subscriptions{}
	for name := range next.Resources[xdsclient.ClusterType] {
		subs[xdsclient.EndpointType] = append(subs[xdsclient.EndpointType], name)
	}
	return subs, nil
}

func (c *consumer) last() xdsclient.State {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.applied) == 0 {
		return xdsclient.State{}
	}
	return c.applied[len(c.applied)-1]
}

func start(t *testing.T, servers ...string) (*xdsclient.Client, *consumer) {
	t.Helper()
	cons := &consumer{}
	c, err := xdsclient.New(xdsclient.Options{Servers: servers, Consumer: cons,
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
	return c, cons
}

const wait = 5 * time.Second

func isType(t string) func(*discoveryv3.DiscoveryRequest) bool {
	return func(r *discoveryv3.DiscoveryRequest) bool { return r.GetTypeUrl() == t }
}

func TestACKThenSubscribeDependents(t *testing.T) {
	srv := xdstest.Start(t)
	srv.Set(xdsclient.ClusterType, "v1", &clusterv3.Cluster{Name: "a"}, &clusterv3.Cluster{Name: "b"})
	_, cons := start(t, srv.Addr)

	init := srv.WaitRequest(wait, "initial CDS", isType(xdsclient.ClusterType))
	if init.GetVersionInfo() != "" || init.GetResponseNonce() != "" || len(init.GetResourceNames()) != 0 {
		t.Errorf("initial CDS request = %v, want empty version, nonce and names (wildcard)", init)
	}
	ack := srv.WaitRequest(wait, "CDS ACK", func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetTypeUrl() == xdsclient.ClusterType && r.GetResponseNonce() != ""
	})
	if ack.GetVersionInfo() != "v1" || ack.GetErrorDetail() != nil {
		t.Errorf("CDS ACK = version %q error %v, want v1 and no error", ack.GetVersionInfo(), ack.GetErrorDetail())
	}
	eds := srv.WaitRequest(wait, "EDS subscription", isType(xdsclient.EndpointType))
	if got := eds.GetResourceNames(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("EDS names = %v, want [a b]", got)
	}
	srv.Set(xdsclient.EndpointType, "e1", &endpointv3.ClusterLoadAssignment{ClusterName: "a"},
		&endpointv3.ClusterLoadAssignment{ClusterName: "zzz-not-subscribed"})
	srv.WaitRequest(wait, "EDS ACK", func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetTypeUrl() == xdsclient.EndpointType && r.GetVersionInfo() == "e1"
	})
	st := cons.last()
	if _, ok := st.Resources[xdsclient.EndpointType]["a"]; !ok {
		t.Errorf("endpoints for a not applied: %v", st.Resources[xdsclient.EndpointType])
	}
	if _, ok := st.Resources[xdsclient.EndpointType]["zzz-not-subscribed"]; ok {
		t.Errorf("an unsubscribed resource was kept")
	}
}

func TestNACKKeepsLastGoodVersion(t *testing.T) {
	srv := xdstest.Start(t)
	srv.Set(xdsclient.ClusterType, "v1", &clusterv3.Cluster{Name: "a"})
	c, cons := start(t, srv.Addr)
	srv.WaitRequest(wait, "CDS ACK v1", func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetTypeUrl() == xdsclient.ClusterType && r.GetVersionInfo() == "v1"
	})
	srv.Set(xdsclient.ClusterType, "v2", &clusterv3.Cluster{Name: "a"}, &clusterv3.Cluster{Name: "bad"})
	nack := srv.WaitRequest(wait, "CDS NACK", func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetTypeUrl() == xdsclient.ClusterType && r.GetErrorDetail() != nil
	})
	if nack.GetVersionInfo() != "v1" {
		t.Errorf("NACK version_info = %q, want the last accepted v1", nack.GetVersionInfo())
	}
	if msg := nack.GetErrorDetail().GetMessage(); !strings.Contains(msg, `cluster "bad"`) || !strings.Contains(msg, "lb_policy") {
		t.Errorf("NACK message %q does not name the resource and field", msg)
	}
	if nack.GetResponseNonce() == "" {
		t.Errorf("NACK carries no nonce")
	}
	if _, ok := cons.last().Resources[xdsclient.ClusterType]["bad"]; ok {
		t.Errorf("rejected cluster was applied")
	}
	if s := c.Status(); s.Rejected != 1 || !strings.Contains(s.LastError, "bad") {
		t.Errorf("status = %+v, want one rejection naming bad", s)
	}
	// A corrected version is accepted.
	srv.Set(xdsclient.ClusterType, "v3", &clusterv3.Cluster{Name: "a"}, &clusterv3.Cluster{Name: "c"})
	srv.WaitRequest(wait, "CDS ACK v3", func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetTypeUrl() == xdsclient.ClusterType && r.GetVersionInfo() == "v3" && r.GetErrorDetail() == nil
	})
}

func TestFailoverKeepsStateAndResumesVersions(t *testing.T) {
	first := xdstest.Start(t)
	second := xdstest.Start(t)
	first.Set(xdsclient.ClusterType, "v1", &clusterv3.Cluster{Name: "a"})
	second.Set(xdsclient.ClusterType, "v1", &clusterv3.Cluster{Name: "a"})
	c, cons := start(t, first.Addr, second.Addr)
	first.WaitRequest(wait, "CDS ACK", func(r *discoveryv3.DiscoveryRequest) bool { return r.GetVersionInfo() == "v1" })
	waitStatus(t, c, func(s xdsclient.Status) bool { return s.Connected && s.Server == first.Addr })

	first.Stop()
	waitStatus(t, c, func(s xdsclient.Status) bool { return s.Connected && s.Server == second.Addr })
	if _, ok := cons.last().Resources[xdsclient.ClusterType]["a"]; !ok {
		t.Fatalf("state lost across failover")
	}
	// The first request on the new stream tells the server which version we hold.
	r := second.WaitRequest(wait, "initial CDS", isType(xdsclient.ClusterType))
	if r.GetVersionInfo() != "v1" || r.GetResponseNonce() != "" {
		t.Errorf("initial request after failover: version %q nonce %q, want v1 and empty", r.GetVersionInfo(), r.GetResponseNonce())
	}
	// Dependent subscriptions are restored on the new stream.
	eds := second.WaitRequest(wait, "EDS", isType(xdsclient.EndpointType))
	if !slices.Equal(eds.GetResourceNames(), []string{"a"}) {
		t.Errorf("EDS names after failover = %v", eds.GetResourceNames())
	}
	second.Stop()
	waitStatus(t, c, func(s xdsclient.Status) bool { return !s.Connected })
	if _, ok := c.State().Resources[xdsclient.ClusterType]["a"]; !ok {
		t.Errorf("state lost with no server reachable")
	}
}

func TestRejectsDuplicateAndMistypedResources(t *testing.T) {
	srv := xdstest.Start(t)
	srv.Set(xdsclient.ClusterType, "v1", &clusterv3.Cluster{Name: "a"}, &clusterv3.Cluster{Name: "a"})
	start(t, srv.Addr)
	nack := srv.WaitRequest(wait, "NACK", func(r *discoveryv3.DiscoveryRequest) bool { return r.GetErrorDetail() != nil })
	if !strings.Contains(nack.GetErrorDetail().GetMessage(), `"a": sent twice`) {
		t.Errorf("NACK message = %q", nack.GetErrorDetail().GetMessage())
	}
	srv.Set(xdsclient.ClusterType, "v2", &endpointv3.ClusterLoadAssignment{ClusterName: "x"})
	nack = srv.WaitRequest(wait, "NACK v2", func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetErrorDetail() != nil && strings.Contains(r.GetErrorDetail().GetMessage(), "ClusterLoadAssignment")
	})
	if nack.GetVersionInfo() != "" {
		t.Errorf("NACK version = %q, want empty (nothing accepted yet)", nack.GetVersionInfo())
	}
}

func waitStatus(t *testing.T, c *xdsclient.Client, ok func(xdsclient.Status) bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !ok(c.Status()) {
		if time.Now().After(deadline) {
			t.Fatalf("status never reached: %+v", c.Status())
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
}
