package resource

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
)

// specPath is the root of field paths inside a spec.
const specPath = "spec"

// decodeSpec decodes spec strictly into the kind's typed value and returns it with its
// canonical JSON. A nil, empty or "null" spec means an empty object.
func decodeSpec(k Kind, spec []byte) (any, json.RawMessage, error) {
	var generic any = map[string]any{}
	raw := []byte("{}") // JSON that decodes to generic, when known
	if t := bytes.TrimSpace(spec); len(t) > 0 && !bytes.Equal(t, []byte("null")) {
		v, ok := fastDecodeJSON(t)
		if ok {
			raw = t
		} else {
			var err error
			if v, err = decodeJSON(specPath, t); err != nil {
				return nil, nil, err
			}
			raw = nil
		}
		if _, ok := v.(map[string]any); !ok {
			return nil, nil, errorf(specPath, "must be an object, not %s", jsonType(v))
		}
		generic = v
	}
	if k.Native {
		return decodeNativeSpec(k, generic, raw)
	}
	return decodeProtoSpec(k, generic)
}

func decodeProtoSpec(k Kind, generic any) (any, json.RawMessage, error) {
	msg := k.newProto()
	checked, err := checkProto(specPath, generic, msg.ProtoReflect().Descriptor())
	if err != nil {
		return nil, nil, err
	}
	if checked == nil {
		checked = map[string]any{}
	}
	in, err := encodeJSON(checked)
	if err != nil {
		return nil, nil, err
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(in, msg); err != nil {
		return nil, nil, errorf(specPath, "%s", cleanProtoError(err))
	}
	out, err := protojson.MarshalOptions{}.Marshal(msg)
	if err != nil {
		return nil, nil, fmt.Errorf("encode %s spec: %w", k.Name, err)
	}
	canon, err := normalizeJSON(out)
	if err != nil {
		return nil, nil, fmt.Errorf("normalise %s spec: %w", k.Name, err)
	}
	return msg, canon, nil
}

// normalizeJSON re-encodes JSON with sorted keys and no whitespace; numbers keep their text.
func normalizeJSON(b []byte) (json.RawMessage, error) {
	if IsCanonicalJSON(b) {
		return b, nil
	}
	v, err := decodeJSON("", b)
	if err != nil {
		return nil, err
	}
	return encodeJSON(v)
}

// cleanProtoError strips protojson's "proto: (line 1:23): " prefix (whose spacing protobuf-go
// randomises on purpose), leaving the stable part of the message.
func cleanProtoError(err error) string {
	s := err.Error()
	if i := strings.Index(s, "): "); i >= 0 && strings.Contains(s[:i], "(line ") {
		return s[i+3:]
	}
	s = strings.TrimPrefix(s, "proto:")
	return strings.TrimLeft(s, " \u00a0")
}

// Canonical returns the canonical JSON of a spec of the given kind (any spelling Lookup
// accepts): decoded strictly into the typed message or struct, re-encoded, keys sorted,
// no whitespace. Same meaning gives the same bytes on every machine. It performs the
// structural checks of decoding but not the semantic checks of Validate.
func Canonical(kind string, spec []byte) (json.RawMessage, error) {
	k, ok := Lookup(kind)
	if !ok {
		return nil, fmt.Errorf("kind %q is not supported", kind)
	}
	_, canon, err := decodeSpec(k, spec)
	return canon, err
}

// Typed returns the decoded spec of o: a pointer to the istio.io/api message for Istio kinds
// (e.g. *v1alpha3.VirtualService, *v1beta1.AuthorizationPolicy) or to the Go struct for
// native kinds (*ServiceSpec, *WorkloadSpec, *AliasSpec, *DelegationSpec, *AnchorSpec).
// It decodes strictly but does not run the semantic checks; use Validate for that.
func Typed(o Object) (any, error) {
	k, ok := Lookup(o.Kind)
	if !ok {
		return nil, errorf("kind", "kind %q is not supported", o.Kind)
	}
	v, _, err := decodeSpec(k, o.Spec)
	return v, err
}

// Validate checks one object fully: known kind, valid name, namespace, labels and
// annotations, a spec that decodes strictly into its typed form, and the semantic checks of
// the kind. It is deterministic (the scope state machine relies on that).
func Validate(o Object) error {
	_, err := Normalize(o)
	return err
}

// Normalize validates o like Validate and returns a copy with the canonical kind name, the
// canonical spec, empty label/annotation maps dropped and the server-set fields (UID,
// Version, Created) cleared. The scope state machine stores normalised objects.
func Normalize(o Object) (Object, error) {
	k, ok := Lookup(o.Kind)
	if !ok {
		return Object{}, errorf("kind", "kind %q is not supported", o.Kind)
	}
	if err := checkName("metadata.name", o.Name); err != nil {
		return Object{}, err
	}
	if err := checkNamespace("metadata.namespace", o.Namespace); err != nil {
		return Object{}, err
	}
	if err := checkLabels("metadata.labels", o.Labels); err != nil {
		return Object{}, err
	}
	if err := checkAnnotations("metadata.annotations", o.Annotations); err != nil {
		return Object{}, err
	}
	typed, canon, err := decodeSpec(k, o.Spec)
	if err != nil {
		return Object{}, err
	}
	var check func(o Object, spec any) error
	if k.Native {
		check = func(o Object, spec any) error { return spec.(nativeSpec).validate(o) }
	} else {
		check = istioChecks[k.Name]
	}
	if check != nil {
		if err := check(o, typed); err != nil {
			return Object{}, err
		}
	}
	n := Object{Kind: k.Name, Namespace: o.Namespace, Name: o.Name, Spec: canon}
	if len(o.Labels) > 0 {
		n.Labels = cloneMap(o.Labels)
	}
	if len(o.Annotations) > 0 {
		n.Annotations = cloneMap(o.Annotations)
	}
	return n, nil
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
