package anchor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"sync"
	"time"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/resource"
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

// defaultMaxStale bounds how long an unreachable scope's last answer is served.
const defaultMaxStale = time.Hour

type importer struct {
	a *Anchor

	mu      sync.Mutex
	entries map[importKey]*importEntry
	users   map[string][]string // importing scope -> names it imports
}

// importKey is one name imported by one scope.
type importKey struct{ from, name string }

type importEntry struct {
	name    string
	from    string            // the importing scope: resolution asks as it
	objects []resource.Object // the Service and its Workloads; nil before the first answer
	scope   string            // the scope that answered
	stale   bool
	since   time.Time // when the last good answer came
	cancel  context.CancelFunc
}

func newImporter(a *Anchor) *importer {
	return &importer{a: a, entries: map[importKey]*importEntry{}, users: map[string][]string{}}
}

// sync makes the imports of scope h match the remote names its policies use.
func (im *importer) sync(h *hosted) {
	var remote []string
	for _, name := range xds.ReferencedHosts(h.state.List("", ""), im.a.meta.Mesh) {
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

// objects returns the imported objects for scope h (sorted) and whether any
// is stale.
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

// follow keeps one import fresh: resolve, then watch the owning scope and
// resolve again on changes; on failure keep the last answer (stale) and retry.
func (im *importer) follow(ctx context.Context, e *importEntry) {
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		resp, err := im.a.resolve(ctx, e.name, e.from, map[string]bool{})
		if err == nil {
			im.update(e, resp)
			backoff = 200 * time.Millisecond
			err = im.watch(ctx, e, resp.Scope)
		}
		if ctx.Err() != nil {
			return
		}
		im.markStale(e)
		im.a.log.Debug("import unreachable; serving the last answer", "name", e.name, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// watch streams the owning scope's changes and re-resolves when one concerns
// the imported service (the service, its workloads or the namespace's
// Exports). It returns when the stream breaks.
func (im *importer) watch(ctx context.Context, e *importEntry, scopeDomain string) error {
	svc, ns, _ := strings.Cut(e.name, ".")
	_, remote, err := im.a.governing(ns)
	if err != nil {
		return err
	}
	if h, ok := im.a.scope(scopeDomain); ok {
		// Hosted here after all (the cut moved): follow the local state.
		ch, cancel := h.state.Subscribe()
		defer cancel()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
			return nil
		}
	}
	var rev uint64
	err = im.a.forward(ctx, remote, func(ctx context.Context, c apipb.AnchorClient) error {
		g, err := c.Get(ctx, &apipb.GetRequest{Scope: scopeDomain, Kind: "Service", Namespace: ns, Name: svc})
		if err != nil {
			return err
		}
		rev = g.Revision
		stream, err := c.Watch(ctx, &apipb.WatchRequest{Scope: scopeDomain, FromRevision: rev})
		if err != nil {
			return err
		}
		for {
			ev, err := stream.Recv()
			if err != nil {
				return err
			}
			var o resource.Object
			if json.Unmarshal(ev.Object, &o) != nil || o.Namespace != ns {
				continue
			}
			if (o.Kind == "Service" && o.Name == svc) || o.Kind == "Workload" || o.Kind == "Export" {
				resp, err := im.a.resolve(ctx, e.name, e.from, map[string]bool{})
				if err != nil {
					return err
				}
				im.update(e, resp)
			}
		}
	})
	return err
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
	changed := e.stale || !sameObjects(e.objects, objs)
	e.objects, e.scope, e.stale, e.since = objs, resp.Scope, false, time.Now()
	im.mu.Unlock()
	if changed {
		im.a.xds.Notify()
	}
}

func (im *importer) markStale(e *importEntry) {
	im.mu.Lock()
	defer im.mu.Unlock()
	e.stale = true
	maxStale := im.a.cfg.MaxStale
	if maxStale == 0 {
		maxStale = defaultMaxStale
	}
	if e.objects != nil && time.Since(e.since) > maxStale {
		e.objects = nil // too old to trust: the name disappears from proxies
		go im.a.xds.Notify()
	}
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
