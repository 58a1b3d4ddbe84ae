package anchor

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/resource"
)

// Mesh-wide configuration: as Istio's root namespace, the mesh's own
// namespace (the root scope's apex, e.g. demo.mesh) holds the policies that
// apply to every workload of the mesh: PeerAuthentication,
// AuthorizationPolicy and RequestAuthentication without a selector, the
// default Sidecar and DestinationRules, and the ExtensionProviders that
// CUSTOM policies name. They live in the root scope, so the anchors of every
// other scope follow them: from their own replica when they host the root
// scope, else with a Get and a Watch on the root scope's anchors. When the
// root scope is unreachable the last copy keeps being served, for as long as
// it takes: dropping a mesh-wide STRICT or DENY because the root is down
// would open the mesh, so these never expire (unlike imported endpoints).

// meshWideKinds are the kinds of the root namespace that reach other scopes.
var meshWideKinds = map[string]bool{
	"PeerAuthentication":    true,
	"AuthorizationPolicy":   true,
	"RequestAuthentication": true,
	"Sidecar":               true,
	"DestinationRule":       true,
	"ExtensionProvider":     true,
}

// meshWide is an anchor's copy of the root namespace's mesh-wide objects.
type meshWide struct {
	once sync.Once

	mu      sync.Mutex
	objects []resource.Object // as listed by the root scope; the last copy while it is unreachable

	localRev    uint64 // with the root scope hosted here: the revision local was read at
	local       []resource.Object
	localPrint  string
	remotePrint string // fingerprint of objects
}

// meshWideFor returns the mesh-wide objects for scope h (none for the root scope,
// whose state holds them already) and a fingerprint that changes with them.
func (a *Anchor) meshWideFor(h *hosted) ([]resource.Object, string) {
	if h.domain == a.meta.Mesh {
		return nil, ""
	}
	mw := &a.meshWide
	if root, ok := a.scope(a.meta.Mesh); ok {
		// Hosted here: the local replica is the freshest copy.
		mw.mu.Lock()
		defer mw.mu.Unlock()
		if rev := root.state.Revision(); rev != mw.localRev {
			mw.local = filterMeshWide(root.state.List("", a.meta.Mesh))
			mw.localRev, mw.localPrint = rev, "local:"+fingerprintObjects(mw.local)
		}
		return mw.local, mw.localPrint
	}
	mw.mu.Lock()
	defer mw.mu.Unlock()
	return mw.objects, mw.remotePrint
}

// fingerprintObjects changes whenever one of objs does.
func fingerprintObjects(objs []resource.Object) string {
	h := fnv.New64a()
	for _, o := range objs {
		fmt.Fprintf(h, "%s/%s/%s@%d:%d;", o.Kind, o.Namespace, o.Name, o.Version, len(o.Spec))
		h.Write(o.Spec)
	}
	return fmt.Sprintf("%x", h.Sum64())
}

// startMeshWide starts following the root namespace, once per anchor. The
// caller runs in a.wg (a scope's notifyXDS), so the Add cannot race the
// anchor's shutdown Wait.
func (a *Anchor) startMeshWide() {
	a.meshWide.once.Do(func() {
		a.wg.Add(1)
		go func() { defer a.wg.Done(); a.followMeshWide(a.ctx) }()
	})
}

func filterMeshWide(objs []resource.Object) []resource.Object {
	var out []resource.Object
	for _, o := range objs {
		if meshWideKinds[o.Kind] {
			out = append(out, o)
		}
	}
	return out
}

// followMeshWide keeps a.meshWide in line with the root scope until ctx
// ends: list, then watch and list again whenever a mesh-wide object of the
// root namespace changes; on failure keep the last copy and retry with
// backoff (followRootScope). Hosted here, meshWideFor reads the local replica.
func (a *Anchor) followMeshWide(ctx context.Context) {
	a.followRootScope(ctx, "the mesh-wide policies", a.listMeshWide,
		func(ctx context.Context, c apipb.AnchorClient, _ string, o resource.Object) error {
			if !meshWideKinds[o.Kind] {
				return nil
			}
			_, err := a.listMeshWide(ctx, c)
			return err
		})
}

// listMeshWide reads the root namespace from c and publishes what changed.
func (a *Anchor) listMeshWide(ctx context.Context, c apipb.AnchorClient) (uint64, error) {
	resp, err := c.Get(ctx, &apipb.GetRequest{Scope: a.meta.Mesh, Namespace: a.meta.Mesh})
	if err != nil {
		return 0, err
	}
	objs, err := decodeObjects(resp.Objects)
	if err != nil {
		return 0, fmt.Errorf("mesh-wide policies from the root scope: %w", err)
	}
	objs = filterMeshWide(objs)
	mw := &a.meshWide
	mw.mu.Lock()
	changed := !sameObjects(mw.objects, objs)
	mw.objects, mw.remotePrint = objs, "root:"+fingerprintObjects(objs)
	mw.mu.Unlock()
	if changed {
		a.xds.Notify()
	}
	return resp.Revision, nil
}
