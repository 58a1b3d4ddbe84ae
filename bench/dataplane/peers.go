package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// scenario is one path from the load generator to the upstream.
type scenario struct {
	Name  string // e.g. "canton-2hop-mtls"
	Peer  string // direct, canton, haproxy, nginx
	Hops  int    // proxies on the path
	Proto string // protocol of the client side: http1, h2c or grpc
	addr  string // host:port the load generator sends to
	// procs are the proxy processes on the path; their CPU and RSS are measured (with their children).
	procs []*child
}

// env is what every peer is started with.
type env struct {
	ctx      context.Context
	kids     *children
	self     string // this program's executable, re-executed for the upstream
	canton   string // the canton binary whose proxies are measured
	dir      string // scratch directory for configurations and certificates
	upstream string // host:port of the upstream HTTP server
	grpcUp   string // host:port of the upstream gRPC ping server
	pki      *pki
	xds      *xdsServer
}

const startTimeout = 20 * time.Second

func urlOf(addr string) string { return "http://" + addr + "/" }

// --- Canton ---

// startCanton starts one Canton proxy child process (GOMAXPROCS=1) for node and returns it with the
// address of its benchmark listener. The proxy is the canton binary itself ("canton bare-proxy": the
// data plane of canton proxy, with its memory policy, configured by the benchmark's xDS server), so
// what is measured is what a user runs. CANTON_BENCH_CPUPROFILE=dir: each proxy writes a CPU profile
// of its whole run to dir/<node>.cpu; CANTON_BENCH_MEMPROFILE=dir: its live heap when stopped to
// dir/<node>.heap.
func startCanton(e *env, node string) (*child, string, error) {
	argv := []string{e.canton, "bare-proxy", "--xds", e.xds.Addr, "--id", node, "--admin", "127.0.0.1:0",
		"--ready-listener", listenerName, "--drain", "1s"}
	if dir := os.Getenv("CANTON_BENCH_CPUPROFILE"); dir != "" {
		argv = append(argv, "--cpuprofile", filepath.Join(dir, node+".cpu"))
	}
	if dir := os.Getenv("CANTON_BENCH_MEMPROFILE"); dir != "" {
		argv = append(argv, "--memprofile", filepath.Join(dir, node+".heap"))
	}
	c, out, err := e.kids.start("canton proxy "+node, []string{"GOMAXPROCS=1"}, argv...)
	if err != nil {
		return nil, "", err
	}
	addr, err := readyLine(e.ctx, c, out, startTimeout)
	if err != nil {
		return nil, "", err
	}
	return c, addr, nil
}

// cantonOneHop serves HTTP/1.1, h2c (prior knowledge) and gRPC on one listener: the HTTP connection
// manager's codec is AUTO, as in a sidecar, and gRPC calls are routed by path to an HTTP/2 cluster.
func cantonOneHop(e *env) ([]*scenario, error) {
	listen, err := freePort()
	if err != nil {
		return nil, err
	}
	res, err := oneHopResources(listen, e.upstream, e.grpcUp)
	if err != nil {
		return nil, err
	}
	if err := e.xds.set(e.ctx, nodeOneHop, res); err != nil {
		return nil, err
	}
	c, addr, err := startCanton(e, nodeOneHop)
	if err != nil {
		return nil, err
	}
	return []*scenario{
		{Name: "canton-1hop", Peer: "canton", Hops: 1, Proto: "http1", addr: addr, procs: []*child{c}},
		{Name: "canton-1hop-h2c", Peer: "canton", Hops: 1, Proto: "h2c", addr: addr, procs: []*child{c}},
		{Name: "canton-1hop-grpc", Peer: "canton", Hops: 1, Proto: "grpc", addr: addr, procs: []*child{c}},
	}, nil
}

