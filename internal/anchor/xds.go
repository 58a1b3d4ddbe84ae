package anchor

import (
	"context"
	"encoding/pem"
	"fmt"
	"maps"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	notified uint64 // a.xds.Notified() before imports and meshWide were taken
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
// namespace whose scope this anchor hosts, the stream's peer must hold that
// workload's identity, and a sidecar or gateway must describe itself as its
// Workload registers it (checkClaims). Anchors and the admin may inspect any
// node; proxyless nodes register no Workload and are admitted on identity alone.
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
	if c.role == roleWorkload && n.Kind != xds.KindProxyless {
		if err := a.checkClaims(ctx, h, n); err != nil {
			return xds.Node{}, err
		}
	}
	return n, nil
}

// workloadClaimWait bounds how long a sidecar's or gateway's stream waits, when it opens, for
// the proxy's Workload to be applied here: canton proxy registers before it connects, but the
// registration commits through the scope's leader and this anchor may apply it a moment later.
const workloadClaimWait = 10 * time.Second

// Test hooks (export_xds_test.go): claimWaitOverride, when positive, replaces
// workloadClaimWait; onClaimWait, when set, is called with the node's ID when a stream starts
// waiting for its Workload.
var (
	claimWaitOverride atomic.Int64
	onClaimWait       atomic.Pointer[func(nodeID string)]
)

// checkClaims admits a sidecar or gateway node only as the scope registers it: the Workload
// named after the node's ID in the node's namespace must name the node as its proxy and record
// the node's service, kind (spec.gateway), labels (exactly) and, when the node has an inbound
// listener, its address and port. Without it a proxy could claim the labels of a subset or a
// gateway's selector and get configuration its registration does not show. The claims are
// checked when the stream opens; a Workload changed later applies from the proxy's next
// stream. A Workload not applied here within workloadClaimWait refuses the stream (the proxy
// retries).
func (a *Anchor) checkClaims(ctx context.Context, h *hosted, n xds.Node) error {
	changed, cancel := h.state.Subscribe() // before the first look: no commit is missed
	defer cancel()
	wait := workloadClaimWait
	if d := claimWaitOverride.Load(); d > 0 {
		wait = time.Duration(d)
	}
	timeout := time.NewTimer(wait)
	defer timeout.Stop()
	for waited := false; ; waited = true {
		if o, ok := h.state.Get("Workload", n.Namespace, n.ID); ok {
			return claimsMatch(n, o)
		}
		if f := onClaimWait.Load(); f != nil && !waited {
			(*f)(n.ID)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-h.ctx.Done():
			return status.Errorf(codes.Unavailable, "xds: anchor %s stopped serving the scope of %s", a.meta.ID, n.Namespace)
		case <-timeout.C:
			return status.Errorf(codes.FailedPrecondition, "xds: proxy %s (%s of service %s in %s) has no Workload %s registered in %s (waited %s): a sidecar or gateway registers its Workload, named after its proxy ID with spec.proxy %s, before it connects (canton proxy does)",
				n.ID, kindOf(n), n.Service, n.Namespace, n.ID, n.Namespace, wait, n.ID)
		}
	}
}

