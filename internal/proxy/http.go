package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"canton.dev/canton/internal/filter"
	"canton.dev/canton/internal/proxy/httpsafe"
	"canton.dev/canton/internal/proxy/route"
	"canton.dev/canton/internal/telemetry"
)

// reqState is the proxy's record of one request, shared by the handler, the router and the reporting.
type reqState struct {
	snap        *snapshot
	ci          *connInfo
	hcm         *hcmSpec
	rreq        route.Request
	rt          *route.Route
	flags       flags
	fflags      filter.Flags
	upgrade     string // lower-case upgrade type when the request asks for an allowed upgrade
	start       time.Time
	cluster     string
	upstream    string
	upstreamDur time.Duration
	grpc        bool
	h2          bool // the downstream request is HTTP/2
	draining    bool
	peer        filter.Peer
	hasPeer     bool
	reqDeadline time.Time           // request_timeout's deadline while it applies, else zero
	remote      *telemetry.Workload // the other side's workload, from the peer metadata exchange
	meshUp      bool                // the upstream is a proxy of the mesh (cluster.Mesh)
	w           respWriter
	timer       *reqTimer // kept across uses of the pooled state (its time.Timer is reused)
}

type stateKey struct{}

var statePool = sync.Pool{New: func() any { return new(reqState) }}

// hcmHandler is the http.Handler of one HttpConnectionManager filter chain.
type hcmHandler struct {
	p        *Proxy
	chain    *chainSpec
	hcm      *hcmSpec
	draining atomic.Bool
}

