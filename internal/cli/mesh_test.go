package cli

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestMeshRotateRoot drives both phases of a root rotation from the CLI.
func TestMeshRotateRoot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := startMesh(ctx, t)
	if _, stderr, code := run(t, c, "", "mesh", "rotate-root", "--force"); code == 0 || !strings.Contains(stderr, "--finish") {
		t.Fatalf("--force without --finish: exit %d, %q", code, stderr)
	}
	if _, stderr, code := run(t, c, "", "mesh", "rotate-root", "--ca-cert", "x.pem"); code == 0 || !strings.Contains(stderr, "go together") {
		t.Fatalf("--ca-cert without --ca-key: exit %d, %q", code, stderr)
	}
	// The leader creates the root scope's CA right after the genesis: until then the anchors
	// answer "retry in a moment", and a user (and this test) retries.
	var out, stderr string
	var code int
	for deadline := time.Now().Add(15 * time.Second); ; {
		out, stderr, code = run(t, c, "", "mesh", "rotate-root")
		if code == 0 || !strings.Contains(stderr, "retry in a moment") || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if code != 0 || !strings.Contains(out, "root rotation added") || strings.Count(out, "serial") != 2 {
		t.Fatalf("add: exit %d, %q %q", code, out, stderr)
	}
	if _, stderr, code := run(t, c, "", "mesh", "rotate-root", "--finish"); code == 0 || !strings.Contains(stderr, "--force") {
		t.Fatalf("finish before the workload TTL: exit %d, %q", code, stderr)
	}
	deadline := time.Now().Add(15 * time.Second)
	for { // anchors renew their certificates under the new root first
		out, stderr, code = run(t, c, "", "mesh", "rotate-root", "--finish", "--force")
		if code == 0 || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	if code != 0 || !strings.Contains(out, "root rotation finished") || strings.Count(out, "serial") != 1 {
		t.Fatalf("finish --force: exit %d, %q %q", code, out, stderr)
	}
}
