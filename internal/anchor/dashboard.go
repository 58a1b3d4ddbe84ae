package anchor

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/dashboard"
	"canton.dev/canton/internal/resource"
	"canton.dev/canton/internal/scope"
)

// dashSource feeds the dashboard from this anchor: its own replicas, and the
// other anchors' status over the anchor API.
type dashSource struct{ a *Anchor }

var _ dashboard.Source = dashSource{}

func (d dashSource) Mesh() string { return d.a.meta.Mesh }

// statuses asks every anchor of the address book for its status, in parallel.
func (d dashSource) statuses(ctx context.Context) map[string]statusOrErr {
	a := d.a
	book := a.book.snapshot()
	out := make(map[string]statusOrErr, len(book))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for id, addr := range book {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r statusOrErr
			if id == a.meta.ID {
				r.st, r.err = (&server{a: a}).Status(ctx, nil)
			} else {
				cctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				if conn, err := a.peers.get(addr); err != nil {
					r.err = err
				} else {
					r.st, r.err = apipb.NewAnchorClient(conn).Status(cctx, &apipb.StatusRequest{})
				}
			}
			mu.Lock()
			out[id] = r
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

type statusOrErr struct {
	st  *apipb.StatusResponse
	err error
}

func (d dashSource) Anchors(ctx context.Context) ([]dashboard.Anchor, error) {
	book := d.a.book.snapshot()
	sts := d.statuses(ctx)
	var out []dashboard.Anchor
	for _, id := range sortedKeys(book) {
		an := dashboard.Anchor{ID: id, Address: book[id]}
		r := sts[id]
		if r.err != nil || r.st == nil {
			an.Error = fmt.Sprint(r.err)
		} else {
			an.Reachable = true
			for _, s := range r.st.Scopes {
				rep := dashboard.Replica{Domain: s.Domain, Leader: s.Leader, Term: s.Term, Applied: s.Applied, LineageHead: s.LineageHead, Role: dashboard.RoleFollower}
				switch {
				case s.Leader == id:
					rep.Role = dashboard.RoleLeader
				case contains(s.Learners, id):
					rep.Role = dashboard.RoleLearner
				}
				an.Scopes = append(an.Scopes, rep)
			}
		}
		out = append(out, an)
	}
	return out, nil
}

func (d dashSource) Scopes(ctx context.Context) ([]dashboard.Scope, error) {
	anchors, _ := d.Anchors(ctx)
	byDomain := map[string]*dashboard.Scope{}
	for _, an := range anchors {
		for _, r := range an.Scopes {
			s := byDomain[r.Domain]
			if s == nil {
				s = &dashboard.Scope{Domain: r.Domain}
				byDomain[r.Domain] = s
			}
			s.Anchors = append(s.Anchors, an.ID)
			if r.Leader != "" {
				s.Leader = r.Leader
			}
			s.Revision = max(s.Revision, r.Applied)
		}
	}
	var out []dashboard.Scope
	for domain, s := range byDomain {
		if domain != d.a.meta.Mesh {
			s.Parent = d.parentOf(domain, byDomain)
		}
		sort.Strings(s.Anchors)
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Domain < out[j].Domain })
	return out, nil
}

// parentOf is the deepest other known scope whose zone holds domain.
func (d dashSource) parentOf(domain string, known map[string]*dashboard.Scope) string {
	if p := d.a.parentOf(domain); p != "" {
		return p
	}
	best := ""
	for other := range known {
		if other != domain && strings.HasSuffix(domain, "."+other) && len(other) > len(best) {
			best = other
		}
	}
	return best
}

func (d dashSource) Objects(ctx context.Context, domain string) ([]resource.Object, error) {
	a := d.a
	h, remote, err := a.governing(domain)
	if err != nil {
		return nil, err
	}
	if h != nil {
		return h.state.List("", ""), nil
	}
	resp, err := forwardTo(ctx, a, remote, func(ctx context.Context, c apipb.AnchorClient) (*apipb.GetResponse, error) {
		return c.Get(ctx, &apipb.GetRequest{Scope: domain})
	})
	if err != nil {
		return nil, err
	}
	return decodeObjects(resp.Objects)
}

func (d dashSource) Lineage(ctx context.Context, domain string, limit int) ([]scope.Record, error) {
	a := d.a
	h, remote, err := a.governing(domain)
	if err != nil {
		return nil, err
	}
	var recs []scope.Record
	if h != nil {
		recs = h.state.Lineage(0, 0)
	} else {
		resp, err := forwardTo(ctx, a, remote, func(ctx context.Context, c apipb.AnchorClient) (*apipb.LineageResponse, error) {
			return c.Lineage(ctx, &apipb.LineageRequest{Scope: domain})
		})
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(resp.Records, &recs); err != nil {
			return nil, err
		}
	}
	if limit > 0 && len(recs) > limit {
		recs = recs[len(recs)-limit:]
	}
	return recs, nil
}

func (d dashSource) Proxies(ctx context.Context) ([]dashboard.Proxy, error) {
	var out []dashboard.Proxy
	for id, r := range d.statuses(ctx) {
		if r.st == nil {
			continue
		}
		for _, p := range r.st.Proxies {
			out = append(out, dashboard.Proxy{
				ID: p.Id, Service: p.Service, Namespace: p.Namespace, Labels: p.Labels,
				Anchor: id, Acked: p.Acked, Nack: p.NackMessage, Admin: p.Admin,
			})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
