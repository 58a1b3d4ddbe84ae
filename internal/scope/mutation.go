package scope

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"canton.dev/canton/internal/resource"
)

// Op names a kind of mutation.
type Op string

// The mutation operations.
const (
	OpPut           Op = "put"
	OpDelete        Op = "delete"
	OpGrantLease    Op = "grant-lease"
	OpRevokeLease   Op = "revoke-lease"
	OpExpireLeases  Op = "expire-leases"
	OpGenesis       Op = "genesis"
	OpSetGovernance Op = "set-governance"
	OpNoop          Op = "noop"
	OpRename        Op = "rename"
)

// Limits on one mutation.
const (
	// MaxObjectsPerPut bounds the objects of one (atomic) put.
	MaxObjectsPerPut = 1000
	// MaxLeaseIDs bounds the lease IDs of one revoke-lease or expire-leases.
	MaxLeaseIDs = 10000
	// MaxLeaseTTLSeconds bounds a lease's TTL (one hour): the anchor API grants no more
	// (canton proxy --lease-ttl), and Apply accepts no more. A dead workload stays
	// registered for up to its TTL, and again after each leader change (the new leader
	// gives every lease a full TTL). The API always capped at one hour, so no committed
	// grant asks for more and lowering this from one day changed no outcome.
	MaxLeaseTTLSeconds = 3600
	// MaxProposerLen bounds the proposer identity.
	MaxProposerLen = 1024
)

// Versions of the state machine's rules (Mutation.Rules).
const (
	// RulesVIPs: a put or rename gives every Service that has none its VIPs
	// (resource.AllocateVIPs).
	RulesVIPs = 1
	// CurrentRules is what this version's anchors propose.
	CurrentRules = RulesVIPs
)

