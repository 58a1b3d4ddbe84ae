package anchor

import (
	"context"
	"encoding/pem"
	"fmt"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/resource"
	"canton.dev/canton/internal/scope"
	"canton.dev/canton/internal/xds"
)

// Every anchor of a scope serves xDS for the scope's proxies from its own
// applied state: leader and followers alike, so a proxy can use any of them.

// xdsSnapshot caches the decoded xDS input of one scope revision; proxies of
// the scope share it and generate their own resources from it.
type xdsSnapshot struct {
	mu       sync.Mutex
	rev      uint64
	imports  string // fingerprint of the imported objects
	meshWide string // fingerprint of the root namespace's mesh-wide objects
	snap     *xds.Snapshot
}

func (a *Anchor) startXDS() error {
	srv, err := xds.NewServer(xds.ServerOptions{
		Generate:      a.xdsGenerate,
		NodeFromProto: a.xdsNode,
		Logger:        a.log.With("component", "xds"),
	})
	if err != nil {
		return err
	}
	a.xds = srv
	srv.Register(a.grpc)
	return nil
}

// xdsNode admits a proxy's stream: the node must describe a workload of a
// namespace whose scope this anchor hosts, and the stream's peer must hold
// that workload's identity (anchors and the admin may inspect any node).
func (a *Anchor) xdsNode(ctx context.Context, pn *corev3.Node) (xds.Node, error) {
	n, err := xds.NodeFromProto(pn)
	if err != nil {
		return xds.Node{}, status.Error(codes.InvalidArgument, err.Error())
	}
	c := callerFrom(ctx)
	if c.role == roleWorkload && (c.id.TrustDomain != n.Namespace || account(c.id) != n.Service) {
		return xds.Node{}, status.Errorf(codes.PermissionDenied, "xds: %s may not receive the configuration of %s in %s", c.id, n.Service, n.Namespace)
	}
	h, remote, err := a.governing(n.Namespace)
	if err != nil {
		return xds.Node{}, statusOf(err)
	}
	if h == nil {
		return xds.Node{}, status.Errorf(codes.FailedPrecondition, "xds: anchor %s does not host the scope of %s; connect to one of anchors %v", a.meta.ID, n.Namespace, remote)
	}
	return n, nil
}

// xdsGenerate produces a proxy's resources from the latest applied state of
// its scope.
func (a *Anchor) xdsGenerate(n xds.Node) (xds.Resources, error) {
	h, _, err := a.governing(n.Namespace)
	if err != nil {
		return xds.Resources{}, err
	}
	if h == nil {
		return xds.Resources{}, fmt.Errorf("scope of %s is not hosted here", n.Namespace)
	}
	snap, err := a.xdsSnapshotOf(h)
	if err != nil {
		return xds.Resources{}, err
	}
	return snap.Generate(n)
}

func (a *Anchor) xdsSnapshotOf(h *hosted) (*xds.Snapshot, error) {
	h.xds.mu.Lock()
	defer h.xds.mu.Unlock()
	rev, imp := h.state.Revision(), a.imports.fingerprint(h)
	wide, wideFP := a.meshWideFor(h)
	if h.xds.snap != nil && h.xds.rev == rev && h.xds.imports == imp && h.xds.meshWide == wideFP {
		return h.xds.snap, nil
	}
	snap, err := a.newXDSSnapshot(h, h.state, wide)
	if err != nil {
		return nil, err
	}
	h.xds.rev, h.xds.imports, h.xds.meshWide, h.xds.snap = rev, imp, wideFP, snap
	return snap, nil
}

// newXDSSnapshot decodes the xDS input of scope h at state st: its own
// objects, the services it imports and the mesh-wide policies.
func (a *Anchor) newXDSSnapshot(h *hosted, st *scope.State, meshWide []resource.Object) (*xds.Snapshot, error) {
	objs := append(st.List("", ""), a.imports.objects(h)...)
	return xds.NewSnapshot(xds.Input{
		Mesh:        a.meta.Mesh,
		Scope:       h.domain,
		Objects:     append(objs, meshWide...),
		Revision:    st.Revision(),
		TrustBundle: a.trustBundlePEM(),
	})
}

func (a *Anchor) trustBundlePEM() []byte {
	var out []byte
	for _, c := range a.creds.Bundle {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// notifyXDS pushes to proxies whenever the scope's state changes, and keeps
// the scope's imports in line with the remote names its policies use.
func (a *Anchor) notifyXDS(h *hosted) {
	ch, cancel := h.state.Subscribe()
	defer cancel()
	if h.domain != a.meta.Mesh {
		a.startMeshWide()
	}
	a.imports.sync(h)
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-ch:
			a.imports.sync(h)
			a.xds.Notify()
		}
	}
}

// proxyDiffs tells, for every proxy of scope h connected here, which xDS
// resources would change if the scope's state became after.
func (a *Anchor) proxyDiffs(h *hosted, after *scope.State) []*apipb.ProxyDiff {
	before, err := a.xdsSnapshotOf(h)
	if err != nil {
		return nil
	}
	wide, _ := a.meshWideFor(h)
	next, err := a.newXDSSnapshot(h, after, wide)
	if err != nil {
		return nil
	}
	var out []*apipb.ProxyDiff
	for _, st := range a.xds.Streams() {
		if g, _, _ := a.governing(st.Node.Namespace); g != h {
			continue
		}
		old, err1 := before.Generate(st.Node)
		new, err2 := next.Generate(st.Node)
		if err1 != nil || err2 != nil {
			continue
		}
		d := &apipb.ProxyDiff{Proxy: st.Node.ID}
		for _, c := range xds.Diff(old, new) {
			d.Changes = append(d.Changes, &apipb.ResourceChange{Type: c.Type, Name: c.Name, Change: c.Change, Diff: c.Diff})
		}
		out = append(out, d)
	}
	return out
}
