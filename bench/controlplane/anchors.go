package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"canton.dev/canton/internal/anchor"
	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/meshtest"
)

// anchors are the benchmark's three anchors, in this process (meshtest) or each in a process of
// its own (-anchor-procs), as a real deployment runs one anchor per host.
type anchors interface {
	Len() int
	Mesh() string
	Name(i int) string
	Addr(i int) string
	DataDir(i int) string
	Client(i int) (*api.Client, error)
	// Leader returns the index of the anchor leading scope, or -1.
	Leader(scope string) int
	// WaitScope waits until scope has a leader that has applied its genesis.
	WaitScope(ctx context.Context, scope string) error
	// CPU is the CPU (user and system) the anchors' processes have used.
	CPU() time.Duration
	// Memory is the heap and stack in use after a full collection, and the goroutines, of the
	// anchors' processes together.
	Memory() (heap, stack uint64, goroutines int)
	// StartCPUProfile profiles the anchors until the function returned is called; with one
	// process per anchor each writes path.a<N>.
	StartCPUProfile(path string) (func(), error)
	WriteHeapProfile(path string) error
	Close() error
}

// inProcess are the three anchors in this process (internal/meshtest).
type inProcess struct{ *meshtest.Cluster }

func (inProcess) CPU() time.Duration                          { return cpuTime() }
func (inProcess) Memory() (uint64, uint64, int)               { return memory() }
func (inProcess) StartCPUProfile(path string) (func(), error) { return startCPUProfile(path) }
func (inProcess) WriteHeapProfile(path string) error          { return writeHeapProfile(path) }

// anchorEnv, when set, makes this binary one anchor of a -anchor-procs run (anchorConfig as
// JSON); its listener is file descriptor 3.
const anchorEnv = "CANTON_BENCH_CONTROLPLANE_ANCHOR"

// anchorConfig is what the parent tells an anchor process.
type anchorConfig struct {
	ID             string        `json:"id"`
	Dir            string        `json:"dir"`
	Mesh           string        `json:"mesh"`
	Peers          []anchor.Peer `json:"peers,omitempty"` // set: bootstrap the mesh with these root voters
	Join           string        `json:"join,omitempty"`
	JoinToken      string        `json:"join_token,omitempty"`
	TickInterval   time.Duration `json:"tick"`
	RequestTimeout time.Duration `json:"request_timeout"`
}

// The anchor protocol: one command per line on the anchor's stdin, one JSON line (anchorMsg)
// per command on its stdout, after one when the anchor serves.
//
//	scope <name>            → leads, initialised
//	cpu                     → cpu_ns
//	memory                  → heap, stack, goroutines (after a full collection)
//	cpuprofile <path>       → {} once profiling
//	stopprofile             → {} once written
//	heapprofile <path>      → {} once written
//	quit (or EOF)           → the anchor closes and the process exits
type anchorMsg struct {
	Ready       bool   `json:"ready,omitempty"`
	Leads       bool   `json:"leads,omitempty"`
	Initialised bool   `json:"initialised,omitempty"`
	CPUNanos    int64  `json:"cpu_ns,omitempty"`
	Heap        uint64 `json:"heap,omitempty"`
	Stack       uint64 `json:"stack,omitempty"`
	Goroutines  int    `json:"goroutines,omitempty"`
	Err         string `json:"error,omitempty"`
}

