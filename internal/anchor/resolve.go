package anchor

import (
	"context"
	"encoding/json"

	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/resource"
)

// Resolution walks the hierarchy like DNS: the deepest scope this anchor
// hosts answers or refers to the delegated child (forwarding to its anchors),
// aliases are followed with a loop guard, and a missing name is a negative
// answer with its own short TTL.
const (
	answerTTL    = 30 * time.Second
	negativeTTL  = 5 * time.Second
	maxAliasHops = 8
)

func (s *server) Resolve(ctx context.Context, req *apipb.ResolveRequest) (*apipb.ResolveResponse, error) {
	name := strings.TrimSuffix(strings.ToLower(req.Name), ".")
	resp, err := s.a.resolve(ctx, name, map[string]bool{})
	if err != nil {
		return nil, statusOf(err)
	}
	resp.Name = req.Name
	return resp, nil
}

func (a *Anchor) resolve(ctx context.Context, name string, seen map[string]bool) (*apipb.ResolveResponse, error) {
	svc, ns, ok := strings.Cut(name, ".")
	if !ok || svc == "" || !inZone(ns, a.meta.Mesh) {
		return nil, status.Errorf(codes.InvalidArgument, "resolve %q: want <service>.<namespace> inside mesh %s", name, a.meta.Mesh)
	}
	h, remote, err := a.governing(ns)
	if err != nil {
		return nil, err
	}
	if h == nil {
		resp, err := forwardTo(ctx, a, remote, func(ctx context.Context, c apipb.AnchorClient) (*apipb.ResolveResponse, error) {
			return c.Resolve(ctx, &apipb.ResolveRequest{Name: name})
		})
		if err != nil {
			return nil, err
		}
		if cut := a.cutFor(ns); cut != "" {
			resp.Referrals = append([]string{cut}, resp.Referrals...)
		}
		return resp, nil
	}
	if err := a.readIndex(ctx, h); err != nil {
		return nil, err
	}
	if o, ok := h.state.Get("Service", ns, svc); ok {
		return a.answer(h, o)
	}
	if al, ok := h.state.Get("Alias", ns, svc); ok {
		if seen[name] || len(seen) >= maxAliasHops {
			return nil, status.Errorf(codes.FailedPrecondition, "resolve: alias loop or more than %d aliases at %s", maxAliasHops, name)
		}
		seen[name] = true
		t, err := resource.Typed(al)
		if err != nil {
			return nil, err
		}
		target := strings.ToLower(t.(*resource.AliasSpec).Target)
		if o, ok := serviceByUID(h, target); ok {
			target = o.Name + "." + o.Namespace
		}
		resp, err := a.resolve(ctx, target, seen)
		if err != nil {
			return nil, err
		}
		resp.Aliases = append([]string{name}, resp.Aliases...)
		return resp, nil
	}
	return &apipb.ResolveResponse{Canonical: name, Scope: h.domain, Found: false, TtlSeconds: uint32(negativeTTL / time.Second)}, nil
}

// cutFor is the delegation this anchor follows for ns (the child zone), or "".
func (a *Anchor) cutFor(ns string) string {
	best := ""
	for _, h := range a.hostedScopes() {
		if !inZone(ns, h.domain) {
			continue
		}
		for _, d := range h.state.Delegations() {
			if spec, err := delegationSpec(d); err == nil && inZone(ns, spec.Domain) && len(spec.Domain) > len(best) {
				best = spec.Domain
			}
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

// answer builds a positive answer: the service, its workloads and identity.
func (a *Anchor) answer(h *hosted, svc resource.Object) (*apipb.ResolveResponse, error) {
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
		Canonical:  svc.Name + "." + svc.Namespace,
		Scope:      h.domain,
		Found:      true,
		Service:    sb,
		Workloads:  wb,
		Identity:   identity.WorkloadID(svc.Namespace, svc.Name).String(),
		TtlSeconds: uint32(answerTTL / time.Second),
	}, nil
}