// cantonTwoHops is the mesh path over HTTP/1.1 between the proxies (canton-2hop-mtls).
func cantonTwoHops(e *env) ([]*scenario, error) {
	co, ci, addr, err := startCantonPair(e, nodeOutbound, nodeInbound, false)
	if err != nil {
		return nil, err
	}
	return []*scenario{{Name: "canton-2hop-mtls", Peer: "canton", Hops: 2, Proto: "http1", addr: addr, procs: []*child{co, ci}}}, nil
}

// cantonTwoHopsH2 is the mesh path for HTTP/2 clients: h2c into the outbound proxy, HTTP/2 over mTLS
// between the proxies, h2c (or gRPC) to the upstream.
func cantonTwoHopsH2(e *env) ([]*scenario, error) {
	co, ci, addr, err := startCantonPair(e, nodeOutboundH2, nodeInboundH2, true)
	if err != nil {
		return nil, err
	}
	return []*scenario{
		{Name: "canton-2hop-mtls-h2c", Peer: "canton", Hops: 2, Proto: "h2c", addr: addr, procs: []*child{co, ci}},
		{Name: "canton-2hop-mtls-grpc", Peer: "canton", Hops: 2, Proto: "grpc", addr: addr, procs: []*child{co, ci}},
	}, nil
}

// startCantonPair starts an inbound and an outbound Canton proxy with mTLS between them (HTTP/2 if h2)
// and returns them with the outbound proxy's address.
func startCantonPair(e *env, outNode, inNode string, h2 bool) (co, ci *child, addr string, err error) {
	outListen, err := freePort()
	if err != nil {
		return nil, nil, "", err
	}
	inListen, err := freePort()
	if err != nil {
		return nil, nil, "", err
	}
	in, err := inboundResources(inListen, e.upstream, e.grpcUp, e.pki, h2)
	if err != nil {
		return nil, nil, "", err
	}
	out, err := outboundResources(outListen, inListen, e.pki, h2)
	if err != nil {
		return nil, nil, "", err
	}
	if err := e.xds.set(e.ctx, inNode, in); err != nil {
		return nil, nil, "", err
	}
	if err := e.xds.set(e.ctx, outNode, out); err != nil {
		return nil, nil, "", err
	}
	if ci, _, err = startCanton(e, inNode); err != nil {
		return nil, nil, "", err
	}
	if co, addr, err = startCanton(e, outNode); err != nil {
		return nil, nil, "", err
	}
	return co, ci, addr, nil
}

// manyClusters is the number of clusters of the memory measurement (the RSS target of issue #8).
const manyClusters = 1000

// manyClustersWindow is the shortest fixed-rate window before the memory measurement. The heap of a
// proxy grows to its garbage collector's goal (twice the live heap) under load; a second after
// start it has not yet, and the RSS read then was 1 to 4 MiB short of what the proxy keeps.
const manyClustersWindow = 10 * time.Second

// cantonRSSManyClusters starts a Canton proxy configured with manyClusters clusters, sends requests
// through it for d (at least manyClustersWindow) and returns its memory; the proxy is stopped
// afterwards.
func cantonRSSManyClusters(e *env, d time.Duration) (memParts, error) {
	listen, err := freePort()
	if err != nil {
		return memParts{}, err
	}
	res, err := manyClustersResources(listen, e.upstream, manyClusters)
	if err != nil {
		return memParts{}, err
	}
	if err := e.xds.set(e.ctx, nodeMany, res); err != nil {
		return memParts{}, err
	}
	c, addr, err := startCanton(e, nodeMany)
	if err != nil {
		return memParts{}, err
	}
	defer c.stop(2 * time.Second)
	if err := check(addr, "http1"); err != nil {
		return memParts{}, err
	}
	if _, err := runLoad(e.ctx, addr, "http1", fixedQPS, max(d, manyClustersWindow)); err != nil {
		return memParts{}, err
	}
	return memStatus(c.pid())
}

// --- HAProxy ---

