package anchor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"canton.dev/canton/internal/replica"
	"canton.dev/canton/internal/resource"
	"canton.dev/canton/internal/scope"
)

// hosted is one scope replica on this anchor.
type hosted struct {
	domain string
	parent string
	state  *scope.State
	group  *replica.Group
	lessor *lessor
	xds    xdsSnapshot
	ca     caCache
	refs   referenceIndex // the names the scope's objects refer to, for its imports
	// published are the anchors that have an Anchor object in the root
	// scope, as far as reconcile saw (root scope only; owned by reconcile).
	published map[string]bool
	// ctx ends when the replica stops being hosted here: the anchor closes,
	// or this anchor was removed from the scope (see dropScope).
	ctx    context.Context
	cancel context.CancelFunc
	loops  sync.WaitGroup // lead, reconcile and notifyXDS
}

// startScope starts (or resumes) this anchor's replica of a scope. voters are
// the initial members when the scope is new here; nil when resuming or when
// joining an existing group as an added member.
func (a *Anchor) startScope(domain string, voters []string, parent string) (*hosted, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if h, ok := a.scopes[domain]; ok {
		return h, nil
	}
	var peers []uint64
	for _, v := range voters {
		peers = append(peers, NodeID(v))
	}
	st := scope.New(domain)
	g, err := a.host.StartGroup(replica.GroupID(domain), peers, st)
	if err != nil {
		return nil, fmt.Errorf("anchor: start scope %s: %w", domain, err)
	}
	h := &hosted{domain: domain, parent: parent, state: st, group: g}
	h.ctx, h.cancel = context.WithCancel(a.ctx)
	h.lessor = newLessor(a, h)
	a.scopes[domain] = h
	if err := a.rememberParent(domain, parent); err != nil {
		return nil, err
	}
	if err := a.setRemoved(domain, false); err != nil {
		return nil, err
	}
	a.wg.Add(4)
	h.loops.Add(3)
	go func() { defer a.wg.Done(); defer h.loops.Done(); a.lead(h) }()
	go func() { defer a.wg.Done(); defer h.loops.Done(); a.reconcile(h) }()
	go func() { defer a.wg.Done(); defer h.loops.Done(); a.notifyXDS(h) }()
	go func() { defer a.wg.Done(); a.watchRemoval(h) }()
	a.log.Info("scope replica started", "scope", domain, "voters", voters)
	return h, nil
}

func (a *Anchor) scope(domain string) (*hosted, bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	h, ok := a.scopes[domain]
	return h, ok
}

func (a *Anchor) hostedScopes() []*hosted {
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := make([]*hosted, 0, len(a.scopes))
	for _, h := range a.scopes {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].domain < out[j].domain })
	return out
}

func (a *Anchor) parentOf(domain string) string {
	a.metaMu.Lock()
	defer a.metaMu.Unlock()
	return a.meta.Parents[domain]
}

func (a *Anchor) rememberParent(domain, parent string) error {
	a.metaMu.Lock()
	defer a.metaMu.Unlock()
	if parent == "" || a.meta.Parents[domain] == parent {
		return nil
	}
	if a.meta.Parents == nil {
		a.meta.Parents = map[string]string{}
	}
	a.meta.Parents[domain] = parent
	return a.meta.save(a.cfg.DataDir)
}

// wasRemoved reports whether this anchor was removed from scope domain (and
// not asked to host it again since).
func (a *Anchor) wasRemoved(domain string) bool {
	a.metaMu.Lock()
	defer a.metaMu.Unlock()
	return slices.Contains(a.meta.Removed, domain)
}

// setRemoved marks (or unmarks) domain as a scope this anchor was removed
// from, durably.
func (a *Anchor) setRemoved(domain string, removed bool) error {
	a.metaMu.Lock()
	defer a.metaMu.Unlock()
	i := slices.Index(a.meta.Removed, domain)
	switch {
	case removed && i < 0:
		a.meta.Removed = append(a.meta.Removed, domain)
		sort.Strings(a.meta.Removed)
	case !removed && i >= 0:
		a.meta.Removed = slices.Delete(a.meta.Removed, i, i+1)
	default:
		return nil
	}
	if removed {
		delete(a.meta.Parents, domain)
	}
	return a.meta.save(a.cfg.DataDir)
}

