package scope

import (
	"errors"
	"net/netip"
	"sort"
	"sync"

	"canton.dev/canton/internal/resource"
)

// DefaultHistory is how many watch events a State keeps for Events.
const DefaultHistory = 4096

// ErrCompacted is returned by Events when the requested revision is older than the
// history a State keeps; the watcher must re-list and watch from the current revision.
var ErrCompacted = errors.New("scope: requested revision has been compacted; list again")

// Event is one change to an object, as seen by watchers.
type Event struct {
	// Revision is the Raft index of the mutation that made the change.
	Revision uint64 `json:"revision"`
	// Type is "put" or "delete".
	Type string `json:"type"`
	// Object is the object after a put, or as it was before a delete.
	Object resource.Object `json:"object"`
}

// Event types.
const (
	EventPut    = "put"
	EventDelete = "delete"
)

// objKey identifies an object within a scope.
type objKey struct{ kind, ns, name string }

func keyOf(o resource.Object) objKey { return objKey{o.Kind, o.Namespace, o.Name} }

func (k objKey) less(o objKey) bool {
	if k.ns != o.ns {
		return k.ns < o.ns
	}
	if k.name != o.name {
		return k.name < o.name
	}
	return k.kind < o.kind
}

// State is the replicated state of one scope. Create it with New.
type State struct {
	mu sync.RWMutex

	domain      string
	incarnation string // "" until genesis
	parent      string
	revision    uint64
	leaseRev    uint64 // the revision that last granted or removed a lease (or was restored)
	objects     map[objKey]resource.Object
	leases      map[uint64]Lease
	governance  Governance
	lineage     []Record

	// Derived indexes, rebuilt by Restore.
	cuts           map[string]objKey              // delegated domain -> Delegation object
	leaseWorkloads map[uint64]map[objKey]struct{} // lease ID -> Workloads bound to it
	kinds          map[string]map[objKey]struct{} // kind -> its objects, so List(kind) costs O(objects of the kind)
	vips           map[netip.Addr]objKey          // Service VIP -> its Service

	// Watch history: events with Revision > compacted, oldest first.
	history      []Event
	historyLimit int
	compacted    uint64

	subMu  sync.Mutex
	subs   map[uint64]chan struct{}
	nextID uint64

	reuse lineageReuse // the lineage as the last snapshot encoded it
}

// New returns the empty state of the scope governing domain (e.g. "demo.mesh"). It accepts
// nothing but a genesis mutation until one is applied.
func New(domain string) *State {
	return &State{
		domain:         domain,
		objects:        map[objKey]resource.Object{},
		leases:         map[uint64]Lease{},
		cuts:           map[string]objKey{},
		leaseWorkloads: map[uint64]map[objKey]struct{}{},
		kinds:          map[string]map[objKey]struct{}{},
		vips:           map[netip.Addr]objKey{},
		historyLimit:   DefaultHistory,
		subs:           map[uint64]chan struct{}{},
	}
}

// Domain returns the scope's domain.
func (s *State) Domain() string { return s.domain }

// Incarnation returns the incarnation chosen at genesis ("" before genesis).
func (s *State) Incarnation() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.incarnation
}

// Parent returns the parent scope's domain from genesis ("" for the root scope).
func (s *State) Parent() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.parent
}

// Revision returns the index of the last applied entry.
func (s *State) Revision() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.revision
}

// Get returns one object. kind may be any spelling resource.Lookup accepts; ns is absolute.
func (s *State) Get(kind, ns, name string) (resource.Object, bool) {
	k, ok := resource.Lookup(kind)
	if !ok {
		return resource.Object{}, false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	o, ok := s.objects[objKey{k.Name, ns, name}]
	return cloneObject(o), ok
}

// List returns the objects of a kind (any spelling resource.Lookup accepts; "" = every
// kind) in namespace ns ("" = all namespaces), sorted by namespace, name and kind.
//
// Listing one kind costs O(objects of that kind), not O(state). Only the lookup holds the
// state's lock (Apply waits for it); sorting and copying happen after, which is safe
// because stored objects are never modified in place (a change stores a new object).
func (s *State) List(kind, ns string) []resource.Object {
	want := ""
	if kind != "" {
		k, ok := resource.Lookup(kind)
		if !ok {
			return nil
		}
		want = k.Name
	}
	var out []resource.Object
	s.mu.RLock()
	if want == "" {
		for k, o := range s.objects {
			if ns == "" || k.ns == ns {
				out = append(out, o)
			}
		}
	} else {
		for k := range s.kinds[want] {
			if ns == "" || k.ns == ns {
				out = append(out, s.objects[k])
			}
		}
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return keyOf(out[i]).less(keyOf(out[j])) })
	for i := range out {
		out[i] = cloneObject(out[i])
	}
	return out
}

// Delegations returns the scope's Delegation objects (its zone cuts).
func (s *State) Delegations() []resource.Object { return s.List("Delegation", "") }

// Cut returns the Delegation whose delegated zone holds namespace ns (ns is its domain or
// a name below it), if one of the scope's zone cuts does. Zone cuts never nest, so there
// is at most one. It costs one lookup per label of ns.
func (s *State) Cut(ns string) (resource.Object, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !resource.IsSubdomain(ns, s.domain) {
		return resource.Object{}, false
	}
	for d := ns; d != s.domain; {
		if k, ok := s.cuts[d]; ok {
			return cloneObject(s.objects[k]), true
		}
		i := indexByte(d, '.')
		if i < 0 {
			break
		}
		d = d[i+1:]
	}
	return resource.Object{}, false
}

