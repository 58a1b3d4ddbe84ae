package scope

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"sync"

	"canton.dev/canton/internal/resource"
)

// snapshotFormat is the version of the snapshot encoding.
const snapshotFormat = 1

// snapshot is the encoded form of a State. Slices are sorted so the bytes are deterministic.
type snapshot struct {
	Format      int               `json:"format"`
	Domain      string            `json:"domain"`
	Incarnation string            `json:"incarnation"`
	Parent      string            `json:"parent"`
	Revision    uint64            `json:"revision"`
	Objects     []resource.Object `json:"objects"`    // sorted by namespace, name, kind
	Leases      []Lease           `json:"leases"`     // sorted by ID
	Governance  Governance        `json:"governance"` // anchors sorted by ID
	Lineage     []Record          `json:"lineage"`    // in index order
}

// snapshotHead is snapshot without its last field, the lineage: lineageReuse.encode writes
// the lineage itself. The fields and their order must stay those of snapshot.
type snapshotHead struct {
	Format      int               `json:"format"`
	Domain      string            `json:"domain"`
	Incarnation string            `json:"incarnation"`
	Parent      string            `json:"parent"`
	Revision    uint64            `json:"revision"`
	Objects     []resource.Object `json:"objects"`
	Leases      []Lease           `json:"leases"`
	Governance  Governance        `json:"governance"`
}

// Snapshot encodes the whole state (objects, leases, governance, lineage, revision) as
// deterministic JSON: two States that applied the same log give identical bytes. The watch
// history is not part of it. The bytes are those of encoding/json's Marshal of snapshot.
// Callers should not modify them: the next snapshot reuses them while they are unchanged
// (see lineageReuse).
func (s *State) Snapshot() ([]byte, error) { return s.CaptureSnapshot()() }

// CaptureSnapshot captures the state as of now and returns a function that encodes it as
// Snapshot does; the function may run on any goroutine, while Apply goes on (the replica
// host encodes snapshots off the apply goroutine this way). Capturing copies references
// only, under the state's lock: stored objects and lineage records are never modified in
// place, so the copy stays as it was.
func (s *State) CaptureSnapshot() func() ([]byte, error) {
	s.mu.RLock()
	snap := snapshot{
		Format:      snapshotFormat,
		Domain:      s.domain,
		Incarnation: s.incarnation,
		Parent:      s.parent,
		Revision:    s.revision,
		Objects:     make([]resource.Object, 0, len(s.objects)),
		Leases:      make([]Lease, 0, len(s.leases)),
		Governance:  cloneGovernance(s.governance),
		Lineage:     s.lineage[:len(s.lineage):len(s.lineage)],
	}
	for _, o := range s.objects {
		snap.Objects = append(snap.Objects, o)
	}
	for _, l := range s.leases {
		snap.Leases = append(snap.Leases, l)
	}
	s.mu.RUnlock()
	return func() ([]byte, error) {
		sort.Slice(snap.Objects, func(i, j int) bool { return keyOf(snap.Objects[i]).less(keyOf(snap.Objects[j])) })
		sort.Slice(snap.Leases, func(i, j int) bool { return snap.Leases[i].ID < snap.Leases[j].ID })
		if snap.Governance.Anchors == nil {
			snap.Governance.Anchors = []AnchorRef{}
		}
		b, err := s.reuse.encode(snap)
		if err != nil {
			return nil, fmt.Errorf("snapshot scope %s: %w", s.domain, err)
		}
		return b, nil
	}
}

// marshalSnapshot is the reference encoding of a snapshot: lineageReuse.encode gives the
// same bytes (tests compare them).
func marshalSnapshot(snap snapshot) ([]byte, error) {
	if snap.Lineage == nil {
		snap.Lineage = []Record{}
	}
	return json.Marshal(snap)
}