// watchRemoval drops the replica of h once it learns that this anchor is no
// longer a member of the scope's group.
func (a *Anchor) watchRemoval(h *hosted) {
	select {
	case <-h.ctx.Done():
		return
	case <-h.group.Removed():
	}
	if err := a.dropScope(h); err != nil {
		a.log.Error("replica of a scope this anchor was removed from not deleted", "scope", h.domain, "err", err)
	}
}

// dropScope stops serving scope h here and deletes its replica: requests for
// the scope are forwarded to its anchors from now on. The removal is recorded
// first, so that a restart in the middle deletes the replica rather than
// resuming it.
func (a *Anchor) dropScope(h *hosted) error {
	if err := a.setRemoved(h.domain, true); err != nil {
		return err
	}
	a.mu.Lock()
	if a.scopes[h.domain] == h {
		delete(a.scopes, h.domain)
	}
	a.mu.Unlock()
	h.cancel()
	h.loops.Wait()
	a.imports.forgetScope(h.domain)
	id := replica.GroupID(h.domain)
	if err := a.host.StopGroup(id); err != nil {
		return err
	}
	if err := a.host.DeleteGroup(id); err != nil {
		return err
	}
	a.xds.Notify() // proxies of the scope connected here move to its anchors
	a.log.Info("removed from scope: replica deleted", "scope", h.domain)
	return nil
}

// forgetScope stops the imports of a scope no longer hosted here.
func (im *importer) forgetScope(domain string) {
	im.mu.Lock()
	defer im.mu.Unlock()
	delete(im.users, domain)
	for k, e := range im.entries {
		if k.from == domain {
			e.cancel()
			delete(im.entries, k)
		}
	}
}

// lead runs the leader-only duties of a scope while this replica leads it:
// committing the genesis of a new scope, publishing the address book into the
// root scope, and expiring leases.
func (a *Anchor) lead(h *hosted) {
	var stopLessor context.CancelFunc
	defer func() {
		if stopLessor != nil {
			stopLessor()
		}
	}()
	for {
		select {
		case <-h.ctx.Done():
			return
		case leader := <-h.group.LeaderCh():
			if stopLessor != nil {
				stopLessor()
				stopLessor = nil
			}
			if !leader {
				continue
			}
			ctx, cancel := context.WithCancel(h.ctx)
			stopLessor = cancel
			go a.onLeader(ctx, h)
		}
	}
}

func (a *Anchor) onLeader(ctx context.Context, h *hosted) {
	a.log.Info("leading scope", "scope", h.domain)
	// The lessor first: keep-alives reaching the new leader are answered
	// while the duties below wait for their commits.
	go h.lessor.run(ctx)
	if h.state.Incarnation() == "" {
		inc := make([]byte, 8)
		if _, err := rand.Read(inc); err != nil {
			a.log.Error("genesis", "scope", h.domain, "err", err)
			return
		}
		voters := h.group.Status().Voters
		names := make([]string, 0, len(voters))
		for _, v := range voters {
			names = append(names, a.book.name(v))
		}
		sort.Strings(names)
		m := scope.Mutation{
			Op:       scope.OpGenesis,
			Proposer: a.proposer(),
			Genesis:  &scope.Genesis{Domain: h.domain, Incarnation: hex.EncodeToString(inc), Anchors: names, Parent: h.parent},
		}
		if _, err := a.propose(ctx, h, m); err != nil && !isCode(err, "exists") {
			a.log.Warn("genesis not committed", "scope", h.domain, "err", err)
		}
	}
	if h.domain == a.meta.Mesh {
		a.publishAddressBook(ctx, h)
	}
	a.ensureCA(ctx, h)
	a.renewScopeCA(ctx, h)
}

// reconcileAddresses follows the Anchor objects among objs (every one of
// them with all) of the root scope h into the address book, and publishes
// the anchors this one knows that are missing there: the anchor that
// admitted one publishes it when it joins (Join), and here again if the
// root scope could not commit then (e.g. before its genesis).
func (a *Anchor) reconcileAddresses(h *hosted, objs []resource.Object, all bool) {
	if all || h.published == nil {
		h.published = map[string]bool{}
	}
	var anchors []resource.Object
	for _, o := range objs {
		if o.Kind == "Anchor" && o.Namespace == h.domain {
			anchors = append(anchors, o)
			h.published[o.Name] = true
		}
	}
	if err := a.setAddresses(anchorAddresses(anchors), false); err != nil {
		a.log.Warn("address book not saved", "err", err)
	}
	if h.state.Incarnation() == "" {
		return
	}
	for id := range a.book.snapshot() {
		if !h.published[id] && a.publishing.CompareAndSwap(false, true) {
			go func() {
				defer a.publishing.Store(false)
				a.publishAddressBook(h.ctx, h)
			}()
			return
		}
	}
}

