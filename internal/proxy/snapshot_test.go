package proxy

import (
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"canton.dev/canton/internal/proxy/xdsclient"
)

// A cluster update keeps the running cluster (its connections and hosts' state) when the resource
// did not change: sent again as the same bytes, or as other bytes of an equal message (a server's
// serialization is not unique); a changed resource replaces it.
func TestBuildKeepsUnchangedClusters(t *testing.T) {
	p, err := New(Options{XDSServers: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	c := edsCluster("a", nil)
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	// The same message with its name sent twice: other bytes, an equal message (the last wins).
	dup := protowire.AppendString(protowire.AppendTag(raw, 1, protowire.BytesType), c.GetName())
	other, err := xdsclient.ResourceFromAny(&anypb.Any{TypeUrl: xdsclient.ClusterType, Value: dup})
	if err != nil {
		t.Fatal(err)
	}
	changed := edsCluster("a", func(c *clusterv3.Cluster) { c.ConnectTimeout = durationpb.New(2 * time.Second) })

	apply := func(old *snapshot, r *xdsclient.Resource) *snapshot {
		t.Helper()
		st := xdsclient.State{Resources: map[string]xdsclient.Resources{xdsclient.ClusterType: {"a": r}}, Versions: map[string]string{}}
		s, created, err := p.build(old, xdsclient.ClusterType, st)
		for _, c := range created {
			t.Cleanup(func() { c.Close(0) })
		}
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s1 := apply(emptySnapshot(), mustResource(t, c))
	first := s1.clusters["a"]
	s2 := apply(s1, mustResource(t, c))
	if s2.clusters["a"] != first {
		t.Errorf("cluster rebuilt when its resource was sent again unchanged")
	}
	s3 := apply(s2, other)
	if s3.clusters["a"] != first {
		t.Errorf("cluster rebuilt when its resource came as other bytes of an equal message")
	}
	s4 := apply(s3, mustResource(t, changed))
	if s4.clusters["a"] == first || s4.clusters["a"].ConnectTimeout != 2*time.Second {
		t.Errorf("changed cluster not rebuilt (connect timeout %v)", s4.clusters["a"].ConnectTimeout)
	}
}