// Governance returns a copy of the scope's governance.
func (s *State) Governance() Governance {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return cloneGovernance(s.governance)
}

// Leases returns every lease, sorted by ID, for the leader's lessor.
func (s *State) Leases() []Lease {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Lease, 0, len(s.leases))
	for _, l := range s.leases {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// LeasesRevision is the revision of the last entry that granted or removed a lease (or of
// the last Restore): Leases has not changed since. The leader's lessor reads Leases again
// only when it moves, not after every change of the scope.
func (s *State) LeasesRevision() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.leaseRev
}

// Lease returns one lease by ID.
func (s *State) Lease(id uint64) (Lease, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	l, ok := s.leases[id]
	return l, ok
}

// Owns reports whether namespace ns is in the scope's zone: the domain itself or a name
// below it that no Delegation cuts away.
func (s *State) Owns(ns string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.zoneCheck(ns, s.cuts)
	return ok
}

// zoneCheck reports whether ns is in the zone given the cuts; if not, the reason.
func (s *State) zoneCheck(ns string, cuts map[string]objKey) (string, bool) {
	if !resource.IsSubdomain(ns, s.domain) {
		return "namespace " + ns + " is outside the zone of scope " + s.domain, false
	}
	// Walk up from ns to the scope's domain, looking for a cut on the way.
	for d := ns; d != s.domain; {
		if _, cut := cuts[d]; cut {
			return "namespace " + ns + " is in the delegated zone " + d, false
		}
		i := indexByte(d, '.')
		if i < 0 {
			break
		}
		d = d[i+1:]
	}
	return "", true
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// Lineage returns up to limit records with Index >= from (limit <= 0: all of them).
func (s *State) Lineage(from uint64, limit int) []Record {
	s.mu.RLock()
	defer s.mu.RUnlock()
	i := sort.Search(len(s.lineage), func(i int) bool { return s.lineage[i].Index >= from })
	recs := s.lineage[i:]
	if limit > 0 && len(recs) > limit {
		recs = recs[:limit]
	}
	out := make([]Record, len(recs))
	copy(out, recs) // Records are never mutated in place, so sharing Mutation bytes is safe.
	return out
}

// LineageHead returns the index and hash of the last lineage record (0 and the zero hash
// when there is none).
func (s *State) LineageHead() (uint64, string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.lineage) == 0 {
		return 0, zeroHash
	}
	r := s.lineage[len(s.lineage)-1]
	return r.Index, r.Hash
}

// Events returns the events with Revision >= fromRevision (fromRevision 0 = every kept
// event), oldest first. It returns ErrCompacted when events at fromRevision may have been
// dropped from the bounded history (or precede a Restore).
func (s *State) Events(fromRevision uint64) ([]Event, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.compacted > 0 && fromRevision <= s.compacted {
		return nil, ErrCompacted
	}
	i := sort.Search(len(s.history), func(i int) bool { return s.history[i].Revision >= fromRevision })
	out := make([]Event, len(s.history)-i)
	for j, e := range s.history[i:] {
		e.Object = cloneObject(e.Object)
		out[j] = e
	}
	return out, nil
}

// Subscribe returns a channel that receives a value after every applied entry (and after
// Restore). Notifications coalesce: a slow reader sees one pending value, never blocks
// Apply, and should call Events or Revision to learn what changed. cancel stops the
// notifications; it is idempotent. The channel is never closed.
func (s *State) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.subMu.Lock()
	id := s.nextID
	s.nextID++
	s.subs[id] = ch
	s.subMu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			s.subMu.Lock()
			delete(s.subs, id)
			s.subMu.Unlock()
		})
	}
}

func (s *State) notify() {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	for _, ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// appendEvents adds events to the history, dropping whole revisions from the front when it
// exceeds historyLimit. Dropping reslices (amortised O(1) per event): the live events move
// to a new array only when append outgrows the old one, so a full history is not copied on
// every Apply.
func (s *State) appendEvents(evs []Event) {
	s.history = append(s.history, evs...)
	if len(s.history) <= s.historyLimit {
		return
	}
	drop := len(s.history) - s.historyLimit
	last := s.history[drop-1].Revision
	for drop < len(s.history) && s.history[drop].Revision == last {
		drop++
	}
	s.compacted = last
	clear(s.history[:drop]) // the array outlives them until append moves the rest
	s.history = s.history[drop:]
}

func cloneObject(o resource.Object) resource.Object {
	if o.Labels != nil {
		o.Labels = cloneStrings(o.Labels)
	}
	if o.Annotations != nil {
		o.Annotations = cloneStrings(o.Annotations)
	}
	if o.Spec != nil {
		o.Spec = append([]byte(nil), o.Spec...)
	}
	if o.VIPs != nil {
		o.VIPs = append([]string(nil), o.VIPs...)
	}
	return o
}

func cloneStrings(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func cloneGovernance(g Governance) Governance {
	return Governance{Anchors: append([]AnchorRef(nil), g.Anchors...)}
}