// respWriter records the status and size of the response.
type respWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *respWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *respWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush, Hijack and EnableFullDuplex.
func (w *respWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (h *hcmHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := h.p
	st := statePool.Get().(*reqState)
	tm := st.timer
	*st = reqState{snap: p.snap.Load(), hcm: h.hcm, start: time.Now(), grpc: route.IsGRPC(r.Header), h2: r.ProtoMajor == 2, draining: h.draining.Load(),
		timer: tm, w: respWriter{ResponseWriter: w}}
	st.ci, _ = r.Context().Value(connInfoKey{}).(*connInfo)
	if r.TLS == nil && st.ci != nil && st.ci.tls != nil {
		r.TLS = st.ci.tls // HTTP/1.1 over TLS: the proxy did the handshake
	}
	cw := &st.w
	defer func() {
		p.report(st, cw, r)
		st.w = respWriter{} // drop the references to this request's connection
		statePool.Put(st)
	}()
	if h.hcm.serverName != "" {
		w.Header()["Server"] = h.hcm.serverHdr
	}
	if st.draining {
		w.Header()["Connection"] = connectionClose
	}

	// Strictness net/http does not provide on its own.
	if r.Method == http.MethodConnect || !validMethod(r.Method) {
		st.flags |= flagInvalidHeaders
		localReply(cw, r, st, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	n, size := 0, len(r.Method)+len(r.RequestURI)+len(r.Proto)
	for k, vs := range r.Header {
		n += len(vs)
		for _, v := range vs {
			size += len(k) + len(v) + 4
		}
	}
	if n > h.hcm.maxHeaders || size > h.hcm.maxHeaderBytes {
		st.flags |= flagInvalidHeaders
		localReply(cw, r, st, http.StatusRequestHeaderFieldsTooLarge, "too many headers")
		return
	}
	if r.Host == "" {
		localReply(cw, r, st, http.StatusBadRequest, "missing host")
		return
	}
	var rawPath, rawQuery string
	switch target := r.RequestURI; {
	case strings.HasPrefix(target, "/"):
		rawPath, rawQuery, _ = strings.Cut(target, "?")
	case r.URL != nil && r.URL.IsAbs() && r.ProtoMajor == 1:
		// Absolute form, as sent to an HTTP proxy.
		rawPath, rawQuery = r.URL.EscapedPath(), r.URL.RawQuery
		if rawPath == "" {
			rawPath = "/"
		}
	default:
		st.flags |= flagInvalidHeaders
		localReply(cw, r, st, http.StatusBadRequest, "bad request target")
		return
	}
	path, unescaped, err := httpsafe.NormalizePath(rawPath, h.hcm.path)
	if err != nil {
		st.flags |= flagInvalidHeaders
		localReply(cw, r, st, http.StatusBadRequest, "bad request path")
		return
	}
	if unescaped && h.hcm.path.EscapedSlashes == httpsafe.UnescapeSlashesAndRedirect {
		loc := path
		if rawQuery != "" {
			loc += "?" + rawQuery
		}
		cw.Header().Set("Location", loc)
		cw.WriteHeader(http.StatusTemporaryRedirect)
		return
	}
	// Filters see the path the proxy routes on and forwards: r.URL carries it (RawPath is the escaped
	// form whenever it has an escape).
	r.URL.Path, r.URL.RawPath, r.URL.RawQuery = path, "", rawQuery
	if strings.IndexByte(path, '%') >= 0 {
		if u, err := url.PathUnescape(path); err == nil {
			r.URL.Path, r.URL.RawPath = u, path
		}
	}
	if h.hcm.stripHostDot {
		r.Host = stripTrailingHostDot(r.Host)
	}
	host := r.Host
	if h.hcm.stripPort {
		host = stripHostPort(host)
	}
	if r.ProtoMajor == 1 && hasToken(r.Header["Connection"], "upgrade") {
		if u := r.Header.Get("Upgrade"); u != "" {
			st.upgrade = strings.ToLower(u)
		}
	}
	upgradeValue := r.Header.Get("Upgrade")
	removeHopByHop(r.Header)
	// Filters always get the peer's address; the principal only after a verified mTLS handshake.
	var peer *filter.Peer
	if st.ci != nil {
		st.peer, st.hasPeer = st.ci.peerOf(r.TLS)
		peer = &st.peer
	}
	h.sanitizeHeaders(r, st)
	if st.hasPeer {
		st.remote = p.takePeerMetadata(r.Header, true) // a verified mesh peer says who it is
	}

	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	st.rreq = route.Request{Method: r.Method, Host: host, Path: path, Query: rawQuery, Scheme: scheme, Header: r.Header}
	table := h.hcm.inline
	if table == nil {
		table = st.snap.routes[h.hcm.rdsName]
	}
	if table != nil {
		_, st.rt = table.Select(&st.rreq)
	}
	if st.rt == nil {
		st.flags |= flagNoRoute
		localReply(cw, r, st, http.StatusNotFound, "route not found")
		return
	}
	if st.upgrade != "" {
		allowed := h.hcm.upgrades[st.upgrade]
		if f := st.rt.Forward; f != nil {
			if v, ok := f.Upgrades[st.upgrade]; ok {
				allowed = v
			}
		}
		if !allowed || st.rt.Kind != route.KindForward {
			localReply(cw, r, st, http.StatusForbidden, "upgrade not allowed")
			return
		}
		r.Header["Upgrade"] = []string{upgradeValue}
	}
	if h.hcm.requestID && len(r.Header["X-Request-Id"]) == 0 {
		r.Header["X-Request-Id"] = []string{newRequestID()}
	}
	ctx := filter.WithRequest(r.Context(), st.rt.FilterConfig, peer, &st.fflags)
	ctx = context.WithValue(ctx, stateKey{}, st)
	if err := h.hcm.chain.ServeHTTP(cw, r.WithContext(ctx)); err != nil {
		p.log.Warn("filter chain failed", "err", err, "path", path)
		if cw.status == 0 {
			localReply(cw, r, st, http.StatusInternalServerError, "internal error")
		}
	}
}

// routeRequest is the terminal handler of every filter chain: it carries out the chosen route.
func (p *Proxy) routeRequest(w http.ResponseWriter, r *http.Request) error {
	st, _ := r.Context().Value(stateKey{}).(*reqState)
	if st == nil || st.rt == nil {
		localReply(w, r, st, http.StatusNotFound, "route not found")
		return nil
	}
	rt := st.rt
	switch rt.Kind {
	case route.KindDirect:
		for _, m := range rt.ResponseHeaders {
			m.Apply(w.Header())
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(rt.Direct.Body)))
		if rt.Direct.Body != "" && w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "text/plain")
		}
		w.WriteHeader(rt.Direct.Status)
		if r.Method != http.MethodHead {
			_, _ = w.Write([]byte(rt.Direct.Body)) // the client may be gone
		}
		return nil
	case route.KindRedirect:
		for _, m := range rt.ResponseHeaders {
			m.Apply(w.Header())
		}
		w.Header().Set("Location", rt.Redirect.Location(rt, &st.rreq))
		w.WriteHeader(rt.Redirect.Status)
		return nil
	case route.KindNonForwarding:
		localReply(w, r, st, http.StatusNotFound, "route not found")
		return nil
	}
	return p.forward(w, r, st)
}

