package scope

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Record is one entry of a scope's lineage: an accepted mutation and its chained hash.
type Record struct {
	// Index is the Raft index at which the mutation was applied.
	Index uint64 `json:"index"`
	// Prev is the hash of the previous record (64 hex characters; all zeros for the first).
	Prev string `json:"prev"`
	// Hash is this record's hash (see the package documentation for the byte layout).
	Hash string `json:"hash"`
	// Mutation holds the canonical bytes of the accepted mutation.
	Mutation json.RawMessage `json:"mutation"`
	// Proposer repeats Mutation's proposer.
	Proposer string `json:"proposer"`
	// Time repeats Mutation's time: when the proposing anchor says it proposed it (see
	// TimeLayout). Empty when the mutation has none, e.g. for records committed before
	// anchors stamped their proposals. The hash covers it as part of Mutation, so it cannot
	// be changed without breaking the chain, but it is a claim by the anchor that proposed
	// the mutation (for a user's mutation not the Proposer, and not named in the record),
	// not a time the scope's anchors agreed on.
	Time string `json:"time,omitempty"`
}

// At returns r.Time parsed; ok is false when the record has no (valid) time.
func (r Record) At() (t time.Time, ok bool) {
	if r.Time == "" {
		return time.Time{}, false
	}
	t, err := ParseTime(r.Time)
	return t, err == nil
}

// zeroHash is hash_0, as hex.
var zeroHash = hex.EncodeToString(make([]byte, sha256.Size))

// chainHash computes hash_n from its parts (see the package documentation).
func chainHash(prev [sha256.Size]byte, mutation []byte, proposer string, index uint64) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	h.Write(prev[:])
	binary.BigEndian.PutUint64(n[:], uint64(len(mutation)))
	h.Write(n[:])
	h.Write(mutation)
	binary.BigEndian.PutUint64(n[:], uint64(len(proposer)))
	h.Write(n[:])
	h.Write([]byte(proposer))
	binary.BigEndian.PutUint64(n[:], index)
	h.Write(n[:])
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

func parseHash(s string) ([sha256.Size]byte, bool) {
	var out [sha256.Size]byte
	if len(s) != 2*sha256.Size {
		return out, false
	}
	var in [2 * sha256.Size]byte // (a conversion of s would allocate)
	copy(in[:], s)
	if _, err := hex.Decode(out[:], in[:]); err != nil {
		return out, false
	}
	for _, c := range in {
		if 'A' <= c && c <= 'F' { // reject upper-case hex: one spelling per hash
			return out, false
		}
	}
	return out, true
}

// shortHash abbreviates a hash for messages.
func shortHash(s string) string {
	if len(s) > 12 {
		return s[:12] + ".."
	}
	return s
}

// VerifyLineage checks a run of consecutive lineage records: each record's hash is
// recomputed from its fields, each record's Prev equals the previous record's Hash, indices
// increase, and each mutation decodes with the record's proposer and time. If records[0] is the
// first record of a scope, its Prev must be all zeros; otherwise the run is checked from
// its first record's Prev on. The error names the first bad record by index.
func VerifyLineage(records []Record) error {
	for i, r := range records {
		fail := func(format string, args ...any) error {
			return fmt.Errorf("lineage record at index %d: %s", r.Index, fmt.Sprintf(format, args...))
		}
		prev, ok := parseHash(r.Prev)
		if !ok {
			return fail("malformed prev hash %q", shortHash(r.Prev))
		}
		if i > 0 {
			p := records[i-1]
			if r.Index <= p.Index {
				return fail("index does not increase (previous record is at index %d)", p.Index)
			}
			if r.Prev != p.Hash {
				return fail("prev %s does not match the hash %s of the record at index %d", shortHash(r.Prev), shortHash(p.Hash), p.Index)
			}
		}
		m, err := Decode(r.Mutation)
		if err != nil {
			return fail("%v", err)
		}
		if m.Proposer != r.Proposer {
			return fail("proposer %q does not match the mutation's proposer %q", r.Proposer, m.Proposer)
		}
		if m.Time != r.Time {
			return fail("time %q does not match the mutation's time %q", r.Time, m.Time)
		}
		sum := chainHash(prev, r.Mutation, r.Proposer, r.Index)
		if got := hex.EncodeToString(sum[:]); got != r.Hash {
			return fail("hash mismatch: stored %s recomputed %s", shortHash(r.Hash), shortHash(got))
		}
	}
	return nil
}