// lineageReuse keeps where the last snapshot encoded the lineage, so that the next one
// copies those bytes instead of encoding every record again: a snapshot then costs the
// records applied since the last one, not the scope's whole history. The lineage only
// grows (records are never modified; Restore replaces it whole), and a record's hash
// covers every field of it and of the records before it, so the records up to one with
// the same index and hash encode to the same bytes.
//
// It refers to the last snapshot returned rather than keeping a copy (the replica host
// keeps that snapshot anyway); a checksum makes sure the bytes are as they were returned.
type lineageReuse struct {
	mu     sync.Mutex
	data   []byte // the last snapshot encoded
	lo, hi int    // data[lo:hi] are its first n records, comma-separated
	n      int
	index  uint64 // index and hash of the n-th record
	hash   string
	sum    uint32 // crc32c of data[lo:hi]
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encode returns the bytes encoding/json's Marshal gives for snap (marshalSnapshot), reusing
// the lineage of the previous snapshot where it can.
func (r *lineageReuse) encode(snap snapshot) ([]byte, error) {
	head, err := json.Marshal(snapshotHead{
		Format: snap.Format, Domain: snap.Domain, Incarnation: snap.Incarnation, Parent: snap.Parent,
		Revision: snap.Revision, Objects: snap.Objects, Leases: snap.Leases, Governance: snap.Governance,
	})
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	lin := snap.Lineage
	var prev []byte
	if n := r.n; n > 0 && n <= len(lin) && lin[n-1].Index == r.index && lin[n-1].Hash == r.hash &&
		crc32.Checksum(r.data[r.lo:r.hi], castagnoli) == r.sum {
		prev = r.data[r.lo:r.hi]
	} else {
		r.n = 0
	}
	size := len(head) + len(`,"lineage":[]`) + len(prev)
	for _, rec := range lin[r.n:] {
		size += recordSizeHint(rec)
	}
	b := make([]byte, 0, size)
	b = append(b, head[:len(head)-1]...) // without the closing brace
	b = append(b, `,"lineage":[`...)
	lo := len(b)
	b = append(b, prev...)
	for i := r.n; i < len(lin); i++ {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = appendRecord(b, lin[i]); err != nil {
			r.n = 0
			return nil, err
		}
	}
	hi := len(b)
	b = append(b, "]}"...)
	if len(lin) > 0 {
		last := lin[len(lin)-1]
		r.data, r.lo, r.hi, r.n, r.index, r.hash = b, lo, hi, len(lin), last.Index, last.Hash
		r.sum = crc32.Checksum(b[lo:hi], castagnoli)
	} else {
		r.data, r.n = nil, 0
	}
	return b, nil
}

func recordSizeHint(r Record) int {
	return 96 + len(r.Prev) + len(r.Hash) + len(r.Mutation) + len(r.Proposer) + len(r.Time)
}

// appendRecord appends r as encoding/json's Marshal encodes it. Records whose strings and
// mutation it can copy as they are (printable ASCII needing no escape, a mutation without
// whitespace or characters Marshal escapes) are written directly; the others go through
// Marshal. The mutation is valid JSON by construction — Apply records Encode's output, and
// Restore's decoder checked the JSON of every record it keeps — so it is not checked again,
// while Marshal would (it compacts a RawMessage, checking it).
func appendRecord(b []byte, r Record) ([]byte, error) {
	if !plainString(r.Prev) || !plainString(r.Hash) || !plainString(r.Proposer) || !plainString(r.Time) || !compactJSON(r.Mutation) {
		out, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		return append(b, out...), nil
	}
	b = append(b, `{"index":`...)
	b = strconv.AppendUint(b, r.Index, 10)
	b = append(b, `,"prev":"`...)
	b = append(b, r.Prev...)
	b = append(b, `","hash":"`...)
	b = append(b, r.Hash...)
	b = append(b, `","mutation":`...)
	b = append(b, r.Mutation...)
	b = append(b, `,"proposer":"`...)
	b = append(b, r.Proposer...)
	if r.Time != "" {
		b = append(b, `","time":"`...)
		b = append(b, r.Time...)
	}
	return append(b, `"}`...), nil
}

// plainString reports whether encoding/json writes s between quotes as it is: printable
// ASCII, no quote, backslash or HTML character (Marshal escapes <, > and &).
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// compactJSON reports whether encoding/json's Marshal of the RawMessage raw, which must be
// valid JSON, gives raw itself: it is not empty, has no whitespace outside strings, and
// only printable ASCII and no HTML character (which Marshal escapes) inside them.
func compactJSON(raw []byte) bool {
	if len(raw) == 0 {
		return false
	}
	in, esc := false, false
	for _, c := range raw {
		switch {
		case c < 0x20 || c >= 0x7f:
			return false
		case in && esc:
			esc = false
		case in && c == '\\':
			esc = true
		case in && c == '"':
			in = false
		case in && (c == '<' || c == '>' || c == '&'):
			return false
		case !in && c == '"':
			in = true
		case !in && c == ' ':
			return false
		}
	}
	return !in
}

// Restore replaces the whole state with a snapshot taken by Snapshot. The snapshot must be
// of this scope's domain and its lineage must verify. The watch history restarts empty at
// the snapshot's revision (Events for older revisions return ErrCompacted). On error the
// state is unchanged.
func (s *State) Restore(data []byte) error {
	var snap snapshot
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&snap); err != nil {
		return fmt.Errorf("restore scope %s: decode snapshot: %w", s.domain, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("restore scope %s: unexpected data after the snapshot", s.domain)
	}
	if snap.Format != snapshotFormat {
		return fmt.Errorf("restore scope %s: snapshot format %d, want %d", s.domain, snap.Format, snapshotFormat)
	}
	if snap.Domain != s.domain {
		return fmt.Errorf("restore scope %s: snapshot is of scope %q", s.domain, snap.Domain)
	}
	if err := VerifyLineage(snap.Lineage); err != nil {
		return fmt.Errorf("restore scope %s: %w", s.domain, err)
	}
	if n := len(snap.Lineage); n > 0 {
		if snap.Lineage[0].Prev != zeroHash {
			return fmt.Errorf("restore scope %s: lineage does not start at the beginning (record at index %d has a non-zero prev)", s.domain, snap.Lineage[0].Index)
		}
		if snap.Lineage[n-1].Index > snap.Revision {
			return fmt.Errorf("restore scope %s: lineage record at index %d is beyond the snapshot revision %d", s.domain, snap.Lineage[n-1].Index, snap.Revision)
		}
	}
	objects := make(map[objKey]resource.Object, len(snap.Objects))
	for i, o := range snap.Objects {
		k := keyOf(o)
		if _, dup := objects[k]; dup {
			return fmt.Errorf("restore scope %s: objects[%d] (%s) appears twice", s.domain, i, o.Ref())
		}
		objects[k] = o
	}
	leases := make(map[uint64]Lease, len(snap.Leases))
	for _, l := range snap.Leases {
		leases[l.ID] = l
	}

	s.mu.Lock()
	s.incarnation, s.parent, s.revision, s.leaseRev = snap.Incarnation, snap.Parent, snap.Revision, snap.Revision
	s.objects, s.leases = objects, leases
	s.governance = cloneGovernance(snap.Governance)
	s.lineage = snap.Lineage
	s.cuts = map[string]objKey{}
	s.leaseWorkloads = map[uint64]map[objKey]struct{}{}
	s.kinds = map[string]map[objKey]struct{}{}
	s.vips = map[netip.Addr]objKey{}
	for _, o := range objects {
		s.index(o)
	}
	s.history, s.compacted = nil, snap.Revision
	s.mu.Unlock()
	s.notify()
	return nil
}
