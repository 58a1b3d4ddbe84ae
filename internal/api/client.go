package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/resource"
)

// Client is a typed client of one anchor. Requests for scopes the anchor does
// not host are forwarded by the anchor, so any anchor of the mesh will do.
type Client struct {
	conn  *grpc.ClientConn
	pb    apipb.AnchorClient
	creds *identity.Credentials
	mesh  string
}

// maxResponse bounds one response from an anchor. gRPC's default, 4 MiB, is
// exceeded by the status of an anchor serving about 1,300 proxies; 64 MiB
// holds some 20,000.
const maxResponse = 64 << 20

// Dial connects to the anchor at server with creds, verifying that the server
// is an anchor of the credentials' mesh. It does not block.
func Dial(server string, creds *identity.Credentials) (*Client, error) {
	return dial(server, creds)
}

func dial(target string, creds *identity.Credentials, opts ...grpc.DialOption) (*Client, error) {
	id, err := creds.ID()
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	// Admins and anchors belong to the mesh domain; a workload's trust domain
	// is its namespace, somewhere below the mesh: anchors are recognised by
	// their path and by their domain being a suffix of the caller's.
	own := id.TrustDomain
	tlsCfg := identity.ClientTLS(creds, func(peer identity.ID) error {
		if !strings.HasPrefix(peer.Path, "/anchor/") || (own != peer.TrustDomain && !strings.HasSuffix(own, "."+peer.TrustDomain)) {
			return fmt.Errorf("server %s is not an anchor of the mesh of %s", peer, id)
		}
		return nil
	})
	mesh := own
	if !strings.HasPrefix(id.Path, "/admin/") && !strings.HasPrefix(id.Path, "/anchor/") {
		mesh = ""
	}
	conn, err := grpc.NewClient(target, append(opts, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxResponse)))...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", target, err)
	}
	return &Client{conn: conn, pb: apipb.NewAnchorClient(conn), creds: creds, mesh: mesh}, nil
}

