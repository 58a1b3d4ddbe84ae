package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"canton.dev/canton/internal/proxy/cluster"
	"canton.dev/canton/internal/proxy/route"
)

// maxBufferedBody is the largest request body kept for retries and mirroring (Envoy's
// per_request_buffer_limit_bytes default is 1 MiB; requests above this size are not retried).
const maxBufferedBody = 1 << 20

var (
	errStreamIdle     = errors.New("stream idle timeout")
	errRequestTimeout = errors.New("request timeout")
)

// monoEpoch anchors monoNow: durations since it use the monotonic clock.
var monoEpoch = time.Now()

func monoNow() time.Duration { return time.Since(monoEpoch) }

// reqTimer enforces a request's route timeout and stream idle timeout with one time.Timer that
// cancels the request's upstream context: with context.DeadlineExceeded as the cause at the route
// deadline, with errStreamIdle when no body chunk moved for the idle timeout. Activity (touch) only
// records the time; the timer re-arms itself lazily when it fires early. A reqTimer belongs to a
// pooled reqState and its time.Timer is reused: a callback that runs late after disarm finds either
// no request (cancel nil) or the next request's deadlines, which it evaluates correctly, so a stale
// firing is harmless. A nil *reqTimer's touch does nothing.
type reqTimer struct {
	mu      sync.Mutex
	t       *time.Timer
	cancel  context.CancelCauseFunc // nil while disarmed
	routeAt time.Duration           // monoNow deadline of the route timeout, zero: none
	idle    time.Duration           // stream idle timeout, zero: none
	last    atomic.Int64            // monoNow of the last activity
}

// arm starts timing a request; routeAt is a monoNow deadline or zero, idle zero means none.
func (t *reqTimer) arm(cancel context.CancelCauseFunc, routeAt, idle time.Duration) {
	now := monoNow()
	t.mu.Lock()
	t.cancel, t.routeAt, t.idle = cancel, routeAt, idle
	t.last.Store(int64(now))
	d := t.nextLocked(now) - now
	if t.t == nil {
		t.t = time.AfterFunc(d, t.fire)
	} else {
		t.t.Reset(d)
	}
	t.mu.Unlock()
}

// disarm ends the request: the timer no longer cancels anything.
func (t *reqTimer) disarm() {
	t.mu.Lock()
	t.cancel = nil
	t.mu.Unlock()
	t.t.Stop()
}

// nextLocked is the earliest deadline (monoNow) to check.
func (t *reqTimer) nextLocked(now time.Duration) time.Duration {
	next := t.routeAt
	if t.idle > 0 {
		if at := time.Duration(t.last.Load()) + t.idle; next == 0 || at < next {
			next = at
		}
	}
	return max(next, now)
}

func (t *reqTimer) fire() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cancel == nil {
		return
	}
	now := monoNow()
	switch {
	case t.routeAt > 0 && now >= t.routeAt:
		t.cancel(context.DeadlineExceeded)
	case t.idle > 0 && now >= time.Duration(t.last.Load())+t.idle:
		t.cancel(errStreamIdle)
	default:
		t.t.Reset(t.nextLocked(now) - now)
		return
	}
	t.cancel = nil
}

// touch records activity on the stream (pushes the idle deadline back).
func (t *reqTimer) touch() {
	if t != nil {
		t.last.Store(int64(monoNow()))
	}
}

// activityReader is a streamed request body: every read touches the idle timer, and a read that fails
// once request_timeout has passed cancels the upstream request (errRequestTimeout), so that the
// upstream never takes the truncated body for a complete one.
type activityReader struct {
	io.ReadCloser
	t      *reqTimer
	st     *reqState
	cancel context.CancelCauseFunc
}

func (a *activityReader) Read(b []byte) (int, error) {
	n, err := a.ReadCloser.Read(b)
	if n > 0 {
		a.t.touch()
	}
	if err != nil && err != io.EOF && a.st.requestTimedOut() {
		a.cancel(errRequestTimeout)
	}
	return n, err
}

// ReadReady passes the downstream body's readiness on to the upstream pool (cluster.ReadReadier).
func (a *activityReader) ReadReady() bool { return bodyReady(a.ReadCloser) }

// bodyReady reports whether b's next Read returns at once (cluster.ReadReadier).
func bodyReady(b io.Reader) bool {
	rr, ok := b.(cluster.ReadReadier)
	return ok && rr.ReadReady()
}

// requestTimedOut reports whether request_timeout applies and has passed.
func (st *reqState) requestTimedOut() bool {
	return !st.reqDeadline.IsZero() && !time.Now().Before(st.reqDeadline)
}

