package xds

import (
	"encoding/json"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"canton.dev/canton/internal/resource"
)

// TestCaptureVIPCollision: VIPs are unique within a scope, but services of two scopes are
// allocated independently and may meet. The first host (by name) keeps the address, the other
// is reported, and no listener is generated twice.
func TestCaptureVIPCollision(t *testing.T) {
	svc := func(ns, name string) resource.Object {
		return resource.Object{Kind: "Service", Namespace: ns, Name: name, VIPs: []string{"241.0.0.7"},
			Spec: json.RawMessage(`{"ports":[{"name":"http","port":9080}]}`)}
	}
	wl := func(ns, svc string) resource.Object {
		return resource.Object{Kind: "Workload", Namespace: ns, Name: svc + "-1",
			Spec: json.RawMessage(`{"service":"` + svc + `","address":"127.0.0.1","port":9080,"lease":1}`)}
	}
	in := Input{Mesh: testMesh, Scope: testMesh, Revision: 1, Objects: []resource.Object{
		svc("bookinfo.demo.mesh", "reviews"), wl("bookinfo.demo.mesh", "reviews"),
		svc("other.demo.mesh", "alpha"), wl("other.demo.mesh", "alpha"),
	}}
	n := defaultNode()
	n.CapturePort = 15002
	res, err := Generate(in, n)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.Listeners["vip.241.0.0.7:9080"]; !ok {
		t.Fatalf("no listener for the VIP; listeners %v", sortedKeys(res.Listeners))
	}
	rc, _ := res.Routes["vip.241.0.0.7:9080"].(*routev3.RouteConfiguration)
	if len(rc.GetVirtualHosts()) != 1 || rc.GetVirtualHosts()[0].GetName() != "alpha.other.demo.mesh:9080" {
		t.Fatalf("VIP routes %v, want alpha.other.demo.mesh (first by host)", rc)
	}
	var reported bool
	for _, s := range res.Skipped {
		if strings.Contains(s.Reason, "VIP 241.0.0.7:9080 is also alpha.other.demo.mesh's") {
			reported = true
		}
	}
	if !reported {
		t.Fatalf("collision not reported: %+v", res.Skipped)
	}

	// Without a capture port: no capture or VIP listener at all.
	n.CapturePort = 0
	if res, err = Generate(in, n); err != nil {
		t.Fatal(err)
	}
	for name := range res.Listeners {
		if name == CaptureListenerName || strings.HasPrefix(name, "vip.") {
			t.Fatalf("listener %s without a capture port", name)
		}
	}
	// A capture port that another listener has is refused.
	n.CapturePort = n.OutboundPort
	if _, err := Generate(in, n); err == nil || !strings.Contains(err.Error(), "capture port") {
		t.Fatalf("capture port = outbound port: err %v", err)
	}
}
