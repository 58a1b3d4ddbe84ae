package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/structpb"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/xds"
)

// workerConfig is what the parent tells a worker (as JSON in the environment).
type workerConfig struct {
	Anchors   []string `json:"anchors"`
	JoinToken string   `json:"join_token"`
	Namespace string   `json:"namespace"`
	Shape     shape    `json:"shape"`
	Clients   int      `json:"clients"`
	// ConnectTimeout bounds the time until every client has ACKed its first configuration.
	ConnectTimeout time.Duration `json:"connect_timeout"`
	// IdenticalNodes gives every client of a service version the same node but for its ID
	// (the benchmark before it modelled per-proxy addresses); false: each client has its own
	// addresses and ports, as every `canton proxy` has.
	IdenticalNodes bool `json:"identical_nodes,omitempty"`
	// Delta makes the clients use delta (incremental) ADS, as canton proxy does; false: state
	// of the world.
	Delta bool `json:"delta,omitempty"`
}

const workerEnv = "CANTON_BENCH_CONTROLPLANE_WORKER"

// The worker protocol: the worker prints one JSON line per message on stdout and reads one
// command per line on stdin.
//
//	worker → parent: readyMsg once every client has its configuration (or the timeout passed)
//	parent → worker: "mark"             → worker: {"marked": true}
//	parent → worker: "wait <timeout>"   → worker: roundMsg once every client ACKed a new
//	                                      route version (or the timeout passed) and the
//	                                      pushes have settled
//	parent → worker: "quit" (or EOF)    → the worker closes its streams and exits
type readyMsg struct {
	Ready        int     `json:"ready"`
	Failed       int     `json:"failed"`
	FirstError   string  `json:"first_error,omitempty"`
	ConnectSecs  float64 `json:"connect_s"`
	InitialBytes int64   `json:"initial_bytes"`
}

type roundMsg struct {
	Marked    bool             `json:"marked,omitempty"`
	AckedAt   []int64          `json:"acked_at,omitempty"` // unix nanos per client; 0: never
	Bytes     map[string]int64 `json:"bytes,omitempty"`    // by type, since mark
	Responses map[string]int64 `json:"responses,omitempty"`
	CPUNanos  int64            `json:"cpu_ns,omitempty"` // CPU the worker used since mark (the clients' share of a change)
	Errors    int              `json:"errors,omitempty"` // clients whose stream failed
	FirstErr  string           `json:"first_error,omitempty"`
}

// runWorker is the child process: it connects cfg.Clients simulated proxies and answers the
// parent's commands until told to quit.
func runWorker(cfg workerConfig, in io.Reader, out io.Writer) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	enc := json.NewEncoder(out)
	creds, err := mintCredentials(ctx, cfg)
	if err != nil {
		return err
	}
	c := counters{wake: make(chan struct{}, 1)}
	clients := make([]*simClient, cfg.Clients)
	conns := make([]*grpc.ClientConn, cfg.Clients)
	defer func() {
		for _, conn := range conns {
			if conn != nil {
				conn.Close()
			}
		}
	}()
	var ready, failed atomic.Int64
	var firstErr atomic.Value
	done := make(chan struct{}, 2*cfg.Clients) // ready, then maybe failed
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	start := time.Now()
	cctx, ccancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer ccancel()
	// Dial in waves so that TLS handshakes do not all pile up at once.
	sem := make(chan struct{}, 64)
	started := 0
	for i := range cfg.Clients {
		select {
		case sem <- struct{}{}:
		case <-cctx.Done():
		}
		if cctx.Err() != nil {
			break
		}
		started++
		svc := i % cfg.Shape.Services
		sc := &simClient{node: nodeFor(cfg, i), c: &c}
		clients[i] = sc
		tlsCfg := identity.ClientTLS(creds[svc], identity.AcceptAnchors(meshOf(cfg.Namespace)))
		conn, err := grpc.NewClient(cfg.Anchors[i%len(cfg.Anchors)], grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
		if err != nil {
			return fmt.Errorf("worker: dial %s: %w", cfg.Anchors[i%len(cfg.Anchors)], err)
		}
		conns[i] = conn
		wg.Add(1)
		go func() {
			defer wg.Done()
			released := false
			release := func() {
				if !released {
					released = true
					<-sem
				}
			}
			run := sc.run
			if cfg.Delta {
				run = sc.runDelta
			}
			err := run(ctx, conn, func() {
				ready.Add(1)
				release()
				done <- struct{}{}
			})
			release()
			if err != nil {
				sc.mu.Lock()
				sc.err = err
				sc.mu.Unlock()
				if failed.Add(1) == 1 {
					firstErr.Store(err.Error())
				}
				done <- struct{}{}
			}
		}()
	}
	for n := 0; n < started; n++ {
		select {
		case <-done:
		case <-cctx.Done():
			n = started
		}
	}
	clients = clients[:started]
	msg := readyMsg{Ready: int(ready.Load()), Failed: int(failed.Load()) + cfg.Clients - started, ConnectSecs: time.Since(start).Seconds()}
	if e, ok := firstErr.Load().(string); ok {
		msg.FirstError = e
	}
	settle(&c, 300*time.Millisecond, 5*time.Second)
	for i := range c.bytes {
		msg.InitialBytes += c.bytes[i].Load()
	}
	if err := enc.Encode(msg); err != nil {
		return err
	}
	sc := bufio.NewScanner(in)
	var markCPU time.Duration
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		switch cmd {
		case "mark":
			settle(&c, 300*time.Millisecond, 5*time.Second)
			markCPU = cpuTime()
			for _, cl := range clients {
				cl.mark()
			}
			c.changed.Store(0)
			for i := range c.bytes {
				c.bytes[i].Store(0)
				c.responses[i].Store(0)
			}
			if err := enc.Encode(roundMsg{Marked: true}); err != nil {
				return err
			}
		case "wait":
			timeout, err := time.ParseDuration(arg)
			if err != nil {
				return fmt.Errorf("worker: wait %q: %w", arg, err)
			}
			round := waitRound(clients, cfg.Shape, &c, timeout)
			round.CPUNanos = int64(cpuTime() - markCPU)
			if err := enc.Encode(round); err != nil {
				return err
			}
		case "quit":
			return nil
		default:
			return fmt.Errorf("worker: unknown command %q", cmd)
		}
	}
	return sc.Err()
}

