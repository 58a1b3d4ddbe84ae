package anchor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/resolve/proof"
	"canton.dev/canton/internal/resource"
)

// Resolution walks the hierarchy like DNS: the deepest scope this anchor
// hosts answers or refers to the delegated child (forwarding to its anchors),
// aliases are followed with a loop guard, and a missing name is a negative
// answer with its own short TTL.
//
// Across scopes a service is visible only where it is exported: a request
// carries the scope that asks (ResolveRequest.from_scope, set by the
// importing scope's anchors, and forced to the caller's own scope when a
// workload asks directly), and the owning scope answers it only if an Export
// in the service's namespace covers the service and that scope, limited to
// the exported ports; otherwise the answer is negative ("not exported to
// <scope>"). Requests without a scope (the admin) see every service.
const (
	answerTTL    = 30 * time.Second
	negativeTTL  = 5 * time.Second
	maxAliasHops = 8
)

func (s *server) Resolve(ctx context.Context, req *apipb.ResolveRequest) (*apipb.ResolveResponse, error) {
	name := strings.TrimSuffix(strings.ToLower(req.Name), ".")
	from := strings.TrimSuffix(strings.ToLower(req.FromScope), ".")
	if c := callerFrom(ctx); c.role == roleWorkload {
		// A workload sees what its scope may see, whatever it claims.
		from = s.a.scopeOf(c.id.TrustDomain)
	}
	resp, err := s.a.resolve(ctx, name, from, map[string]bool{})
	if err != nil {
		return nil, statusOf(err)
	}
	resp.Name = req.Name
	if !callerFrom(ctx).anchor() {
		resp.AnchorAddresses = nil // where anchors listen is for anchors
	}
	return resp, nil
}

// resolve answers name for scope from ("" for the admin: no export check),
// with the proof of the answer (resp.Proof).
func (a *Anchor) resolve(ctx context.Context, name, from string, seen map[string]bool) (*apipb.ResolveResponse, error) {
	resp, p, err := a.resolveProved(ctx, name, from, seen)
	if err != nil {
		return nil, err
	}
	resp.Proof = p.Marshal()
	resp.AnchorAddresses = a.addressesIn(p)
	return resp, nil
}

// addressesIn is where the anchors named by p's referrals listen, as far as
// this anchor knows.
func (a *Anchor) addressesIn(p *proof.Proof) []*apipb.AnchorAddress {
	var out []*apipb.AnchorAddress
	seen := map[string]bool{}
	for _, s := range p.Steps {
		for _, r := range s.Referrals {
			for _, id := range r.Anchors {
				if seen[id] {
					continue
				}
				seen[id] = true
				if addr, ok := a.book.addr(id); ok {
					out = append(out, &apipb.AnchorAddress{Id: id, Address: addr, NodeId: NodeID(id)})
				}
			}
		}
	}
	return out
}

// resolveProved resolves name and proves it: one step per name looked up.
func (a *Anchor) resolveProved(ctx context.Context, name, from string, seen map[string]bool) (*apipb.ResolveResponse, *proof.Proof, error) {
	svc, ns, ok := strings.Cut(name, ".")
	if !ok || svc == "" || !inZone(ns, a.meta.Mesh) {
		return nil, nil, status.Errorf(codes.InvalidArgument, "resolve %q: want <service>.<namespace> inside mesh %s", name, a.meta.Mesh)
	}
	h, hops, err := a.route(ns)
	if err != nil {
		return nil, nil, err
	}
	if h == nil {
		return a.resolveRemote(ctx, name, ns, from, hops)
	}
	if err := a.readIndex(ctx, h); err != nil {
		return nil, nil, err
	}
	if o, ok := h.state.Get("Service", ns, svc); ok {
		resp, err := a.answer(h, o, from)
		if err != nil {
			return nil, nil, err
		}
		return a.proved(h, name, resp)
	}
	if al, ok := h.state.Get("Alias", ns, svc); ok {
		if seen[name] || len(seen) >= maxAliasHops {
			return nil, nil, status.Errorf(codes.FailedPrecondition, "resolve: alias loop or more than %d aliases at %s", maxAliasHops, name)
		}
		seen[name] = true
		t, err := resource.Typed(al)
		if err != nil {
			return nil, nil, err
		}
		target := strings.ToLower(t.(*resource.AliasSpec).Target)
		if o, ok := serviceByUID(h, target); ok {
			target = o.Name + "." + o.Namespace
		}
		step, err := a.signAlias(h, name, target)
		if err != nil {
			return nil, nil, statusOf(err)
		}
		resp, p, err := a.resolveProved(ctx, target, from, seen)
		if err != nil {
			return nil, nil, err
		}
		resp.Aliases = append([]string{name}, resp.Aliases...)
		p.Steps = append([]proof.Step{step}, p.Steps...)
		return resp, p, nil
	}
	return a.proved(h, name, negative(name, h.domain, ""))
}

