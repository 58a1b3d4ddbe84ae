package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestEndToEndThreeAnchorProcesses drives the real binary as a user would:
// three anchor processes, a child scope, Istio YAML applied, the scope's
// leader process killed, another apply, the killed anchor restarted, and
// both changes visible with a verified lineage.
func TestEndToEndThreeAnchorProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "canton")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ports := freePorts(t, 3)
	ids := []string{"a1", "a2", "a3"}
	var peers []string
	for i, id := range ids {
		peers = append(peers, fmt.Sprintf("%s=127.0.0.1:%d", id, ports[i]))
	}
	data := func(i int) string { return filepath.Join(dir, ids[i]) }
	args := func(i int) []string {
		a := []string{"anchor", "--id", ids[i], "--data", data(i), "--listen", fmt.Sprintf("127.0.0.1:%d", ports[i])}
		if i == 0 {
			return append(a, "--bootstrap", "--peers", strings.Join(peers, ","))
		}
		return append(a, "--join", fmt.Sprintf("127.0.0.1:%d", ports[0]), "--join-token", filepath.Join(data(0), "join.token"))
	}
	procs := make([]*exec.Cmd, 3)
	start := func(i int) {
		cmd := exec.Command(bin, args(i)...)
		logf, err := os.Create(filepath.Join(dir, ids[i]+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs[i] = cmd
	}
	t.Cleanup(func() {
		for i, p := range procs {
			if p != nil && p.ProcessState == nil {
				p.Process.Signal(syscall.SIGTERM)
				p.Wait()
			}
			if t.Failed() {
				b, _ := os.ReadFile(filepath.Join(dir, ids[i]+".log"))
				t.Logf("log of %s:\n%s", ids[i], tail(string(b), 3000))
			}
		}
	})
	start(0)
	waitFile(t, filepath.Join(data(0), "join.token"))
	start(1)
	start(2)

	env := append(os.Environ(),
		fmt.Sprintf("CANTON_SERVER=127.0.0.1:%d", ports[1]),
		"CANTON_CREDENTIALS="+filepath.Join(data(0), "admin.credentials"))
	canton := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = env
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		if err != nil {
			return out.String(), fmt.Errorf("canton %s: %v: %s", strings.Join(args, " "), err, errb.String())
		}
		return out.String(), nil
	}
	retry := func(args ...string) string {
		t.Helper()
		var out string
		var err error
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if out, err = canton(args...); err == nil {
				return out
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatal(err)
		return ""
	}

	retry("scope", "create", "shop.demo.mesh", "--anchors", "a1,a2,a3")
	vs1 := writeFile(t, dir, "vs1.yaml", virtualService("cart", "v1"))
	out := retry("apply", "-f", vs1, "-n", "shop")
	if !strings.Contains(out, "virtualservice/cart created in shop") {
		t.Fatalf("apply output: %q", out)
	}

	leader := leaderOf(t, retry("status"), "shop.demo.mesh")
	li := indexOf(ids, leader)
	t.Logf("killing %s, leader of shop.demo.mesh", leader)
	procs[li].Process.Kill()
	procs[li].Wait()
	survivor := (li + 1) % 3
	env = append(env, fmt.Sprintf("CANTON_SERVER=127.0.0.1:%d", ports[survivor]))

	vs2 := writeFile(t, dir, "vs2.yaml", virtualService("checkout", "v2"))
	retry("apply", "-f", vs2, "-n", "shop")

	start(li)
	env = append(env, fmt.Sprintf("CANTON_SERVER=127.0.0.1:%d", ports[li]))
	got := retry("get", "vs", "-n", "shop")
	for _, name := range []string{"cart", "checkout"} {
		if !strings.Contains(got, name) {
			t.Fatalf("get vs -n shop through the restarted %s lacks %s:\n%s", leader, name, got)
		}
	}
	verified := retry("lineage", "--scope", "shop", "--verify")
	if !strings.Contains(verified, "verified") {
		t.Fatalf("lineage --verify: %q", verified)
	}
	// Bad input: one clear line on stderr, non-zero exit, nothing committed.
	bad := writeFile(t, dir, "bad.yaml", strings.Replace(virtualService("broken", "v1"), "hosts:", "hostz:", 1))
	if _, err := canton("apply", "-f", bad, "-n", "shop"); err == nil || !strings.Contains(err.Error(), "bad.yaml") || !strings.Contains(err.Error(), "hostz") {
		t.Fatalf("apply of an unknown field: %v", err)
	}
}

func virtualService(name, subset string) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: %s
spec:
  hosts:
  - %s
  http:
  - route:
    - destination:
        host: %s
        subset: %s
`, name, name, name, subset)
}

func leaderOf(t *testing.T, status, scope string) string {
	t.Helper()
	for _, line := range strings.Split(status, "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[2] == scope && f[3] == "leader" {
			return f[0]
		}
	}
	t.Fatalf("no leader of %s in status:\n%s", scope, status)
	return ""
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not appear", path)
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
