package scope

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"

	"canton.dev/canton/internal/resource"
)

// Error codes of rejected mutations.
const (
	CodeConflict  = "conflict"    // IfVersion did not match, or the change would break an invariant
	CodeInvalid   = "invalid"     // malformed mutation or object
	CodeNotFound  = "not-found"   // the object or lease does not exist
	CodeOutOfZone = "out-of-zone" // the namespace is not governed by this scope
	CodeExists    = "exists"      // IfVersion 0 but the object exists; second genesis
	CodeStale     = "stale"       // the index was already applied (replay); nothing changed
)

// Error is why a mutation was rejected. A rejected mutation changes nothing but the
// revision and is not recorded in the lineage.
type Error struct {
	Code string
	Msg  string
}

func (e *Error) Error() string { return e.Code + ": " + e.Msg }

func reject(code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Result is what Apply returns (as a value of type Result).
type Result struct {
	// Revision is the index at which the entry was applied.
	Revision uint64
	// Objects are the stored objects of a put (UID, Version and Created set), in the order of
	// the mutation's objects.
	Objects []resource.Object
	// Lease is the lease granted by a grant-lease.
	Lease *Lease
	// Err is a *Error when the mutation was rejected, nil otherwise.
	Err error
}

// change is one object change prepared by a handler and committed by apply.
type change struct {
	del bool
	obj resource.Object // new object (put) or the object being deleted
}

// outcome is what a handler prepared: committed only if the handler returned no error.
type outcome struct {
	changes   []change
	leasesAdd []Lease
	leasesDel []uint64
	genesis   *Genesis
	govern    *Governance
	recorded  Mutation // the mutation as accepted, for the lineage
	result    Result
	noRecord  bool
}

// Apply applies the entry at index. data is Encode(Mutation); empty data (a Raft no-op
// entry) only advances the revision. It always returns a Result. An index at or below the
// current revision is a replay: nothing changes and the Result has Code "stale".
func (s *State) Apply(index uint64, data []byte) any {
	s.mu.Lock()
	res := s.apply(index, data)
	s.mu.Unlock()
	s.notify()
	return res
}

func (s *State) apply(index uint64, data []byte) Result {
	if index <= s.revision {
		return Result{Revision: index, Err: reject(CodeStale, "index %d already applied (revision %d)", index, s.revision)}
	}
	s.revision = index
	if len(bytes.TrimSpace(data)) == 0 {
		return Result{Revision: index}
	}
	m, err := Decode(data)
	if err != nil {
		return Result{Revision: index, Err: reject(CodeInvalid, "%v", err)}
	}
	out, rerr := s.prepare(index, m)
	if rerr != nil {
		return Result{Revision: index, Err: rerr}
	}
	var canon []byte
	if !out.noRecord {
		if canon, err = Encode(out.recorded); err != nil {
			return Result{Revision: index, Err: reject(CodeInvalid, "%v", err)}
		}
	}
	s.commit(index, out, canon)
	out.result.Revision = index
	return out.result
}

func (s *State) prepare(index uint64, m Mutation) (*outcome, *Error) {
	if m.Proposer == "" {
		return nil, reject(CodeInvalid, "proposer: required")
	}
	if len(m.Proposer) > MaxProposerLen {
		return nil, reject(CodeInvalid, "proposer: longer than %d bytes", MaxProposerLen)
	}
	if m.Op == OpNoop {
		return &outcome{noRecord: true}, nil
	}
	if m.Op == OpGenesis {
		return s.prepareGenesis(m)
	}
	if s.incarnation == "" {
		return nil, reject(CodeInvalid, "scope %s has no genesis yet; only a genesis mutation is accepted", s.domain)
	}
	switch m.Op {
	case OpPut:
		return s.preparePut(index, m)
	case OpDelete:
		return s.prepareDelete(m)
	case OpRename:
		return s.prepareRename(index, m)
	case OpGrantLease:
		return s.prepareGrantLease(index, m)
	case OpRevokeLease, OpExpireLeases:
		return s.prepareLeaseRemoval(m)
	case OpSetGovernance:
		return s.prepareGovernance(m)
	}
	return nil, reject(CodeInvalid, "op: unknown op %q", m.Op) // unreachable: Decode checks ops
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func checkAnchorIDs(path string, ids []string) *Error {
	if len(ids) == 0 {
		return reject(CodeInvalid, "%s: at least one anchor is required", path)
	}
	seen := map[string]bool{}
	for i, id := range ids {
		if !validAnchorID(id) {
			return reject(CodeInvalid, "%s[%d]: %q is not a valid anchor ID (a DNS-1123 subdomain)", path, i, id)
		}
		if seen[id] {
			return reject(CodeInvalid, "%s[%d]: duplicate anchor %q", path, i, id)
		}
		seen[id] = true
	}
	return nil
}

// validAnchorID accepts what resource accepts as an object name (anchors are named objects).
func validAnchorID(id string) bool { return resource.IsName(id) }

func (s *State) prepareGenesis(m Mutation) (*outcome, *Error) {
	if s.incarnation != "" {
		return nil, reject(CodeExists, "scope %s already has a genesis (incarnation %s)", s.domain, s.incarnation)
	}
	g := m.Genesis
	if g == nil {
		return nil, reject(CodeInvalid, "genesis: required")
	}
	if g.Domain != s.domain {
		return nil, reject(CodeInvalid, "genesis.domain: %q is not this scope's domain %q", g.Domain, s.domain)
	}
	if n := len(g.Incarnation); n < 8 || n > 64 || !isLowerHex(g.Incarnation) {
		return nil, reject(CodeInvalid, "genesis.incarnation: %q must be 8..64 lower-case hex characters", g.Incarnation)
	}
	if err := checkAnchorIDs("genesis.anchors", g.Anchors); err != nil {
		return nil, err
	}
	if g.Parent != "" && (g.Parent == s.domain || !resource.IsSubdomain(s.domain, g.Parent)) {
		return nil, reject(CodeInvalid, "genesis.parent: %s must be a parent domain of %s", g.Parent, s.domain)
	}
	gc := *g
	gc.Anchors = append([]string(nil), g.Anchors...)
	return &outcome{genesis: &gc, recorded: m}, nil
}

func (s *State) prepareGovernance(m Mutation) (*outcome, *Error) {
	g := m.Governance
	if g == nil {
		return nil, reject(CodeInvalid, "governance: required")
	}
	ids := make([]string, len(g.Anchors))
	voters := 0
	nodes := map[uint64]string{}
	for i, a := range g.Anchors {
		ids[i] = a.ID
		if a.Voter {
			voters++
		}
		if a.NodeID != 0 {
			if other, dup := nodes[a.NodeID]; dup {
				return nil, reject(CodeInvalid, "governance.anchors[%d]: node ID %d is also used by %q", i, a.NodeID, other)
			}
			nodes[a.NodeID] = a.ID
		}
	}
	if err := checkAnchorIDs("governance.anchors", ids); err != nil {
		return nil, err
	}
	if voters == 0 {
		return nil, reject(CodeInvalid, "governance.anchors: at least one voter is required")
	}
	gc := cloneGovernance(*g)
	sort.Slice(gc.Anchors, func(i, j int) bool { return gc.Anchors[i].ID < gc.Anchors[j].ID })
	rec := m
	rec.Governance = &gc
	return &outcome{govern: &gc, recorded: rec}, nil
}

func (s *State) preparePut(index uint64, m Mutation) (*outcome, *Error) {
	n := len(m.Objects)
	if n == 0 {
		return nil, reject(CodeInvalid, "objects: at least one object is required")
	}
	if n > MaxObjectsPerPut {
		return nil, reject(CodeInvalid, "objects: %d objects, more than the limit of %d", n, MaxObjectsPerPut)
	}
	expect := m.IfVersions
	switch {
	case m.IfVersion != nil && len(m.IfVersions) > 0:
		return nil, reject(CodeInvalid, "ifVersion and ifVersions are mutually exclusive")
	case m.IfVersion != nil && n != 1:
		return nil, reject(CodeInvalid, "ifVersion: only allowed with exactly one object; use ifVersions")
	case m.IfVersion != nil:
		expect = []*uint64{m.IfVersion}
	case len(expect) != 0 && len(expect) != n:
		return nil, reject(CodeInvalid, "ifVersions: %d entries for %d objects", len(expect), n)
	}
	objs := make([]resource.Object, n)
	seen := map[objKey]int{}
	for i, o := range m.Objects {
		norm, err := resource.Normalize(o)
		if err != nil {
			return nil, reject(CodeInvalid, "objects[%d] (%s %s/%s): %v", i, o.Kind, o.Namespace, o.Name, err)
		}
		k := keyOf(norm)
		if j, dup := seen[k]; dup {
			return nil, reject(CodeInvalid, "objects[%d] (%s): same object as objects[%d]", i, norm.Ref(), j)
		}
		seen[k] = i
		objs[i] = norm
	}
	// The zone cuts after this put: existing ones, minus Delegations being replaced, plus new.
	cuts := make(map[string]objKey, len(s.cuts))
	for d, k := range s.cuts {
		if _, replaced := seen[k]; !replaced {
			cuts[d] = k
		}
	}
	for i, o := range objs {
		if o.Kind != "Delegation" {
			continue
		}
		d, err := delegationDomain(o)
		if err != nil {
			return nil, reject(CodeInvalid, "objects[%d] (%s): %v", i, o.Ref(), err)
		}
		if other, dup := cuts[d]; dup {
			return nil, reject(CodeConflict, "objects[%d] (%s): domain %s is already delegated by Delegation %s/%s", i, o.Ref(), d, other.ns, other.name)
		}
		if why, ok := s.zoneCheck(d, cuts); !ok || d == s.domain {
			if d == s.domain {
				why = "a scope cannot delegate its own domain"
			}
			return nil, reject(CodeOutOfZone, "objects[%d] (%s): spec.domain: %s", i, o.Ref(), why)
		}
		for _, other := range sortedCuts(cuts) {
			if resource.IsSubdomain(other, d) {
				return nil, reject(CodeConflict, "objects[%d] (%s): domain %s contains the delegated zone %s", i, o.Ref(), d, other)
			}
		}
		cuts[d] = keyOf(o)
	}
	for i, o := range objs {
		if why, ok := s.zoneCheck(o.Namespace, cuts); !ok {
			return nil, reject(CodeOutOfZone, "objects[%d] (%s): %s", i, o.Ref(), why)
		}
	}
	if len(cuts) != len(s.cuts) || !sameCuts(cuts, s.cuts) {
		// New cuts must not orphan existing objects.
		if k, d, found := s.firstObjectCut(cuts, seen); found {
			return nil, reject(CodeConflict, "delegating %s would cut away %s %s/%s; delete it first", d, k.kind, k.ns, k.name)
		}
	}
	out := &outcome{result: Result{Objects: make([]resource.Object, n)}}
	for i, o := range objs {
		k := keyOf(o)
		old, exists := s.objects[k]
		if exp := expect; len(exp) > 0 && exp[i] != nil {
			want := *exp[i]
			switch {
			case want == 0 && exists:
				return nil, reject(CodeExists, "objects[%d] (%s): already exists at version %d", i, o.Ref(), old.Version)
			case want != 0 && !exists:
				return nil, reject(CodeConflict, "objects[%d] (%s): expected version %d, but it does not exist", i, o.Ref(), want)
			case want != 0 && old.Version != want:
				return nil, reject(CodeConflict, "objects[%d] (%s): expected version %d, found %d", i, o.Ref(), want, old.Version)
			}
		}
		if o.Kind == "Workload" {
			lease, err := workloadLease(o)
			if err != nil {
				return nil, reject(CodeInvalid, "objects[%d] (%s): %v", i, o.Ref(), err)
			}
			if _, ok := s.leases[lease]; !ok {
				return nil, reject(CodeNotFound, "objects[%d] (%s): spec.lease: lease %d does not exist", i, o.Ref(), lease)
			}
		}
		needVIPs := m.Rules >= RulesVIPs && o.Kind == "Service" && (!exists || len(old.VIPs) == 0)
		if exists && sameContent(old, o) && !needVIPs {
			out.result.Objects[i] = cloneObject(old)
			continue
		}
		if exists {
			o.UID, o.Created, o.VIPs = old.UID, old.Created, old.VIPs
		} else {
			o.UID, o.Created = s.uid(index, i), index
		}
		if needVIPs {
			o.VIPs = s.allocateVIPs(o, objs[:i])
		}
		o.Version = index
		out.changes = append(out.changes, change{obj: o})
		out.result.Objects[i] = cloneObject(o)
	}
	rec := m
	rec.Objects = objs
	out.recorded = rec
	return out, nil
}

// allocateVIPs gives the Service o its VIPs: free in the scope and among the Services earlier
// in the same put (before, which carry theirs already).
func (s *State) allocateVIPs(o resource.Object, before []resource.Object) []string {
	k := keyOf(o)
	taken := func(a netip.Addr) bool {
		if owner, ok := s.vips[a]; ok && owner != k {
			return true
		}
		for _, b := range before {
			if slices.Contains(b.VIPs, a.String()) {
				return true
			}
		}
		return false
	}
	return []string{resource.AllocateVIP(o.Namespace, o.Name, taken).String()}
}

// uid derives a UID: <incarnation>-<index> for the first object of a mutation and
// <incarnation>-<index>.<position> for the others. Indices only grow, so UIDs are never
// reused, not even after deleting and re-creating an object.
func (s *State) uid(index uint64, position int) string {
	u := s.incarnation + "-" + strconv.FormatUint(index, 10)
	if position > 0 {
		u += "." + strconv.Itoa(position)
	}
	return u
}

func sameCuts(a, b map[string]objKey) bool {
	for d, k := range a {
		if b[d] != k {
			return false
		}
	}
	return true
}

// firstObjectCut finds, in sorted order, the first existing object (not being replaced by
// the put) whose namespace falls inside one of cuts, and that cut's domain.
func (s *State) firstObjectCut(cuts map[string]objKey, replaced map[objKey]int) (objKey, string, bool) {
	var hits []objKey
	for k := range s.objects {
		if _, r := replaced[k]; r {
			continue
		}
		if _, ok := s.zoneCheck(k.ns, cuts); !ok {
			hits = append(hits, k)
		}
	}
	if len(hits) == 0 {
		return objKey{}, "", false
	}
	sort.Slice(hits, func(i, j int) bool { return hits[i].less(hits[j]) })
	for _, d := range sortedCuts(cuts) {
		if resource.IsSubdomain(hits[0].ns, d) {
			return hits[0], d, true
		}
	}
	return hits[0], "?", true // unreachable: zoneCheck fails only inside a cut
}

func sortedCuts(cuts map[string]objKey) []string {
	out := make([]string, 0, len(cuts))
	for d := range cuts {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

func sameContent(a, b resource.Object) bool {
	return bytes.Equal(a.Spec, b.Spec) && sameStrings(a.Labels, b.Labels) && sameStrings(a.Annotations, b.Annotations)
}

func sameStrings(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func delegationDomain(o resource.Object) (string, error) {
	t, err := resource.Typed(o)
	if err != nil {
		return "", err
	}
	return t.(*resource.DelegationSpec).Domain, nil
}

func workloadLease(o resource.Object) (uint64, error) {
	t, err := resource.Typed(o)
	if err != nil {
		return 0, err
	}
	return t.(*resource.WorkloadSpec).Lease, nil
}

func (s *State) prepareDelete(m Mutation) (*outcome, *Error) {
	k, ok := resource.Lookup(m.Kind)
	if !ok {
		return nil, reject(CodeInvalid, "kind: %q is not a supported kind", m.Kind)
	}
	if m.Namespace == "" || m.Name == "" {
		return nil, reject(CodeInvalid, "namespace and name: required")
	}
	if why, ok := s.zoneCheck(m.Namespace, s.cuts); !ok {
		return nil, reject(CodeOutOfZone, "%s", why)
	}
	key := objKey{k.Name, m.Namespace, m.Name}
	old, exists := s.objects[key]
	if !exists {
		return nil, reject(CodeNotFound, "%s %s/%s does not exist", k.Name, m.Namespace, m.Name)
	}
	if m.IfVersion != nil {
		if *m.IfVersion == 0 {
			return nil, reject(CodeInvalid, "ifVersion: 0 (must not exist) makes no sense for a delete")
		}
		if old.Version != *m.IfVersion {
			return nil, reject(CodeConflict, "%s %s/%s: expected version %d, found %d", k.Name, m.Namespace, m.Name, *m.IfVersion, old.Version)
		}
	}
	rec := m
	rec.Kind = k.Name
	return &outcome{changes: []change{{del: true, obj: old}}, recorded: rec}, nil
}

func (s *State) prepareGrantLease(index uint64, m Mutation) (*outcome, *Error) {
	l := m.Lease
	if l == nil {
		return nil, reject(CodeInvalid, "lease: required")
	}
	if l.ID != 0 {
		return nil, reject(CodeInvalid, "lease.id: must be 0; the scope assigns the ID")
	}
	if l.TTLSeconds < 1 || l.TTLSeconds > MaxLeaseTTLSeconds {
		return nil, reject(CodeInvalid, "lease.ttlSeconds: %d must be 1..%d", l.TTLSeconds, MaxLeaseTTLSeconds)
	}
	granted := Lease{ID: index, TTLSeconds: l.TTLSeconds}
	return &outcome{leasesAdd: []Lease{granted}, recorded: m, result: Result{Lease: &granted}}, nil
}

func (s *State) prepareLeaseRemoval(m Mutation) (*outcome, *Error) {
	if len(m.LeaseIDs) == 0 {
		return nil, reject(CodeInvalid, "leaseIds: at least one lease ID is required")
	}
	if len(m.LeaseIDs) > MaxLeaseIDs {
		return nil, reject(CodeInvalid, "leaseIds: %d IDs, more than the limit of %d", len(m.LeaseIDs), MaxLeaseIDs)
	}
	seen := map[uint64]bool{}
	var ids []uint64
	for i, id := range m.LeaseIDs {
		if seen[id] {
			return nil, reject(CodeInvalid, "leaseIds[%d]: duplicate lease %d", i, id)
		}
		seen[id] = true
		if _, ok := s.leases[id]; !ok {
			if m.Op == OpRevokeLease {
				return nil, reject(CodeNotFound, "leaseIds[%d]: lease %d does not exist", i, id)
			}
			continue // expiry races with revocation; an expired lease that is gone is fine
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil, reject(CodeNotFound, "none of the leases %v exists", m.LeaseIDs)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var victims []objKey
	for _, id := range ids {
		for k := range s.leaseWorkloads[id] {
			victims = append(victims, k)
		}
	}
	sort.Slice(victims, func(i, j int) bool { return victims[i].less(victims[j]) })
	out := &outcome{leasesDel: ids}
	for _, k := range victims {
		out.changes = append(out.changes, change{del: true, obj: s.objects[k]})
	}
	rec := m
	rec.LeaseIDs = ids
	out.recorded = rec
	return out, nil
}

// commit applies a prepared outcome: objects, indexes, leases, lineage and events.
func (s *State) commit(index uint64, out *outcome, canon []byte) {
	if g := out.genesis; g != nil {
		s.incarnation, s.parent = g.Incarnation, g.Parent
		anchors := append([]string(nil), g.Anchors...)
		sort.Strings(anchors)
		s.governance = Governance{Anchors: make([]AnchorRef, len(anchors))}
		for i, a := range anchors {
			s.governance.Anchors[i] = AnchorRef{ID: a, Voter: true}
		}
	}
	if out.govern != nil {
		s.governance = cloneGovernance(*out.govern)
	}
	for _, l := range out.leasesAdd {
		s.leases[l.ID] = l
	}
	if len(out.leasesAdd) > 0 || len(out.leasesDel) > 0 {
		s.leaseRev = index
	}
	var events []Event
	for _, c := range out.changes {
		k := keyOf(c.obj)
		s.unindex(k)
		// Stored objects are never modified in place, so the history shares them
		// (Events hands out copies).
		if c.del {
			delete(s.objects, k)
			events = append(events, Event{Revision: index, Type: EventDelete, Object: c.obj})
			continue
		}
		s.objects[k] = c.obj
		s.index(c.obj)
		events = append(events, Event{Revision: index, Type: EventPut, Object: c.obj})
	}
	for _, id := range out.leasesDel {
		delete(s.leases, id)
		delete(s.leaseWorkloads, id)
	}
	if len(events) > 0 {
		s.appendEvents(events)
	}
	if out.noRecord {
		return
	}
	prev := zeroHash
	if n := len(s.lineage); n > 0 {
		prev = s.lineage[n-1].Hash
	}
	p, _ := parseHash(prev)
	sum := chainHash(p, canon, out.recorded.Proposer, index)
	s.lineage = append(s.lineage, Record{Index: index, Prev: prev, Hash: hex.EncodeToString(sum[:]), Mutation: canon, Proposer: out.recorded.Proposer, Time: out.recorded.Time})
}

// index adds o to the derived indexes; unindex removes the object at k from them.
func (s *State) index(o resource.Object) {
	k := keyOf(o)
	if s.kinds[k.kind] == nil {
		s.kinds[k.kind] = map[objKey]struct{}{}
	}
	s.kinds[k.kind][k] = struct{}{}
	switch o.Kind {
	case "Service":
		for _, v := range o.VIPs {
			if a, err := netip.ParseAddr(v); err == nil {
				s.vips[a] = k
			}
		}
	case "Delegation":
		if d, err := delegationDomain(o); err == nil {
			s.cuts[d] = keyOf(o)
		}
	case "Workload":
		if l, err := workloadLease(o); err == nil {
			if s.leaseWorkloads[l] == nil {
				s.leaseWorkloads[l] = map[objKey]struct{}{}
			}
			s.leaseWorkloads[l][keyOf(o)] = struct{}{}
		}
	}
}

func (s *State) unindex(k objKey) {
	old, ok := s.objects[k]
	if !ok {
		return
	}
	delete(s.kinds[k.kind], k)
	if len(s.kinds[k.kind]) == 0 {
		delete(s.kinds, k.kind)
	}
	switch k.kind {
	case "Service":
		for _, v := range old.VIPs {
			if a, err := netip.ParseAddr(v); err == nil && s.vips[a] == k {
				delete(s.vips, a)
			}
		}
	case "Delegation":
		if d, err := delegationDomain(old); err == nil && s.cuts[d] == k {
			delete(s.cuts, d)
		}
	case "Workload":
		if l, err := workloadLease(old); err == nil {
			delete(s.leaseWorkloads[l], k)
			if len(s.leaseWorkloads[l]) == 0 {
				delete(s.leaseWorkloads, l)
			}
		}
	}
}
