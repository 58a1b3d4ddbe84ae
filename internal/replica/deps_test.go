package replica

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the package a leaf of the project: it imports no other
// canton package (the anchor wires it to scopes, identity and the API).
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "canton.dev/canton/") && dep != "canton.dev/canton/internal/replica" {
			t.Errorf("internal/replica depends on %s", dep)
		}
	}
}