// anchorMain runs one anchor of a -anchor-procs run, for the child process.
func anchorMain() error {
	var cfg anchorConfig
	if err := json.Unmarshal([]byte(os.Getenv(anchorEnv)), &cfg); err != nil {
		return fmt.Errorf("anchor process: config: %w", err)
	}
	lis, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		return fmt.Errorf("anchor process %s: listener: %w", cfg.ID, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := anchor.Start(ctx, anchor.Config{ID: cfg.ID, DataDir: cfg.Dir, Listener: lis, Mesh: cfg.Mesh,
		Bootstrap: len(cfg.Peers) > 0, Peers: cfg.Peers, Join: cfg.Join, JoinToken: cfg.JoinToken,
		TickInterval: cfg.TickInterval, RequestTimeout: cfg.RequestTimeout})
	if err != nil {
		return err
	}
	defer a.Close()
	return serveAnchor(a, os.Stdin, os.Stdout)
}

// serveAnchor answers the parent's commands about a until it says quit.
func serveAnchor(a *anchor.Anchor, in io.Reader, out io.Writer) error {
	enc := json.NewEncoder(out)
	if err := enc.Encode(anchorMsg{Ready: true}); err != nil {
		return err
	}
	var stopProfile func()
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		var msg anchorMsg
		var err error
		switch cmd {
		case "scope":
			msg.Leads, msg.Initialised = a.Leads(arg), a.Initialised(arg)
		case "cpu":
			msg.CPUNanos = int64(cpuTime())
		case "memory":
			msg.Heap, msg.Stack, msg.Goroutines = memory()
		case "cpuprofile":
			stopProfile, err = startCPUProfile(arg)
		case "stopprofile":
			if stopProfile != nil {
				stopProfile()
				stopProfile = nil
			}
		case "heapprofile":
			err = writeHeapProfile(arg)
		case "quit":
			return nil
		default:
			err = fmt.Errorf("unknown command %q", cmd)
		}
		if err != nil {
			msg.Err = err.Error()
		}
		if err := enc.Encode(msg); err != nil {
			return err
		}
	}
	return sc.Err()
}

// processes are the three anchors, each in a process of its own (this binary with anchorEnv).
type processes struct {
	mesh  string
	dir   string
	addrs []string
	procs []*anchorProc
}

// anchorProc is one running anchor process.
type anchorProc struct {
	mu    sync.Mutex // one command at a time
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
	tail  *tail
}

// startProcesses starts n anchors, each in its own process, as meshtest starts them in one: the
// first bootstraps the mesh with all of them as root voters, the others join through it.
func startProcesses(ctx context.Context, dir string, n int, tick, requestTimeout time.Duration) (*processes, error) {
	p := &processes{mesh: "demo.mesh", dir: dir}
	var listeners []*net.TCPListener
	defer func() {
		for _, l := range listeners {
			l.Close() // the children have their own descriptors
		}
	}()
	var peers []anchor.Peer
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l.(*net.TCPListener))
		p.addrs = append(p.addrs, l.Addr().String())
		peers = append(peers, anchor.Peer{ID: p.Name(i), Address: p.addrs[i]})
	}
	for i := range n {
		cfg := anchorConfig{ID: p.Name(i), Dir: p.DataDir(i), Mesh: p.mesh, TickInterval: tick, RequestTimeout: requestTimeout}
		if i == 0 {
			cfg.Peers = peers
		} else {
			tok, err := os.ReadFile(filepath.Join(p.DataDir(0), "join.token"))
			if err != nil {
				p.Close()
				return nil, fmt.Errorf("join token: %w", err)
			}
			cfg.Join, cfg.JoinToken = p.addrs[0], string(tok)
		}
		ap, err := startAnchorProc(ctx, cfg, listeners[i])
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("start %s: %w", cfg.ID, err)
		}
		p.procs = append(p.procs, ap)
	}
	return p, nil
}

func startAnchorProc(ctx context.Context, cfg anchorConfig, l *net.TCPListener) (*anchorProc, error) {
	data, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	lf, err := l.File()
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), anchorEnv+"="+string(data))
	cmd.ExtraFiles = []*os.File{lf}
	cmd.SysProcAttr = childAttr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	ap := &anchorProc{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout), tail: &tail{}}
	cmd.Stderr = ap.tail
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan error, 1)
	go func() { // the first line says the anchor serves
		var m anchorMsg
		ready <- ap.read(&m)
	}()
	select {
	case err = <-ready:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		ap.stop()
		return nil, fmt.Errorf("%w: %s", err, ap.tail.String())
	}
	return ap, nil
}

