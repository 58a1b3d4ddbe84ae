package anchor

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/resolve/proof"
	"canton.dev/canton/internal/resource"
	"canton.dev/canton/internal/scope"
	"canton.dev/canton/internal/xds"
)

// Imports: a scope's proxies reach services of other scopes. The anchors of
// the calling scope resolve every remote name its policies refer to, keep the
// answer (the Service and its Workloads) and follow changes with a watch on
// the owning scope. When the owner cannot be reached the last answer is kept,
// marked stale, for up to Config.MaxStale: traffic keeps flowing to the last
// known endpoints and outlier detection handles dead ones.
//
// Imports are per importing scope: each resolves as that scope, so the owner
// answers with what it exports to that scope (see resolve.go), and a change
// of the owner's Exports is followed like a change of the service.
//
// The watch follows every namespace the resolution went through (the asked
// name's, each alias target's): the Services and Aliases of the names looked
// up, and the Workloads and Exports of the final name's namespace. So an
// alias (a renamed service's old name) or a name that does not exist yet is
// followed like any other, and a change of where the name leads (an alias
// retargeted) restarts the watch on the new namespaces. Each watch starts
// from a revision read before the resolution, so no change between the
// answer and the watch is missed. Routing goes through the referrals this
// anchor learned (route.go), so two scopes keep following each other while
// the scopes above them, the root included, are down.

// defaultMaxStale bounds how long an unreachable scope's last answer is served.
const defaultMaxStale = time.Hour

// Retry delays of an import whose owner cannot be reached.
const (
	minImportBackoff = 200 * time.Millisecond
	maxImportBackoff = 10 * time.Second
)

// maxStale is Config.MaxStale or its default.
func (a *Anchor) maxStale() time.Duration {
	if a.cfg.MaxStale > 0 {
		return a.cfg.MaxStale
	}
	return defaultMaxStale
}

type importer struct {
	a *Anchor

	mu       sync.Mutex
	entries  map[importKey]*importEntry
	users    map[string][]string      // importing scope -> names it imports
	resolved func(scope, name string) // test hook: see OnImportResolved
}

// importKey is one name imported by one scope.
type importKey struct{ from, name string }

type importEntry struct {
	name      string
	from      string            // the importing scope: resolution asks as it
	objects   []resource.Object // the Service and its Workloads; nil before the first answer
	scope     string            // the scope that answered
	canonical string            // the name after aliases
	found     bool
	answered  time.Time // when the last good answer came
	stale     bool
	staleErr  string    // why it is stale
	staleAt   time.Time // when it became stale
	dropped   bool      // stale past MaxStale: objects were dropped
	watching  bool      // the owner's changes are being watched
	cancel    context.CancelFunc
}

func newImporter(a *Anchor) *importer {
	return &importer{a: a, entries: map[importKey]*importEntry{}, users: map[string][]string{}}
}

