package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/structpb"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/resource"
	"canton.dev/canton/internal/xds"
)

// xdsDebounce is the anchors' xDS debounce: they leave xds.ServerOptions.Debounce at zero,
// which means 100ms between pushes; the first change after a quiet period is pushed at once
// (xds.Server.Notify), so a lone change does not wait for it. Reported as configuration.
const xdsDebounce = 100 * time.Millisecond

const (
	proxyAccount = "client" // the importer's Service, whose identity the proxy holds
	churnName    = "churn"  // the Workload registered and deregistered
	baseAddress  = "127.0.0.2"
)

// clusterOf is the EDS name of svc in scope (docs/xds-translation.md).
func clusterOf(scope string) string { return "outbound|8080||svc." + scope }

// churnAddress is the address of the i-th registration (distinct every time).
func churnAddress(i int) string { return fmt.Sprintf("127.1.%d.%d", i/250%250, i%250+1) }

// measurePropagation starts the importer's proxy and, for each owning depth, registers
// and deregisters a Workload changes times, timing each change until the proxy holds the
// new endpoint set.
func measurePropagation(ctx context.Context, m *mesh, depths []int, changes int, timeout time.Duration) ([]propagationResult, error) {
	ca, err := identity.LoadCA(m.c.DataDir(0))
	if err != nil {
		return nil, fmt.Errorf("mesh CA: %w", err)
	}
	creds, err := ca.NewCredentials(identity.WorkloadID(m.importer, proxyAccount), time.Hour, time.Now(), nil, nil)
	if err != nil {
		return nil, fmt.Errorf("proxy certificate: %w", err)
	}
	conn, err := grpc.NewClient(m.c.Addr(m.importerAt), grpc.WithTransportCredentials(credentials.NewTLS(identity.ClientTLS(creds, identity.AcceptAnchors(m.c.Mesh())))))
	if err != nil {
		return nil, fmt.Errorf("connect the proxy to %s: %w", m.c.Name(m.importerAt), err)
	}
	defer conn.Close()
	var clusters []string
	for _, d := range depths {
		clusters = append(clusters, clusterOf(m.scopes[d]))
	}
	node, err := proxyNode(m.importer)
	if err != nil {
		return nil, err
	}
	if err := registerProxy(ctx, m); err != nil {
		return nil, err
	}
	p := newEDSProxy()
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan struct{})
	go func() { defer close(done); p.run(pctx, conn, node, clusters) }()
	defer func() { stop(); <-done }()

	var out []propagationResult
	for _, d := range depths {
		r, err := churn(ctx, m, p, d, changes, timeout)
		if err != nil {
			return nil, fmt.Errorf("owner %s: %w", m.scopes[d], err)
		}
		out = append(out, r)
	}
	return out, nil
}

// registerProxy registers the bench proxy's Workload in the importer scope, as `canton proxy`
// does before it connects: the anchors serve a sidecar's xDS stream only as its Workload
// (named after the proxy ID, spec.proxy the ID) registers it.
func registerProxy(ctx context.Context, m *mesh) error {
	cl, err := m.client(m.importerAt)
	if err != nil {
		return err
	}
	lease, err := cl.Raw().GrantLease(ctx, &apipb.GrantLeaseRequest{Scope: m.importer, TtlSeconds: 3600})
	if err != nil {
		return fmt.Errorf("grant the proxy's lease: %w", api.Err(err))
	}
	spec := fmt.Sprintf(`{"service":%q,"address":"127.0.0.1","port":15006,"proxy":"bench-proxy","lease":%d}`, proxyAccount, lease.LeaseId)
	o := resource.Object{Kind: "Workload", Namespace: m.importer, Name: "bench-proxy", Spec: []byte(spec)}
	if _, err := cl.Apply(ctx, []resource.Object{o}, false, nil); err != nil {
		return fmt.Errorf("register the proxy's Workload: %w", err)
	}
	return nil
}

func proxyNode(ns string) (*corev3.Node, error) {
	md := map[string]any{}
	for k, v := range xds.NodeMetadata(xds.Node{ID: "bench-proxy", Service: proxyAccount, Namespace: ns, OutboundPort: 15001}) {
		md[k] = v
	}
	st, err := structpb.NewStruct(md)
	if err != nil {
		return nil, fmt.Errorf("proxy node metadata: %w", err)
	}
	return &corev3.Node{Id: "bench-proxy", Cluster: proxyAccount, Metadata: st}, nil
}

