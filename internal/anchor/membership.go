package anchor

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/replica"
	"canton.dev/canton/internal/resource"
	"canton.dev/canton/internal/scope"
)

// ChangeMembership changes the Raft membership of a scope, then records the
// new anchor set in the scope's governance and in the Delegation of its
// parent, which is what requests for the scope are routed by. A removed
// anchor drops its replica once it learns of its removal (see dropScope).
// Every step is idempotent: after a failure, running the same change again
// finishes it.
func (s *server) ChangeMembership(ctx context.Context, req *apipb.MembershipRequest) (*apipb.MembershipResponse, error) {
	a := s.a
	h, ok := a.scope(req.Scope)
	if ok && req.Change == apipb.MembershipRequest_REMOVE && req.AnchorId == a.meta.ID {
		// This replica goes away with the change: a remaining member carries
		// it out and the updates that follow it.
		others := slices.DeleteFunc(a.memberNames(h), func(id string) bool { return id == a.meta.ID })
		if len(others) == 0 {
			return nil, status.Errorf(codes.FailedPrecondition, "membership: %s is the only anchor of scope %s; add another before removing it", req.AnchorId, h.domain)
		}
		return forwardTo(ctx, a, others, func(ctx context.Context, c apipb.AnchorClient) (*apipb.MembershipResponse, error) {
			return c.ChangeMembership(ctx, req)
		})
	}
	if !ok {
		_, remote, err := a.governing(req.Scope)
		if err != nil {
			return nil, statusOf(err)
		}
		return forwardTo(ctx, a, remote, func(ctx context.Context, c apipb.AnchorClient) (*apipb.MembershipResponse, error) {
			return c.ChangeMembership(ctx, req)
		})
	}
	if _, known := a.book.addr(req.AnchorId); !known {
		return nil, status.Errorf(codes.InvalidArgument, "anchor %q is unknown", req.AnchorId)
	}
	node := NodeID(req.AnchorId)
	cctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	defer cancel()
	var err error
	switch req.Change {
	case apipb.MembershipRequest_ADD_LEARNER:
		if err = h.group.AddLearner(cctx, node); err == nil {
			err = a.startReplicaOn(ctx, req.AnchorId, h.domain, nil, h.parent, a.memberNames(h))
		}
	case apipb.MembershipRequest_PROMOTE:
		err = h.group.Promote(cctx, node)
	case apipb.MembershipRequest_REMOVE:
		st := h.group.Status()
		if len(st.Voters) == 1 && st.Voters[0] == node {
			return nil, status.Errorf(codes.FailedPrecondition, "membership: %s is the only voter of scope %s; promote another anchor before removing it", req.AnchorId, h.domain)
		}
		if st.Leader == node && slices.Contains(st.Voters, node) {
			// Hand leadership over first: a leader that removes itself leaves
			// the group leaderless for an election timeout, and proposals
			// made meanwhile (the governance below) are lost.
			if err = h.group.TransferLeadership(cctx, transferTarget(st, node)); err != nil {
				break
			}
		}
		err = h.group.Remove(cctx, node)
	default:
		return nil, status.Error(codes.InvalidArgument, "membership: change is required")
	}
	if err != nil {
		return nil, statusOf(a.replicaErr(h, err))
	}
	st := h.group.Status()
	resp := &apipb.MembershipResponse{}
	gov := scope.Governance{}
	for _, v := range st.Voters {
		resp.Voters = append(resp.Voters, a.book.name(v))
		gov.Anchors = append(gov.Anchors, scope.AnchorRef{ID: a.book.name(v), NodeID: v, Voter: true})
	}
	for _, v := range st.Learners {
		resp.Learners = append(resp.Learners, a.book.name(v))
		gov.Anchors = append(gov.Anchors, scope.AnchorRef{ID: a.book.name(v), NodeID: v})
	}
	sort.Slice(gov.Anchors, func(i, j int) bool { return gov.Anchors[i].ID < gov.Anchors[j].ID })
	// Record the new membership in the scope's own state (and so its lineage).
	if _, err := a.propose(ctx, h, scope.Mutation{Op: scope.OpSetGovernance, Proposer: callerFrom(ctx).principal, Governance: &gov}); err != nil {
		return nil, statusOf(err)
	}
	// Route the scope's requests to its anchors as they are now.
	if h.parent != "" {
		if err := a.updateDelegation(ctx, h.parent, h.domain, slices.Concat(resp.Voters, resp.Learners)); err != nil {
			return nil, status.Errorf(status.Code(statusOf(err)), "membership of scope %s changed, but its Delegation in %s still names the old anchors: %v; run the same change again to finish",
				h.domain, h.parent, status.Convert(statusOf(err)).Message())
		}
	}
	return resp, nil
}