// sync makes the imports of scope h match the remote names its policies use.
// It runs after every change of the scope, so it reads only what changed (see
// referenceIndex).
func (im *importer) sync(h *hosted) {
	var remote []string
	for _, name := range h.refs.hosts(h.state, im.a.meta.Mesh) {
		_, ns, _ := strings.Cut(name, ".")
		if g, _, err := im.a.governing(ns); err == nil && g != h {
			remote = append(remote, name)
		}
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	im.users[h.domain] = remote
	wanted := map[importKey]bool{}
	for from, names := range im.users {
		for _, n := range names {
			wanted[importKey{from, n}] = true
		}
	}
	for k := range wanted {
		if _, ok := im.entries[k]; !ok {
			ctx, cancel := context.WithCancel(im.a.ctx)
			e := &importEntry{name: k.name, from: k.from, cancel: cancel}
			im.entries[k] = e
			go im.follow(ctx, e)
		}
	}
	for k, e := range im.entries {
		if !wanted[k] {
			e.cancel()
			delete(im.entries, k)
		}
	}
}

// referenceIndex keeps the names a scope's objects refer to
// (xds.ReferencedHosts), object by object, up to date from the scope's watch
// events: following a change costs O(the change), not O(the scope). It falls
// back to reading every object at first and when the events it needs were
// compacted away.
type referenceIndex struct {
	mu     sync.Mutex
	rev    uint64              // every change up to this revision is in refs
	refs   map[refKey][]string // objects that refer to names -> the names; nil before the first read
	counts map[string]int      // name -> how many objects refer to it
	sorted []string            // the keys of counts, sorted; nil when to be rebuilt
}

type refKey struct{ kind, ns, name string }

// hosts returns the names the objects of st refer to, sorted.
func (r *referenceIndex) hosts(st *scope.State, mesh string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Read the revision first: what is read after it may be newer, and the
	// events replayed next time bring every object to its latest state
	// (replaying a change twice does no harm).
	rev := st.Revision()
	if r.refs != nil && rev == r.rev {
		return r.sorted
	}
	var evs []scope.Event
	err := scope.ErrCompacted
	if r.refs != nil {
		evs, err = st.Events(r.rev + 1)
	}
	if err != nil {
		r.refs, r.counts, r.sorted = map[refKey][]string{}, map[string]int{}, nil
		for _, o := range st.List("", "") {
			r.set(o, mesh)
		}
	}
	for _, ev := range evs {
		if ev.Type == scope.EventDelete {
			r.drop(refKey{ev.Object.Kind, ev.Object.Namespace, ev.Object.Name})
			continue
		}
		r.set(ev.Object, mesh)
	}
	r.rev = rev
	if r.sorted == nil {
		r.sorted = make([]string, 0, len(r.counts))
		for n := range r.counts {
			r.sorted = append(r.sorted, n)
		}
		slices.Sort(r.sorted)
	}
	return r.sorted
}

// set records the names o refers to, replacing what an earlier version of o did.
func (r *referenceIndex) set(o resource.Object, mesh string) {
	k := refKey{o.Kind, o.Namespace, o.Name}
	names := xds.ReferencedHosts([]resource.Object{o}, mesh)
	if old, ok := r.refs[k]; ok && slices.Equal(old, names) {
		return
	}
	r.drop(k)
	if len(names) == 0 {
		return
	}
	r.refs[k] = names
	for _, n := range names {
		if r.counts[n]++; r.counts[n] == 1 {
			r.sorted = nil
		}
	}
}

func (r *referenceIndex) drop(k refKey) {
	for _, n := range r.refs[k] {
		if r.counts[n]--; r.counts[n] == 0 {
			delete(r.counts, n)
			r.sorted = nil
		}
	}
	delete(r.refs, k)
}

// objects returns the imported objects for scope h, sorted.
func (im *importer) objects(h *hosted) []resource.Object {
	im.mu.Lock()
	defer im.mu.Unlock()
	var out []resource.Object
	for _, n := range im.users[h.domain] {
		if e := im.entries[importKey{h.domain, n}]; e != nil {
			out = append(out, e.objects...)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Name < b.Name
	})
	return out
}

// errRestart ends a watch whose resolution now goes through other names or
// namespaces: follow sets up a new one at once.
var errRestart = errors.New("the resolution changed course")

// follow keeps one import fresh: resolve, then watch the namespaces the
// resolution went through and resolve again on changes; on failure keep the
// last answer (stale) and retry with backoff.
func (im *importer) follow(ctx context.Context, e *importEntry) {
	backoff := minImportBackoff
	var nss []string // the namespaces the last resolution went through
	for ctx.Err() == nil {
		watched, err := im.followOnce(ctx, e, &nss)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errRestart) {
			backoff = minImportBackoff
			continue
		}
		if watched {
			backoff = minImportBackoff
		}
		im.markStale(e, err)
		im.a.log.Debug("import unreachable; serving the last answer", "name", e.name, "scope", e.from, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxImportBackoff)
	}
}

// followOnce resolves e and watches for changes until the watch breaks or
// the resolution changes course (errRestart). nss are the namespaces to read
// revisions of first (those of the last resolution), updated to those of
// this one. watched reports that a watch was set up.
func (im *importer) followOnce(ctx context.Context, e *importEntry, nss *[]string) (watched bool, err error) {
	want := *nss
	if len(want) == 0 {
		_, ns, _ := strings.Cut(e.name, ".")
		want = []string{ns}
	}
	// The revision of every namespace is read before the resolution: the
	// watch then replays whatever changed after it, so nothing between the
	// answer and the watch is missed. An alias into a namespace not read yet
	// means reading it too and resolving again.
	revs := map[string]uint64{}
	var resp *apipb.ResolveResponse
	var in interests
	for range maxAliasHops + 2 {
		if err := im.revisions(ctx, want, revs); err != nil {
			return false, err
		}
		if resp, err = im.a.resolve(ctx, e.name, e.from, map[string]bool{}); err != nil {
			return false, err
		}
		in = interestsOf(e.name, resp)
		if want = in.namespaces(); in.within(revs) {
			break
		}
	}
	if !in.within(revs) {
		return false, fmt.Errorf("import %s: its resolution keeps changing course", e.name)
	}
	*nss = want
	im.update(e, resp)
	im.mu.Lock()
	hook := im.resolved
	im.mu.Unlock()
	if hook != nil {
		hook(e.from, e.name)
	}
	return true, im.watch(ctx, e, in, revs, nss)
}

