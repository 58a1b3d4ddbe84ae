package anchor

import (
	"context"
	"strconv"
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

// role is what kind of identity a caller has.
type role int

const (
	roleNone     role = iota // no verified certificate (Join, IssueCertificate with a token)
	roleAdmin                // spiffe://<mesh>/admin/<name>
	roleAnchor               // spiffe://<mesh>/anchor/<id>
	roleWorkload             // spiffe://<namespace-domain>/sa/<account>
)

// caller is who a request acts for.
type caller struct {
	principal string // SPIFFE ID of the user (the original caller when forwarded)
	role      role
	id        identity.ID // the verified peer (for workloads: their identity)
}

// anchor reports whether the connection itself comes from an anchor.
func (c caller) anchor() bool { return c.role == roleAnchor }

type callerKey struct{}

func callerFrom(ctx context.Context) caller {
	c, _ := ctx.Value(callerKey{}).(caller)
	return c
}

// workloadMethods are the API calls a workload's proxy may make (each checks
// further that the workload acts only on itself).
var workloadMethods = map[string]bool{
	apipb.Anchor_GrantLease_FullMethodName:       true,
	apipb.Anchor_KeepAlive_FullMethodName:        true,
	apipb.Anchor_RevokeLease_FullMethodName:      true,
	apipb.Anchor_Apply_FullMethodName:            true,
	apipb.Anchor_Delete_FullMethodName:           true,
	apipb.Anchor_IssueCertificate_FullMethodName: true,
	apipb.Anchor_Resolve_FullMethodName:          true,
}

const (
	adsPrefix         = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
	replicationPrefix = "/canton.replica.v1.Raft/"
	mdRaftFrom        = "canton-raft-from" // the sender's node ID on replication streams
)

// authenticate checks the TLS peer of a call. Without a verified certificate
// only Join and IssueCertificate (which check a token themselves) pass. The
// admin may call every API method, anchors everything, workloads a few API
// methods and xDS. Anchors forwarding a request say whom they act for;
// nobody else may.
func (a *Anchor) authenticate(ctx context.Context, method string) (context.Context, error) {
	id, verified := a.peerID(ctx)
	if !verified {
		if method == apipb.Anchor_Join_FullMethodName || method == apipb.Anchor_IssueCertificate_FullMethodName {
			return context.WithValue(ctx, callerKey{}, caller{role: roleNone}), nil
		}
		return nil, status.Errorf(codes.Unauthenticated, "a client certificate of mesh %s is required", a.meta.Mesh)
	}
	if !inZone(id.TrustDomain, a.meta.Mesh) {
		return nil, status.Errorf(codes.PermissionDenied, "%s is not of mesh %s", id, a.meta.Mesh)
	}
	c := caller{principal: id.String(), id: id}
	switch {
	case id.TrustDomain == a.meta.Mesh && strings.HasPrefix(id.Path, "/anchor/"):
		c.role = roleAnchor
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if v := md.Get(mdCaller); len(v) > 0 && v[0] != "" {
				c.principal = v[0]
			}
		}
	case id.TrustDomain == a.meta.Mesh && strings.HasPrefix(id.Path, "/admin/"):
		c.role = roleAdmin
	case strings.HasPrefix(id.Path, "/sa/"):
		c.role = roleWorkload
	default:
		return nil, status.Errorf(codes.PermissionDenied, "%s is not an admin, anchor or workload identity", id)
	}
	api := strings.HasPrefix(method, "/canton.api.v1.Anchor/")
	allowed := false
	switch c.role {
	case roleAnchor:
		allowed = true
	case roleAdmin:
		allowed = api && method != apipb.Anchor_StartReplica_FullMethodName || strings.HasPrefix(method, adsPrefix)
	case roleWorkload:
		allowed = workloadMethods[method] || strings.HasPrefix(method, adsPrefix)
	}
	if !allowed {
		return nil, status.Errorf(codes.PermissionDenied, "%s may not call %s", id, method)
	}
	if strings.HasPrefix(method, replicationPrefix) {
		// Raft messages name their sender: it must be the anchor on the other end.
		md, _ := metadata.FromIncomingContext(ctx)
		want := strconv.FormatUint(NodeID(strings.TrimPrefix(id.Path, "/anchor/")), 10)
		if v := md.Get(mdRaftFrom); len(v) != 1 || v[0] != want {
			return nil, status.Errorf(codes.PermissionDenied, "replication stream from %s claims to come from node %v", id, v)
		}
	}
	return context.WithValue(ctx, callerKey{}, c), nil
}

// peerID returns the verified SPIFFE ID of the connection's client certificate.
func (a *Anchor) peerID(ctx context.Context) (identity.ID, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return identity.ID{}, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return identity.ID{}, false
	}
	id, err := identity.PeerID(info.State)
	if err != nil {
		return identity.ID{}, false
	}
	return id, true
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
