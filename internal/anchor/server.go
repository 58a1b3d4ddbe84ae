package anchor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/replica"
	"canton.dev/canton/internal/resource"
	"canton.dev/canton/internal/scope"
)

// server implements the anchor API. Every method either serves from a
// replica hosted here or forwards to an anchor that hosts the scope.
type server struct {
	apipb.UnimplementedAnchorServer
	a *Anchor
}

func decodeObjects(b []byte) ([]resource.Object, error) {
	if objs, ok := scope.DecodeObjects(b); ok {
		return objs, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var objs []resource.Object
	if err := dec.Decode(&objs); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "objects: %v", err)
	}
	return objs, nil
}

func (s *server) Apply(ctx context.Context, req *apipb.ApplyRequest) (*apipb.ApplyResponse, error) {
	objs, err := decodeObjects(req.Objects)
	if err != nil {
		return nil, err
	}
	if len(objs) == 0 {
		return nil, status.Error(codes.InvalidArgument, "apply: no objects")
	}
	if err := checkWorkloadObjects(callerFrom(ctx), objs); err != nil {
		return nil, err
	}
	for _, o := range objs {
		if o.Kind == "CertificateAuthority" && !callerFrom(ctx).anchor() {
			return nil, status.Error(codes.PermissionDenied, "scope CAs are created by the anchors, not applied")
		}
	}
	if req.SetIfVersion && len(req.IfVersion) != len(objs) {
		return nil, status.Errorf(codes.InvalidArgument, "apply: %d if_version values for %d objects", len(req.IfVersion), len(objs))
	}
	where := req.Scope
	if where == "" {
		where = objs[0].Namespace
	}
	h, remote, err := s.a.governing(where)
	if err != nil {
		return nil, statusOf(err)
	}
	if h == nil {
		return forwardTo(ctx, s.a, remote, func(ctx context.Context, c apipb.AnchorClient) (*apipb.ApplyResponse, error) {
			return c.Apply(ctx, req)
		})
	}
	for _, o := range objs {
		if g, _, _ := s.a.governing(o.Namespace); g != h {
			return nil, status.Errorf(codes.InvalidArgument, "apply: %s %s/%s is not governed by scope %s; apply objects of different scopes separately", o.Kind, o.Namespace, o.Name, h.domain)
		}
	}
	m := scope.Mutation{Op: scope.OpPut, Proposer: callerFrom(ctx).principal, Objects: objs}
	if req.SetIfVersion {
		m.IfVersions = make([]*uint64, len(req.IfVersion))
		for i := range req.IfVersion {
			v := req.IfVersion[i]
			m.IfVersions[i] = &v
		}
	}
	var (
		res   scope.Result
		after *scope.State
	)
	if req.DryRun {
		res, after, err = s.a.dryRun(ctx, h, m)
	} else {
		res, err = s.a.propose(ctx, h, m)
	}
	if err != nil {
		return nil, statusOf(err)
	}
	out, ok := scope.EncodeObjects(res.Objects)
	if !ok {
		if out, err = json.Marshal(res.Objects); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	resp := &apipb.ApplyResponse{Revision: res.Revision, Objects: out}
	if after != nil {
		resp.ProxyDiffs = s.a.proxyDiffs(h, after)
	}
	return resp, nil
}

// dryRun applies a mutation to a private copy of the current (linearizably
// read) state: the same validation a commit would get, and nothing committed.
func (a *Anchor) dryRun(ctx context.Context, h *hosted, m scope.Mutation) (scope.Result, *scope.State, error) {
	if err := a.readIndex(ctx, h); err != nil {
		return scope.Result{}, nil, err
	}
	if h.state.Incarnation() == "" {
		return scope.Result{}, nil, &unavailableError{fmt.Sprintf("scope %s is starting (its genesis is not committed yet); retry in a moment", h.domain)}
	}
	snap, err := h.state.Snapshot()
	if err != nil {
		return scope.Result{}, nil, err
	}
	cp := scope.New(h.domain)
	if err := cp.Restore(snap); err != nil {
		return scope.Result{}, nil, err
	}
	data, err := scope.Encode(m)
	if err != nil {
		return scope.Result{}, nil, err
	}
	res, ok := cp.Apply(cp.Revision()+1, data).(scope.Result)
	if !ok {
		return scope.Result{}, nil, errors.New("dry run: unexpected apply result")
	}
	return res, cp, res.Err
}

func (a *Anchor) readIndex(ctx context.Context, h *hosted) error {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	defer cancel()
	if err := h.group.ReadIndex(ctx); err != nil {
		return a.replicaErr(h, err)
	}
	return nil
}

func (s *server) Delete(ctx context.Context, req *apipb.DeleteRequest) (*apipb.DeleteResponse, error) {
	k, ok := resource.Lookup(req.Kind)
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "unknown kind %q", req.Kind)
	}
	if k.Name == "CertificateAuthority" {
		return nil, status.Error(codes.PermissionDenied, "a scope's CA cannot be deleted")
	}
	if c := callerFrom(ctx); c.role == roleWorkload && (k.Name != "Workload" || req.Namespace != c.id.TrustDomain) {
		return nil, status.Errorf(codes.PermissionDenied, "%s may only delete Workloads of namespace %s", c.id, c.id.TrustDomain)
	}
	h, remote, err := s.a.governing(req.Namespace)
	if err != nil {
		return nil, statusOf(err)
	}
	if h == nil {
		return forwardTo(ctx, s.a, remote, func(ctx context.Context, c apipb.AnchorClient) (*apipb.DeleteResponse, error) {
			return c.Delete(ctx, req)
		})
	}
	m := scope.Mutation{Op: scope.OpDelete, Proposer: callerFrom(ctx).principal, Kind: k.Name, Namespace: req.Namespace, Name: req.Name, IfVersion: req.IfVersion}
	res, err := s.a.propose(ctx, h, m)
	if err != nil {
		return nil, statusOf(err)
	}
	return &apipb.DeleteResponse{Revision: res.Revision}, nil
}

