package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestReadmeQuickStart executes the README's quick start as a newcomer
// would: the first ```sh block must be exactly `go run ./cmd/canton demo`
// and `go test ./...`; the first runs for real (verbatim, through go run,
// from the repository root) until its banner says the mesh is up; the
// product page and the dashboard it prints must answer 200; the CLI lines
// the README's tour shows (and the ones the banner prints) run against it
// with the exported CANTON_SERVER and CANTON_CREDENTIALS; SIGINT must stop
// it with status 0 within a few seconds, leaving no process (of its group),
// listener or data behind.
// `go test ./...` is checked as text only: running it here would recurse.
func TestReadmeQuickStart(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := shBlocks(string(readme))
	if len(blocks) == 0 {
		t.Fatal("README.md has no ```sh block")
	}
	quick := commands(blocks[0])
	if want := []string{"go run ./cmd/canton demo", "go test ./..."}; !slices.Equal(quick, want) {
		t.Fatalf("README quick start runs %q; this test checks %q: update one with the other", quick, want)
	}
	var tour []string
	for _, b := range blocks[1:] {
		if cmds := commands(b); len(cmds) > 0 && strings.HasPrefix(cmds[0], "export CANTON_SERVER=") {
			tour = cmds[1:]
			break
		}
	}
	if len(tour) == 0 {
		t.Fatal("README.md has no CLI tour (a ```sh block starting with export CANTON_SERVER=…)")
	}
	if testing.Short() {
		t.Skip("the README's commands are checked as text; running the demo needs the full test run")
	}

	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	argv := strings.Fields(quick[0])
	demo := exec.Command(goBin, argv[1:]...)
	demo.Dir = root
	tmp := t.TempDir()
	demo.Env = append(os.Environ(), "TMPDIR="+tmp) // the demo's data directory goes in here
	demo.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out lockedBuffer
	demo.Stdout, demo.Stderr = &out, &out
	start := time.Now()
	if err := demo.Start(); err != nil {
		t.Fatalf("%s: %v", quick[0], err)
	}
	pgid := demo.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- demo.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("output of %s:\n%s", quick[0], tail(out.String(), 6000))
		}
	})

	// The banner. A cold build cache makes go run compile first.
	const bannerEnd = "Press Ctrl-C to stop."
	deadline := time.After(90 * time.Second)
	for !strings.Contains(out.String(), bannerEnd) {
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("%s exited before its banner: %v", quick[0], err)
		case <-deadline:
			t.Fatalf("%s: no banner within 90s", quick[0])
		case <-time.After(50 * time.Millisecond):
		}
	}
	banner, _, _ := strings.Cut(out.String(), bannerEnd)
	t.Logf("%s: banner after %s", quick[0], time.Since(start).Round(time.Millisecond))
	if !regexp.MustCompile(`(?m)^Canton demo: mesh \S+ is up \(`).MatchString(banner) {
		t.Errorf("the banner does not say the mesh is up:\n%s", banner)
	}
	find := func(what, re string) []string {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(banner)
		if m == nil {
			t.Fatalf("the banner has no %s (%s):\n%s", what, re, banner)
		}
		return m[1:]
	}
	product := find("product page URL", `(?m)^\s+product page\s+(http://127\.0\.0\.1:\d+/\S*)`)[0]
	dashboard := find("dashboard URL", `(?m)^\s+dashboard\s+(http://127\.0\.0\.1:\d+/\S*)`)[0]
	export := find("export line", `(?m)^\s+export CANTON_SERVER=(\S+) CANTON_CREDENTIALS=(\S+)$`)
	data := find("data directory", `(?m)^Data: (\S+)\. $`)[0]
	if !strings.HasPrefix(data, tmp) {
		t.Errorf("data directory %s is not under TMPDIR %s", data, tmp)
	}
	listeners := regexp.MustCompile(`127\.0\.0\.1:\d+`).FindAllString(banner, -1)

	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	for _, u := range []struct{ url, want string }{{product, "reviews"}, {dashboard, "Canton"}} {
		resp, err := hc.Get(u.url)
		if err != nil {
			t.Errorf("GET %s: %v", u.url, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(u.want)) {
			t.Errorf("GET %s: %s, %d bytes, mentions %q: %v", u.url, resp.Status, len(body), u.want, bytes.Contains(body, []byte(u.want)))
		}
	}

	// The CLI: what the banner suggests, then the README's tour, each line
	// run as written (go run from the repository root).
	env := append(os.Environ(), "CANTON_SERVER="+export[0], "CANTON_CREDENTIALS="+export[1])
	var cli []string
	for _, l := range strings.Split(banner, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "go run ./cmd/canton ") {
			cli = append(cli, l)
		}
	}
	if len(cli) == 0 {
		t.Errorf("the banner shows no CLI command:\n%s", banner)
	}
	cli = append(cli, tour...)
	for _, line := range cli {
		rest, ok := strings.CutPrefix(line, "go run ./cmd/canton ")
		if !ok {
			t.Errorf("README tour line %q does not run ./cmd/canton", line)
			continue
		}
		if rest == "dns --search bookinfo" {
			runDNS(t, goBin, root, env, line)
			continue
		}
		check, ok := cliChecks[rest]
		if !ok {
			t.Errorf("%q has no check in cmd/canton/readme_test.go's cliChecks: add one", line)
			continue
		}
		// Reads may race the mesh converging after the previous command (a
		// proxy re-syncing, an anchor slow to answer on a loaded machine):
		// they are retried for a few seconds; commands that change things run once.
		readOnly := strings.HasPrefix(rest, "get ") || rest == "status" || strings.HasPrefix(rest, "resolve ")
		t0 := time.Now()
		var out string
		var failure string
		for attempt := 0; ; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			c := exec.CommandContext(ctx, goBin, strings.Fields(line)[1:]...)
			c.Dir, c.Env = root, env
			var stdout, stderr bytes.Buffer
			c.Stdout, c.Stderr = &stdout, &stderr
			err := c.Run()
			cancel()
			out = stdout.String()
			switch {
			case err != nil:
				failure = fmt.Sprintf("%s: %v\nstdout:\n%s\nstderr:\n%s", line, err, out, stderr.String())
			default:
				failure = ""
				if cerr := check(out); cerr != nil {
					failure = fmt.Sprintf("%s: %v; it printed:\n%s", line, cerr, out)
				}
			}
			if failure == "" || !readOnly || attempt >= 10 {
				break
			}
			time.Sleep(500 * time.Millisecond) // a user would look again; the mesh converges meanwhile
		}
		if failure != "" {
			t.Error(failure)
			continue
		}
		t.Logf("%s: ok (%s)", line, time.Since(t0).Round(time.Millisecond))
	}

	// Ctrl-C. A terminal sends SIGINT to the whole foreground group, and
	// then the go command itself exits with status 1 whatever its child
	// does (cmd/go marks an interrupted run failed). So SIGINT goes to the
	// canton process only, and go run's status is canton's.
	kids := childPIDs(t, pgid)
	if len(kids) != 1 {
		t.Fatalf("go run (pid %d) has children %v; want the one canton process", pgid, kids)
	}
	if err := syscall.Kill(kids[0], syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("%s after SIGINT to canton (pid %d): %v (want exit status 0)", quick[0], kids[0], err)
		}
		t.Logf("stopped %s after SIGINT", time.Since(t0).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatalf("%s still runs 10s after SIGINT", quick[0])
	}
	if !strings.Contains(out.String(), "stopped in") {
		t.Errorf("no shutdown summary after SIGINT:\n%s", tail(out.String(), 2000))
	}
	// Nothing left: no process of the group, no listener, no data.
	if err := syscall.Kill(-pgid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("processes of the demo's group %d remain after it exited (kill -0: %v)", pgid, err)
	}
	for _, a := range listeners {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("%s (from the banner) still accepts connections after the demo stopped", a)
		}
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the demo's temporary data directory %s remains (stat: %v)", data, err)
	}
}

