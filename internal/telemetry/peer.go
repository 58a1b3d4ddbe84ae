package telemetry

import (
	"encoding/base64"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// Peer metadata exchange. Istio's proxies tell each other who they are so that both ends of a call
// can label its metrics with the other side's workload: the caller's proxy sends its metadata in
// request headers, the callee's proxy answers with its own in response headers, only between proxies
// of the mesh (over mTLS) and never to applications. The encoding is Istio's: base64 of a
// google.protobuf.Struct with the keys NAME, NAMESPACE, WORKLOAD_NAME and LABELS (app, version and
// the canonical service labels), so Canton and Istio proxies understand each other.
const (
	PeerMetadataHeader   = "X-Envoy-Peer-Metadata"
	PeerMetadataIDHeader = "X-Envoy-Peer-Metadata-Id"
)

// Label keys of the canonical service, as Istio names them.
const (
	labelCanonicalName     = "service.istio.io/canonical-name"
	labelCanonicalRevision = "service.istio.io/canonical-revision"
)

// maxPeerMetadata bounds an encoded peer metadata value (a proxy's own is a few hundred bytes).
const maxPeerMetadata = 4 << 10

// Workload is one side of a call as Istio's labels describe it. Empty fields are reported as
// "unknown". Principal is not exchanged: it comes from the verified certificate.
type Workload struct {
	Name              string // the workload, e.g. reviews-v2 (Istio: the deployment)
	Namespace         string // e.g. bookinfo.demo.mesh
	App               string // the app label
	Version           string // the version label
	CanonicalService  string // defaults to App
	CanonicalRevision string // defaults to Version, else "latest"
	Principal         string // SPIFFE ID, "spiffe://..."
}

func (w *Workload) canonicalService() string {
	if w.CanonicalService != "" {
		return w.CanonicalService
	}
	return w.App
}

func (w *Workload) canonicalRevision() string {
	switch {
	case w.CanonicalRevision != "":
		return w.CanonicalRevision
	case w.Version != "":
		return w.Version
	case w.canonicalService() != "":
		return "latest"
	}
	return ""
}

// EncodePeerMetadata renders w (and the node's name) as the value of PeerMetadataHeader.
func EncodePeerMetadata(node string, w Workload) (string, error) {
	labels := map[string]any{}
	for k, v := range map[string]string{"app": w.App, "version": w.Version,
		labelCanonicalName: w.canonicalService(), labelCanonicalRevision: w.canonicalRevision()} {
		if v != "" {
			labels[k] = v
		}
	}
	st, err := structpb.NewStruct(map[string]any{"NAME": node, "NAMESPACE": w.Namespace, "WORKLOAD_NAME": w.Name, "LABELS": labels})
	if err != nil {
		return "", err
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(st)
	if err != nil {
		return "", err
	}
	s := base64.StdEncoding.EncodeToString(b)
	if len(s) > maxPeerMetadata {
		return "", fmt.Errorf("peer metadata is %d bytes, more than %d", len(s), maxPeerMetadata)
	}
	return s, nil
}

// DecodePeerMetadata parses a PeerMetadataHeader value. Unknown keys are ignored (Istio sends many);
// a value that is not base64 of a Struct, or too large, is an error. String fields of another type
// are ignored.
func DecodePeerMetadata(v string) (Workload, error) {
	if len(v) > maxPeerMetadata {
		return Workload{}, errors.New("peer metadata too large")
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return Workload{}, fmt.Errorf("peer metadata: %w", err)
	}
	var st structpb.Struct
	if err := proto.Unmarshal(b, &st); err != nil {
		return Workload{}, fmt.Errorf("peer metadata: %w", err)
	}
	str := func(s *structpb.Struct, k string) string { return s.GetFields()[k].GetStringValue() }
	labels := st.GetFields()["LABELS"].GetStructValue()
	w := Workload{Name: str(&st, "WORKLOAD_NAME"), Namespace: str(&st, "NAMESPACE"),
		App: str(labels, "app"), Version: str(labels, "version"),
		CanonicalService: str(labels, labelCanonicalName), CanonicalRevision: str(labels, labelCanonicalRevision)}
	if w.App == "" {
		w.App = str(labels, "app.kubernetes.io/name")
	}
	if w.Version == "" {
		w.Version = str(labels, "app.kubernetes.io/version")
	}
	return w, nil
}

// SetSource fills the source_* labels from w.
func (l *Labels) SetSource(w *Workload) {
	l.SourceWorkload, l.SourceWorkloadNamespace = w.Name, w.Namespace
	l.SourceApp, l.SourceVersion = w.App, w.Version
	l.SourceCanonicalService, l.SourceCanonicalRevision = w.canonicalService(), w.canonicalRevision()
	if w.Principal != "" {
		l.SourcePrincipal = w.Principal
	}
}

// SetDestination fills the destination_* workload labels from w (the service labels stay).
func (l *Labels) SetDestination(w *Workload) {
	l.DestinationWorkload, l.DestinationWorkloadNamespace = w.Name, w.Namespace
	l.DestinationApp, l.DestinationVersion = w.App, w.Version
	l.DestinationCanonicalService, l.DestinationCanonicalRevision = w.canonicalService(), w.canonicalRevision()
	if w.Principal != "" {
		l.DestinationPrincipal = w.Principal
	}
}