// waitRound waits until every live client whose configuration the change concerns ACKed a
// new route version or timeout, then until pushes settle, and reports the round.
func waitRound(clients []*simClient, sh shape, c *counters, timeout time.Duration) roundMsg {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	// Scanning every client costs CPU the anchors on this machine need: scan only when as
	// many clients as are waited for have changed, and every 100ms (a stream may fail).
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	msg := roundMsg{AckedAt: make([]int64, len(clients))}
	for {
		pending := 0
		for i, cl := range clients {
			cl.mu.Lock()
			dead := cl.err != nil
			cl.mu.Unlock()
			if !dead && sh.affected(i%sh.Services) && cl.changed() == 0 {
				pending++
			}
		}
		if pending == 0 {
			break
		}
		target := c.changed.Load() + int64(pending)
		timedOut := false
		for !timedOut && c.changed.Load() < target {
			select {
			case <-c.wake:
				continue
			case <-tick.C:
			case <-deadline.C:
				timedOut = true
			}
			break
		}
		if timedOut {
			break
		}
	}
	settle(c, 300*time.Millisecond, 5*time.Second)
	msg.Bytes, msg.Responses = map[string]int64{}, map[string]int64{}
	for i, cl := range clients {
		msg.AckedAt[i] = cl.changed()
		cl.mu.Lock()
		if cl.err != nil {
			msg.Errors++
			if msg.FirstErr == "" {
				msg.FirstErr = cl.err.Error()
			}
		}
		cl.mu.Unlock()
	}
	for i, name := range typeShort {
		msg.Bytes[name] = c.bytes[i].Load()
		msg.Responses[name] = c.responses[i].Load()
	}
	return msg
}

// settle waits until no client received anything for quiet, at most max.
func settle(c *counters, quiet, max time.Duration) {
	end := time.Now().Add(max)
	for time.Now().Before(end) {
		last := time.Unix(0, c.lastRecv.Load())
		if time.Since(last) >= quiet {
			return
		}
		time.Sleep(quiet / 5)
	}
}

// meshOf returns the mesh domain of an absolute namespace of the benchmark ("bench.demo.mesh"
// → "demo.mesh").
func meshOf(ns string) string {
	_, mesh, _ := strings.Cut(ns, ".")
	return mesh
}

