// Package netns runs a test in a fresh Linux network namespace, where it may change iptables
// rules and routes that vanish with the namespace and never touch the host's: the transparent
// capture tests use it. Everything needs root; without it (or without iptables, namespaces or
// a nat table) the tests are skipped with the reason.
package netns

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// childEnv marks the copy of the test binary that Run starts in a new namespace.
const childEnv = "CANTON_TEST_IN_NETNS"

// SkipPrefix starts every skip message of this package, so Run can tell a skipped child.
const SkipPrefix = "needs root, iptables and network namespaces: "

// Run runs the test named child (a top-level test of the same binary that starts with Enter)
// in a copy of the test binary started in a new network namespace, and passes, skips or fails
// t as the child did. Called in the child itself, it skips t.
func Run(t *testing.T, child string, timeout time.Duration) {
	t.Helper()
	if os.Getenv(childEnv) != "" {
		t.Skip("already inside the test network namespace")
	}
	if os.Geteuid() != 0 {
		t.Skip(SkipPrefix + "not running as root")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip(SkipPrefix + "iptables not found in PATH")
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+child+"$", "-test.v", "-test.count=1",
		"-test.timeout="+timeout.String())
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Skip(SkipPrefix + "cannot create a network namespace: " + err.Error())
	}
	err := cmd.Wait()
	t.Logf("in the network namespace:\n%s", out.String())
	skip := regexp.MustCompile(`(?m)^\s+\S+\.go:\d+: (` + regexp.QuoteMeta(SkipPrefix) + `.*)$`).FindStringSubmatch(out.String())
	if skip != nil && strings.Contains(out.String(), "--- SKIP: "+child) {
		t.Skip(skip[1])
	}
	if err != nil || !strings.Contains(out.String(), "--- PASS: "+child) {
		t.Fatalf("%s in the network namespace failed: %v", child, err)
	}
}

// Enter prepares the namespace a child test runs in: it skips t unless it runs in the
// namespace Run created, refuses anything but a fresh namespace (only lo), brings lo up and
// checks that iptables has a nat table there.
func Enter(t *testing.T) {
	t.Helper()
	if os.Getenv(childEnv) == "" {
		t.Skip("runs only inside the network namespace netns.Run creates")
	}
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	if len(ifs) != 1 || ifs[0].Name != "lo" {
		t.Fatalf("not a fresh network namespace (interfaces %v): refusing to change iptables rules", ifs)
	}
	if err := loopbackUp(); err != nil {
		t.Skip(SkipPrefix + "bringing lo up in the namespace: " + err.Error())
	}
	if out, err := exec.Command("iptables", "-w", "5", "-t", "nat", "-S").CombinedOutput(); err != nil {
		t.Skip(SkipPrefix + "iptables nat table unavailable in the namespace: " + strings.TrimSpace(string(out)))
	}
}

// NAT runs cmd (iptables or ip6tables) on the nat table with args, failing t on error.
func NAT(t *testing.T, cmd string, args ...string) {
	t.Helper()
	out, err := exec.Command(cmd, append([]string{"-w", "5", "-t", "nat"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", cmd, strings.Join(args, " "), err, out)
	}
}

// LocalRoute makes the addresses of prefix (IPv4) local, so connections to them reach nat
// OUTPUT (where iptables can redirect them) instead of failing with "network is unreachable"
// in a namespace without a default route. (A plain route through lo is not enough: such
// connections time out.)
func LocalRoute(t *testing.T, prefix string) {
	t.Helper()
	if err := addLocalRoute(prefix, "lo"); err != nil {
		t.Fatalf("local route %s on lo: %v", prefix, err)
	}
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS: %w", err)
	}
	return nil
}
