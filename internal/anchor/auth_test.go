package anchor_test

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"canton.dev/canton/internal/anchor"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/meshtest"
)

// openReplication opens a raw replication stream to anchor 0 with creds,
// claiming to be node from, and returns the error of the first receive.
func openReplication(t *testing.T, c *meshtest.Cluster, creds *identity.Credentials, from string) error {
	t.Helper()
	conn, err := grpc.NewClient(c.Addr(0), grpc.WithTransportCredentials(credentials.NewTLS(identity.ClientTLS(creds, identity.AcceptAnchors(mesh)))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "canton-raft-from", strconv.FormatUint(anchor.NodeID(from), 10), "canton-raft-to", strconv.FormatUint(anchor.NodeID("a1"), 10))
	st, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/canton.replica.v1.Raft/Stream")
	if err != nil {
		return err
	}
	return st.RecvMsg(new(struct{}))
}

func TestReplicationOnlyFromTheAnchorItClaims(t *testing.T) {
	c := startCluster(t, meshtest.Options{})
	admin, err := identity.LoadCredentials(c.AdminCredentials())
	if err != nil {
		t.Fatal(err)
	}
	a2, err := identity.LoadCredentials(filepath.Join(c.DataDir(1), "anchor.credentials"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		creds *identity.Credentials
		from  string
	}{
		{"admin", admin, "a2"},
		{"anchor a2 posing as a3", a2, "a3"},
	} {
		err := openReplication(t, c, tc.creds, tc.from)
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: %v, want PermissionDenied", tc.name, err)
		}
	}
}