func (s *server) Get(ctx context.Context, req *apipb.GetRequest) (*apipb.GetResponse, error) {
	where := req.Namespace
	if req.Scope != "" {
		where = req.Scope
	}
	kind := ""
	if req.Kind != "" {
		k, ok := resource.Lookup(req.Kind)
		if !ok {
			return nil, status.Errorf(codes.InvalidArgument, "unknown kind %q", req.Kind)
		}
		kind = k.Name
	}
	h, remote, err := s.a.governing(where)
	if err != nil {
		return nil, statusOf(err)
	}
	if h == nil {
		return forwardTo(ctx, s.a, remote, func(ctx context.Context, c apipb.AnchorClient) (*apipb.GetResponse, error) {
			return c.Get(ctx, req)
		})
	}
	if err := s.a.readIndex(ctx, h); err != nil {
		return nil, statusOf(err)
	}
	var objs []resource.Object
	switch {
	case req.Name != "":
		o, ok := h.state.Get(kind, req.Namespace, req.Name)
		if !ok {
			return nil, status.Errorf(codes.NotFound, "%s %q not found in namespace %s", kind, req.Name, req.Namespace)
		}
		objs = []resource.Object{o}
	case req.Scope != "" && req.Namespace == "":
		objs = h.state.List(kind, "")
	default:
		objs = h.state.List(kind, req.Namespace)
	}
	if objs == nil {
		objs = []resource.Object{}
	}
	out, err := json.Marshal(objs)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &apipb.GetResponse{Revision: h.state.Revision(), Objects: out, Scope: h.domain}, nil
}

