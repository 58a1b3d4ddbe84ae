package scope

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"sort"

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

// Snapshot encodes the whole state (objects, leases, governance, lineage, revision) as
// deterministic JSON: two States that applied the same log give identical bytes. The watch
// history is not part of it.
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
		if snap.Lineage == nil {
			snap.Lineage = []Record{}
		}
		if snap.Governance.Anchors == nil {
			snap.Governance.Anchors = []AnchorRef{}
		}
		b, err := json.Marshal(snap)
		if err != nil {
			return nil, fmt.Errorf("snapshot scope %s: %w", s.domain, err)
		}
		return b, nil
	}
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