// causeIs reports whether ctx, when armed with a cancel cause, was cancelled for err.
func causeIs(ctx context.Context, armed bool, err error) bool {
	return armed && errors.Is(context.Cause(ctx), err)
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// forward sends the request upstream with the route's cluster choice, breakers, retries, timeouts and
// mirroring, and copies the response back.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, st *reqState) error {
	f := st.rt.Forward
	name := f.PickCluster(&st.rreq)
	st.cluster = name
	cl := st.snap.clusters[name]
	if cl == nil {
		st.flags |= flagNoCluster
		localReply(w, r, st, f.NotFoundStatus, "cluster not found")
		return nil
	}
	if err := cl.StartRequest(); err != nil {
		st.flags |= flagUpstreamOverflow
		w.Header().Set("X-Envoy-Overloaded", "true")
		localReply(w, r, st, http.StatusServiceUnavailable, "upstream overflow")
		return nil
	}
	defer cl.EndRequest()

	hdr := r.Header
	for _, m := range st.rt.RequestHeaders {
		m.Apply(hdr)
	}
	if st.rreq.Scheme == "https" {
		hdr["X-Forwarded-Proto"] = schemeHTTPS
	} else {
		hdr["X-Forwarded-Proto"] = schemeHTTP
	}
	if cl.Mesh {
		st.meshUp = true
		p.putPeerMetadata(hdr) // the callee's proxy learns who calls
	}
	if st.hcm.remoteAddress {
		// use_remote_address: this proxy is the edge; append the peer address as Envoy does.
		hdr["X-Forwarded-For"] = append(hdr["X-Forwarded-For"], netipAddrOf(r.RemoteAddr))
	}
	if st.upgrade != "" {
		hdr["Connection"] = []string{"Upgrade"}
	}
	if _, ok := hdr["User-Agent"]; !ok {
		hdr["User-Agent"] = nil // keep net/http from adding its own
	}
	host := r.Host
	if f.HostRewrite != "" {
		host = f.HostRewrite
	}
	path := f.RewritePath(st.rt, st.rreq.Path)
	upath, rawPath := path, ""
	if strings.IndexByte(path, '%') >= 0 {
		if u, err := url.PathUnescape(path); err == nil {
			upath, rawPath = u, path
		}
	}

	retries := 0
	if f.Retry != nil {
		retries = f.Retry.NumRetries
	}
	var body []byte
	buffered := r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0
	// request_timeout: the whole request must arrive within it, counted from its start, unless the
	// response starts first. A read deadline on the downstream stream enforces it for buffered and
	// streamed bodies alike; it is lifted when the response starts.
	if d := st.hcm.requestTimeout; d > 0 && !buffered && st.upgrade == "" {
		st.reqDeadline = st.start.Add(d)
		if err := http.NewResponseController(w).SetReadDeadline(st.reqDeadline); err != nil {
			st.reqDeadline = time.Time{} // not supported by this connection: no request timeout
		} else {
			defer func() { _ = http.NewResponseController(w).SetReadDeadline(time.Time{}) }()
		}
	}
	hasReqDeadline := !st.reqDeadline.IsZero()
	if !buffered && st.upgrade == "" && (retries > 0 || len(f.Mirrors) > 0) && r.ContentLength > 0 && r.ContentLength <= maxBufferedBody {
		body = make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			if st.requestTimedOut() {
				localReply(w, r, st, http.StatusRequestTimeout, "request timeout")
				return nil
			}
			st.flags |= flagDownstreamConn
			localReply(w, r, st, http.StatusBadRequest, "request body incomplete")
			return nil
		}
		buffered = true
	}
	if !buffered {
		retries = 0
		if r.ProtoMajor == 1 {
			// Let a streaming upstream answer while the request body still flows (gRPC streaming).
			_ = http.NewResponseController(w).EnableFullDuplex()
		}
	}
	for _, m := range f.Mirrors {
		if buffered && route.Hit(m.PerMillion) {
			p.mirror(st.snap, m.Cluster, r.Method, upath, rawPath, st.rreq.Query, host, hdr.Clone(), body, f.Timeout)
		}
	}

	// The route timeout and the stream idle timeout (the route's idle_timeout, else the connection
	// manager's stream_idle_timeout; reset by every body chunk either way) share one cancel-cause
	// context and one reused timer; request_timeout's body reads cancel the same context.
	ctx := r.Context()
	var routeAt time.Duration
	if f.Timeout > 0 && st.upgrade == "" {
		routeAt = monoNow() + f.Timeout
	}
	idle := st.hcm.streamIdle
	if f.HasIdleTimeout {
		idle = f.IdleTimeout
	}
	if st.upgrade != "" {
		idle = 0
	}
	var tm *reqTimer
	var cancelCause context.CancelCauseFunc
	if routeAt > 0 || idle > 0 || (hasReqDeadline && st.upgrade == "") {
		ctx, cancelCause = context.WithCancelCause(ctx)
		defer cancelCause(nil)
		if routeAt > 0 || idle > 0 {
			if st.timer == nil {
				st.timer = new(reqTimer)
			}
			st.timer.arm(cancelCause, routeAt, idle)
			defer st.timer.disarm()
			if idle > 0 {
				tm = st.timer
			}
		}
	}
	armed := cancelCause != nil
	hash, hasHash := requestHash(f, r)
	scheme := cl.Scheme
	retrying := false
	defer func() {
		if retrying {
			cl.EndRetry()
		}
	}()
	var tried [4]*cluster.Endpoint // the hosts of earlier attempts, for the previous_hosts predicate
	for attempt := 0; ; attempt++ {
		var ep *cluster.Endpoint
		if attempt > 0 && f.Retry.OtherHosts {
			prev := tried[:min(attempt, len(tried))]
			ep = cl.PickOther(hash, hasHash, f.Retry.HostAttempts, func(e *cluster.Endpoint) bool { return triedHost(prev, e) })
		} else {
			ep = cl.Pick(hash, hasHash)
		}
		if attempt < len(tried) {
			tried[attempt] = ep
		}
		if ep == nil {
			st.flags |= flagNoHealthyUpstream
			localReply(w, r, st, http.StatusServiceUnavailable, "no healthy upstream")
			return nil
		}
		st.upstream = ep.Addr
		actx, acancel := ctx, context.CancelFunc(func() {})
		if f.Retry != nil && f.Retry.PerTry > 0 && st.upgrade == "" {
			actx, acancel = context.WithTimeout(ctx, f.Retry.PerTry)
		}
		// Built on the stack and copied once by WithContext (the only way to set its context).
		tmpl := http.Request{Method: r.Method, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: hdr, Host: host,
			URL: &url.URL{Scheme: scheme, Host: ep.Addr, Path: upath, RawPath: rawPath, RawQuery: st.rreq.Query}, Trailer: r.Trailer}
		switch {
		case len(body) > 0:
			tmpl.Body, tmpl.ContentLength, tmpl.GetBody = bodyOf(body), int64(len(body)), bodyGetter(body)
		case buffered:
			tmpl.Body = http.NoBody
		default:
			tmpl.Body, tmpl.ContentLength = r.Body, r.ContentLength
			if cancelCause != nil {
				tmpl.Body = &activityReader{ReadCloser: r.Body, t: tm, st: st, cancel: cancelCause}
			}
		}
		out := tmpl.WithContext(actx)
		t0 := time.Now()
		cl.Begin(ep)
		resp, err := cl.RoundTrip(out)
		status := 0
		if err == nil {
			status = resp.StatusCode
		}
		if err != nil && (errors.Is(err, cluster.ErrOverflow) || r.Context().Err() != nil || causeIs(ctx, armed, errRequestTimeout)) {
			cl.Abandon(ep) // our breaker, a client that left or sent its body too slowly: not the host's failure
		} else {
			cl.End(ep, status)
		}
		st.upstreamDur = time.Since(t0)
		if retrying {
			cl.EndRetry()
			retrying = false
		}
		if err != nil {
			acancel()
			// request_timeout first: net/http cancels r's context when the body read hits the deadline,
			// but the client is still there to read the 408.
			if causeIs(ctx, armed, errRequestTimeout) || st.requestTimedOut() {
				localReply(w, r, st, http.StatusRequestTimeout, "request timeout")
				return nil
			}
			if r.Context().Err() != nil {
				st.flags |= flagDownstreamConn
				return nil // the client is gone: nobody to answer
			}
			if causeIs(ctx, armed, errStreamIdle) {
				st.flags |= flagStreamIdle
				localReply(w, r, st, http.StatusRequestTimeout, "stream timeout")
				return nil
			}
			if ctx.Err() != nil {
				st.flags |= flagUpstreamTimeout
				localReply(w, r, st, http.StatusGatewayTimeout, "upstream request timeout")
				return nil
			}
			connect := isConnectError(err)
			perTry := actx.Err() != nil
			if f.Retry != nil && attempt < retries && f.Retry.RetryError(connect) && cl.StartRetry() {
				retrying = true
				sleepCtx(ctx, f.Retry.Backoff(attempt+1)) // cut short by the route timeout, which the next attempt reports
				continue
			}
			if attempt > 0 && attempt >= retries {
				st.flags |= flagRetryLimit
			}
			switch {
			case errors.Is(err, cluster.ErrOverflow):
				st.flags |= flagUpstreamOverflow
				w.Header().Set("X-Envoy-Overloaded", "true")
				localReply(w, r, st, http.StatusServiceUnavailable, "upstream overflow")
			case perTry:
				st.flags |= flagUpstreamTimeout
				localReply(w, r, st, http.StatusGatewayTimeout, "upstream request timeout")
			case connect:
				st.flags |= flagUpstreamConnFail
				localReply(w, r, st, http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers. reset reason: connection failure")
			default:
				st.flags |= flagUpstreamReset
				localReply(w, r, st, http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers. reset reason: connection termination")
			}
			return nil
		}
		if f.Retry != nil && attempt < retries && f.Retry.RetryResponse(status, resp.Header) && cl.StartRetry() {
			retrying = true
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
			resp.Body.Close()
			acancel()
			sleepCtx(ctx, f.Retry.Backoff(attempt+1))
			continue
		}
		if attempt > 0 && attempt >= retries && f.Retry != nil && f.Retry.RetryResponse(status, resp.Header) {
			st.flags |= flagRetryLimit
		}
		if causeIs(ctx, armed, errRequestTimeout) {
			// The upstream answered a request whose body broke off at request_timeout.
			resp.Body.Close()
			acancel()
			localReply(w, r, st, http.StatusRequestTimeout, "request timeout")
			return nil
		}
		if !st.reqDeadline.IsZero() {
			// The response starts: request_timeout no longer applies (the request body may go on
			// streaming, as in gRPC bidirectional calls).
			_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
			st.reqDeadline = time.Time{}
		}
		if status == http.StatusSwitchingProtocols && st.upgrade != "" {
			p.tunnel(w, resp, st)
			acancel()
			return nil
		}
		p.copyResponse(w, resp, st, tm, ctx, armed)
		acancel()
		return nil
	}
}

// copyResponse writes the upstream response downstream: headers without hop-by-hop ones, the route's
// response header mutations, the body (flushed as it comes when streaming) and the trailers.
func (p *Proxy) copyResponse(w http.ResponseWriter, resp *http.Response, st *reqState, tm *reqTimer, ctx context.Context, armed bool) {
	defer resp.Body.Close()
	h := w.Header()
	for k, vv := range resp.Header {
		h[k] = vv
	}
	removeHopByHop(h)
	// The peer metadata exchange: the callee's workload from a mesh upstream (never passed on to the
	// application); an inbound proxy answers a mesh caller with its own.
	if remote := p.takePeerMetadata(h, st.meshUp); st.meshUp {
		st.remote = remote
	}
	if st.hasPeer && st.ci != nil && st.ci.inbound {
		p.putPeerMetadata(h)
	}
	for _, m := range st.rt.ResponseHeaders {
		m.Apply(h)
	}
	if st.hcm.serverName != "" {
		h["Server"] = st.hcm.serverHdr
	}
	if st.draining {
		h["Connection"] = connectionClose
	}
	if _, ok := h["Date"]; st.h2 && !ok {
		// The HTTP/2 server adds no Date of its own: this one is formatted once per second (the
		// HTTP/1.1 fast path adds it the same way).
		h["Date"] = httpDateHeader()
	}
	if len(resp.Trailer) > 0 {
		keys := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		h["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	w.WriteHeader(resp.StatusCode)
	streaming := resp.ContentLength < 0 || st.grpc
	rc := http.NewResponseController(w)
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			tm.touch()
			if _, werr := w.Write(buf[:n]); werr != nil {
				st.flags |= flagDownstreamConn
				return
			}
			// A streamed response goes downstream before a read that may wait; one whose end (and
			// trailers) arrived with its data leaves with them (HTTP/2: one write).
			if streaming && !bodyReady(resp.Body) {
				_ = rc.Flush()
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			// The upstream broke off mid-body: abort the downstream response rather than end it
			// cleanly, so the client cannot take a truncated body for a complete one.
			if causeIs(ctx, armed, errStreamIdle) {
				st.flags |= flagStreamIdle
			} else {
				st.flags |= flagUpstreamReset
			}
			p.log.Debug("upstream response body broken", "cluster", st.cluster, "upstream", st.upstream, "err", err)
			panic(http.ErrAbortHandler)
		}
	}
	for k, vv := range resp.Trailer {
		h[http.TrailerPrefix+k] = vv
	}
}

// tunnel completes an HTTP/1.1 upgrade (WebSocket): it hijacks the downstream connection, sends the
// 101 and copies bytes both ways until either side closes.
func (p *Proxy) tunnel(w http.ResponseWriter, resp *http.Response, st *reqState) {
	up, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		localReply(w, &http.Request{Header: http.Header{}}, st, http.StatusBadGateway, "upstream upgrade failed")
		return
	}
	defer up.Close()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		st.flags |= flagDownstreamConn
		return
	}
	defer conn.Close()
	if rw, ok := w.(*respWriter); ok {
		rw.status = http.StatusSwitchingProtocols
	}
	upgrade := resp.Header.Get("Upgrade")
	removeHopByHop(resp.Header)
	resp.Header["Connection"] = []string{"Upgrade"}
	resp.Header["Upgrade"] = []string{upgrade}
	if _, err := brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n"); err != nil {
		return
	}
	if err := resp.Header.Write(brw); err != nil {
		return
	}
	if _, err := brw.WriteString("\r\n"); err != nil || brw.Flush() != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(up, brw) // buffered bytes first, then the connection
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(conn, up)
		done <- struct{}{}
	}()
	<-done // one side ended: close both (deferred), which ends the other copy
}

