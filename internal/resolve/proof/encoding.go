package proof

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Kind is what a statement says.
type Kind uint8

const (
	// KindAnswer: Name exists; Digest covers the answer's payload.
	KindAnswer Kind = 1
	// KindNegative: Name does not exist (or is not visible to the asker);
	// Digest covers the payload (the reason).
	KindNegative Kind = 2
	// KindAlias: Name is an alias of Target.
	KindAlias Kind = 3
	// KindReferral: Name (a child domain) is delegated to Anchors, whose
	// scope's CA is ChildCA.
	KindReferral Kind = 4
)

func (k Kind) String() string {
	switch k {
	case KindAnswer:
		return "answer"
	case KindNegative:
		return "negative answer"
	case KindAlias:
		return "alias"
	case KindReferral:
		return "referral"
	}
	return fmt.Sprintf("kind %d", uint8(k))
}

// context separates the signatures of each kind from each other and from
// anything else a scope CA key signs.
func (k Kind) context() string {
	switch k {
	case KindReferral:
		return "canton resolve referral v1"
	default:
		return "canton resolve answer v1"
	}
}

// Statement is what a scope's CA signs. Zero fields are encoded like any
// other; which fields a kind uses is checked by Verify.
type Statement struct {
	Kind Kind
	// Scope is the domain of the signing scope (its CA is constrained to it).
	Scope string
	// Name is the name looked up (answer, negative, alias) or the child
	// domain (referral).
	Name string
	// Target is the name an alias points to.
	Target string
	// Anchor is the ID of the anchor of Scope that made the statement.
	Anchor string
	// Anchors are the child scope's anchor IDs (referral).
	Anchors []string
	// ChildCA is the DER certificate of the child scope's CA (referral).
	ChildCA []byte
	// Digest is the SHA-256 of the answer's payload (answer, negative).
	Digest []byte
	// SignedAt is when the statement was signed, Unix seconds.
	SignedAt int64
	// TTL is how long after SignedAt the statement may be relied on, seconds.
	TTL uint32
}

// Signed is a statement with its signature and the signer's chain.
type Signed struct {
	Statement
	// Chain holds DER certificates: the signing CA first, then its issuers
	// up to the mesh root (the root itself may be left out).
	Chain [][]byte
	// Sig is the signature of the signing CA's key over the statement's
	// canonical encoding (see message).
	Sig []byte
}

// Step is the resolution of one name: the referrals followed, outermost
// first, and the final statement (answer, negative answer or alias).
type Step struct {
	Referrals []Signed
	Final     Signed
}

// Proof vouches for a resolution: one step per name looked up, the asked
// name first, each alias's target next.
type Proof struct {
	Steps []Step
}

// Limits of the decoder (and of what Marshal produces).
const (
	maxProofSize = 256 << 10
	maxSteps     = 16
	maxReferrals = 16
	maxAnchors   = 64
	maxChain     = 8
	maxString    = 1024
	maxCert      = 16 << 10
	maxSig       = 1024
	maxDigest    = 64
)

var magic = []byte("canton-proof/1\x00")

// message is the byte string a CA signs for st: the kind's context string,
// a zero byte, then the statement's canonical encoding.
func message(st *Statement) []byte {
	b := append([]byte(st.Kind.context()), 0)
	return appendStatement(b, st)
}

func appendStatement(b []byte, st *Statement) []byte {
	b = append(b, byte(st.Kind))
	b = appendString(b, st.Scope)
	b = appendString(b, st.Name)
	b = appendString(b, st.Target)
	b = appendString(b, st.Anchor)
	b = binary.AppendUvarint(b, uint64(len(st.Anchors)))
	for _, a := range st.Anchors {
		b = appendString(b, a)
	}
	b = appendBytes(b, st.ChildCA)
	b = appendBytes(b, st.Digest)
	b = binary.BigEndian.AppendUint64(b, uint64(st.SignedAt))
	b = binary.BigEndian.AppendUint32(b, st.TTL)
	return b
}