// churn measures the changes of the scope at depth d.
func churn(ctx context.Context, m *mesh, p *edsProxy, d, changes int, timeout time.Duration) (propagationResult, error) {
	owner := m.scopes[d]
	res := propagationResult{Owner: owner, OwnerDepth: d}
	cl, err := m.client(m.anchorOf[d]) // writes go to the owner's anchor: the commit is not forwarded
	if err != nil {
		return res, err
	}
	lease, err := cl.Raw().GrantLease(ctx, &apipb.GrantLeaseRequest{Scope: owner, TtlSeconds: 3600})
	if err != nil {
		return res, fmt.Errorf("grant lease: %w", api.Err(err))
	}
	workload := func(name, addr string) ([]resource.Object, error) {
		spec := fmt.Sprintf(`{"service":"svc","address":%q,"port":15006,"lease":%d}`, addr, lease.LeaseId)
		o := resource.Object{Kind: "Workload", Namespace: owner, Name: name, Spec: []byte(spec)}
		if _, err := resource.Typed(o); err != nil {
			return nil, fmt.Errorf("workload %s: %w", name, err)
		}
		return []resource.Object{o}, nil
	}
	base, err := workload("base", baseAddress)
	if err != nil {
		return res, err
	}
	applied, err := cl.Apply(ctx, base, false, nil)
	if err != nil {
		return res, fmt.Errorf("register the base workload: %w", err)
	}
	cluster := clusterOf(owner)
	// The import is resolved and watched, and the proxy has the base endpoint.
	if _, err := p.waitFor(ctx, cluster, func(s map[string]bool) bool { return s[baseAddress] }, 30*time.Second); err != nil {
		return res, fmt.Errorf("first endpoints of %s at the proxy: %w", cluster, err)
	}

	// A watcher through a1, forwarded down the chain like the importer's watch.
	w := newWatcher()
	wctx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- m.root.Watch(wctx, owner, applied.Revision, func(ev api.Event) error {
			if ev.Object.Kind == "Workload" && ev.Object.Namespace == owner && ev.Object.Name == churnName {
				w.saw(ev.Revision, time.Now())
			}
			return nil
		})
	}()
	defer func() { stopWatch(); <-watchDone }()

	var commit, watch, proxy, after []time.Duration
	for i := range changes {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		addr := churnAddress(i / 2)
		register := i%2 == 0
		want := func(s map[string]bool) bool { return s[addr] == register && s[baseAddress] }
		cctx, cancel := context.WithTimeout(ctx, timeout)
		t0 := time.Now()
		var rev uint64
		if register {
			objs, err := workload(churnName, addr)
			if err != nil {
				cancel()
				return res, err
			}
			var r api.ApplyResult
			r, err = cl.Apply(cctx, objs, false, nil)
			rev = r.Revision
			if err != nil {
				cancel()
				return res, fmt.Errorf("change %d: register %s: %w", i, addr, err)
			}
		} else {
			rev, err = cl.Delete(cctx, "Workload", owner, churnName, nil)
			if err != nil {
				cancel()
				return res, fmt.Errorf("change %d: deregister %s: %w", i, addr, err)
			}
		}
		t1 := time.Now()
		cancel()
		res.Changes++
		commit = append(commit, t1.Sub(t0))
		tp, err := p.waitFor(ctx, cluster, want, timeout)
		if err != nil {
			res.Missed++
			if res.FirstError == "" {
				res.FirstError = fmt.Sprintf("change %d (register %v %s): %v", i, register, addr, err)
			}
			if p.failed() != nil {
				break // the stream is gone: every further change would miss
			}
			continue
		}
		proxy = append(proxy, tp.Sub(t0))
		// The watcher's event normally came before the proxy's update; allow it a little
		// longer before giving up on the component split for this change.
		if tw, ok := w.at(ctx, rev, 2*time.Second); ok {
			watch = append(watch, tw.Sub(t0))
			after = append(after, tp.Sub(tw))
		} else if res.FirstError == "" {
			res.FirstError = fmt.Sprintf("change %d: the watcher saw no event for revision %d", i, rev)
		}
		// Space the changes by the xDS debounce, so that each is a lone change (pushed at
		// once); back to back, every change would wait for the window of the previous push
		// (up to xdsDebounce), which is what a burst of changes gets.
		select {
		case <-ctx.Done():
		case <-time.After(xdsDebounce):
		}
	}
	res.Commit = summarize(durations(commit, time.Millisecond))
	res.Watch = summarize(durations(watch, time.Millisecond))
	res.Proxy = summarize(durations(proxy, time.Millisecond))
	res.AfterWatch = summarize(durations(after, time.Millisecond))
	// Leave the owner as it was found.
	if changes%2 == 1 {
		if _, err := cl.Delete(ctx, "Workload", owner, churnName, nil); err != nil {
			return res, fmt.Errorf("deregister the last workload: %w", err)
		}
	}
	return res, nil
}