// mirror copies a request to cluster name and discards the answer. The copy goes to the host with
// "-shadow" appended, as Envoy does.
func (p *Proxy) mirror(s *snapshot, name, method, path, rawPath, query, host string, hdr http.Header, body []byte, timeout time.Duration) {
	cl := s.clusters[name]
	if cl == nil {
		return
	}
	if timeout <= 0 {
		timeout = route.DefaultTimeout
	}
	if h, port, err := net.SplitHostPort(host); err == nil {
		host = net.JoinHostPort(h+"-shadow", port)
	} else {
		host += "-shadow"
	}
	go func() {
		if cl.StartRequest() != nil {
			return
		}
		defer cl.EndRequest()
		ep := cl.Pick(0, false)
		if ep == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		scheme := cl.Scheme
		req := &http.Request{Method: method, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: hdr, Host: host,
			URL: &url.URL{Scheme: scheme, Host: ep.Addr, Path: path, RawPath: rawPath, RawQuery: query}, Body: http.NoBody}
		if len(body) > 0 {
			req.Body, req.ContentLength, req.GetBody = bodyOf(body), int64(len(body)), bodyGetter(body)
		}
		cl.Begin(ep)
		resp, err := cl.RoundTrip(req.WithContext(ctx))
		status := 0
		if err == nil {
			status = resp.StatusCode
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
		}
		cl.End(ep, status)
	}()
}