func (s *server) Watch(req *apipb.WatchRequest, stream grpc.ServerStreamingServer[apipb.WatchEvent]) error {
	ctx := stream.Context()
	h, remote, err := s.a.governing(req.Scope)
	if err != nil {
		return statusOf(err)
	}
	if h == nil {
		// forward moves on to the next anchor when one becomes unavailable,
		// possibly in the middle of the stream: each attempt resumes after
		// what was already delivered. One revision may carry several events
		// (a put of many objects), so resume after the last revision
		// delivered whole and skip the events of the next one already sent.
		var (
			done = req.FromRevision // every event up to here was delivered
			cur  uint64             // the revision being delivered
			sent int                // events of cur delivered
		)
		return s.a.forward(ctx, remote, func(ctx context.Context, c apipb.AnchorClient) error {
			up, err := c.Watch(ctx, &apipb.WatchRequest{Scope: req.Scope, FromRevision: done})
			if err != nil {
				return err
			}
			skip := sent
			for {
				ev, err := up.Recv()
				if err != nil {
					return err
				}
				if ev.Revision <= done || ev.Revision < cur {
					continue // not expected from a correct anchor: never deliver twice
				}
				if ev.Revision == cur && skip > 0 {
					skip--
					continue
				}
				skip = 0
				if err := stream.Send(ev); err != nil {
					return err
				}
				if ev.Revision != cur {
					if cur != 0 {
						done = cur
					}
					cur, sent = ev.Revision, 0
				}
				sent++
			}
		})
	}
	ch, cancel := h.state.Subscribe()
	defer cancel()
	from := req.FromRevision
	for {
		evs, err := h.state.Events(from + 1) // the API streams revisions after from
		if errors.Is(err, scope.ErrCompacted) {
			return status.Errorf(codes.OutOfRange, "compacted: revision %d of scope %s is no longer in the watch history; re-list (get) and watch from the revision it returns", from, h.domain)
		}
		if err != nil {
			return statusOf(err)
		}
		for _, ev := range evs {
			b, err := json.Marshal(ev.Object)
			if err != nil {
				return status.Error(codes.Internal, err.Error())
			}
			if err := stream.Send(&apipb.WatchEvent{Revision: ev.Revision, Type: string(ev.Type), Object: b}); err != nil {
				return err
			}
			from = ev.Revision
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.a.ctx.Done():
			return status.Error(codes.Unavailable, "anchor shutting down")
		case <-h.ctx.Done():
			return status.Errorf(codes.Unavailable, "anchor %s no longer hosts scope %s; watch again through its anchors", s.a.meta.ID, h.domain)
		case <-ch:
		}
	}
}

func (s *server) Lineage(ctx context.Context, req *apipb.LineageRequest) (*apipb.LineageResponse, error) {
	h, remote, err := s.a.governing(req.Scope)
	if err != nil {
		return nil, statusOf(err)
	}
	if h == nil {
		return forwardTo(ctx, s.a, remote, func(ctx context.Context, c apipb.AnchorClient) (*apipb.LineageResponse, error) {
			return c.Lineage(ctx, req)
		})
	}
	if err := s.a.readIndex(ctx, h); err != nil {
		return nil, statusOf(err)
	}
	recs := h.state.Lineage(req.From, int(req.Limit))
	b, err := json.Marshal(recs)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	idx, hash := h.state.LineageHead()
	return &apipb.LineageResponse{Records: b, HeadIndex: idx, HeadHash: hash, Anchor: s.a.meta.ID}, nil
}

