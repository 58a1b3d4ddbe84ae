package dashboard

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the dashboard a leaf over plain data: it reads a
// Source and the proxies' metrics, and must not pull in the consensus,
// storage, xDS or data-plane packages (the anchor wires those to Source).
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	forbidden := []string{
		"canton.dev/canton/internal/anchor", "canton.dev/canton/internal/replica", "canton.dev/canton/internal/xds",
		"canton.dev/canton/internal/proxy", "canton.dev/canton/internal/telemetry", "go.etcd.io/raft", "go.etcd.io/bbolt",
		"google.golang.org/grpc",
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("internal/dashboard depends on %s", dep)
			}
		}
	}
}
