package xds

import (
	"reflect"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protojson"
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
		OutboundPort: 15001, CapturePort: 15002, InboundPort: 15006, InboundAddress: "127.0.0.1", AppAddress: "127.0.0.1:9081", AdminAddress: "127.0.0.1:15000",
		Capabilities: map[string]bool{"b": true, "a": true}, PathNormalization: PathNormalizationBase,
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
		{"bad path normalization", "p", with(MetaPathNormalization, "DECODE"), "must be one of"},
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

// The canton proxy sends CANTON_CAPABILITIES="" (no optional feature). Present but empty must read as
// an empty, non-nil set (absent: nil, every feature), survive NodeMetadata, and make the generator
// leave out what needs a feature, reporting each omission in Skipped.
func TestEmptyCapabilitiesMeanNoOptionalFeature(t *testing.T) {
	base := NodeMetadata(defaultNode())
	delete(base, MetaCapabilities)
	absent, err := NodeFromProto(protoNode(t, "p", base))
	if err != nil {
		t.Fatal(err)
	}
	if absent.Capabilities != nil {
		t.Fatalf("absent %s: Capabilities %v, want nil (all features)", MetaCapabilities, absent.Capabilities)
	}
	withEmpty := NodeMetadata(defaultNode())
	withEmpty[MetaCapabilities] = ""
	node, err := NodeFromProto(protoNode(t, "productpage-v1-1", withEmpty))
	if err != nil {
		t.Fatal(err)
	}
	if node.Capabilities == nil || len(node.Capabilities) != 0 {
		t.Fatalf(`%s="": Capabilities %#v, want an empty non-nil set`, MetaCapabilities, node.Capabilities)
	}
	for _, f := range []string{FeatureDNSCluster, FeatureMaxRequestsPerConnection, FeatureCORS} {
		if node.supports(f) || !absent.supports(f) {
			t.Errorf("%s: supported with no capabilities = %v, with absent = %v", f, node.supports(f), absent.supports(f))
		}
	}
	if got, ok := NodeMetadata(node)[MetaCapabilities]; !ok || got != "" {
		t.Errorf("NodeMetadata of an empty set: %s = %q, %v; want present and empty", MetaCapabilities, got, ok)
	}

	for _, tc := range []struct {
		dir, feature string
		leftOut      func(Resources) string // what the proxy got that it should not have, "" if none
	}{
		{"testdata/serviceentry-dns", FeatureDNSCluster, func(r Resources) string {
			for name, c := range r.Clusters {
				if k := c.(*clusterv3.Cluster).GetType(); k == clusterv3.Cluster_STRICT_DNS || k == clusterv3.Cluster_LOGICAL_DNS {
					return name + " is a " + k.String() + " cluster"
				}
			}
			return ""
		}},
		{"testdata/circuit-breaker", FeatureMaxRequestsPerConnection, func(r Resources) string {
			for name, c := range r.Clusters {
				if b, _ := protojson.Marshal(c.(*clusterv3.Cluster)); strings.Contains(string(b), "maxRequestsPerConnection") {
					return name + " sets max_requests_per_connection"
				}
			}
			return ""
		}},
	} {
		in := loadInput(t, tc.dir)
		all, err := Generate(in, absent)
		if err != nil {
			t.Fatal(err)
		}
		if tc.leftOut(all) == "" {
			t.Fatalf("%s: a node with every feature gets nothing that needs %s: the case tests nothing", tc.dir, tc.feature)
		}
		none, err := Generate(in, node)
		if err != nil {
			t.Fatal(err)
		}
		validateAll(t, none)
		if what := tc.leftOut(none); what != "" {
			t.Errorf("%s: proxy without %s got it anyway: %s", tc.dir, tc.feature, what)
		}
		reported := false
		for _, s := range none.Skipped {
			reported = reported || strings.Contains(s.Reason, "("+tc.feature+")")
		}
		if !reported {
			t.Errorf("%s: omission of %s not reported in Skipped: %v", tc.dir, tc.feature, none.Skipped)
		}
	}
}