// publishAddressBook makes sure every anchor this one knows is recorded as an
// Anchor object in the root scope, where every anchor learns addresses (see
// followAddressBook). Any replica may propose it.
func (a *Anchor) publishAddressBook(ctx context.Context, h *hosted) {
	var objs []resource.Object
	for id, addr := range a.book.snapshot() {
		if o, ok := h.state.Get("Anchor", h.domain, id); ok && anchorAddress(o) == addr {
			continue
		}
		spec := fmt.Sprintf(`{"address":%q,"nodeId":%d}`, addr, NodeID(id))
		objs = append(objs, resource.Object{Kind: "Anchor", Namespace: h.domain, Name: id, Spec: []byte(spec)})
	}
	if len(objs) == 0 {
		return
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].Name < objs[j].Name })
	if _, err := a.propose(ctx, h, scope.Mutation{Op: scope.OpPut, Proposer: a.proposer(), Objects: objs}); err != nil {
		a.log.Warn("address book not published", "err", err)
	}
}

func anchorAddress(o resource.Object) string {
	t, err := resource.Typed(o)
	if err != nil {
		return ""
	}
	if s, ok := t.(*resource.AnchorSpec); ok {
		return s.Address
	}
	return ""
}

// reconcile follows a scope's applied state: it learns anchor addresses from
// the root scope and starts replicas of child scopes delegated to this anchor.
// It wakes only on changes, and on a retry timer after a start failed. It
// looks only at what changed (the scope's watch events), so a commit costs it
// O(the change), not O(the scope): it reads every Anchor and Delegation at
// first, after a failed start and when the events it needs were compacted.
func (a *Anchor) reconcile(h *hosted) {
	ch, cancel := h.state.Subscribe()
	defer cancel()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	seen := uint64(0) // the revision last reconciled
	all := true       // read everything, not only the changes since seen
	for {
		// The revision is read first: objects read after it may be newer,
		// and the events replayed next time are harmless (reconciling is
		// idempotent).
		if rev := h.state.Revision(); rev != seen || all {
			var changed []resource.Object
			if !all {
				evs, err := h.state.Events(seen + 1)
				all = err != nil
				// The latest version of each object, as a full read would see it.
				at := map[string]int{}
				for _, ev := range evs {
					o := ev.Object
					if ev.Type != scope.EventPut || o.Kind != "Anchor" && o.Kind != "Delegation" {
						continue
					}
					if i, ok := at[o.Ref()]; ok {
						changed[i] = o
						continue
					}
					at[o.Ref()] = len(changed)
					changed = append(changed, o)
				}
			}
			if all {
				changed = append(h.state.List("Anchor", h.domain), h.state.Delegations()...)
			}
			full := all
			seen, all = rev, false
			if a.reconcileOnce(h, changed, full) {
				all = true // look again when the timer fires
				retry.Reset(2 * time.Second)
			}
		}
		select {
		case <-h.ctx.Done():
			return
		case <-ch:
		case <-retry.C:
		}
	}
}

// reconcileOnce acts on objs, the Anchor and Delegation objects of scope h
// that changed (or, with all, every one of them).
func (a *Anchor) reconcileOnce(h *hosted, objs []resource.Object, all bool) (failed bool) {
	if h.domain == a.meta.Mesh && h.state.Incarnation() != "" {
		// Any replica may propose: the anchor holding the root CA on disk seals
		// it into the root scope, whoever leads.
		if _, ok := h.state.Get("CertificateAuthority", h.domain, caName); !ok && a.holdsRootCA() && a.sealingRoot.CompareAndSwap(false, true) {
			go func() {
				defer a.sealingRoot.Store(false)
				a.ensureCA(a.ctx, h)
			}()
		}
	}
	if h.domain == a.meta.Mesh {
		a.reconcileAddresses(h, objs, all)
	}
	for _, d := range objs {
		if d.Kind != "Delegation" {
			continue
		}
		spec, err := delegationSpec(d)
		if err != nil || !contains(spec.Anchors, a.meta.ID) {
			continue
		}
		if _, ok := a.scope(spec.Domain); ok {
			continue
		}
		if a.wasRemoved(spec.Domain) {
			continue // the Delegation is not updated yet, or this anchor is being added again (StartReplica)
		}
		// Only a Delegation as created names the initial voters. Once a
		// membership change updated it the group exists: a replica started
		// here joins it (the leader sends it the state) instead of
		// bootstrapping a group of its own.
		voters := spec.Anchors
		if d.Version != d.Created {
			voters = nil
		}
		if _, err := a.startScope(spec.Domain, voters, h.domain); err != nil {
			a.log.Warn("delegated scope not started", "scope", spec.Domain, "err", err)
			failed = true
		}
	}
	return failed
}