func (s *server) Status(ctx context.Context, req *apipb.StatusRequest) (*apipb.StatusResponse, error) {
	a := s.a
	resp := &apipb.StatusResponse{AnchorId: a.meta.ID, Mesh: a.meta.Mesh, Address: a.Addr()}
	book := a.book.snapshot()
	for _, id := range sortedKeys(book) {
		resp.Anchors = append(resp.Anchors, &apipb.AnchorAddress{Id: id, Address: book[id], NodeId: NodeID(id)})
	}
	for _, ps := range a.xds.Streams() {
		p := &apipb.ProxyStatus{
			Id: ps.Node.ID, Service: ps.Node.Service, Namespace: ps.Node.Namespace, Labels: ps.Node.Labels,
			ConnectedUnix: ps.Connected.Unix(), Delta: ps.Delta, Acked: ps.Acked, Admin: ps.Node.AdminAddress,
		}
		if ps.Nack != nil {
			p.NackType, p.NackVersion, p.NackMessage = ps.Nack.TypeURL, ps.Nack.Version, ps.Nack.Message
		}
		for _, sk := range ps.Skipped {
			p.Skipped = append(p.Skipped, fmt.Sprintf("%s: %s: %s", sk.Object, sk.Field, sk.Reason))
		}
		resp.Proxies = append(resp.Proxies, p)
	}
	for _, h := range a.hostedScopes() {
		st := h.group.Status()
		_, head := h.state.LineageHead()
		ss := &apipb.ScopeStatus{
			Domain: h.domain, Leader: a.book.name(st.Leader), Term: st.Term,
			Commit: st.Commit, Applied: st.Applied, Revision: h.state.Revision(), LineageHead: head,
		}
		for _, v := range st.Voters {
			ss.Voters = append(ss.Voters, a.book.name(v))
		}
		for _, v := range st.Learners {
			ss.Learners = append(ss.Learners, a.book.name(v))
		}
		sort.Strings(ss.Voters)
		sort.Strings(ss.Learners)
		resp.Scopes = append(resp.Scopes, ss)
	}
	resp.Imports = a.imports.status()
	return resp, nil
}

func (s *server) CreateScope(ctx context.Context, req *apipb.CreateScopeRequest) (*apipb.CreateScopeResponse, error) {
	a := s.a
	domain := strings.TrimSuffix(strings.ToLower(req.Domain), ".")
	if domain == a.meta.Mesh || !inZone(domain, a.meta.Mesh) {
		return nil, status.Errorf(codes.InvalidArgument, "scope create: %q must be a subdomain of the mesh %s", req.Domain, a.meta.Mesh)
	}
	if len(req.Anchors) == 0 {
		return nil, status.Error(codes.InvalidArgument, "scope create: --anchors is required (1, 3 or 5 anchor IDs)")
	}
	for _, id := range req.Anchors {
		if _, ok := a.book.addr(id); !ok {
			return nil, status.Errorf(codes.InvalidArgument, "scope create: anchor %q is unknown; known anchors: %s", id, strings.Join(sortedKeys(a.book.snapshot()), ","))
		}
	}
	parent, remote, err := a.governing(domain)
	if err != nil {
		return nil, statusOf(err)
	}
	if parent == nil {
		return forwardTo(ctx, a, remote, func(ctx context.Context, c apipb.AnchorClient) (*apipb.CreateScopeResponse, error) {
			return c.CreateScope(ctx, req)
		})
	}
	spec, _ := json.Marshal(map[string]any{"domain": domain, "anchors": req.Anchors})
	obj := resource.Object{Kind: "Delegation", Namespace: parent.domain, Name: domain, Spec: spec}
	zero := uint64(0)
	res, err := a.propose(ctx, parent, scope.Mutation{Op: scope.OpPut, Proposer: callerFrom(ctx).principal, Objects: []resource.Object{obj}, IfVersions: []*uint64{&zero}})
	if err != nil {
		return nil, statusOf(err)
	}
	// Start the replicas now; the reconcilers retry any that cannot start yet.
	var failed []string
	for _, id := range req.Anchors {
		if err := a.startReplicaOn(ctx, id, domain, req.Anchors, parent.domain, req.Anchors); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", id, err))
		}
	}
	if len(failed) > 0 {
		a.log.Warn("scope delegated but not every replica started yet", "scope", domain, "errors", failed)
	}
	return &apipb.CreateScopeResponse{Revision: res.Revision, Parent: parent.domain}, nil
}