// revisions reads the current revision of the scope governing each of nss
// not in revs yet: locally when hosted here, else with a linearizable read
// through its anchors.
func (im *importer) revisions(ctx context.Context, nss []string, revs map[string]uint64) error {
	for _, ns := range nss {
		if _, ok := revs[ns]; ok {
			continue
		}
		h, remote, err := im.a.governing(ns)
		if err != nil {
			return err
		}
		if h != nil {
			revs[ns] = h.state.Revision()
			continue
		}
		g, err := forwardTo(ctx, im.a, remote, func(ctx context.Context, c apipb.AnchorClient) (*apipb.GetResponse, error) {
			return c.Get(ctx, &apipb.GetRequest{Scope: ns, Kind: "Export", Namespace: ns})
		})
		if err != nil {
			return err
		}
		revs[ns] = g.Revision
	}
	return nil
}

// watch follows the namespaces of in from their revisions revs, resolving
// again whenever a change concerns the import. It returns when a stream
// breaks, or errRestart (with nss updated) when the resolution goes through
// other names than in.
func (im *importer) watch(ctx context.Context, e *importEntry, in interests, revs map[string]uint64, nss *[]string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer im.setWatching(e, false)
	changed := make(chan struct{}, 1)
	opened := make(chan struct{}, len(revs))
	errc := make(chan error, len(revs))
	for _, ns := range in.namespaces() {
		go func() { errc <- im.watchNamespace(ctx, ns, revs[ns], in, changed, opened) }()
	}
	for n := 0; ; {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errc:
			if err == nil {
				err = errors.New("watch ended")
			}
			return err
		case <-opened:
			if n++; n == len(in) {
				im.setWatching(e, true)
			}
		case <-changed:
			resp, err := im.a.resolve(ctx, e.name, e.from, map[string]bool{})
			if err != nil {
				return err
			}
			im.update(e, resp)
			if next := interestsOf(e.name, resp); !next.equal(in) {
				*nss = next.namespaces()
				return errRestart
			}
		}
	}
}

// watchNamespace streams the changes of the scope governing ns after
// revision from and signals changed for those in concerns. It signals opened
// once the stream is set up.
func (im *importer) watchNamespace(ctx context.Context, ns string, from uint64, in interests, changed, opened chan<- struct{}) error {
	signal := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	h, remote, err := im.a.governing(ns)
	if err != nil {
		return err
	}
	if h != nil {
		ch, cancel := h.state.Subscribe()
		defer cancel()
		opened <- struct{}{}
		for {
			evs, err := h.state.Events(from + 1)
			if err != nil {
				return fmt.Errorf("watch %s: %w", h.domain, err)
			}
			for _, ev := range evs {
				if in.concerns(ev.Object) {
					signal()
				}
				from = ev.Revision
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-h.ctx.Done():
				return fmt.Errorf("scope %s is no longer hosted here", h.domain)
			case <-ch:
			}
		}
	}
	var once sync.Once
	return im.a.forward(ctx, remote, func(ctx context.Context, c apipb.AnchorClient) error {
		stream, err := c.Watch(ctx, &apipb.WatchRequest{Scope: ns, FromRevision: from})
		if err != nil {
			return err
		}
		once.Do(func() { opened <- struct{}{} })
		for {
			ev, err := stream.Recv()
			if err != nil {
				return err
			}
			// Resuming on another anchor replays the last revision seen:
			// events only prompt a resolution, so twice does no harm.
			if ev.Revision > 0 {
				from = max(from, ev.Revision-1)
			}
			var o resource.Object
			if json.Unmarshal(ev.Object, &o) == nil && in.concerns(o) {
				signal()
			}
		}
	})
}

// interests are what a resolution depends on, by namespace.
type interests map[string]*interest

type interest struct {
	names     []string // Services and Aliases looked up (service labels), sorted
	endpoints bool     // the final name's namespace: its Workloads and Exports
}

// interestsOf lists the names resp's resolution of name looked up (from its
// proof: one step per name) and the namespace of the final one.
func interestsOf(name string, resp *apipb.ResolveResponse) interests {
	looked := []string{name}
	if p, err := proof.Unmarshal(resp.Proof); err == nil && len(p.Steps) > 0 {
		looked = looked[:0]
		for _, s := range p.Steps {
			looked = append(looked, s.Final.Name)
		}
	} else if resp.Canonical != "" && resp.Canonical != name {
		looked = append(looked, resp.Canonical)
	}
	in := interests{}
	for i, n := range looked {
		svc, ns, ok := strings.Cut(n, ".")
		if !ok {
			continue
		}
		it := in[ns]
		if it == nil {
			it = &interest{}
			in[ns] = it
		}
		if !slices.Contains(it.names, svc) {
			it.names = append(it.names, svc)
			slices.Sort(it.names)
		}
		if i == len(looked)-1 {
			it.endpoints = true
		}
	}
	return in
}