func delegationSpec(o resource.Object) (*resource.DelegationSpec, error) {
	t, err := resource.Typed(o)
	if err != nil {
		return nil, err
	}
	s, ok := t.(*resource.DelegationSpec)
	if !ok {
		return nil, fmt.Errorf("delegation %s: unexpected spec %T", o.Name, t)
	}
	return s, nil
}

// proposer is how this anchor signs the mutations it proposes itself.
func (a *Anchor) proposer() string { return "anchor/" + a.meta.ID }

// propose commits a mutation through the scope's Raft group and returns the
// state machine's result. Rejections come back as *scope.Error. It stamps m
// with this anchor's time (see stamp): every mutation an anchor proposes,
// for a caller or of its own, goes through here.
func (a *Anchor) propose(ctx context.Context, h *hosted, m scope.Mutation) (scope.Result, error) {
	if m.Op != scope.OpGenesis && h.state.Incarnation() == "" {
		// This replica may only lag behind: catch up before deciding.
		if err := a.readIndex(ctx, h); err != nil {
			return scope.Result{}, err
		}
	}
	if m.Op != scope.OpGenesis && h.state.Incarnation() == "" {
		return scope.Result{}, &unavailableError{fmt.Sprintf("scope %s is starting (its genesis is not committed yet); retry in a moment", h.domain)}
	}
	data, err := scope.Encode(stamp(m))
	if err != nil {
		return scope.Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	defer cancel()
	res, _, err := h.group.Propose(ctx, data)
	if err != nil {
		return scope.Result{}, a.replicaErr(h, err)
	}
	r, ok := res.(scope.Result)
	if !ok {
		return scope.Result{}, fmt.Errorf("scope %s: unexpected apply result %T", h.domain, res)
	}
	if r.Err != nil {
		return r, r.Err
	}
	return r, nil
}

// stamp sets m's time to this anchor's wall clock, now, unless m has one, and
// asks for the current rules (scope.Mutation.Rules). The
// time is part of the entry that Raft commits, so every replica records the
// same bytes and the lineage hash covers it; it is this anchor's claim (see
// scope.Mutation.Time). propose stamps every mutation right before proposing
// it.
func stamp(m scope.Mutation) scope.Mutation {
	if m.Time == "" {
		m.Time = scope.FormatTime(time.Now())
	}
	m.Rules = scope.CurrentRules
	return m
}

// replicaErr turns replication failures into errors a user can act on.
func (a *Anchor) replicaErr(h *hosted, err error) error {
	st := h.group.Status()
	var voters []string
	for _, v := range st.Voters {
		voters = append(voters, a.book.name(v))
	}
	switch {
	case errors.Is(err, replica.ErrNoLeader):
		return &unavailableError{fmt.Sprintf("scope %s has no leader (voters %s): it has lost quorum or is electing; retry when a majority of its anchors is up", h.domain, strings.Join(voters, ","))}
	case errors.Is(err, context.DeadlineExceeded):
		return &unavailableError{fmt.Sprintf("scope %s did not commit within %s (voters %s): a majority of its anchors may be unreachable", h.domain, a.cfg.RequestTimeout, strings.Join(voters, ","))}
	case errors.Is(err, replica.ErrStopped) && h.ctx.Err() != nil && a.ctx.Err() == nil:
		return &unavailableError{fmt.Sprintf("scope %s: anchor %s was removed from the scope; retry, and the request goes to its anchors", h.domain, a.meta.ID)}
	case errors.Is(err, replica.ErrStopped):
		return &unavailableError{fmt.Sprintf("scope %s: this anchor is shutting down", h.domain)}
	}
	return err
}

type unavailableError struct{ msg string }

func (e *unavailableError) Error() string { return e.msg }

func isCode(err error, code string) bool {
	var se *scope.Error
	return errors.As(err, &se) && se.Code == code
}