// proved signs resp, the answer of hosted scope h for name.
func (a *Anchor) proved(h *hosted, name string, resp *apipb.ResolveResponse) (*apipb.ResolveResponse, *proof.Proof, error) {
	step, err := a.signFinal(h, name, resp)
	if err != nil {
		return nil, nil, statusOf(err)
	}
	return resp, &proof.Proof{Steps: []proof.Step{step}}, nil
}

// resolveRemote asks the anchors that govern ns, trying each hop of the
// route in turn while its anchors cannot be reached, and verifies the whole
// proof before passing the answer on: an answer for a name outside the zone
// delegated, or signed by another CA than the one the delegation names, is
// an error, never an answer. Through a cut of a scope hosted here this
// anchor adds its referral; through a learned referral the answer must be
// signed by the CA and one of the anchors it named. The referrals of a
// verified proof are learned, and the addresses the answer gives for the
// anchors they name are added to the address book when unknown.
func (a *Anchor) resolveRemote(ctx context.Context, name, ns, from string, hops []hop) (*apipb.ResolveResponse, *proof.Proof, error) {
	var unreachable error
	for i, hp := range hops {
		resp, p, err := a.resolveVia(ctx, name, ns, from, hp)
		more := i < len(hops)-1
		switch {
		case err == nil:
			a.referrals.learn(p)
			a.learnAddresses(p, resp.AnchorAddresses)
			resp.AnchorAddresses = nil
			return resp, p, nil
		case hp.learned != nil && status.Code(err) == codes.PermissionDenied:
			// The child's CA or anchors changed since the referral was
			// learned: forget it and walk as usual.
			a.referrals.forget(hp.learned)
			a.log.Debug("answer through a learned referral refused; referral forgotten", "cut", hp.cut, "err", err)
			if more && ctx.Err() == nil {
				continue
			}
		case more && ctx.Err() == nil && status.Code(err) == codes.Unavailable:
			unreachable = err
			continue
		}
		if unreachable != nil && status.Code(err) == codes.Unavailable {
			return nil, nil, status.Errorf(codes.Unavailable, "%s; %s", status.Convert(unreachable).Message(), status.Convert(err).Message())
		}
		return nil, nil, err
	}
	return nil, nil, status.Errorf(codes.Unavailable, "resolve %s: no anchor to ask", name)
}