// localReply answers from the proxy: trailers-only with a grpc-status for gRPC requests.
func localReply(w http.ResponseWriter, r *http.Request, st *reqState, code int, body string) {
	h := w.Header()
	if route.IsGRPC(r.Header) {
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", strconv.Itoa(grpcStatusFor(code)))
		h.Set("Grpc-Message", body)
		w.WriteHeader(http.StatusOK)
		return
	}
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(body)) // the client may be gone
	}
}

// grpcStatusFor maps an HTTP status to a gRPC status as Envoy does for local replies.
func grpcStatusFor(code int) int {
	switch code {
	case http.StatusBadRequest:
		return 13
	case http.StatusUnauthorized:
		return 16
	case http.StatusForbidden:
		return 7
	case http.StatusNotFound:
		return 12
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return 14
	}
	return 2
}

// Shared header values: http.Header values are replaced or appended to (append copies a full slice),
// never edited in place, so one slice can serve every request.
var (
	connectionClose = []string{"close"}
	schemeHTTP      = []string{"http"}
	schemeHTTPS     = []string{"https"}
)

// hopByHop are the connection-specific headers a proxy must not forward (RFC 9110 7.6.1).
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// removeHopByHop deletes hop-by-hop headers and those named in Connection; "TE: trailers" stays (gRPC
// needs it).
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for v != "" {
			var f string
			f, v, _ = strings.Cut(v, ",")
			if f = textprotoTrim(f); f != "" {
				k := http.CanonicalHeaderKey(f)
				if k != "Te" {
					delete(h, k)
				}
			}
		}
	}
	te := h["Te"]
	for _, k := range hopByHop {
		delete(h, k)
	}
	if hasToken(te, "trailers") {
		h["Te"] = teTrailers
	}
}

// teTrailers is the value "TE: trailers" is forwarded with (shared: header values are replaced,
// never edited in place).
var teTrailers = []string{"trailers"}

func textprotoTrim(s string) string { return strings.TrimSpace(s) }

// hasToken reports whether a comma-separated header has token (case-insensitive).
func hasToken(vs []string, token string) bool {
	for _, v := range vs {
		for v != "" {
			var f string
			f, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(f), token) {
				return true
			}
		}
	}
	return false
}