// cliChecks checks the output of each CLI command the README's tour or the
// demo's banner shows (keyed by its arguments), run against the demo.
var cliChecks = map[string]func(out string) error{
	"status": func(out string) error {
		return contains(out, "mesh demo.mesh", "bookinfo.demo.mesh", "leader")
	},
	"get virtualservices -n bookinfo -o yaml": func(out string) error {
		return contains(out, "kind: VirtualService", "name: reviews", "resourceVersion:")
	},
	"apply -f examples/bookinfo/ --dry-run": func(out string) error {
		return contains(out, "virtualservice/reviews ", "service/ratings ", "(dry run) in bookinfo")
	},
	"delete vs reviews -n bookinfo": func(out string) error {
		return contains(out, "virtualservice/reviews deleted from bookinfo")
	},
	"lineage --scope bookinfo --verify": func(out string) error {
		return matches(out, `lineage of scope bookinfo\.demo\.mesh verified: \d+ records, head \d+ [0-9a-f]{64}; anchors \[a1 a2 a3\] agree`)
	},
	"scope create shop.demo.mesh --anchors a1,a2,a3": func(out string) error {
		return contains(out, "scope shop.demo.mesh created")
	},
	"get proxies": func(out string) error {
		if n := strings.Count(out, " synced"); n != 7 {
			return fmt.Errorf("%d proxies synced, want 7 (six services and the traffic generator)", n)
		}
		return nil
	},
	"resolve reviews.bookinfo": func(out string) error {
		if err := matches(out, `(?m)^name:\s+reviews\.bookinfo\.demo\.mesh$`); err != nil {
			return err
		}
		if n := strings.Count(out, "\nendpoint:"); n != 3 {
			return fmt.Errorf("%d endpoints, want 3 (reviews v1, v2, v3)", n)
		}
		return nil
	},
	"get workloads -n bookinfo": func(out string) error {
		if n := strings.Count(out, " Workload "); n != 7 {
			return fmt.Errorf("%d workloads, want 7", n)
		}
		return nil
	},
	"apply -f examples/bookinfo/scenarios/virtual-service-reviews-test-v2.yaml": func(out string) error {
		return matches(out, `virtualservice/reviews (configured|created) in bookinfo`)
	},
}