// resolveVia asks the anchors of one hop and checks what vouches for their answer.
func (a *Anchor) resolveVia(ctx context.Context, name, ns, from string, hp hop) (*apipb.ResolveResponse, *proof.Proof, error) {
	resp, err := forwardTo(ctx, a, hp.anchors, func(ctx context.Context, c apipb.AnchorClient) (*apipb.ResolveResponse, error) {
		return c.Resolve(ctx, &apipb.ResolveRequest{Name: name, FromScope: from})
	})
	if err != nil {
		return nil, nil, err
	}
	refuse := func(err error) (*apipb.ResolveResponse, *proof.Proof, error) {
		return nil, nil, status.Errorf(codes.PermissionDenied, "refusing the answer of anchors %v: %v", hp.anchors, err)
	}
	p, err := proof.Unmarshal(resp.Proof)
	if err != nil {
		return refuse(err)
	}
	switch {
	case hp.parent != nil:
		spec := deepestCut(hp.parent, ns)
		if spec == nil || spec.Domain != hp.cut {
			return refuse(fmt.Errorf("no zone cut of %s leads to %s any more", hp.parent.domain, ns))
		}
		if err := a.vouchForChild(p, hp.parent, spec); err != nil {
			return refuse(err)
		}
		resp.Referrals = append([]string{spec.Domain}, resp.Referrals...)
		resp.Proof = p.Marshal()
	case hp.learned != nil:
		if err := checkLearned(p, hp.learned); err != nil {
			return refuse(err)
		}
	}
	if _, err := a.resolveVerifier().VerifyResponse(name, resp, time.Now()); err != nil {
		return refuse(err)
	}
	return resp, p, nil
}

// checkLearned checks that the answer to the first name of p, obtained from
// the anchors of learned referral r, was made as r's scope by exactly the CA
// and one of the anchors r named: the parent's word, remembered, stands in
// for the referral the parent would have signed.
func checkLearned(p *proof.Proof, r *referral) error {
	if len(p.Steps) == 0 {
		return fmt.Errorf("the anchors of %s sent an empty proof", r.domain)
	}
	s := &p.Steps[0]
	for _, st := range append(slices.Clone(s.Referrals), s.Final) {
		if st.Scope != r.domain {
			continue
		}
		if len(st.Chain) == 0 || !bytes.Equal(st.Chain[0], r.childCA) {
			return fmt.Errorf("the anchors of %s signed with another CA than the one scope %s named for it", r.domain, r.parent)
		}
		if !slices.Contains(r.anchors, st.Anchor) {
			return fmt.Errorf("anchor %q answered as %s, but scope %s named its anchors %v", st.Anchor, r.domain, r.parent, r.anchors)
		}
		return nil
	}
	return fmt.Errorf("the anchors of %s answered without a statement signed as scope %s", r.domain, r.domain)
}

// learnAddresses adds to the address book the addresses an answer gives for
// anchors named by the referrals of its verified proof p, when unknown
// here: a connection to an anchor accepts only that anchor's identity, so
// the hint can only be wrong by failing.
func (a *Anchor) learnAddresses(p *proof.Proof, addrs []*apipb.AnchorAddress) {
	named := map[string]bool{}
	for _, s := range p.Steps {
		for _, r := range s.Referrals {
			for _, id := range r.Anchors {
				named[id] = true
			}
		}
	}
	learned := false
	for _, aa := range addrs {
		if !named[aa.Id] || aa.Address == "" || aa.Id == a.meta.ID {
			continue
		}
		if _, ok := a.book.addr(aa.Id); ok {
			continue
		}
		a.book.set(aa.Id, aa.Address)
		learned = true
		a.log.Info("anchor address learned from a referral", "anchor", aa.Id, "address", aa.Address)
	}
	if learned {
		if err := a.saveBook(); err != nil {
			a.log.Warn("address book not saved", "err", err)
		}
	}
}

func negative(canonical, scope, reason string) *apipb.ResolveResponse {
	return &apipb.ResolveResponse{Canonical: canonical, Scope: scope, Found: false, Reason: reason, TtlSeconds: uint32(negativeTTL / time.Second)}
}

// scopeOf is the domain of the scope governing namespace ns as far as this
// anchor knows: the deepest hosted scope or zone cut containing it, else ns
// itself (then only exports to "*" cover it).
func (a *Anchor) scopeOf(ns string) string {
	best := a.cutFor(ns)
	for _, h := range a.hostedScopes() {
		if inZone(ns, h.domain) && len(h.domain) > len(best) {
			best = h.domain
		}
	}
	if best == "" {
		return ns
	}
	return best
}

