package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// children tracks every process the benchmark starts, so all of them are ended on exit and on Ctrl-C.
type children struct {
	mu    sync.Mutex
	procs []*child
}

// child is one running process.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // exit status, valid after done
	logs *tailBuffer   // the last lines of stderr, for error messages
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// start runs argv with extra environment variables. The process gets SIGKILL if this process dies
// (Pdeathsig), and is ended by stopAll.
func (cs *children) start(name string, env []string, argv ...string) (*child, io.Reader, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: stdout pipe: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{}), logs: &tailBuffer{max: 4096}}
	cmd.Stderr = c.logs
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("%s: start %s: %w", name, argv[0], err)
	}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	cs.mu.Lock()
	cs.procs = append(cs.procs, c)
	cs.mu.Unlock()
	return c, out, nil
}

// stop ends one child: SIGTERM, then SIGKILL after grace.
func (c *child) stop(grace time.Duration) {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// stopAll ends every child still running.
func (cs *children) stopAll() {
	cs.mu.Lock()
	procs := cs.procs
	cs.procs = nil
	cs.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.stop(2 * time.Second)
		}()
	}
	wg.Wait()
}

// readyLine waits for the child to print a line "ready <value>" on stdout and returns value. The rest of
// stdout is drained in the background.
func readyLine(ctx context.Context, c *child, out io.Reader, timeout time.Duration) (string, error) {
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "ready "); ok && !sent {
				lines <- v
				sent = true
			}
		}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case v := <-lines:
		return v, nil
	case <-c.done:
		return "", fmt.Errorf("%s exited before it was ready: %v: %s", c.name, c.err, c.logs.String())
	case <-t.C:
		return "", fmt.Errorf("%s not ready within %v: %s", c.name, timeout, c.logs.String())
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// waitListening polls until addr accepts TCP connections or the child exits.
func waitListening(ctx context.Context, c *child, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-c.done:
			return fmt.Errorf("%s exited: %v: %s", c.name, c.err, c.logs.String())
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s not accepting connections within %v: %s", c.name, addr, timeout, c.logs.String())
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}

// freePort returns a loopback address with a port that was free a moment ago, for peers (HAProxy,
// nginx, Canton listeners configured over xDS) that need their port in their configuration.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	return addr, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(string(t.b))
	if s == "" {
		return "(no output)"
	}
	return s
}