// haproxyConfig is a one-thread HAProxy in HTTP mode with keep-alive on both sides and connection
// reuse always. bind and server are the rest of the "bind" and "server" lines (address and TLS options);
// h2c, if not empty, is a second address where the frontend speaks HTTP/2 over cleartext, and grpc the
// gRPC upstream that requests for fortio's ping service go to over HTTP/2.
func haproxyConfig(bind, server, h2c, grpc string) string {
	if h2c != "" {
		h2c = "\tbind " + h2c + " proto h2\n"
	}
	grpcBackend := ""
	if grpc != "" {
		h2c += "\tuse_backend grpc if { path_beg /fgrpc. }\n"
		grpcBackend = "\nbackend grpc\n\tserver up " + grpc + " proto h2\n"
	}
	return fmt.Sprintf(`global
	nbthread 1
	maxconn 4096
	tune.ssl.default-dh-param 2048

defaults
	mode http
	option http-keep-alive
	http-reuse always
	timeout connect 2s
	timeout client 60s
	timeout server 60s
	timeout http-keep-alive 60s

frontend bench
	bind %s
%s	http-request deny deny_status 403 if { path_beg /admin/ }
	default_backend upstream

backend upstream
	server up %s
%s`, bind, h2c, server, grpcBackend)
}

func startHAProxy(e *env, bin, name, cfg, listen string) (*child, error) {
	path := filepath.Join(e.dir, name+".cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("%s: write config: %w", name, err)
	}
	if out, err := exec.Command(bin, "-c", "-q", "-f", path).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s: config %s rejected: %v: %s", name, path, err, strings.TrimSpace(string(out)))
	}
	c, _, err := e.kids.start(name, nil, bin, "-db", "-f", path)
	if err != nil {
		return nil, err
	}
	if err := waitListening(e.ctx, c, listen, startTimeout); err != nil {
		return nil, err
	}
	return c, nil
}

func haproxyOneHop(e *env, bin string) ([]*scenario, error) {
	listen, err := freePort()
	if err != nil {
		return nil, err
	}
	h2c, err := freePort()
	if err != nil {
		return nil, err
	}
	c, err := startHAProxy(e, bin, "haproxy-1hop", haproxyConfig(listen, e.upstream, h2c, e.grpcUp), listen)
	if err != nil {
		return nil, err
	}
	return []*scenario{
		{Name: "haproxy-1hop", Peer: "haproxy", Hops: 1, Proto: "http1", addr: listen, procs: []*child{c}},
		{Name: "haproxy-1hop-h2c", Peer: "haproxy", Hops: 1, Proto: "h2c", addr: h2c, procs: []*child{c}},
		{Name: "haproxy-1hop-grpc", Peer: "haproxy", Hops: 1, Proto: "grpc", addr: h2c, procs: []*child{c}},
	}, nil
}

// haproxyTwoHops is HAProxy's mesh path: HTTP/1.1 over mTLS between two HAProxies (haproxy-2hop-mtls)
// and, on a second pair, HTTP/2 over mTLS (ALPN h2) for h2c and gRPC clients.
func haproxyTwoHops(e *env, bin string, h2 bool) ([]*scenario, error) {
	outListen, err := freePort()
	if err != nil {
		return nil, err
	}
	inListen, err := freePort()
	if err != nil {
		return nil, err
	}
	suffix, bindOut, alpn, upstream, grpc := "", outListen, "", e.upstream, ""
	if h2 {
		// The outbound frontend speaks h2c only; the inbound sends h2c to the upstream and gRPC calls
		// to the gRPC upstream.
		suffix, bindOut, alpn, upstream, grpc = "-h2", outListen+" proto h2", " alpn h2", e.upstream+" proto h2", e.grpcUp
	}
	inCfg := haproxyConfig(fmt.Sprintf("%s ssl crt %s ca-file %s verify required%s", inListen, e.pki.ServerBundle, e.pki.CAFile, alpn),
		upstream, "", grpc)
	ci, err := startHAProxy(e, bin, "haproxy-inbound"+suffix, inCfg, inListen)
	if err != nil {
		return nil, err
	}
	outCfg := haproxyConfig(bindOut, fmt.Sprintf("%s ssl crt %s ca-file %s verify required verifyhost %s sni str(%s)%s",
		inListen, e.pki.ClientBundle, e.pki.CAFile, serverName, serverName, alpn), "", "")
	co, err := startHAProxy(e, bin, "haproxy-outbound"+suffix, outCfg, outListen)
	if err != nil {
		return nil, err
	}
	if h2 {
		return []*scenario{
			{Name: "haproxy-2hop-mtls-h2c", Peer: "haproxy", Hops: 2, Proto: "h2c", addr: outListen, procs: []*child{co, ci}},
			{Name: "haproxy-2hop-mtls-grpc", Peer: "haproxy", Hops: 2, Proto: "grpc", addr: outListen, procs: []*child{co, ci}},
		}, nil
	}
	return []*scenario{{Name: "haproxy-2hop-mtls", Peer: "haproxy", Hops: 2, Proto: "http1", addr: outListen, procs: []*child{co, ci}}}, nil
}