// claimsMatch compares what node n says about itself with its Workload o; every difference is
// named in the PermissionDenied error.
func claimsMatch(n xds.Node, o resource.Object) error {
	t, err := resource.Typed(o)
	if err != nil {
		return status.Errorf(codes.Internal, "xds: Workload %s/%s: %v", o.Namespace, o.Name, err)
	}
	w := t.(*resource.WorkloadSpec)
	var diffs []string
	if w.Proxy != n.ID {
		diffs = append(diffs, fmt.Sprintf("the Workload names proxy %q, not %q", w.Proxy, n.ID))
	}
	if w.Service != n.Service {
		diffs = append(diffs, fmt.Sprintf("it claims service %q, the Workload has %q", n.Service, w.Service))
	}
	registered := xds.KindSidecar
	if w.Gateway {
		registered = xds.KindGateway
	}
	if kindOf(n) != registered {
		diffs = append(diffs, fmt.Sprintf("it claims kind %s, the Workload registers a %s (spec.gateway %t)", kindOf(n), registered, w.Gateway))
	}
	if !maps.Equal(n.Labels, w.Labels) {
		diffs = append(diffs, fmt.Sprintf("it claims labels %s, the Workload has %s", labelText(n.Labels), labelText(w.Labels)))
	}
	if n.InboundAddress != "" && !sameIP(n.InboundAddress, w.Address) {
		diffs = append(diffs, fmt.Sprintf("it claims inbound address %s, the Workload has %s", n.InboundAddress, w.Address))
	}
	if n.InboundPort != 0 && n.InboundPort != w.Port {
		diffs = append(diffs, fmt.Sprintf("it claims inbound port %d, the Workload has %d", n.InboundPort, w.Port))
	}
	if len(diffs) == 0 {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "xds: proxy %s does not match its Workload %s/%s: %s; a proxy gets the configuration of what it registered, so register the kind, labels and address it runs with (canton proxy: --version, --labels, --gateway, --gateway-address)",
		n.ID, o.Namespace, o.Name, strings.Join(diffs, "; "))
}

// kindOf is the node's kind, sidecar when it names none.
func kindOf(n xds.Node) string {
	if n.Kind == "" {
		return xds.KindSidecar
	}
	return n.Kind
}

// labelText renders labels as k=v,... sorted by key; "none" when there are none.
func labelText(l map[string]string) string {
	if len(l) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(l))
	for k, v := range l {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// sameIP reports whether a and b are the same IP address, however written.
func sameIP(a, b string) bool {
	x, err1 := netip.ParseAddr(a)
	y, err2 := netip.ParseAddr(b)
	return err1 == nil && err2 == nil && x.Unmap() == y.Unmap()
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

// xdsSnapshotOf returns the snapshot of scope h's latest applied state, with its imports and the
// mesh-wide objects. Every stream asks on every push: the imports and mesh-wide objects are
// looked at again only after a Notify (every change of them is followed by one, see
// xds.Server.Notified), not by every stream.
func (a *Anchor) xdsSnapshotOf(h *hosted) (*xds.Snapshot, error) {
	h.xds.mu.Lock()
	defer h.xds.mu.Unlock()
	rev, notified := h.state.Revision(), a.xds.Notified()
	if h.xds.snap != nil && h.xds.rev == rev && h.xds.notified == notified {
		return h.xds.snap, nil
	}
	imp := a.imports.fingerprint(h)
	wide, wideFP := a.meshWideFor(h)
	if h.xds.snap != nil && h.xds.rev == rev && h.xds.imports == imp && h.xds.meshWide == wideFP {
		h.xds.notified = notified
		return h.xds.snap, nil
	}
	snap, err := a.newXDSSnapshot(h, h.state, wide, h.xds.snap)
	if err != nil {
		return nil, err
	}
	h.xds.rev, h.xds.imports, h.xds.meshWide, h.xds.notified, h.xds.snap = rev, imp, wideFP, notified, snap
	return snap, nil
}

// newXDSSnapshot decodes the xDS input of scope h at state st: its own
// objects, the services it imports and the mesh-wide policies. The objects
// that did not change since prev (nil: none) are not decoded again.
func (a *Anchor) newXDSSnapshot(h *hosted, st *scope.State, meshWide []resource.Object, prev *xds.Snapshot) (*xds.Snapshot, error) {
	objs := append(st.List("", ""), a.imports.objects(h)...)
	in := xds.Input{
		Mesh:        a.meta.Mesh,
		Scope:       h.domain,
		Objects:     append(objs, meshWide...),
		Revision:    st.Revision(),
		TrustBundle: a.trustBundlePEM(),
	}
	if prev != nil {
		return prev.Next(in)
	}
	return xds.NewSnapshot(in)
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
	next, err := a.newXDSSnapshot(h, after, wide, before)
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
