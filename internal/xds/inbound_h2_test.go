package xds

import (
	"fmt"
	"strings"
	"testing"

	"canton.dev/canton/internal/resource"
)

func TestInboundClusterSpeaksH2ToGRPCApps(t *testing.T) {
	for _, tc := range []struct {
		proto string
		h2    bool
	}{{"GRPC", true}, {"HTTP2", true}, {"HTTP", false}} {
		yaml := "apiVersion: canton.dev/v1\nkind: Service\nmetadata: {name: ratings}\nspec:\n  ports: [{name: p, port: 9080, protocol: " + tc.proto + "}]\n"
		objs, err := resource.Parse("s.yaml", []byte(yaml), "demo.mesh", "bookinfo.demo.mesh")
		if err != nil {
			t.Fatal(err)
		}
		res, err := Generate(Input{Mesh: "demo.mesh", Scope: "demo.mesh", Objects: objs},
			Node{ID: "r", Service: "ratings", Namespace: "bookinfo.demo.mesh", InboundPort: 15006, AppAddress: "127.0.0.1:9080", OutboundPort: 15001})
		if err != nil {
			t.Fatal(err)
		}
		c := res.Clusters[inboundClusterName(9080)]
		if c == nil {
			t.Fatalf("%s: no inbound cluster", tc.proto)
		}
		got := strings.Contains(fmt.Sprint(c), "http2_protocol_options")
		if got != tc.h2 {
			t.Errorf("%s: inbound cluster speaks HTTP/2: %v, want %v", tc.proto, got, tc.h2)
		}
	}
}

func TestSnapshotSharesResourcesBetweenReplicas(t *testing.T) {
	yaml := "apiVersion: canton.dev/v1\nkind: Service\nmetadata: {name: reviews}\nspec:\n  ports: [{name: http, port: 9080, protocol: HTTP}]\n"
	objs, err := resource.Parse("s.yaml", []byte(yaml), "demo.mesh", "bookinfo.demo.mesh")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := NewSnapshot(Input{Mesh: "demo.mesh", Scope: "demo.mesh", Objects: objs})
	if err != nil {
		t.Fatal(err)
	}
	n := Node{ID: "reviews-1", Service: "reviews", Namespace: "bookinfo.demo.mesh", OutboundPort: 15001}
	a, _ := snap.Generate(n)
	n.ID = "reviews-2"
	b, _ := snap.Generate(n)
	n.Labels = map[string]string{"version": "v2"}
	c, _ := snap.Generate(n)
	if fmt.Sprintf("%p", a.Routes) != fmt.Sprintf("%p", b.Routes) {
		t.Fatal("two replicas of one workload got separately generated resources")
	}
	if fmt.Sprintf("%p", a.Routes) == fmt.Sprintf("%p", c.Routes) {
		t.Fatal("nodes with different labels share resources")
	}
}
