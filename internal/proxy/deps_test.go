package proxy

import (
	"os/exec"
	"strings"
	"testing"
)

// TestRoleBoundary keeps the data plane free of the control plane: no consensus, no storage, no scope
// store (DESIGN.md, "role boundaries are real").
func TestRoleBoundary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "canton.dev/canton/internal/proxy").CombinedOutput()
	if err != nil {
		t.Skipf("go list unavailable: %v: %s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"go.etcd.io/raft", "go.etcd.io/bbolt", "canton.dev/canton/internal/scope",
			"canton.dev/canton/internal/replica", "canton.dev/canton/internal/anchor", "canton.dev/canton/internal/xds"} {
			if dep == banned || strings.HasPrefix(dep, banned+"/") {
				t.Errorf("internal/proxy depends on %s", dep)
			}
		}
	}
}