// startReplicaOn starts the replica of scope domain on anchor anchorID (see
// StartReplicaRequest). members are the scope's anchors, whose addresses go
// along: an anchor outside the root scope may not know those that joined
// the mesh after it, and could not reach them.
func (a *Anchor) startReplicaOn(ctx context.Context, anchorID, domain string, voters []string, parent string, members []string) error {
	if anchorID == a.meta.ID {
		_, err := a.startScope(domain, voters, parent)
		return err
	}
	req := &apipb.StartReplicaRequest{Scope: domain, Voters: voters, Parent: parent}
	for _, id := range members {
		if addr, ok := a.book.addr(id); ok {
			req.Addresses = append(req.Addresses, &apipb.AnchorAddress{Id: id, Address: addr, NodeId: NodeID(id)})
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return a.forward(ctx, []string{anchorID}, func(ctx context.Context, c apipb.AnchorClient) error {
		_, err := c.StartReplica(ctx, req)
		return err
	})
}

func (s *server) StartReplica(ctx context.Context, req *apipb.StartReplicaRequest) (*apipb.StartReplicaResponse, error) {
	if !callerFrom(ctx).anchor() {
		return nil, status.Error(codes.PermissionDenied, "StartReplica is for anchors only")
	}
	if !inZone(req.Scope, s.a.meta.Mesh) {
		return nil, status.Errorf(codes.InvalidArgument, "scope %q is not in mesh %s", req.Scope, s.a.meta.Mesh)
	}
	learned := map[string]string{}
	for _, ad := range req.Addresses {
		if ad.Id == "" || ad.Address == "" {
			continue
		}
		if ad.NodeId != 0 && ad.NodeId != NodeID(ad.Id) {
			return nil, status.Errorf(codes.InvalidArgument, "addresses: anchor %q has node ID %d, not %d", ad.Id, NodeID(ad.Id), ad.NodeId)
		}
		learned[ad.Id] = ad.Address
	}
	if err := s.a.setAddresses(learned, true); err != nil {
		return nil, status.Errorf(codes.Internal, "start replica of %s: %v", req.Scope, err)
	}
	if _, err := s.a.startScope(req.Scope, req.Voters, req.Parent); err != nil {
		return nil, statusOf(err)
	}
	return &apipb.StartReplicaResponse{}, nil
}

func (s *server) GrantLease(ctx context.Context, req *apipb.GrantLeaseRequest) (*apipb.GrantLeaseResponse, error) {
	if err := checkWorkloadScope(callerFrom(ctx), req.Scope); err != nil {
		return nil, err
	}
	if req.TtlSeconds == 0 || req.TtlSeconds > scope.MaxLeaseTTLSeconds {
		return nil, status.Errorf(codes.InvalidArgument, "lease ttl %ds: must be 1..%d seconds", req.TtlSeconds, scope.MaxLeaseTTLSeconds)
	}
	h, remote, err := s.a.governing(req.Scope)
	if err != nil {
		return nil, statusOf(err)
	}
	if h == nil {
		return forwardTo(ctx, s.a, remote, func(ctx context.Context, c apipb.AnchorClient) (*apipb.GrantLeaseResponse, error) {
			return c.GrantLease(ctx, req)
		})
	}
	res, err := s.a.propose(ctx, h, scope.Mutation{Op: scope.OpGrantLease, Proposer: callerFrom(ctx).principal, Lease: &scope.Lease{TTLSeconds: int64(req.TtlSeconds)}})
	if err != nil {
		return nil, statusOf(err)
	}
	if res.Lease == nil {
		return nil, status.Error(codes.Internal, "grant-lease committed without a lease")
	}
	return &apipb.GrantLeaseResponse{LeaseId: res.Lease.ID, TtlSeconds: req.TtlSeconds}, nil
}

func (s *server) KeepAlive(ctx context.Context, req *apipb.KeepAliveRequest) (*apipb.KeepAliveResponse, error) {
	if err := checkWorkloadScope(callerFrom(ctx), req.Scope); err != nil {
		return nil, err
	}
	a := s.a
	h, remote, err := a.governing(req.Scope)
	if err != nil {
		return nil, statusOf(err)
	}
	if h != nil {
		resp, leader, err := a.keepAliveHere(ctx, h, req.LeaseId)
		if resp != nil || err != nil {
			return resp, err
		}
		// Deadlines live on the leader: send it there.
		remote = []string{leader}
	}
	return forwardTo(ctx, a, remote, func(ctx context.Context, c apipb.AnchorClient) (*apipb.KeepAliveResponse, error) {
		return c.KeepAlive(ctx, req)
	})
}

// keepAliveHere renews a lease when this replica leads its scope, or returns
// the leader to forward to. Raft makes a replica leader a moment before its
// lessor starts (see onLeader); a keep-alive arriving in between waits for
// the lessor rather than being forwarded to this anchor itself.
func (a *Anchor) keepAliveHere(ctx context.Context, h *hosted, id uint64) (*apipb.KeepAliveResponse, string, error) {
	var giveUp, recheck <-chan time.Time
	for {
		ttl, leading, found := h.lessor.keepAlive(id)
		switch {
		case leading && !found:
			return nil, "", status.Errorf(codes.NotFound, "lease %d of scope %s has expired or was revoked", id, h.domain)
		case leading:
			return &apipb.KeepAliveResponse{TtlSeconds: ttl}, "", nil
		}
		st := h.group.Status()
		if st.Leader == 0 {
			return nil, "", statusOf(a.replicaErr(h, replica.ErrNoLeader))
		}
		if !st.IsLeader {
			return nil, a.book.name(st.Leader), nil
		}
		if giveUp == nil {
			t := time.NewTimer(a.cfg.RequestTimeout)
			defer t.Stop()
			tk := time.NewTicker(a.cfg.TickInterval) // leadership may move on meanwhile
			defer tk.Stop()
			giveUp, recheck = t.C, tk.C
			h.lessor.waiting.Add(1)
			defer h.lessor.waiting.Add(-1)
		}
		select {
		case <-h.lessor.started():
		case <-recheck:
		case <-giveUp:
			return nil, "", status.Errorf(codes.Unavailable, "scope %s: anchor %s leads it but has not taken over its leases within %s; retry", h.domain, a.meta.ID, a.cfg.RequestTimeout)
		case <-ctx.Done():
			return nil, "", statusOf(ctx.Err())
		case <-h.ctx.Done():
			return nil, "", statusOf(a.replicaErr(h, replica.ErrStopped))
		}
	}
}

func (s *server) RevokeLease(ctx context.Context, req *apipb.RevokeLeaseRequest) (*apipb.RevokeLeaseResponse, error) {
	if err := checkWorkloadScope(callerFrom(ctx), req.Scope); err != nil {
		return nil, err
	}
	h, remote, err := s.a.governing(req.Scope)
	if err != nil {
		return nil, statusOf(err)
	}
	if h == nil {
		return forwardTo(ctx, s.a, remote, func(ctx context.Context, c apipb.AnchorClient) (*apipb.RevokeLeaseResponse, error) {
			return c.RevokeLease(ctx, req)
		})
	}
	res, err := s.a.propose(ctx, h, scope.Mutation{Op: scope.OpRevokeLease, Proposer: callerFrom(ctx).principal, LeaseIDs: []uint64{req.LeaseId}})
	if err != nil {
		return nil, statusOf(err)
	}
	return &apipb.RevokeLeaseResponse{Revision: res.Revision}, nil
}

// Join admits an anchor: it checks the join token, signs the anchor's CSR
// with the mesh CA, records the anchor's address and hands back the address
// book. Only the anchor holding the mesh CA (the bootstrap anchor) can admit.
func (s *server) Join(ctx context.Context, req *apipb.JoinRequest) (*apipb.JoinResponse, error) {
	a := s.a
	if err := a.checkJoinToken(req.Token); err != nil {
		return nil, err
	}
	resp := &apipb.JoinResponse{Mesh: a.meta.Mesh, RootVoters: a.meta.RootVoters}
	if len(req.Csr) == 0 {
		return resp, nil // the caller first learns the mesh to write its CSR
	}
	if req.AnchorId == "" || req.Address == "" {
		return nil, status.Error(codes.InvalidArgument, "join: anchor_id and address are required")
	}
	if other := a.book.name(NodeID(req.AnchorId)); !strings.HasPrefix(other, "node-") && other != req.AnchorId {
		return nil, status.Errorf(codes.InvalidArgument, "join: anchor ID %q collides with %q; pick another ID", req.AnchorId, other)
	}
	ca, err := a.rootCA()
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "anchor %s cannot sign for the mesh yet: %v", a.meta.ID, err)
	}
	cert, err := ca.SignCSR(req.Csr, identity.AnchorID(a.meta.Mesh, req.AnchorId), anchorCertTTL, time.Now())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "join: %v", err)
	}
	a.book.set(req.AnchorId, req.Address)
	if err := a.saveBook(); err != nil {
		return nil, status.Errorf(codes.Internal, "join: %v", err)
	}
	if h, ok := a.scope(a.meta.Mesh); ok && h.state.Incarnation() != "" {
		// Any replica may propose: every anchor follows these objects (see
		// followAddressBook), so the new one must be there, whoever leads.
		// Before the root's genesis, reconcile publishes it once it can.
		a.publishAddressBook(ctx, h)
	}
	tokText, err := os.ReadFile(filepath.Join(a.cfg.DataDir, joinTokenFile))
	if err != nil {
		return nil, status.Errorf(codes.Internal, "join token: %v", err)
	}
	resp.Chain = [][]byte{cert.Raw}
	for _, c := range ca.Chain() {
		resp.Chain = append(resp.Chain, c.Raw)
	}
	resp.Bundle = [][]byte{ca.Root().Raw}
	resp.Kek = a.kek
	resp.JoinToken = strings.TrimSpace(string(tokText))
	book := a.book.snapshot()
	for _, id := range sortedKeys(book) {
		resp.Anchors = append(resp.Anchors, &apipb.AnchorAddress{Id: id, Address: book[id], NodeId: NodeID(id)})
	}
	return resp, nil
}