func appendSigned(b []byte, s *Signed) []byte {
	b = appendStatement(b, &s.Statement)
	b = binary.AppendUvarint(b, uint64(len(s.Chain)))
	for _, c := range s.Chain {
		b = appendBytes(b, c)
	}
	return appendBytes(b, s.Sig)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// Marshal encodes p canonically: Unmarshal(Marshal(p)) equals p (with nil
// and empty slices alike), and Marshal(Unmarshal(b)) equals b for every b
// Unmarshal accepts.
func (p *Proof) Marshal() []byte {
	b := append([]byte(nil), magic...)
	b = binary.AppendUvarint(b, uint64(len(p.Steps)))
	for i := range p.Steps {
		s := &p.Steps[i]
		b = binary.AppendUvarint(b, uint64(len(s.Referrals)))
		for j := range s.Referrals {
			b = appendSigned(b, &s.Referrals[j])
		}
		b = appendSigned(b, &s.Final)
	}
	return b
}

// Unmarshal decodes a proof, strictly: known kinds only, bounded sizes and
// counts, minimal varints, no trailing bytes.
func Unmarshal(b []byte) (*Proof, error) {
	if len(b) > maxProofSize {
		return nil, fmt.Errorf("proof: %d bytes, more than %d", len(b), maxProofSize)
	}
	if len(b) < len(magic) || string(b[:len(magic)]) != string(magic) {
		return nil, errors.New("proof: not a canton resolution proof (bad magic)")
	}
	d := &decoder{b: b, off: len(magic)}
	n := d.count(maxSteps, "steps")
	p := &Proof{}
	if n > 0 {
		p.Steps = make([]Step, 0, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		var s Step
		nr := d.count(maxReferrals, "referrals")
		for j := 0; j < nr && d.err == nil; j++ {
			s.Referrals = append(s.Referrals, d.signed())
		}
		s.Final = d.signed()
		p.Steps = append(p.Steps, s)
	}
	if d.err == nil && d.off != len(b) {
		d.fail("%d trailing bytes", len(b)-d.off)
	}
	if d.err != nil {
		return nil, d.err
	}
	return p, nil
}

type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("proof: offset %d: %s", d.off, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("%s: malformed varint", what)
		return 0
	}
	if n != len(binary.AppendUvarint(nil, v)) {
		d.fail("%s: non-minimal varint", what)
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) count(limit int, what string) int {
	v := d.uvarint(what)
	if d.err == nil && v > uint64(limit) {
		d.fail("%d %s, more than %d", v, what, limit)
		return 0
	}
	return int(v)
}

func (d *decoder) bytes(limit int, what string) []byte {
	n := d.count(limit, what+" bytes")
	if d.err != nil {
		return nil
	}
	if len(d.b)-d.off < n {
		d.fail("%s: %d bytes announced, %d left", what, n, len(d.b)-d.off)
		return nil
	}
	v := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	if n == 0 {
		return nil
	}
	return append([]byte(nil), v...)
}

func (d *decoder) string(what string) string { return string(d.bytes(maxString, what)) }

func (d *decoder) fixed(n int, what string) []byte {
	if d.err != nil {
		return make([]byte, n)
	}
	if len(d.b)-d.off < n {
		d.fail("%s: truncated", what)
		return make([]byte, n)
	}
	v := d.b[d.off : d.off+n]
	d.off += n
	return v
}

func (d *decoder) signed() Signed {
	var s Signed
	k := d.fixed(1, "kind")[0]
	if d.err == nil && (k < byte(KindAnswer) || k > byte(KindReferral)) {
		d.fail("unknown statement kind %d", k)
	}
	s.Kind = Kind(k)
	s.Scope = d.string("scope")
	s.Name = d.string("name")
	s.Target = d.string("target")
	s.Anchor = d.string("anchor")
	na := d.count(maxAnchors, "anchors")
	for i := 0; i < na && d.err == nil; i++ {
		s.Anchors = append(s.Anchors, d.string("anchor id"))
	}
	s.ChildCA = d.bytes(maxCert, "child CA")
	s.Digest = d.bytes(maxDigest, "digest")
	s.SignedAt = int64(binary.BigEndian.Uint64(d.fixed(8, "signed-at")))
	s.TTL = binary.BigEndian.Uint32(d.fixed(4, "ttl"))
	nc := d.count(maxChain, "chain certificates")
	for i := 0; i < nc && d.err == nil; i++ {
		s.Chain = append(s.Chain, d.bytes(maxCert, "certificate"))
	}
	s.Sig = d.bytes(maxSig, "signature")
	return s
}