// runDNS runs the tour's `canton dns` line, a server that runs until
// Ctrl-C, with --listen 127.0.0.1:0 added (the README's default port is
// fixed), asks it for reviews by its short name and its full name, and
// stops it.
func runDNS(t *testing.T, goBin, root string, env []string, line string) {
	t.Helper()
	c := exec.Command(goBin, append(strings.Fields(line)[1:], "--listen", "127.0.0.1:0")...)
	c.Dir, c.Env = root, env
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out lockedBuffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		t.Errorf("%s: %v", line, err)
		return
	}
	exited := make(chan error, 1)
	go func() { exited <- c.Wait() }()
	defer func() {
		syscall.Kill(-c.Process.Pid, syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			<-exited
			t.Errorf("%s: still running 10s after SIGINT", line)
		}
	}()
	re := regexp.MustCompile(`dns for demo\.mesh on (127\.0\.0\.1:\d+)`)
	deadline := time.After(30 * time.Second)
	var addr string
	for addr == "" {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
			break
		}
		select {
		case err := <-exited:
			exited <- err
			t.Errorf("%s exited: %v\n%s", line, err, out.String())
			return
		case <-deadline:
			t.Errorf("%s: not serving within 30s:\n%s", line, out.String())
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	for _, name := range []string{"reviews.", "reviews.bookinfo.demo.mesh."} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ips, err := r.LookupHost(ctx, name)
		cancel()
		if err != nil || !slices.Contains(ips, "127.0.0.1") {
			t.Errorf("%s: %s on %s: %v, %v", line, name, addr, ips, err)
			continue
		}
		t.Logf("%s: %s -> %v", line, name, ips)
	}
}

func contains(out string, want ...string) error {
	for _, w := range want {
		if !strings.Contains(out, w) {
			return fmt.Errorf("no %q", w)
		}
	}
	return nil
}

func matches(out, re string) error {
	if !regexp.MustCompile(re).MatchString(out) {
		return fmt.Errorf("nothing matches %s", re)
	}
	return nil
}

// shBlocks returns the contents of the ```sh fenced blocks of markdown, in
// order.
func shBlocks(markdown string) []string {
	var blocks []string
	var cur *strings.Builder
	sc := bufio.NewScanner(strings.NewReader(markdown))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case cur == nil && strings.TrimSpace(line) == "```sh":
			cur = &strings.Builder{}
		case cur != nil && strings.TrimSpace(line) == "```":
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	return blocks
}

// commands returns the commands of a shell block: comments (whole lines, or
// from " #" on) and blank lines dropped, continuation lines joined, spaces
// collapsed.
func commands(block string) []string {
	var out []string
	pending := ""
	for _, line := range strings.Split(block, "\n") {
		if i := strings.Index(line, " #"); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if l, ok := strings.CutSuffix(line, "\\"); ok {
			pending += l + " "
			continue
		}
		out = append(out, strings.Join(strings.Fields(pending+line), " "))
		pending = ""
	}
	return out
}

// childPIDs lists the processes whose parent is ppid, from /proc.
func childPIDs(t *testing.T, ppid int) []int {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		var pid, parent int
		var state string
		if _, err := fmt.Sscanf(string(b[:bytes.IndexByte(b, ' ')]), "%d", &pid); err != nil {
			continue
		}
		if _, err := fmt.Sscanf(string(b[i+1:]), " %s %d", &state, &parent); err != nil {
			continue
		}
		if parent == ppid {
			out = append(out, pid)
		}
	}
	return out
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