// setAddresses records other anchors' addresses (anchor ID -> host:port) in
// the address book, and on disk when one is new or changed. With onlyNew,
// known addresses are kept (the caller's may be older). This anchor's own
// address is the one it listens on.
func (a *Anchor) setAddresses(addrs map[string]string, onlyNew bool) error {
	changed := false
	for _, id := range sortedKeys(addrs) {
		old, ok := a.book.addr(id)
		if id == a.meta.ID || ok && (onlyNew || old == addrs[id]) {
			continue
		}
		a.book.set(id, addrs[id])
		changed = true
		a.log.Info("anchor address learned", "anchor", id, "address", addrs[id])
	}
	if !changed {
		return nil
	}
	return a.saveBook()
}

func (a *Anchor) saveBook() error {
	a.metaMu.Lock()
	defer a.metaMu.Unlock()
	a.meta.Anchors = a.book.snapshot()
	return a.meta.save(a.cfg.DataDir)
}

func scopeCode(err error) (string, bool) {
	var se *scope.Error
	if errors.As(err, &se) {
		return se.Code, true
	}
	return "", false
}

// checkJoinToken compares a presented token with this anchor's join.token: the same secret,
// pinned to a root of the current trust bundle.
func (a *Anchor) checkJoinToken(presented string) error {
	tokText, err := os.ReadFile(filepath.Join(a.cfg.DataDir, joinTokenFile))
	if err != nil {
		return status.Errorf(codes.FailedPrecondition, "anchor %s holds no join token; use the anchor that bootstrapped the mesh", a.meta.ID)
	}
	tok, err := identity.ParseJoinToken(strings.TrimSpace(string(tokText)))
	if err != nil {
		return status.Errorf(codes.Internal, "join token on disk: %v", err)
	}
	// The presented token may pin any root the mesh trusts now, not only the one join.token
	// pins: during a root rotation both roots are trusted, and after one the anchors re-pin
	// their join.token one by one (repinJoinToken).
	p, err := identity.ParseJoinToken(strings.TrimSpace(presented))
	if err == nil {
		for _, root := range a.tls.Bundle() {
			pinned := tok
			pinned.CAPin = identity.SPKIPin(root)
			if pinned.Matches(p.String()) {
				return nil
			}
		}
	}
	return status.Error(codes.PermissionDenied, "invalid join token")
}