// --- nginx ---

// nginxOneHop is nginx with one worker process, HTTP/1.1 on one port and h2c (prior knowledge) on
// another, keep-alive connections to the upstream, and gRPC (on the h2c port) proxied with grpc_pass.
func nginxOneHop(e *env, bin string) ([]*scenario, error) {
	listen, err := freePort()
	if err != nil {
		return nil, err
	}
	h2c, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.dir, "nginx")
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("nginx: %w", err)
	}
	cfg := fmt.Sprintf(`worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path %[1]s/tmp/body;
	proxy_temp_path %[1]s/tmp/proxy;
	fastcgi_temp_path %[1]s/tmp/fastcgi;
	uwsgi_temp_path %[1]s/tmp/uwsgi;
	scgi_temp_path %[1]s/tmp/scgi;
	keepalive_requests 10000000;
	keepalive_timeout 60s;
	upstream up {
		server %[3]s;
		keepalive 64;
		keepalive_requests 10000000;
	}
	upstream grpcup {
		server %[5]s;
		keepalive 64;
		keepalive_requests 10000000;
	}
	server {
		listen %[2]s;
		listen %[4]s http2;
		location /admin/ { return 403; }
		location /fgrpc. { grpc_pass grpc://grpcup; }
		location / {
			proxy_pass http://up;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
		}
	}
}
`, dir, listen, e.upstream, h2c, e.grpcUp)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("nginx: write config: %w", err)
	}
	args := []string{bin, "-p", dir, "-c", path, "-e", filepath.Join(dir, "error.log")}
	if out, err := exec.Command(args[0], append(args[1:], "-t", "-q")...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nginx: config %s rejected: %v: %s", path, err, strings.TrimSpace(string(out)))
	}
	c, _, err := e.kids.start("nginx", nil, args...)
	if err != nil {
		return nil, err
	}
	if err := waitListening(e.ctx, c, listen, startTimeout); err != nil {
		return nil, err
	}
	return []*scenario{
		{Name: "nginx-1hop", Peer: "nginx", Hops: 1, Proto: "http1", addr: listen, procs: []*child{c}},
		{Name: "nginx-1hop-h2c", Peer: "nginx", Hops: 1, Proto: "h2c", addr: h2c, procs: []*child{c}},
		{Name: "nginx-1hop-grpc", Peer: "nginx", Hops: 1, Proto: "grpc", addr: h2c, procs: []*child{c}},
	}, nil
}

// descendants returns pid and all its descendant processes (nginx's master and worker).
func descendants(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out) && i < 64; i++ {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", out[i]))
		for _, t := range tasks {
			b, err := os.ReadFile(t)
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(b)) {
				if n, err := strconv.Atoi(f); err == nil {
					out = append(out, n)
				}
			}
		}
	}
	return out
}

// pids returns every process of a scenario's proxies.
func (s *scenario) pids() []int {
	var out []int
	for _, c := range s.procs {
		out = append(out, descendants(c.pid())...)
	}
	return out
}