// watcher records when events of revisions arrived.
type watcher struct {
	mu      sync.Mutex
	seen    map[uint64]time.Time
	changed chan struct{}
}

func newWatcher() *watcher {
	return &watcher{seen: map[uint64]time.Time{}, changed: make(chan struct{})}
}

func (w *watcher) saw(rev uint64, t time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen[rev] = t
	close(w.changed)
	w.changed = make(chan struct{})
}

// at returns when the event of rev arrived, waiting up to timeout for it.
func (w *watcher) at(ctx context.Context, rev uint64, timeout time.Duration) (time.Time, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		t, ok := w.seen[rev]
		ch := w.changed
		w.mu.Unlock()
		if ok {
			return t, true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return time.Time{}, false
		case <-ctx.Done():
			return time.Time{}, false
		}
	}
}

// edsProxy is a minimal delta ADS client: it subscribes to ClusterLoadAssignments by
// name, ACKs every response and keeps each assignment's endpoint addresses with the time
// the set last changed.
type edsProxy struct {
	mu      sync.Mutex
	sets    map[string]map[string]bool
	since   map[string]time.Time
	err     error
	changed chan struct{}
}

func newEDSProxy() *edsProxy {
	return &edsProxy{sets: map[string]map[string]bool{}, since: map[string]time.Time{}, changed: make(chan struct{})}
}

func (p *edsProxy) run(ctx context.Context, conn *grpc.ClientConn, node *corev3.Node, names []string) {
	err := p.stream(ctx, conn, node, names)
	if ctx.Err() != nil {
		return
	}
	if err == nil {
		err = errors.New("stream ended")
	}
	p.mu.Lock()
	p.err = fmt.Errorf("proxy xds stream: %w", err)
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

func (p *edsProxy) stream(ctx context.Context, conn *grpc.ClientConn, node *corev3.Node, names []string) error {
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: xds.EndpointType, ResourceNamesSubscribe: names}); err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		now := time.Now()
		if resp.GetTypeUrl() != xds.EndpointType {
			return fmt.Errorf("unsolicited response of type %s", resp.GetTypeUrl())
		}
		updates := map[string]map[string]bool{}
		for _, r := range resp.GetResources() {
			var cla endpointv3.ClusterLoadAssignment
			if err := r.GetResource().UnmarshalTo(&cla); err != nil {
				return fmt.Errorf("decode %s: %w", r.GetName(), err)
			}
			set := map[string]bool{}
			for _, le := range cla.GetEndpoints() {
				for _, lb := range le.GetLbEndpoints() {
					set[lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()] = true
				}
			}
			updates[r.GetName()] = set
		}
		for _, n := range resp.GetRemovedResources() {
			updates[n] = map[string]bool{}
		}
		if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: xds.EndpointType, ResponseNonce: resp.GetNonce()}); err != nil {
			return err
		}
		p.mu.Lock()
		for n, set := range updates {
			if !sameSet(p.sets[n], set) {
				p.sets[n], p.since[n] = set, now
			}
		}
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func (p *edsProxy) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// waitFor waits until the endpoint set of name satisfies ok and returns when the proxy
// received that set.
func (p *edsProxy) waitFor(ctx context.Context, name string, ok func(map[string]bool) bool, timeout time.Duration) (time.Time, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		set, since, err, ch := p.sets[name], p.since[name], p.err, p.changed
		p.mu.Unlock()
		if set != nil && ok(set) {
			return since, nil
		}
		if err != nil {
			return time.Time{}, err
		}
		select {
		case <-ch:
		case <-deadline.C:
			return time.Time{}, fmt.Errorf("%s: not updated within %v (endpoints now %v)", name, timeout, keys(set))
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
