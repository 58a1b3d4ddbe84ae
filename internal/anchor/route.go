package anchor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
)

// maxHops bounds how often one request may be forwarded between anchors.
const maxHops = 8

// inZone reports whether name is domain or below it.
func inZone(name, domain string) bool {
	return name == domain || strings.HasSuffix(name, "."+domain)
}

// governing finds who governs a namespace: a replica hosted here, or else the
// anchors to ask, in the order to ask them (see route).
func (a *Anchor) governing(ns string) (*hosted, []string, error) {
	h, hops, err := a.route(ns)
	if err != nil || h != nil {
		return h, nil, err
	}
	var ids []string
	for _, hp := range hops {
		for _, id := range hp.anchors {
			if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	return nil, ids, nil
}

// hop is one way to reach the scope governing a namespace that no replica
// hosted here governs: anchors to ask, and what vouches for them.
type hop struct {
	anchors []string
	// cut is the zone the anchors govern; "" for the root voters, asked when
	// nothing deeper is known.
	cut string
	// parent, when set, is the hosted scope whose Delegation of cut names
	// the anchors; it vouches for their answers (vouchForChild).
	parent *hosted
	// learned, when set, is the learned referral that named the anchors
	// (referrals.go): their answers must be signed by the CA it names.
	learned *referral
}

// route finds who governs a namespace, walking down like a DNS resolver:
// the deepest scope hosted here holding ns answers itself unless one of its
// zone cuts (Delegations) holds ns, whose anchors are then asked; with no
// such scope, the root scope's voters are. A referral learned from an
// earlier verified answer (referrals.go) deeper than that is asked first
// while valid — the walk goes on without the scopes above it, the root
// included — and after the walk once expired (up to Config.MaxStale). When
// a scope hosted here holds ns, the learned referral only comes after its
// cut: this anchor then proves the walk from its own scope down.
func (a *Anchor) route(ns string) (*hosted, []hop, error) {
	ns = strings.TrimSuffix(strings.ToLower(ns), ".")
	if !inZone(ns, a.meta.Mesh) {
		return nil, nil, &invalidError{fmt.Sprintf("namespace %q is not in mesh %s", ns, a.meta.Mesh)}
	}
	best := a.deepestHosted(ns)
	walk := hop{anchors: a.meta.RootVoters}
	if best != nil {
		spec := deepestCut(best, ns)
		if spec == nil {
			return best, nil, nil
		}
		walk = hop{anchors: spec.Anchors, cut: spec.Domain, parent: best}
	}
	r, valid := a.referrals.deepest(ns, walk.cut, time.Now(), a.maxStale())
	if r == nil {
		return nil, []hop{walk}, nil
	}
	learned := hop{anchors: r.anchors, cut: r.domain, learned: r}
	if valid && best == nil {
		return nil, []hop{learned, walk}, nil
	}
	return nil, []hop{walk, learned}, nil
}

// deepestHosted is the deepest scope hosted here whose domain holds ns, or
// nil. It looks up ns and each domain above it: O(labels of ns), whatever
// the number of scopes hosted.
func (a *Anchor) deepestHosted(ns string) *hosted {
	a.mu.RLock()
	defer a.mu.RUnlock()
	for d := ns; ; {
		if h, ok := a.scopes[d]; ok {
			return h
		}
		i := strings.IndexByte(d, '.')
		if i < 0 {
			return nil
		}
		d = d[i+1:]
	}
}

type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }

// forward runs call against the first reachable anchor of ids, passing on the
// original caller and a hop count. Only errors that say the anchor could not
// be reached move on to the next one. Each connection accepts exactly the
// anchor it was opened for (spiffe://<mesh>/anchor/<id>): an address book
// entry that points at another anchor, or a server impersonating one, is
// refused during the handshake and counts as unreachable, so a scope's
// answers come only from the anchors its delegation names.
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
		conn, err := a.peers.getAs(identity.AnchorID(a.meta.Mesh, id), addr)
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

// peerPool keeps one client connection per anchor address and expected
// identity.
type peerPool struct {
	tls    *tls.Config // accepts any anchor of the mesh
	mu     sync.Mutex
	conns  map[peerKey]*grpc.ClientConn
	dialer func(ctx context.Context, addr string) (net.Conn, error) // nil: gRPC's; see SetPeerDialer
}

// peerKey is an address and the identity the server there must have ("":
// any anchor the base configuration accepts).
type peerKey struct{ addr, want string }

func newPeerPool(cfg *tls.Config) *peerPool {
	return &peerPool{tls: cfg, conns: map[peerKey]*grpc.ClientConn{}}
}

// get returns a connection to addr accepting any anchor of the mesh.
func (p *peerPool) get(addr string) (*grpc.ClientConn, error) {
	return p.dial(peerKey{addr: addr}, p.tls)
}

// getAs returns a connection to addr that accepts only a server whose
// verified SPIFFE ID is want (on top of the base configuration's checks).
func (p *peerPool) getAs(want identity.ID, addr string) (*grpc.ClientConn, error) {
	k := peerKey{addr: addr, want: want.String()}
	p.mu.Lock()
	c, ok := p.conns[k]
	p.mu.Unlock()
	if ok {
		return c, nil
	}
	return p.dial(k, acceptOnly(p.tls, want, addr))
}

func (p *peerPool) dial(k peerKey, cfg *tls.Config) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[k]; ok {
		return c, nil
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}
	if p.dialer != nil {
		opts = append(opts, grpc.WithContextDialer(p.dialer))
	}
	c, err := grpc.NewClient(k.addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to anchor at %s: %w", k.addr, err)
	}
	p.conns[k] = c
	return c, nil
}

// acceptOnly narrows base to servers whose identity is exactly want. The
// base's VerifyConnection verifies the chain first; without one (and with
// the standard verification skipped) nothing would vouch for the leaf, so
// every server is refused.
func acceptOnly(base *tls.Config, want identity.ID, addr string) *tls.Config {
	cfg := base.Clone()
	verify := base.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if verify != nil {
			if err := verify(cs); err != nil {
				return err
			}
		} else if base.InsecureSkipVerify {
			return fmt.Errorf("anchor at %s: no certificate verification configured", addr)
		}
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("anchor at %s presented no certificate", addr)
		}
		got, err := identity.LeafID(cs.PeerCertificates[0])
		if err != nil {
			return fmt.Errorf("anchor at %s: %w", addr, err)
		}
		if got.String() != want.String() {
			return fmt.Errorf("server at %s is %s, not %s: refusing it (the address book entry is wrong or the server impersonates the anchor)", addr, got, want)
		}
		return nil
	}
	return cfg
}

func (p *peerPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = map[peerKey]*grpc.ClientConn{}
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
