package anchor

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
)

const (
	mdCaller = "canton-caller" // the original principal of a forwarded request
	mdHops   = "canton-hops"
)

// caller is who a request acts for.
type caller struct {
	principal string // SPIFFE ID of the user (the original caller when forwarded)
	anchor    bool   // the connection is from another anchor of this mesh
}

type callerKey struct{}

func callerFrom(ctx context.Context) caller {
	c, _ := ctx.Value(callerKey{}).(caller)
	return c
}

// authenticate checks the TLS peer of a call. Join is the only method a peer
// without a verified certificate may call; everything else needs the admin's
// or an anchor's identity of this mesh. Anchors forwarding a request say whom
// they act for; nobody else may.
func (a *Anchor) authenticate(ctx context.Context, method string) (context.Context, error) {
	if method == apipb.Anchor_Join_FullMethodName {
		return ctx, nil
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "not a TLS connection")
	}
	id, err := identity.PeerID(info.State)
	if err != nil {
		return nil, status.Errorf(codes.Unauthenticated, "a client certificate of mesh %s is required: %v", a.meta.Mesh, err)
	}
	if id.TrustDomain != a.meta.Mesh {
		return nil, status.Errorf(codes.PermissionDenied, "%s is not of mesh %s", id, a.meta.Mesh)
	}
	c := caller{principal: id.String()}
	api := strings.HasPrefix(method, "/canton.api.v1.Anchor/")
	switch {
	case !api && !strings.HasPrefix(id.Path, "/anchor/"):
		// Replication is between anchors only.
		return nil, status.Errorf(codes.PermissionDenied, "%s may not call %s", id, method)
	case strings.HasPrefix(id.Path, "/anchor/"):
		c.anchor = true
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if v := md.Get(mdCaller); len(v) > 0 && v[0] != "" {
				c.principal = v[0]
			}
		}
	case strings.HasPrefix(id.Path, "/admin/"):
		if method == apipb.Anchor_StartReplica_FullMethodName {
			return nil, status.Error(codes.PermissionDenied, "StartReplica is for anchors only")
		}
	default:
		return nil, status.Errorf(codes.PermissionDenied, "%s may not call %s", id, method)
	}
	return context.WithValue(ctx, callerKey{}, c), nil
}

func (a *Anchor) authUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := a.authenticate(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s authedStream) Context() context.Context { return s.ctx }

func (a *Anchor) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := a.authenticate(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, authedStream{ss, ctx})
}
