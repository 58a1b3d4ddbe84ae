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

// Proxies that differ in their ID, addresses, ports and unselected labels share their outbound
// configuration (one generation, the same messages); a label a policy selects callers by gives
// another one.
func TestSnapshotSharesResourcesBetweenReplicas(t *testing.T) {
	yaml := "apiVersion: canton.dev/v1\nkind: Service\nmetadata: {name: reviews}\nspec:\n  ports: [{name: http, port: 9080, protocol: HTTP}]\n---\n" +
		"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews-for-v2}\nspec:\n  host: reviews\n" +
		"  workloadSelector: {matchLabels: {version: v2}}\n  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n"
	objs, err := resource.Parse("s.yaml", []byte(yaml), "demo.mesh", "bookinfo.demo.mesh")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := NewSnapshot(Input{Mesh: "demo.mesh", Scope: "demo.mesh", Objects: objs})
	if err != nil {
		t.Fatal(err)
	}
	const cluster = "outbound|9080||reviews.bookinfo.demo.mesh"
	n := Node{ID: "reviews-1", Service: "reviews", Namespace: "bookinfo.demo.mesh", Labels: map[string]string{"version": "v1"},
		OutboundPort: 15001, InboundPort: 15006, InboundAddress: "10.0.0.1", AppAddress: "10.0.0.1:9080"}
	a, _ := snap.Generate(n)
	n.ID, n.OutboundPort, n.InboundAddress, n.AppAddress = "reviews-2", 15002, "10.0.0.2", "10.0.0.2:9080"
	n.Labels = map[string]string{"version": "v1", "pod": "reviews-2"}
	b, _ := snap.Generate(n)
	n.Labels = map[string]string{"version": "v2"}
	c, _ := snap.Generate(n)
	if a.Clusters[cluster] == nil || a.Clusters[cluster] != b.Clusters[cluster] || fmt.Sprintf("%p", a.Routes) != fmt.Sprintf("%p", b.Routes) {
		t.Fatal("two replicas of one workload got separately generated outbound resources")
	}
	if a.Listeners[InboundListenerName] == b.Listeners[InboundListenerName] {
		t.Fatal("two replicas with different addresses share their inbound listener")
	}
	if a.Clusters[cluster] == c.Clusters[cluster] {
		t.Fatal("a node a DestinationRule selects shares the outbound resources of nodes it does not select")
	}
}