func triedHost(tried []*cluster.Endpoint, ep *cluster.Endpoint) bool {
	for _, t := range tried {
		if t == ep {
			return true
		}
	}
	return false
}

// bodyOf is a request body read from memory.
func bodyOf(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }

// bodyGetter lets a transport re-read an in-memory body (and tells it the body is in memory).
func bodyGetter(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return bodyOf(b), nil }
}

// requestHash computes the hash of the route's hash policies; ok is false when none applied.
func requestHash(f *route.Forward, r *http.Request) (uint64, bool) {
	var h uint64
	ok := false
	for _, hp := range f.Hash {
		var v string
		found := false
		switch hp.Kind {
		case route.HashHeader:
			if vs := r.Header[hp.Name]; len(vs) > 0 {
				v, found = vs[0], true
			}
		case route.HashCookie:
			v, found = cookieValue(r.Header, hp.Name)
		case route.HashSourceIP:
			v, found = netipAddrOf(r.RemoteAddr), r.RemoteAddr != ""
		}
		if !found {
			continue
		}
		if ok {
			h = cluster.HashMore(h, v)
		} else {
			h, ok = cluster.Hash(v), true
		}
		if hp.Terminal {
			break
		}
	}
	return h, ok
}

// cookieValue finds a cookie without parsing all of them.
func cookieValue(h http.Header, name string) (string, bool) {
	for _, line := range h["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
			if k == name {
				return strings.Trim(v, `"`), true
			}
		}
	}
	return "", false
}

func isConnectError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// sleepCtx waits d or until ctx is done; it reports whether the full wait happened.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func netipAddr(a net.Addr) (netip.Addr, error) {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap(), nil
		}
	}
	return netip.ParseAddr(netipAddrOf(a.String()))
}
