package anchor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"canton.dev/canton/internal/api/apipb"
)

// maxHops bounds how often one request may be forwarded between anchors.
const maxHops = 8

// inZone reports whether name is domain or below it.
func inZone(name, domain string) bool {
	return name == domain || strings.HasSuffix(name, "."+domain)
}

// governing finds who governs a namespace: a replica hosted here, or else the
// anchors to ask. It walks down from the deepest scope hosted here, following
// zone cuts (Delegations) exactly as a DNS resolver follows referrals.
func (a *Anchor) governing(ns string) (*hosted, []string, error) {
	ns = strings.TrimSuffix(strings.ToLower(ns), ".")
	if !inZone(ns, a.meta.Mesh) {
		return nil, nil, &invalidError{fmt.Sprintf("namespace %q is not in mesh %s", ns, a.meta.Mesh)}
	}
	var best *hosted
	for _, h := range a.hostedScopes() {
		if inZone(ns, h.domain) && (best == nil || len(h.domain) > len(best.domain)) {
			best = h
		}
	}
	if best == nil {
		return nil, a.meta.RootVoters, nil
	}
	var cut string
	var anchors []string
	for _, d := range best.state.Delegations() {
		spec, err := delegationSpec(d)
		if err != nil || !inZone(ns, spec.Domain) || len(spec.Domain) <= len(cut) {
			continue
		}
		cut, anchors = spec.Domain, spec.Anchors
	}
	if cut == "" {
		return best, nil, nil
	}
	return nil, anchors, nil
}

type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }

// forward runs call against the first reachable anchor of ids, passing on the
// original caller and a hop count. Only errors that say the anchor could not
// be reached move on to the next one.
func (a *Anchor) forward(ctx context.Context, ids []string, call func(ctx context.Context, c apipb.AnchorClient) error) error {
	hops := 0
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(mdHops); len(v) > 0 {
			hops, _ = strconv.Atoi(v[0])
		}
	}
	if hops >= maxHops {
		return status.Errorf(codes.FailedPrecondition, "request forwarded %d times between anchors without reaching its scope: the address book or delegations may be inconsistent", hops)
	}
	c := callerFrom(ctx)
	out := metadata.Pairs(mdHops, strconv.Itoa(hops+1), mdCaller, c.principal)
	ctx = metadata.NewOutgoingContext(ctx, out)
	var errs []string
	for _, id := range ids {
		if id == a.meta.ID {
			continue
		}
		addr, ok := a.book.addr(id)
		if !ok {
			errs = append(errs, fmt.Sprintf("%s: address unknown", id))
			continue
		}
		conn, err := a.peers.get(addr)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", id, err))
			continue
		}
		err = call(ctx, apipb.NewAnchorClient(conn))
		if status.Code(err) == codes.Unavailable && ctx.Err() == nil {
			errs = append(errs, fmt.Sprintf("%s (%s): %v", id, addr, status.Convert(err).Message()))
			continue
		}
		return err
	}
	if len(errs) == 0 {
		return status.Error(codes.Unavailable, "no anchor to forward the request to")
	}
	return status.Errorf(codes.Unavailable, "no anchor could be reached: %s", strings.Join(errs, "; "))
}

// peerPool keeps one client connection per anchor address.
type peerPool struct {
	tls   *tls.Config
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newPeerPool(cfg *tls.Config) *peerPool {
	return &peerPool{tls: cfg, conns: map[string]*grpc.ClientConn{}}
}

func (p *peerPool) get(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(p.tls)))
	if err != nil {
		return nil, err
	}
	p.conns[addr] = c
	return c, nil
}

func (p *peerPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = map[string]*grpc.ClientConn{}
}

// statusOf maps an anchor-side error to a gRPC status with a clear message.
func statusOf(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var (
		ue *unavailableError
		ie *invalidError
	)
	switch {
	case errors.As(err, &ue):
		return status.Error(codes.Unavailable, err.Error())
	case errors.As(err, &ie):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	if code, ok := scopeCode(err); ok {
		switch code {
		case "conflict":
			return status.Error(codes.Aborted, err.Error())
		case "not-found":
			return status.Error(codes.NotFound, err.Error())
		case "exists":
			return status.Error(codes.AlreadyExists, err.Error())
		default:
			return status.Error(codes.InvalidArgument, err.Error())
		}
	}
	return status.Error(codes.Internal, err.Error())
}

// forwardTo makes one unary call on the first reachable anchor of ids (see
// forward) and returns its answer.
func forwardTo[Resp any](ctx context.Context, a *Anchor, ids []string, call func(context.Context, apipb.AnchorClient) (Resp, error)) (Resp, error) {
	var resp Resp
	err := a.forward(ctx, ids, func(ctx context.Context, c apipb.AnchorClient) (err error) {
		resp, err = call(ctx, c)
		return err
	})
	return resp, err
}