// DialAny connects to whichever of the anchors answers, failing over to the
// next when one goes away (gRPC pick_first over all addresses).
func DialAny(servers []string, creds *identity.Credentials) (*Client, error) {
	if len(servers) == 0 {
		return nil, errors.New("no anchor addresses")
	}
	if len(servers) == 1 {
		return Dial(servers[0], creds)
	}
	r := manual.NewBuilderWithScheme("canton-anchors")
	addrs := make([]resolver.Address, len(servers))
	for i, s := range servers {
		addrs[i] = resolver.Address{Addr: s}
	}
	r.InitialState(resolver.State{Addresses: addrs})
	return dial(r.Scheme()+":///anchors", creds, grpc.WithResolvers(r))
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Mesh is the mesh domain of the client's credentials (empty for a workload,
// whose trust domain is its namespace).
func (c *Client) Mesh() string { return c.mesh }

// Raw is the generated client, for calls this wrapper does not cover.
func (c *Client) Raw() apipb.AnchorClient { return c.pb }

// ApplyResult is what an apply committed (or would commit, in a dry run).
type ApplyResult struct {
	Revision uint64
	Objects  []resource.Object
	// ProxyDiffs (dry run only): what would change for each proxy connected
	// to the anchor that answered.
	ProxyDiffs []*apipb.ProxyDiff
}

// Apply commits objects of one scope atomically. ifVersion, when not nil,
// holds one expected resource version per object (0: must not exist).
func (c *Client) Apply(ctx context.Context, objs []resource.Object, dryRun bool, ifVersion []uint64) (ApplyResult, error) {
	b, err := json.Marshal(objs)
	if err != nil {
		return ApplyResult{}, err
	}
	resp, err := c.pb.Apply(ctx, &apipb.ApplyRequest{Objects: b, DryRun: dryRun, IfVersion: ifVersion, SetIfVersion: ifVersion != nil})
	if err != nil {
		return ApplyResult{}, Err(err)
	}
	out, err := decodeObjects(resp.Objects)
	return ApplyResult{Revision: resp.Revision, Objects: out, ProxyDiffs: resp.ProxyDiffs}, err
}

// Delete removes one object. ifVersion nil means unconditionally.
func (c *Client) Delete(ctx context.Context, kind, namespace, name string, ifVersion *uint64) (uint64, error) {
	resp, err := c.pb.Delete(ctx, &apipb.DeleteRequest{Kind: kind, Namespace: namespace, Name: name, IfVersion: ifVersion})
	if err != nil {
		return 0, Err(err)
	}
	return resp.Revision, nil
}

// GetResult is a linearizable read of one scope.
type GetResult struct {
	Revision uint64
	Scope    string
	Objects  []resource.Object
}

// Get reads objects of kind (canonical or short name; "" for every kind).
// With name empty it lists namespace; with scope set and namespace empty it
// lists every namespace of that scope.
func (c *Client) Get(ctx context.Context, kind, namespace, name, scope string) (GetResult, error) {
	resp, err := c.pb.Get(ctx, &apipb.GetRequest{Kind: kind, Namespace: namespace, Name: name, Scope: scope})
	if err != nil {
		return GetResult{}, Err(err)
	}
	objs, err := decodeObjects(resp.Objects)
	return GetResult{Revision: resp.Revision, Scope: resp.Scope, Objects: objs}, err
}

// Event is one change of a watched scope.
type Event struct {
	Revision uint64
	Type     string // "put" or "delete"
	Object   resource.Object
}

// ErrCompacted means a watch asked for history the anchor no longer keeps:
// re-list with Get and watch from the revision it returns.
var ErrCompacted = errors.New("watch history compacted: re-list and watch again")

// Watch streams the changes of a scope after fromRevision to fn until ctx
// ends, fn returns an error, or the stream fails.
func (c *Client) Watch(ctx context.Context, scope string, fromRevision uint64, fn func(Event) error) error {
	stream, err := c.pb.Watch(ctx, &apipb.WatchRequest{Scope: scope, FromRevision: fromRevision})
	if err != nil {
		return Err(err)
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			if status.Code(err) == codes.OutOfRange {
				return fmt.Errorf("%w (%s)", ErrCompacted, status.Convert(err).Message())
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return Err(err)
		}
		var o resource.Object
		if err := strictJSON(ev.Object, &o); err != nil {
			return err
		}
		if err := fn(Event{Revision: ev.Revision, Type: ev.Type, Object: o}); err != nil {
			return err
		}
	}
}

// Lineage returns the raw lineage response of a scope (records as JSON).
func (c *Client) Lineage(ctx context.Context, scope string, from uint64, limit uint32) (*apipb.LineageResponse, error) {
	resp, err := c.pb.Lineage(ctx, &apipb.LineageRequest{Scope: scope, From: from, Limit: limit})
	return resp, Err(err)
}

// Status describes the anchor this client is connected to.
func (c *Client) Status(ctx context.Context) (*apipb.StatusResponse, error) {
	resp, err := c.pb.Status(ctx, &apipb.StatusRequest{})
	return resp, Err(err)
}

// CreateScope delegates domain to a new child scope run by anchors.
func (c *Client) CreateScope(ctx context.Context, domain string, anchors []string) (*apipb.CreateScopeResponse, error) {
	resp, err := c.pb.CreateScope(ctx, &apipb.CreateScopeRequest{Domain: domain, Anchors: anchors})
	return resp, Err(err)
}

// ChangeMembership adds, promotes or removes an anchor of a scope.
func (c *Client) ChangeMembership(ctx context.Context, scope, anchorID string, change apipb.MembershipRequest_Change) (*apipb.MembershipResponse, error) {
	resp, err := c.pb.ChangeMembership(ctx, &apipb.MembershipRequest{Scope: scope, AnchorId: anchorID, Change: change})
	return resp, Err(err)
}

// RotateCA replaces the CA of scope with a new intermediate under the same
// root; ttl 0 is the anchors' default validity.
func (c *Client) RotateCA(ctx context.Context, scope string, ttl time.Duration) (*apipb.RotateCAResponse, error) {
	resp, err := c.pb.RotateCA(ctx, &apipb.RotateCARequest{Scope: scope, TtlSeconds: uint32(ttl / time.Second)})
	return resp, Err(err)
}

// Err turns a gRPC error into a plain error carrying the anchor's message.
func Err(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	return &Error{Code: st.Code(), Msg: st.Message()}
}

// Error is an error answered by an anchor.
type Error struct {
	Code codes.Code
	Msg  string
}

func (e *Error) Error() string {
	if e.Code == codes.Unavailable && !strings.Contains(e.Msg, "scope") {
		return "anchor unreachable: " + e.Msg
	}
	return e.Msg
}

// Code returns the gRPC code of err, or codes.Unknown.
func Code(err error) codes.Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return status.Code(err)
}

func decodeObjects(b []byte) ([]resource.Object, error) {
	var objs []resource.Object
	if err := strictJSON(b, &objs); err != nil {
		return nil, err
	}
	return objs, nil
}

func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("anchor sent a malformed object: %w", err)
	}
	return nil
}