func (ap *anchorProc) read(m *anchorMsg) error {
	if !ap.out.Scan() {
		if err := ap.out.Err(); err != nil {
			return err
		}
		return errors.New("anchor process exited")
	}
	if err := json.Unmarshal(ap.out.Bytes(), m); err != nil {
		return err
	}
	if m.Err != "" {
		return errors.New(m.Err)
	}
	return nil
}

// call sends one command and reads its answer.
func (ap *anchorProc) call(cmd string) (anchorMsg, error) {
	ap.mu.Lock()
	defer ap.mu.Unlock()
	var m anchorMsg
	if _, err := fmt.Fprintln(ap.stdin, cmd); err != nil {
		return m, err
	}
	err := ap.read(&m)
	return m, err
}

// stop asks the anchor to quit and waits for it (killing it after a grace period).
func (ap *anchorProc) stop() {
	fmt.Fprintln(ap.stdin, "quit")
	ap.stdin.Close()
	exited := make(chan struct{})
	go func() { ap.cmd.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		ap.cmd.Process.Kill()
		<-exited
	}
}

func (p *processes) Len() int             { return len(p.addrs) }
func (p *processes) Mesh() string         { return p.mesh }
func (p *processes) Name(i int) string    { return fmt.Sprintf("a%d", i+1) }
func (p *processes) Addr(i int) string    { return p.addrs[i] }
func (p *processes) DataDir(i int) string { return filepath.Join(p.dir, p.Name(i)) }
func (p *processes) adminCredentials() string {
	return filepath.Join(p.DataDir(0), "admin.credentials")
}

func (p *processes) Client(i int) (*api.Client, error) {
	creds, err := identity.LoadCredentials(p.adminCredentials())
	if err != nil {
		return nil, err
	}
	return api.Dial(p.addrs[i], creds)
}

func (p *processes) Leader(scope string) int {
	for i, ap := range p.procs {
		if m, err := ap.call("scope " + scope); err == nil && m.Leads {
			return i
		}
	}
	return -1
}

func (p *processes) WaitScope(ctx context.Context, scope string) error {
	for {
		for _, ap := range p.procs {
			if m, err := ap.call("scope " + scope); err == nil && m.Leads && m.Initialised {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("scope %s not ready: %w", scope, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (p *processes) CPU() time.Duration {
	var total time.Duration
	for _, ap := range p.procs {
		if m, err := ap.call("cpu"); err == nil {
			total += time.Duration(m.CPUNanos)
		}
	}
	return total
}

func (p *processes) Memory() (heap, stack uint64, goroutines int) {
	for _, ap := range p.procs {
		if m, err := ap.call("memory"); err == nil {
			heap, stack, goroutines = heap+m.Heap, stack+m.Stack, goroutines+m.Goroutines
		}
	}
	return heap, stack, goroutines
}

func (p *processes) StartCPUProfile(path string) (func(), error) {
	for i, ap := range p.procs {
		if _, err := ap.call("cpuprofile " + path + "." + p.Name(i)); err != nil {
			return nil, fmt.Errorf("%s: cpu profile: %w", p.Name(i), err)
		}
	}
	return func() {
		for _, ap := range p.procs {
			ap.call("stopprofile")
		}
	}, nil
}

func (p *processes) WriteHeapProfile(path string) error {
	for i, ap := range p.procs {
		if _, err := ap.call("heapprofile " + path + "." + p.Name(i)); err != nil {
			return fmt.Errorf("%s: heap profile: %w", p.Name(i), err)
		}
	}
	return nil
}

func (p *processes) Close() error {
	var wg sync.WaitGroup
	for _, ap := range p.procs {
		wg.Add(1)
		go func() { defer wg.Done(); ap.stop() }()
	}
	wg.Wait()
	return nil
}

// memory returns this process's heap and stack in use after a full collection.
func memory() (heap, stack uint64, goroutines int) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, ms.StackInuse, runtime.NumGoroutine()
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.WriteHeapProfile(f)
}