// concerns reports whether a change of o may change the resolution: a
// Service or Alias looked up, a Workload or Export of the final namespace,
// or a Delegation (a zone cut moved).
func (in interests) concerns(o resource.Object) bool {
	if o.Kind == "Delegation" {
		return true
	}
	it := in[o.Namespace]
	if it == nil {
		return false
	}
	switch o.Kind {
	case "Service", "Alias":
		return slices.Contains(it.names, o.Name)
	case "Workload", "Export":
		return it.endpoints
	}
	return false
}

func (in interests) namespaces() []string {
	out := make([]string, 0, len(in))
	for ns := range in {
		out = append(out, ns)
	}
	slices.Sort(out)
	return out
}

// within reports whether revs holds the revision of every namespace of in.
func (in interests) within(revs map[string]uint64) bool {
	for ns := range in {
		if _, ok := revs[ns]; !ok {
			return false
		}
	}
	return true
}

func (in interests) equal(other interests) bool {
	if len(in) != len(other) {
		return false
	}
	for ns, it := range in {
		o := other[ns]
		if o == nil || o.endpoints != it.endpoints || !slices.Equal(o.names, it.names) {
			return false
		}
	}
	return true
}

func (im *importer) update(e *importEntry, resp *apipb.ResolveResponse) {
	var objs []resource.Object
	if resp.Found {
		var svc resource.Object
		var wls []resource.Object
		if json.Unmarshal(resp.Service, &svc) == nil && json.Unmarshal(resp.Workloads, &wls) == nil {
			objs = append([]resource.Object{svc}, wls...)
		}
	}
	im.mu.Lock()
	changed := e.stale || e.dropped || !sameObjects(e.objects, objs)
	e.objects, e.scope, e.canonical, e.found, e.answered = objs, resp.Scope, resp.Canonical, resp.Found, time.Now()
	e.stale, e.staleErr, e.staleAt, e.dropped = false, "", time.Time{}, false
	im.mu.Unlock()
	if changed {
		im.a.xds.Notify()
	}
}

func (im *importer) markStale(e *importEntry, err error) {
	im.mu.Lock()
	defer im.mu.Unlock()
	if !e.stale {
		e.stale, e.staleAt = true, time.Now()
	}
	if err != nil {
		e.staleErr = err.Error()
	}
	if e.objects != nil && time.Since(e.answered) > im.a.maxStale() {
		e.objects, e.dropped = nil, true // too old to trust: the name disappears from proxies
		go im.a.xds.Notify()
	}
}

func (im *importer) setWatching(e *importEntry, on bool) {
	im.mu.Lock()
	defer im.mu.Unlock()
	e.watching = on
}

// status describes every import of the scopes hosted here, by scope and name.
func (im *importer) status() []*apipb.ImportStatus {
	im.mu.Lock()
	defer im.mu.Unlock()
	out := make([]*apipb.ImportStatus, 0, len(im.entries))
	for _, e := range im.entries {
		st := &apipb.ImportStatus{
			Scope: e.from, Name: e.name, Canonical: e.canonical, Owner: e.scope, Found: e.found,
			Stale: e.stale, Dropped: e.dropped, Error: e.staleErr, Watching: e.watching,
		}
		if !e.answered.IsZero() {
			st.AnsweredUnix = e.answered.Unix()
		}
		if e.stale {
			st.StaleSinceUnix = e.staleAt.Unix()
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b *apipb.ImportStatus) int {
		return cmp.Or(strings.Compare(a.Scope, b.Scope), strings.Compare(a.Name, b.Name))
	})
	return out
}

// OnImportResolved makes every import call f(importing scope, name) after
// the resolution it sets a watch up for and before the watch starts. It
// exists for tests (a change made then must still reach the import); nil
// removes it.
func (a *Anchor) OnImportResolved(f func(scope, name string)) {
	a.imports.mu.Lock()
	defer a.imports.mu.Unlock()
	a.imports.resolved = f
}

// ImportedObjects are the objects scope (hosted here) imports from other
// scopes, as its proxies' configuration is generated from: each imported
// Service and its Workloads.
func (a *Anchor) ImportedObjects(scope string) []resource.Object {
	h, ok := a.scope(scope)
	if !ok {
		return nil
	}
	return a.imports.objects(h)
}

func sameObjects(a, b []resource.Object) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Kind != b[i].Kind || a[i].Namespace != b[i].Namespace || a[i].Name != b[i].Name || a[i].Version != b[i].Version ||
			!bytes.Equal(a[i].Spec, b[i].Spec) { // the same version narrowed to other exported ports
			return false
		}
	}
	return true
}

// fingerprint changes whenever the objects imported for h change.
func (im *importer) fingerprint(h *hosted) string {
	var sb strings.Builder
	for _, o := range im.objects(h) {
		h := fnv.New64a()
		h.Write(o.Spec)
		fmt.Fprintf(&sb, "%s/%s/%s@%d#%x;", o.Kind, o.Namespace, o.Name, o.Version, h.Sum64())
	}
	return sb.String()
}
