package proxy

import (
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// The proxy announces its optional features as CANTON_CAPABILITIES, present even when empty (empty:
// none; absent would mean all of them to the control plane), and Options.NodeMetadata cannot override it.
func TestNodeAnnouncesCapabilities(t *testing.T) {
	e := startEnv(t, func(o *Options) {
		o.NodeMetadata = map[string]string{"CANTON_NAMESPACE": "bookinfo.demo.mesh", CapabilitiesKey: "cluster.dns"}
	})
	r := e.xds.WaitRequest(wait, "first request", func(r *discoveryv3.DiscoveryRequest) bool { return r.GetNode() != nil })
	f := r.GetNode().GetMetadata().GetFields()
	v, ok := f[CapabilitiesKey].GetKind().(*structpb.Value_StringValue)
	if !ok || v.StringValue != Capabilities {
		t.Errorf("node metadata %s = %v, want the string %q", CapabilitiesKey, f[CapabilitiesKey], Capabilities)
	}
	if f["CANTON_NAMESPACE"].GetStringValue() != "bookinfo.demo.mesh" || r.GetNode().GetId() != "test" {
		t.Errorf("node %v: options not passed on", r.GetNode())
	}
}