// exportedPorts decides whether scope from may see svc, a Service of scope h:
// always within h, else only through an Export of svc's namespace covering
// it. It returns the ports from may use (nil: the answer is negative) and
// the reason of a negative answer.
func exportedPorts(h *hosted, svc resource.Object, spec *resource.ServiceSpec, from string, governedBy func(string) *hosted) ([]resource.ServicePort, string) {
	if from == "" || from == h.domain || governedBy(from) == h {
		return spec.Ports, ""
	}
	covered, allPorts := false, false
	var exports []*resource.ExportSpec
	for _, o := range h.state.List("Export", svc.Namespace) {
		t, err := resource.Typed(o)
		if err != nil {
			continue
		}
		e := t.(*resource.ExportSpec)
		if !e.Covers(svc.Name, from) {
			continue
		}
		covered = true
		allPorts = allPorts || len(e.Ports) == 0
		exports = append(exports, e)
	}
	if !covered {
		return nil, fmt.Sprintf("not exported to %s", from)
	}
	if allPorts {
		return spec.Ports, ""
	}
	var ports []resource.ServicePort
	for _, p := range spec.Ports {
		for _, e := range exports {
			if e.ExportsPort(p) {
				ports = append(ports, p)
				break
			}
		}
	}
	if len(ports) == 0 {
		return nil, fmt.Sprintf("no port of the service is exported to %s", from)
	}
	return ports, ""
}

// cutFor is the delegation this anchor follows for ns (the child zone), or "".
func (a *Anchor) cutFor(ns string) string {
	best := ""
	for _, h := range a.hostedScopes() {
		if !inZone(ns, h.domain) {
			continue
		}
		if spec := deepestCut(h, ns); spec != nil && len(spec.Domain) > len(best) {
			best = spec.Domain
		}
	}
	return best
}

func serviceByUID(h *hosted, uid string) (resource.Object, bool) {
	for _, o := range h.state.List("Service", "") {
		if o.UID == uid {
			return o, true
		}
	}
	return resource.Object{}, false
}

// answer builds a positive answer for scope from: the service (with the ports
// exported to from), its workloads and identity; or a negative answer when
// the service is not exported to from.
func (a *Anchor) answer(h *hosted, svc resource.Object, from string) (*apipb.ResolveResponse, error) {
	canonical := svc.Name + "." + svc.Namespace
	t, err := resource.Typed(svc)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: service in scope %s: %w", canonical, h.domain, err)
	}
	spec := t.(*resource.ServiceSpec)
	governedBy := func(d string) *hosted {
		g, _, err := a.governing(d)
		if err != nil {
			return nil
		}
		return g
	}
	ports, reason := exportedPorts(h, svc, spec, from, governedBy)
	if ports == nil {
		return negative(canonical, h.domain, reason), nil
	}
	if len(ports) != len(spec.Ports) {
		narrowed := *spec
		narrowed.Ports = ports
		b, err := json.Marshal(&narrowed)
		if err != nil {
			return nil, err
		}
		if svc.Spec, err = resource.Canonical("Service", b); err != nil {
			return nil, fmt.Errorf("resolve %s: exported ports: %w", canonical, err)
		}
	}
	var wls []resource.Object
	for _, o := range h.state.List("Workload", svc.Namespace) {
		if t, err := resource.Typed(o); err == nil && t.(*resource.WorkloadSpec).Service == svc.Name {
			wls = append(wls, o)
		}
	}
	sb, err := json.Marshal(svc)
	if err != nil {
		return nil, err
	}
	if wls == nil {
		wls = []resource.Object{}
	}
	wb, err := json.Marshal(wls)
	if err != nil {
		return nil, err
	}
	return &apipb.ResolveResponse{
		Canonical:  canonical,
		Scope:      h.domain,
		Found:      true,
		Service:    sb,
		Workloads:  wb,
		Identity:   identity.WorkloadID(svc.Namespace, svc.Name).String(),
		TtlSeconds: uint32(answerTTL / time.Second),
	}, nil
}