// transferTarget picks the voter to hand leadership to before the leader
// leaving is removed: this replica when it votes, else the first other voter.
func transferTarget(st replica.Status, leaving uint64) uint64 {
	if st.ID != leaving && slices.Contains(st.Voters, st.ID) {
		return st.ID
	}
	for _, v := range st.Voters {
		if v != leaving {
			return v
		}
	}
	return 0
}

// memberNames are the anchors of h's group (voters and learners) as this
// replica knows them.
func (a *Anchor) memberNames(h *hosted) []string {
	st := h.group.Status()
	var out []string
	for _, v := range slices.Concat(st.Voters, st.Learners) {
		out = append(out, a.book.name(v))
	}
	return out
}

// delegationRetries bounds how often updateDelegation retries after a
// concurrent change of the Delegation.
const delegationRetries = 5

// updateDelegation makes the Delegation of child in scope parent name exactly
// the anchors members: a read of the Delegation and a put conditional on its
// version (retried when someone else changed it meanwhile), committed in the
// parent through this anchor's replica or forwarded to the parent's anchors.
// The anchors it already named keep their order; new ones follow, sorted.
func (a *Anchor) updateDelegation(ctx context.Context, parent, child string, members []string) error {
	for attempt := 0; ; attempt++ {
		dgs, err := a.listIn(ctx, parent, "Delegation")
		if err != nil {
			return err
		}
		var (
			obj  resource.Object
			spec *resource.DelegationSpec
		)
		for _, d := range dgs {
			if sp, err := delegationSpec(d); err == nil && sp.Domain == child {
				obj, spec = d, sp
				break
			}
		}
		if spec == nil {
			return fmt.Errorf("scope %s holds no Delegation of %s", parent, child)
		}
		next := mergeAnchors(spec.Anchors, members)
		if slices.Equal(next, spec.Anchors) {
			return nil
		}
		var raw map[string]json.RawMessage // keep every other field as it is
		if err := json.Unmarshal(obj.Spec, &raw); err != nil {
			return fmt.Errorf("delegation %s/%s: %w", obj.Namespace, obj.Name, err)
		}
		if raw["anchors"], err = json.Marshal(next); err != nil {
			return err
		}
		if obj.Spec, err = json.Marshal(raw); err != nil {
			return err
		}
		version := obj.Version
		obj.UID, obj.Version, obj.Created = "", 0, 0
		err = a.putIn(ctx, parent, obj, version)
		if (isCode(err, "conflict") || status.Code(err) == codes.Aborted) && attempt < delegationRetries {
			continue
		}
		return err
	}
}

// mergeAnchors is members in the order of current, then the new ones sorted.
func mergeAnchors(current, members []string) []string {
	var out []string
	for _, id := range current {
		if slices.Contains(members, id) && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	var added []string
	for _, id := range members {
		if !slices.Contains(out, id) && !slices.Contains(added, id) {
			added = append(added, id)
		}
	}
	sort.Strings(added)
	return append(out, added...)
}

// listIn reads the objects of kind in every namespace of scope domain,
// linearizably: from the replica hosted here or from the scope's anchors.
func (a *Anchor) listIn(ctx context.Context, domain, kind string) ([]resource.Object, error) {
	h, remote, err := a.governing(domain)
	if err != nil {
		return nil, err
	}
	if h != nil {
		if h.domain != domain {
			return nil, fmt.Errorf("%s is not a scope", domain)
		}
		if err := a.readIndex(ctx, h); err != nil {
			return nil, err
		}
		return h.state.List(kind, ""), nil
	}
	resp, err := forwardTo(ctx, a, remote, func(ctx context.Context, c apipb.AnchorClient) (*apipb.GetResponse, error) {
		return c.Get(ctx, &apipb.GetRequest{Kind: kind, Scope: domain})
	})
	if err != nil {
		return nil, err
	}
	return decodeObjects(resp.Objects)
}

// putIn commits o in scope domain if its stored version is still version, on
// behalf of the caller of ctx.
func (a *Anchor) putIn(ctx context.Context, domain string, o resource.Object, version uint64) error {
	h, remote, err := a.governing(domain)
	if err != nil {
		return err
	}
	if h != nil {
		_, err := a.propose(ctx, h, scope.Mutation{Op: scope.OpPut, Proposer: callerFrom(ctx).principal, Objects: []resource.Object{o}, IfVersions: []*uint64{&version}})
		return err
	}
	objs, err := json.Marshal([]resource.Object{o})
	if err != nil {
		return err
	}
	_, err = forwardTo(ctx, a, remote, func(ctx context.Context, c apipb.AnchorClient) (*apipb.ApplyResponse, error) {
		return c.Apply(ctx, &apipb.ApplyRequest{Scope: domain, Objects: objs, IfVersion: []uint64{version}, SetIfVersion: true})
	})
	return err
}