// Mutation is one change proposed to a scope. Which fields are allowed depends on Op; Decode
// rejects the others.
type Mutation struct {
	Op Op `json:"op"`
	// Proposer is who asked, e.g. "spiffe://demo.mesh/admin/admin" or "anchor/a1". Required.
	Proposer string `json:"proposer"`
	// Time is when the proposing anchor proposed the mutation, by its own wall clock, in
	// the one spelling FormatTime gives (RFC 3339, UTC, milliseconds). It is that anchor's
	// claim: the state machine checks its spelling, never its value (Apply reads no clock,
	// and anchors' clocks differ). Empty = not recorded (mutations committed before anchors
	// stamped them, or proposed by an anchor that does not).
	Time string `json:"time,omitempty"`
	// Rules is the version of the state machine's rules the proposer asks for (at most
	// CurrentRules): a rule that changes what Apply stores applies only to mutations that ask
	// for it, so a log written by older anchors replays to exactly the state it gave them.
	// 0 = the rules before service VIPs; RulesVIPs = puts and renames give Services VIPs.
	Rules int `json:"rules,omitempty"`

	// Objects (put) are applied atomically: all or nothing.
	Objects []resource.Object `json:"objects,omitempty"`
	// IfVersions (put) holds one optimistic-concurrency expectation per object, parallel to
	// Objects (same length, or empty for none): nil = unconditional, 0 = must not exist,
	// n = must exist at version n.
	IfVersions []*uint64 `json:"ifVersions,omitempty"`

	// Kind, Namespace (absolute) and Name select the object of a delete.
	Kind      string `json:"kind,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	// IfVersion is the expectation of a delete (nil = unconditional, n = must be at version n;
	// 0 is invalid) or of a put of exactly one object (same meaning as an IfVersions entry;
	// do not set both).
	IfVersion *uint64 `json:"ifVersion,omitempty"`
	// NewName (rename) is the Service's new name in the same namespace. A rename keeps the
	// Service's UID and Created, leaves an Alias with the old name pointing at the UID and
	// moves the Workloads of the old name to the new one, all in one mutation.
	NewName string `json:"newName,omitempty"`

	// Lease (grant-lease) gives the TTL; its ID must be zero, the scope assigns the index.
	Lease *Lease `json:"lease,omitempty"`
	// LeaseIDs (revoke-lease, expire-leases) are deleted with every Workload bound to them.
	LeaseIDs []uint64 `json:"leaseIds,omitempty"`

	// Genesis (genesis) initialises the scope; it must be the first accepted mutation.
	Genesis *Genesis `json:"genesis,omitempty"`
	// Governance (set-governance) replaces the scope's governance.
	Governance *Governance `json:"governance,omitempty"`
}

// Lease is a lease Workloads live under. Its expiry is decided outside the state machine.
type Lease struct {
	// ID is the Raft index of the grant (assigned by the scope; zero in a grant-lease).
	ID uint64 `json:"id,omitempty"`
	// TTLSeconds is 1..MaxLeaseTTLSeconds.
	TTLSeconds int64 `json:"ttlSeconds"`
}

// Genesis is the first mutation of a scope.
type Genesis struct {
	// Domain must equal the State's domain.
	Domain string `json:"domain"`
	// Incarnation is a random lower-case hex string (8..64 characters) chosen by the
	// proposer; UIDs are derived from it, so a re-created scope never reuses one.
	Incarnation string `json:"incarnation"`
	// Anchors are the IDs of the initial anchors (at least one); they become voters.
	Anchors []string `json:"anchors"`
	// Parent is the parent scope's domain; empty for the root scope.
	Parent string `json:"parent,omitempty"`
}

// Governance is the scope's set of anchors (weighted signers come later).
type Governance struct {
	Anchors []AnchorRef `json:"anchors"`
}

// AnchorRef is one anchor of a scope.
type AnchorRef struct {
	ID string `json:"id"`
	// NodeID is the anchor's Raft node ID; 0 = not known yet. Non-zero IDs are unique.
	NodeID uint64 `json:"nodeId,omitempty"`
	// Voter is false for learners.
	Voter bool `json:"voter,omitempty"`
}

// TimeLayout is the layout of Mutation.Time and Record.Time: RFC 3339 in UTC with exactly
// three fractional digits, e.g. "2026-03-14T09:26:53.589Z". Fixed width, so that one
// instant has one spelling and the strings sort in time order.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// FormatTime spells t as a Mutation.Time: in UTC, truncated to the millisecond.
func FormatTime(t time.Time) string {
	return t.UTC().Format(TimeLayout)
}

// ParseTime parses a Mutation.Time; anything but FormatTime's spelling is an error.
func ParseTime(s string) (time.Time, error) {
	if t, ok := parseTimeFast(s); ok {
		return t, nil
	}
	t, err := time.Parse(TimeLayout, s)
	if err != nil || FormatTime(t) != s {
		return time.Time{}, fmt.Errorf("%q is not a UTC time in the form 2006-01-02T15:04:05.000Z (RFC 3339, milliseconds)", s)
	}
	return t.UTC(), nil
}

// parseTimeFast parses FormatTime's spelling of a time in the years 0000..9999 without
// time.Parse and Format: every field at its place, in range (time.Date normalises nothing),
// so FormatTime would give s back. Anything else is left to ParseTime's general path.
func parseTimeFast(s string) (time.Time, bool) {
	if len(s) != len("2006-01-02T15:04:05.000Z") || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
		s[16] != ':' || s[19] != '.' || s[23] != 'Z' {
		return time.Time{}, false
	}
	num := func(i, n int) int {
		v := 0
		for _, c := range []byte(s[i : i+n]) {
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	year, month, day, hour, minute, sec, ms := num(0, 4), num(5, 2), num(8, 2), num(11, 2), num(14, 2), num(17, 2), num(20, 3)
	if year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || sec < 0 || sec > 59 || ms < 0 {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, ms*int(time.Millisecond), time.UTC)
	if t.Day() != day || t.Month() != time.Month(month) {
		return time.Time{}, false // e.g. February 30th
	}
	return t, true
}

// Encode returns the canonical bytes of m: compact JSON with fields in a fixed order, maps
// with sorted keys, object specs with sorted keys and no whitespace. It does not validate
// m beyond what encoding needs.
func Encode(m Mutation) ([]byte, error) {
	if len(m.Objects) > 0 {
		objs := make([]resource.Object, len(m.Objects))
		for i, o := range m.Objects {
			if len(o.Spec) > 0 && !resource.IsCanonicalJSON(o.Spec) {
				// (A canonical spec, e.g. one Normalize gave, re-encodes to itself.)
				spec, err := sortJSON(o.Spec)
				if err != nil {
					return nil, fmt.Errorf("encode mutation: objects[%d] (%s): spec: %w", i, o.Ref(), err)
				}
				o.Spec = spec
			}
			objs[i] = o
		}
		m.Objects = objs
	}
	if b, ok := encodeFast(m); ok {
		return b, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode mutation: %w", err)
	}
	return b, nil
}

// sortJSON re-encodes JSON with sorted object keys and no whitespace; numbers keep their text.
func sortJSON(b []byte) (json.RawMessage, error) {
	if out, ok := resource.ReencodeJSON(b); ok {
		return out, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("unexpected data after the JSON value")
	}
	return json.Marshal(v)
}

// Decode decodes a mutation strictly: unknown fields, trailing data, an unknown op, fields
// that do not belong to the op and a time not spelled as FormatTime spells it are errors.
func Decode(b []byte) (Mutation, error) {
	m, ok := decodeFast(b)
	if !ok {
		var err error
		if m, err = decodeJSON(b); err != nil {
			return Mutation{}, err
		}
	}
	if err := checkShape(m); err != nil {
		return Mutation{}, fmt.Errorf("decode mutation: %w", err)
	}
	if m.Time != "" {
		if _, err := ParseTime(m.Time); err != nil {
			return Mutation{}, fmt.Errorf("decode mutation: time: %w", err)
		}
	}
	if m.Rules < 0 || m.Rules > CurrentRules {
		return Mutation{}, fmt.Errorf("decode mutation: rules: %d is not one of 0..%d that this anchor knows (was it proposed by a newer version?)", m.Rules, CurrentRules)
	}
	return m, nil
}

// decodeJSON is Decode's general path (decodeFast takes the common mutations).
func decodeJSON(b []byte) (Mutation, error) {
	var m Mutation
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Mutation{}, fmt.Errorf("decode mutation: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Mutation{}, fmt.Errorf("decode mutation: unexpected data after the mutation")
	}
	return m, nil
}

// checkShape rejects fields that the op does not use. It runs on every Apply, so it
// allocates nothing.
func checkShape(m Mutation) error {
	// Fixed order, so the message is deterministic.
	fields := [...]struct {
		name    string
		present bool
	}{
		{"objects", len(m.Objects) > 0},
		{"ifVersions", len(m.IfVersions) > 0},
		{"kind", m.Kind != ""},
		{"namespace", m.Namespace != ""},
		{"name", m.Name != ""},
		{"newName", m.NewName != ""},
		{"ifVersion", m.IfVersion != nil},
		{"lease", m.Lease != nil},
		{"leaseIds", len(m.LeaseIDs) > 0},
		{"genesis", m.Genesis != nil},
		{"governance", m.Governance != nil},
	}
	var allowed []string
	switch m.Op {
	case OpPut:
		allowed = []string{"objects", "ifVersions", "ifVersion"}
	case OpDelete:
		allowed = []string{"kind", "namespace", "name", "ifVersion"}
	case OpRename:
		allowed = []string{"kind", "namespace", "name", "newName", "ifVersion"}
	case OpGrantLease:
		allowed = []string{"lease"}
	case OpRevokeLease, OpExpireLeases:
		allowed = []string{"leaseIds"}
	case OpGenesis:
		allowed = []string{"genesis"}
	case OpSetGovernance:
		allowed = []string{"governance"}
	case OpNoop:
	case "":
		return fmt.Errorf("op: required")
	default:
		return fmt.Errorf("op: unknown op %q", m.Op)
	}
	for _, f := range fields {
		if f.present && !slices.Contains(allowed, f.name) {
			return fmt.Errorf("%s: not allowed with op %q", f.name, m.Op)
		}
	}
	return nil
}
