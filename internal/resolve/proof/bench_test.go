package proof

import (
	"fmt"
	"testing"
)

// BenchmarkVerify verifies an answer behind a referral chain from the root
// scope, for each depth of the fake hierarchy (what a forwarding anchor and
// a client pay per answer).
func BenchmarkVerify(b *testing.B) {
	h := newHierarchy(b)
	for d, scope := range depth {
		name := "svc." + scope
		p := &Proof{Steps: []Step{h.answerStep(scope, name)}}
		wire := p.Marshal()
		b.Run(fmt.Sprintf("depth=%d/cold", d+1), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				q, err := Unmarshal(wire)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Verify(h.roots, name, q, found(name), h.now); err != nil {
					b.Fatal(err)
				}
			}
		})
		vf := NewVerifier(h.roots)
		b.Run(fmt.Sprintf("depth=%d/cached-chains", d+1), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				q, err := Unmarshal(wire)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := vf.Verify(name, q, found(name), h.now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSign is the cost of one signed statement (an anchor signs one per
// answer, plus one per referral it adds).
func BenchmarkSign(b *testing.B) {
	h := newHierarchy(b)
	st := Statement{Kind: KindAnswer, Scope: depth[1], Name: "svc." + depth[1], Anchor: "a1", Digest: found("svc." + depth[1]).Digest(), TTL: 30}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Sign(h.ca[depth[1]], st, h.now); err != nil {
			b.Fatal(err)
		}
	}
}
