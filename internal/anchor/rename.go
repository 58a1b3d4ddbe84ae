package anchor

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/resource"
	"canton.dev/canton/internal/scope"
)

// Rename moves a Service to a new name in its namespace with one "rename" mutation of the
// governing scope: same UID, the old name left as an Alias of the UID, Workloads moved.
// Only the admin (and anchors forwarding for it) may call it; workloads may not.
func (s *server) Rename(ctx context.Context, req *apipb.RenameRequest) (*apipb.RenameResponse, error) {
	if req.Kind != "" {
		k, ok := resource.Lookup(req.Kind)
		if !ok {
			return nil, status.Errorf(codes.InvalidArgument, "rename: unknown kind %q", req.Kind)
		}
		if k.Name != "Service" {
			return nil, status.Errorf(codes.InvalidArgument, "rename: only a Service can be renamed, not a %s", k.Name)
		}
	}
	if req.Namespace == "" || req.Name == "" || req.NewName == "" {
		return nil, status.Error(codes.InvalidArgument, "rename: namespace, name and new_name are required")
	}
	h, remote, err := s.a.governing(req.Namespace)
	if err != nil {
		return nil, statusOf(err)
	}
	if h == nil {
		return forwardTo(ctx, s.a, remote, func(ctx context.Context, c apipb.AnchorClient) (*apipb.RenameResponse, error) {
			return c.Rename(ctx, req)
		})
	}
	m := scope.Mutation{Op: scope.OpRename, Proposer: callerFrom(ctx).principal, Kind: "Service",
		Namespace: req.Namespace, Name: req.Name, NewName: req.NewName, IfVersion: req.IfVersion}
	res, err := s.a.propose(ctx, h, m)
	if err != nil {
		return nil, statusOf(err)
	}
	resp := &apipb.RenameResponse{Revision: res.Revision}
	if len(res.Objects) > 0 {
		resp.Uid = res.Objects[0].UID
	}
	return resp, nil
}