func stripHostPort(h string) string {
	i := strings.LastIndexByte(h, ':')
	if i < 0 || strings.Contains(h[i:], "]") {
		return h
	}
	return h[:i]
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on Linux
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

type labelKey struct {
	cluster string
	inbound bool
	grpc    bool
	tcp     bool
	mtls    bool   // inbound: the peer was verified (its principal is peer)
	peer    string // inbound: the peer's principal
	meshUp  bool   // outbound: the upstream is a mesh proxy (mTLS with this proxy's identity)
	remote  *telemetry.Workload
}

// labelsFor returns the interned Istio labels of a request or connection.
func (p *Proxy) labelsFor(k labelKey) *telemetry.Labels {
	if v, ok := p.labels.Load(k); ok {
		return v.(*telemetry.Labels)
	}
	l := telemetry.Labels{Reporter: telemetry.ReporterSource, RequestProtocol: telemetry.ProtocolHTTP,
		ConnectionSecurityPolicy: telemetry.SecurityUnknown, DestinationCluster: k.cluster}
	if k.inbound {
		l.Reporter = telemetry.ReporterDestination
		l.ConnectionSecurityPolicy = telemetry.SecurityNone
		l.SetDestination(p.self)
		if k.remote != nil {
			l.SetSource(k.remote)
		}
		if k.mtls {
			l.ConnectionSecurityPolicy = telemetry.SecurityMutualTLS
			l.SourcePrincipal = "spiffe://" + k.peer
			if l.SourceWorkloadNamespace == "" {
				l.SourceWorkloadNamespace, _, _ = strings.Cut(k.peer, "/") // the trust domain is the namespace
			}
		}
	} else {
		self := *p.self
		if !k.meshUp {
			self.Principal = "" // this proxy's identity was not presented
		}
		l.SetSource(&self)
		if k.remote != nil {
			l.SetDestination(k.remote)
		}
	}
	switch {
	case k.tcp:
		l.RequestProtocol = telemetry.ProtocolTCP
	case k.grpc:
		l.RequestProtocol = telemetry.ProtocolGRPC
	}
	svc := k.cluster
	if parts := strings.Split(k.cluster, "|"); len(parts) == 4 { // Istio's direction|port|subset|fqdn
		svc = parts[3]
	}
	l.DestinationService = svc
	if name, ns, ok := strings.Cut(svc, "."); ok {
		l.DestinationServiceName, l.DestinationServiceNamespace = name, ns
	} else {
		l.DestinationServiceName = svc
	}
	v, _ := p.labels.LoadOrStore(k, p.metrics.Intern(l))
	return v.(*telemetry.Labels)
}

// report records metrics and the access log entry of a finished request.
func (p *Proxy) report(st *reqState, w *respWriter, r *http.Request) {
	dur := time.Since(st.start)
	inbound := st.ci != nil && st.ci.inbound
	l := p.labelsFor(labelKey{cluster: st.cluster, inbound: inbound, grpc: st.grpc, mtls: st.hasPeer, peer: st.peer.Principal,
		meshUp: st.meshUp, remote: st.remote})
	grpcStatus := telemetry.NoGRPCStatus
	if st.grpc {
		grpcStatus = grpcStatusOf(w.Header())
	}
	flagStr := st.flags.join(st.fflags.String())
	reqBytes := max(r.ContentLength, 0)
	p.metrics.HTTP(l, w.status, grpcStatus, dur, reqBytes, w.bytes, flagStr)
	if p.opts.AccessLog == nil {
		return
	}
	e := &telemetry.Entry{StartTime: st.start, Method: r.Method, Path: r.RequestURI, Protocol: r.Proto,
		ResponseCode: w.status, ResponseFlags: flagStr, BytesReceived: reqBytes, BytesSent: w.bytes, Duration: dur,
		UpstreamServiceTime: -1, XForwardedFor: r.Header.Get("X-Forwarded-For"), UserAgent: r.Header.Get("User-Agent"),
		RequestID: r.Header.Get("X-Request-Id"), Authority: r.Host, UpstreamHost: st.upstream, UpstreamCluster: st.cluster,
		DownstreamRemoteAddress: r.RemoteAddr}
	if st.upstream != "" {
		e.UpstreamServiceTime = st.upstreamDur
	}
	if st.rt != nil {
		e.RouteName = st.rt.Name
	}
	if st.ci != nil {
		e.DownstreamLocalAddress = st.ci.conn.LocalAddr().String()
	}
	if r.TLS != nil {
		e.RequestedServerName = r.TLS.ServerName
	}
	if err := p.opts.AccessLog.Log(e); err != nil {
		p.log.Debug("access log write failed", "err", err)
	}
}

func grpcStatusOf(h http.Header) int {
	for _, k := range []string{"Grpc-Status", http.TrailerPrefix + "Grpc-Status"} {
		if v := h[k]; len(v) > 0 {
			if n, err := strconv.Atoi(v[0]); err == nil {
				return n
			}
		}
	}
	return 0
}

func netipAddrOf(s string) string {
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		return s
	}
	return host
}
