// Package resource is Canton's typed, strict resource model: the Istio kinds users write
// unchanged (networking.istio.io, security.istio.io) and the Canton-native kinds
// (apiVersion canton.dev/v1: Service, Workload, Alias, Delegation, Anchor, Export, ...).
//
// It parses YAML/JSON manifests (Parse), validates objects (Validate), produces the canonical
// JSON of a spec (Canonical) and renders objects back to manifests (Manifest, ToYAML).
// It does no I/O besides decoding the bytes it is given, keeps no global mutable state and
// never looks at a clock, so the replicated scope state machine (internal/scope) can call
// Validate and Canonical and get the same answer on every replica.
//
// Strictness: unknown fields at the top level, in metadata and anywhere in a spec are errors,
// as are duplicate YAML keys. Errors name the file, the document number (1-based, counting
// non-empty documents and empty ones alike), the kind and name when known, and the field path,
// for example:
//
//	bookinfo.yaml: document 2 (VirtualService reviews): spec.http[0].route[1].weight: must be 0..100
//
// Canonical form of a spec: Istio specs are decoded strictly into their istio.io/api message
// with protojson, re-encoded with protojson (which omits unset fields and uses the lowerCamel
// JSON names), and re-encoded with encoding/json so that keys are sorted and there is no
// whitespace. Native specs are decoded strictly into their Go struct and re-encoded with
// encoding/json through the same normalisation. Equal meaning gives equal bytes.
//
// Who may import it: any package of Canton (anchor, scope, api, cli, xds, ...). It imports
// only the standard library, istio.io/api, google.golang.org/protobuf and sigs.k8s.io/yaml.
package resource
