package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"time"

	"canton.dev/canton/internal/filter"
	"canton.dev/canton/internal/proxy/cluster"
	"canton.dev/canton/internal/telemetry"
)

// serveTCP proxies one connection through a tcp_proxy filter chain: run the chain's network filters
// (RBAC), pick the cluster (weighted), an endpoint, dial, and copy both ways. Between two
// *net.TCPConn, io.Copy uses splice(2) on Linux. A chain with a transport socket terminates (m)TLS
// first, as for HTTP (c is then the *tls.Conn); a cluster with one dials TLS. sni is the server name
// the TLS inspector saw ("" for none).
func (l *runningListener) serveTCP(c net.Conn, spec *listenerSpec, chain *chainSpec, sni string) {
	p := l.p
	if !l.trackTCP(c, chain, true) {
		c.Close()
		return
	}
	defer l.trackTCP(c, chain, false)
	defer c.Close()
	t := chain.tcp
	name := t.cluster
	if name == "" {
		n := rand.Uint64N(t.total)
		for _, w := range t.weighted {
			if n < uint64(w.Weight) {
				name = w.Name
				break
			}
			n -= uint64(w.Weight)
		}
	}
	key := labelKey{cluster: name, inbound: spec.inbound, tcp: true}
	conn := filter.Conn{ServerName: sni} // what the network filters decide on
	if tc, ok := c.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		conn.ServerName = cs.ServerName
		var verified bool
		if conn.Peer, verified = peerOf(&cs, c.RemoteAddr()); verified && spec.inbound {
			key.mtls, key.peer = true, conn.Peer.Principal
		}
	} else if ip, err := netipAddr(c.RemoteAddr()); err == nil {
		conn.Peer.IP = ip
	}
	if ta, ok := c.LocalAddr().(*net.TCPAddr); ok {
		conn.Destination = ta.AddrPort() // a captured connection's original destination
	}
	if cl := p.snap.Load().clusters[name]; cl != nil && !spec.inbound {
		key.meshUp = cl.Mesh
	}
	labels := p.labelsFor(key)
	p.metrics.TCPOpened(labels)
	flagsStr := "-"
	var termination string // connection termination details: why a filter closed it
	var sent, received atomic.Int64
	start := time.Now()
	defer func() {
		p.metrics.TCPBytes(labels, sent.Load(), received.Load())
		p.metrics.TCPClosed(labels, flagsStr)
		if p.opts.AccessLog != nil {
			_ = p.opts.AccessLog.Log(&telemetry.Entry{StartTime: start, ResponseFlags: flagsStr, BytesReceived: received.Load(),
				BytesSent: sent.Load(), Duration: time.Since(start), UpstreamCluster: name, UpstreamServiceTime: -1,
				DownstreamRemoteAddress: c.RemoteAddr().String(), DownstreamLocalAddress: c.LocalAddr().String(),
				RequestedServerName: conn.ServerName, ConnectionTerminationDetails: termination})
		}
	}()
	// Network RBAC decides once, before anything is dialled: a denied connection is closed and
	// its upstream never sees it.
	if ok, details := chain.network.Allow(&conn); !ok {
		termination = details
		p.log.Debug("connection denied by network filter", "listener", l.name, "remote", c.RemoteAddr().String(), "details", details)
		return
	}
	cl := p.snap.Load().clusters[name]
	if cl == nil {
		flagsStr = flagNoCluster.join("")
		return
	}
	if err := cl.StartRequest(); err != nil {
		flagsStr = flagUpstreamOverflow.join("")
		return
	}
	defer cl.EndRequest()
	ep := cl.Pick(0, false)
	if ep == nil {
		flagsStr = flagNoHealthyUpstream.join("")
		return
	}
	cl.Begin(ep)
	up, err := cl.DialTCP(context.Background(), ep.Addr)
	if errors.Is(err, cluster.ErrOverflow) {
		cl.Abandon(ep)
		flagsStr = flagUpstreamOverflow.join("")
		return
	}
	if err != nil {
		cl.End(ep, 0)
		flagsStr = flagUpstreamConnFail.join("")
		return
	}
	cl.End(ep, 200)
	defer up.Close()

	down := c
	if pc, ok := c.(*prefixConn); ok {
		// Bytes read while inspecting go first; then the raw connection, so splice applies.
		if len(pc.prefix) > 0 {
			n, err := up.Write(pc.prefix)
			received.Add(int64(n))
			if err != nil {
				return
			}
		}
		down = pc.Conn
	}
	down = rawConn(down) // a restored original destination: back to the *net.TCPConn
	// Each direction copies with a read deadline one idle period ahead; a copy that moved bytes in
	// that period goes on, one that did not ends the connection unless the other direction was
	// active within the last two periods (Envoy's idle_timeout, with that granularity).
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	pump := func(dst, src net.Conn, count *atomic.Int64) bool {
		for {
			if t.idle > 0 {
				_ = src.SetReadDeadline(time.Now().Add(t.idle))
			}
			n, err := io.Copy(dst, src)
			count.Add(n)
			if n > 0 {
				last.Store(time.Now().UnixNano())
			}
			var ne net.Error
			if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
				closeWrite(dst) // EOF or error: pass the half-close on
				return false
			}
			if n == 0 && time.Since(time.Unix(0, last.Load())) >= 2*t.idle {
				return true // idle
			}
		}
	}
	done := make(chan bool, 2)
	go func() { done <- pump(up, down, &received) }()
	go func() { done <- pump(down, up, &sent) }()
	for range 2 {
		if idle := <-done; idle {
			flagsStr = "SI"
			up.Close()
			down.Close()
		}
	}
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
		return
	}
	_ = c.Close()
}
