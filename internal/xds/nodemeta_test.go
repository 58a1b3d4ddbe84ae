package xds

import (
	"reflect"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

func protoNode(t *testing.T, id string, meta map[string]string) *corev3.Node {
	t.Helper()
	fields := map[string]any{}
	for k, v := range meta {
		fields[k] = v
	}
	st, err := structpb.NewStruct(fields)
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Node{Id: id, Metadata: st}
}

func TestNodeMetadataRoundTrip(t *testing.T) {
	in := Node{
		ID: "reviews-v2-1", Service: "reviews", Namespace: "bookinfo.demo.mesh",
		Labels: map[string]string{"version": "v2", "app": "reviews"}, Kind: KindSidecar,
		OutboundPort: 15001, InboundPort: 15006, InboundAddress: "127.0.0.1", AppAddress: "127.0.0.1:9081",
		Capabilities: map[string]bool{"b": true, "a": true},
	}
	meta := NodeMetadata(in)
	if meta[MetaLabels] != "app=reviews,version=v2" || meta[MetaCapabilities] != "a,b" {
		t.Fatalf("metadata %v", meta)
	}
	out, err := NodeFromProto(protoNode(t, in.ID, meta))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", out, in)
	}
}

func TestNodeFromProtoRejects(t *testing.T) {
	ok := map[string]string{MetaNamespace: "bookinfo.demo.mesh"}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range ok {
			m[a] = b
		}
		m[k] = v
		return m
	}
	for _, tc := range []struct {
		name string
		id   string
		meta map[string]string
		want string
	}{
		{"no id", "", ok, "id is required"},
		{"no namespace", "p", map[string]string{}, MetaNamespace + " is required"},
		{"bad port", "p", with(MetaInboundPort, "99999"), "is not a port"},
		{"zero port", "p", with(MetaOutboundPort, "0"), "is not a port"},
		{"bad address", "p", with(MetaInboundAddress, "localhost"), "is not an IP"},
		{"bad label", "p", with(MetaLabels, "version"), "is not key=value"},
		{"long value", "p", with(MetaAppAddress, strings.Repeat("x", 5000)), "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NodeFromProto(protoNode(t, tc.id, tc.meta))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
	n := protoNode(t, "p", ok)
	n.Metadata.Fields[MetaService] = structpb.NewNumberValue(3)
	if _, err := NodeFromProto(n); err == nil || !strings.Contains(err.Error(), "want a string") {
		t.Fatalf("non-string metadata: %v", err)
	}
}