// clientNode describes client i as `canton proxy` describes itself (internal/workload's
// node): a sidecar of service i%Services, version i/Services%Versions+1, with an outbound
// listener on 127.0.0.1, an inbound listener in front of its application, an admin listener,
// and no optional capability. Like real proxies, every client has its own addresses: its own
// outbound port, inbound address, application address and admin address (client i uses
// loopback address 127.1.<i/256>.<i%256>), so no two clients send the same node. With
// identical, the clients of one service version send the same node but for the ID (shared
// 127.0.0.1 ports), as the benchmark did before.
func clientNode(ns string, sh shape, identical bool, i int) xds.Node {
	service := serviceName(i % sh.Services)
	n := xds.Node{ID: fmt.Sprintf("bench-%s-%d", service, i), Service: service, Namespace: ns,
		Labels: map[string]string{"app": service, "version": fmt.Sprintf("v%d", i/sh.Services%sh.Versions+1)}, Kind: xds.KindSidecar,
		OutboundPort: 15001, InboundPort: 15006, InboundAddress: "127.0.0.1", AppAddress: "127.0.0.1:9080",
		AdminAddress: "127.0.0.1:15000", Capabilities: map[string]bool{}}
	if !identical {
		ip := fmt.Sprintf("127.1.%d.%d", i/256%256, i%256)
		n.OutboundPort = uint32(20000 + i%40000) // on 127.0.0.1: distinct ports (up to 40,000 clients)
		n.InboundAddress = ip
		n.AppAddress = ip + ":9080"
		n.AdminAddress = ip + ":15000"
	}
	return n
}

// nodeFor is the xDS node client i sends (clientNode).
func nodeFor(cfg workerConfig, i int) *corev3.Node {
	n := clientNode(cfg.Namespace, cfg.Shape, cfg.IdenticalNodes, i)
	fields := map[string]*structpb.Value{}
	for k, v := range xds.NodeMetadata(n) {
		fields[k] = structpb.NewStringValue(v)
	}
	return &corev3.Node{Id: n.ID, Cluster: n.Service + "." + cfg.Namespace, Metadata: &structpb.Struct{Fields: fields}}
}

// mintCredentials obtains one workload certificate per service account, as a proxy does
// for itself: a CSR signed by IssueCertificate with the join token, the anchor verified
// against the token's CA pin.
func mintCredentials(ctx context.Context, cfg workerConfig) ([]*identity.Credentials, error) {
	tok, err := identity.ParseJoinToken(strings.TrimSpace(cfg.JoinToken))
	if err != nil {
		return nil, fmt.Errorf("worker: join token: %w", err)
	}
	conn, err := grpc.NewClient(cfg.Anchors[0], grpc.WithTransportCredentials(credentials.NewTLS(identity.PinnedClientTLS(tok.CAPin))))
	if err != nil {
		return nil, fmt.Errorf("worker: dial %s: %w", cfg.Anchors[0], err)
	}
	defer conn.Close()
	client := apipb.NewAnchorClient(conn)
	out := make([]*identity.Credentials, cfg.Shape.Services)
	for i := range out {
		id := identity.WorkloadID(cfg.Namespace, serviceName(i))
		key, err := identity.GenerateKey()
		if err != nil {
			return nil, err
		}
		csr, err := identity.NewCSR(id, key)
		if err != nil {
			return nil, err
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := client.IssueCertificate(cctx, &apipb.IssueCertificateRequest{Csr: csr, Token: tok.String(), TtlSeconds: 3600})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("worker: issue certificate for %s: %w", id, err)
		}
		creds := &identity.Credentials{Key: key}
		for _, der := range resp.GetChain() {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, fmt.Errorf("worker: certificate for %s: %w", id, err)
			}
			creds.Chain = append(creds.Chain, c)
		}
		for _, der := range resp.GetBundle() {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, fmt.Errorf("worker: bundle for %s: %w", id, err)
			}
			creds.Bundle = append(creds.Bundle, c)
		}
		if len(creds.Chain) == 0 {
			return nil, errors.New("worker: anchor returned an empty certificate chain")
		}
		out[i] = creds
	}
	return out, nil
}

// workerMain runs the worker from the environment, for the child process.
func workerMain() error {
	var cfg workerConfig
	if err := json.Unmarshal([]byte(os.Getenv(workerEnv)), &cfg); err != nil {
		return fmt.Errorf("worker: config: %w", err)
	}
	if cfg.Clients <= 0 || len(cfg.Anchors) == 0 || cfg.Shape.Services <= 0 || cfg.Shape.Versions <= 0 {
		return fmt.Errorf("worker: incomplete config %+v", cfg)
	}
	return runWorker(cfg, os.Stdin, os.Stdout)
}
