package telemetry

import (
	"encoding/base64"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestPeerMetadataRoundTrip(t *testing.T) {
	w := Workload{Name: "reviews-v2", Namespace: "bookinfo.demo.mesh", App: "reviews", Version: "v2"}
	v, err := EncodePeerMetadata("reviews-v2-7f9c", w)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodePeerMetadata(v)
	if err != nil {
		t.Fatal(err)
	}
	want := w
	want.CanonicalService, want.CanonicalRevision = "reviews", "v2"
	if got != want {
		t.Errorf("decoded %+v, want %+v", got, want)
	}
	again, _ := EncodePeerMetadata("reviews-v2-7f9c", w)
	if again != v {
		t.Error("encoding is not deterministic")
	}
}

// Metadata as an Istio proxy sends it: more keys than Canton's, Kubernetes recommended labels.
func TestPeerMetadataFromIstio(t *testing.T) {
	st, err := structpb.NewStruct(map[string]any{
		"NAME": "productpage-v1-6b746f74dc-9stvs", "NAMESPACE": "default", "WORKLOAD_NAME": "productpage-v1",
		"CLUSTER_ID": "Kubernetes", "MESH_ID": "cluster.local", "APP_CONTAINERS": "productpage",
		"PLATFORM_METADATA": map[string]any{}, "INSTANCE_IPS": "10.0.0.7",
		"LABELS": map[string]any{"app.kubernetes.io/name": "productpage", "app.kubernetes.io/version": "v1",
			"service.istio.io/canonical-name": "productpage", "pod-template-hash": "6b746f74dc"},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := proto.Marshal(st)
	got, err := DecodePeerMetadata(base64.StdEncoding.EncodeToString(b))
	if err != nil {
		t.Fatal(err)
	}
	want := Workload{Name: "productpage-v1", Namespace: "default", App: "productpage", Version: "v1", CanonicalService: "productpage"}
	if got != want {
		t.Errorf("decoded %+v, want %+v", got, want)
	}
}

func TestPeerMetadataRejectsGarbage(t *testing.T) {
	for name, v := range map[string]string{
		"not base64":   "%%%",
		"not a struct": base64.StdEncoding.EncodeToString([]byte{0xff, 0xff, 0xff}),
		"too large":    strings.Repeat("A", maxPeerMetadata+4),
	} {
		if _, err := DecodePeerMetadata(v); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestLabelsFromWorkloads(t *testing.T) {
	var l Labels
	l.SetSource(&Workload{Name: "productpage-v1", Namespace: "bookinfo.demo.mesh", App: "productpage", Principal: "spiffe://bookinfo.demo.mesh/sa/productpage"})
	l.SetDestination(&Workload{Name: "reviews-v2", App: "reviews", Version: "v2"})
	if l.SourceCanonicalService != "productpage" || l.SourceCanonicalRevision != "latest" || l.SourcePrincipal != "spiffe://bookinfo.demo.mesh/sa/productpage" ||
		l.DestinationCanonicalRevision != "v2" || l.DestinationWorkload != "reviews-v2" || l.DestinationPrincipal != "" {
		t.Errorf("labels %+v", l)
	}
}

func FuzzDecodePeerMetadata(f *testing.F) {
	v, _ := EncodePeerMetadata("n", Workload{Name: "a", Namespace: "b", App: "c", Version: "d"})
	f.Add(v)
	f.Add("")
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		w, err := DecodePeerMetadata(s)
		if err != nil {
			return
		}
		// What decodes re-encodes and decodes to the same workload.
		enc, err := EncodePeerMetadata("n", w)
		if err != nil {
			return // too large once re-encoded
		}
		back, err := DecodePeerMetadata(enc)
		if err != nil {
			t.Fatalf("re-encoded metadata does not decode: %v", err)
		}
		w.CanonicalService, w.CanonicalRevision = w.canonicalService(), w.canonicalRevision()
		if back != w {
			t.Fatalf("round trip %+v -> %+v", w, back)
		}
	})
}
