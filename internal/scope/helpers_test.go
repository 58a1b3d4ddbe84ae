package scope

import (
	"encoding/json"
	"fmt"
	"testing"

	"canton.dev/canton/internal/resource"
)

const (
	testDomain      = "demo.mesh"
	testIncarnation = "00c0ffee"
	admin           = "spiffe://demo.mesh/admin/admin"
)

func u64(n uint64) *uint64 { return &n }

func encode(t testing.TB, m Mutation) []byte {
	t.Helper()
	b, err := Encode(m)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return b
}

func genesis() Mutation {
	return Mutation{Op: OpGenesis, Proposer: "anchor/a1", Genesis: &Genesis{Domain: testDomain, Incarnation: testIncarnation, Anchors: []string{"a2", "a1", "a3"}}}
}

// newState returns a State of testDomain with the genesis applied at index 1.
func newState(t testing.TB) *State {
	t.Helper()
	s := New(testDomain)
	if r := s.Apply(1, encode(t, genesis())).(Result); r.Err != nil {
		t.Fatalf("genesis: %v", r.Err)
	}
	return s
}

func svc(ns, name string, port int) resource.Object {
	return resource.Object{Kind: "Service", Namespace: ns, Name: name,
		Spec: json.RawMessage(fmt.Sprintf(`{"ports":[{"name":"http","port":%d}]}`, port))}
}

func workload(ns, name string, lease uint64) resource.Object {
	return resource.Object{Kind: "Workload", Namespace: ns, Name: name, Labels: map[string]string{"version": "v1"},
		Spec: json.RawMessage(fmt.Sprintf(`{"service":"web","address":"127.0.0.1","port":9080,"lease":%d}`, lease))}
}

func delegation(ns, name, domain string) resource.Object {
	return resource.Object{Kind: "Delegation", Namespace: ns, Name: name,
		Spec: json.RawMessage(fmt.Sprintf(`{"domain":%q,"anchors":["a4"]}`, domain))}
}

func put(objs ...resource.Object) Mutation {
	return Mutation{Op: OpPut, Proposer: admin, Objects: objs}
}

func del(kind, ns, name string) Mutation {
	return Mutation{Op: OpDelete, Proposer: admin, Kind: kind, Namespace: ns, Name: name}
}
