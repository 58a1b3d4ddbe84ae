package filter

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// extAuthzDefaultTimeout is Envoy's default for the Check call.
const extAuthzDefaultTimeout = 200 * time.Millisecond

// extAuthzFailureHeader is the request header Envoy adds when
// failure_mode_allow let a request through after an authorization error
// and failure_mode_allow_header_add is set.
const extAuthzFailureHeader = "X-Envoy-Auth-Failure-Mode-Allowed"

// extAuthz is envoy.filters.http.ext_authz over gRPC: for each request it
// calls envoy.service.auth.v3.Authorization/Check and lets the request
// through (with the headers the service asks for) or answers it with the
// service's denial.
//
// Supported ExtAuthz fields: grpc_service (see below), transport_api_version
// (AUTO or V3), failure_mode_allow, failure_mode_allow_header_add,
// status_on_error, filter_enabled_metadata, filter_enabled and stat_prefix
// (accepted, unused). Every other field, including with_request_body and
// http_service, is rejected with its name.
//
// filter_enabled_metadata restricts the filter to the requests whose dynamic
// metadata matches (see requestMetadata; Istio's CUSTOM action matches the
// shadow policy an RBAC filter before it published); filter_enabled to a
// fraction of the requests (default_value; runtime_key is accepted and
// unused, canton has no runtime layer). A request the filter is not enabled
// for goes on unchecked, without any call. Both set: both must enable it. The filter has no per-route config; an HttpFilter
// with disabled=true is skipped on every route.
//
// grpc_service must be google_grpc with a target_uri (a gRPC target such as
// "127.0.0.1:9191" or "dns:///authz.example:9191") and no credentials: the
// connection is plaintext HTTP/2 (h2c). envoy_grpc (a cluster name) is
// rejected, because the filter chain has no access to the proxy's clusters;
// the xDS generator resolves the provider's address and emits google_grpc.
// grpc_service.timeout bounds each Check (Envoy's default 200ms when unset)
// and initial_metadata is sent with each call; retry_policy is rejected.
//
// The CheckRequest carries the request's method, path (with query), host,
// scheme, protocol, headers (lower-case names, repeated values joined with
// ","; the pseudo-headers :method, :path, :authority and :scheme added),
// the source address and principal ("spiffe://" + PeerFrom's principal),
// and the destination address. No body is sent.
//
// An OK answer (status code 0) lets the request through after applying
// OkHttpResponse.headers (set unless append / append_action says to append),
// headers_to_remove and response_headers_to_add; an OK answer using other
// OkHttpResponse fields (query parameters, dynamic metadata) or invalid
// header mutations counts as an error. A denial answers with
// DeniedHttpResponse's status (403 when unset), headers and body. An error
// (service unreachable, timeout, malformed answer) lets the request through
// when failure_mode_allow is set, else answers status_on_error (403 by
// default) with an empty body.
type extAuthz struct {
	spec
	client      authv3.AuthorizationClient
	target      string
	timeout     time.Duration
	metadata    metadata.MD
	failOpen    bool
	failHeader  bool
	statusOnErr int
	enabledMeta *metaMatcher // nil: every request
	enabled     *percent     // nil: every request
	stats       extAuthzStats
}

// extAuthzStats counts decisions, like Envoy's ext_authz.* statistics;
// skipped counts the requests the filter was not enabled for.
type extAuthzStats struct {
	ok, denied, errors, failureOpen, skipped atomic.Uint64
}

// extAuthzConns shares one client connection per target among every built
// chain: chains are rebuilt on each configuration change and have no close
// hook, so connections live as long as the process (one per distinct
// target; gRPC idles unused ones).
var extAuthzConns = struct {
	mu sync.Mutex
	m  map[string]*grpc.ClientConn
}{m: map[string]*grpc.ClientConn{}}

func extAuthzConn(target string) (*grpc.ClientConn, error) {
	extAuthzConns.mu.Lock()
	defer extAuthzConns.mu.Unlock()
	if cc, ok := extAuthzConns.m[target]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	extAuthzConns.m[target] = cc
	return cc, nil
}

func buildExtAuthz(s spec, cfg *anypb.Any, path string) (Filter, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%s: required (the ext_authz filter needs a grpc_service)", path)
	}
	var pb extauthzv3.ExtAuthz
	if err := unmarshalAny(cfg, &pb, path); err != nil {
		return nil, err
	}
	if err := onlyFields(&pb, path, "grpc_service", "transport_api_version", "failure_mode_allow",
		"failure_mode_allow_header_add", "status_on_error", "stat_prefix", "filter_enabled_metadata", "filter_enabled"); err != nil {
		return nil, err
	}
	switch pb.GetTransportApiVersion() {
	case corev3.ApiVersion_AUTO, corev3.ApiVersion_V3:
	default:
		return nil, fmt.Errorf("%s.transport_api_version: %s is not supported (V3 is)", path, pb.GetTransportApiVersion())
	}
	f := &extAuthz{
		spec:        s,
		timeout:     extAuthzDefaultTimeout,
		failOpen:    pb.GetFailureModeAllow(),
		failHeader:  pb.GetFailureModeAllowHeaderAdd(),
		statusOnErr: http.StatusForbidden,
	}
	if m := pb.GetFilterEnabledMetadata(); m != nil {
		mm, err := parseMetadataMatcher(m, path+".filter_enabled_metadata")
		if err != nil {
			return nil, err
		}
		f.enabledMeta = mm
	}
	if fe := pb.GetFilterEnabled(); fe != nil {
		p, err := parseRuntimePercent(fe, path+".filter_enabled")
		if err != nil {
			return nil, err
		}
		f.enabled = &p
	}
	if se := pb.GetStatusOnError(); se != nil {
		if err := onlyFields(se, path+".status_on_error", "code"); err != nil {
			return nil, err
		}
		c := int(se.GetCode())
		if c < 200 || c > 599 {
			return nil, fmt.Errorf("%s.status_on_error.code: %d is not an HTTP status (200-599)", path, c)
		}
		f.statusOnErr = c
	}
	gs := pb.GetGrpcService()
	gp := path + ".grpc_service"
	if gs == nil {
		return nil, fmt.Errorf("%s: required (http_service is not supported)", gp)
	}
	if err := onlyFields(gs, gp, "envoy_grpc", "google_grpc", "timeout", "initial_metadata"); err != nil {
		return nil, err
	}
	if gs.GetEnvoyGrpc() != nil {
		return nil, fmt.Errorf("%s.envoy_grpc: cluster %q: envoy_grpc is not supported by canton's ext_authz; use google_grpc.target_uri (host:port, plaintext)", gp, gs.GetEnvoyGrpc().GetClusterName())
	}
	gg := gs.GetGoogleGrpc()
	if gg == nil {
		return nil, fmt.Errorf("%s.google_grpc: required", gp)
	}
	if err := onlyFields(gg, gp+".google_grpc", "target_uri", "stat_prefix"); err != nil {
		return nil, fmt.Errorf("%w (canton's ext_authz connects in plaintext, without credentials)", err)
	}
	f.target = strings.TrimSpace(gg.GetTargetUri())
	if f.target == "" {
		return nil, fmt.Errorf("%s.google_grpc.target_uri: required", gp)
	}
	if t := gs.GetTimeout(); t != nil {
		if err := t.CheckValid(); err != nil {
			return nil, fmt.Errorf("%s.timeout: %w", gp, err)
		}
		d := t.AsDuration()
		if d <= 0 {
			return nil, fmt.Errorf("%s.timeout: must be positive, got %s", gp, d)
		}
		f.timeout = d
	}
	if md := gs.GetInitialMetadata(); len(md) > 0 {
		f.metadata = metadata.MD{}
		for i, hv := range md {
			p := fmt.Sprintf("%s.initial_metadata[%d]", gp, i)
			if err := onlyFields(hv, p, "key", "value"); err != nil {
				return nil, err
			}
			k := strings.ToLower(hv.GetKey())
			if !httpguts.ValidHeaderFieldName(k) || strings.HasPrefix(k, "grpc-") {
				return nil, fmt.Errorf("%s.key: %q is not a valid metadata key", p, hv.GetKey())
			}
			if !httpguts.ValidHeaderFieldValue(hv.GetValue()) {
				return nil, fmt.Errorf("%s.value: invalid metadata value", p)
			}
			f.metadata.Append(k, hv.GetValue())
		}
	}
	cc, err := extAuthzConn(f.target)
	if err != nil {
		return nil, fmt.Errorf("%s.google_grpc.target_uri: %q: %w", gp, f.target, err)
	}
	f.client = authv3.NewAuthorizationClient(cc)
	return f, nil
}

func (f *extAuthz) ServeHTTP(w http.ResponseWriter, r *http.Request, next Handler) error {
	if f.disabled {
		return next.ServeHTTP(w, r)
	}
	if f.enabledMeta != nil && !f.enabledMeta.match(metadataOf(r.Context())) ||
		f.enabled != nil && !f.enabled.sample(f.rand) {
		f.stats.skipped.Add(1)
		return next.ServeHTTP(w, r)
	}
	ctx, cancel := context.WithTimeout(r.Context(), f.timeout)
	if f.metadata != nil {
		ctx = metadata.NewOutgoingContext(ctx, f.metadata)
	}
	resp, err := f.client.Check(ctx, f.checkRequest(r))
	cancel()
	if err == nil {
		err = f.decide(w, r, resp)
		if err == nil {
			if resp.GetStatus().GetCode() != int32(codes.OK) {
				f.stats.denied.Add(1)
				return nil
			}
			f.stats.ok.Add(1)
			return next.ServeHTTP(w, r)
		}
	}
	f.stats.errors.Add(1)
	if f.failOpen {
		f.stats.failureOpen.Add(1)
		if f.failHeader {
			r.Header.Set(extAuthzFailureHeader, "true")
		}
		return next.ServeHTTP(w, r)
	}
	localReply(w, r, f.statusOnErr, -1, "")
	return nil
}

// decide applies a CheckResponse: for OK it mutates the request and the
// response headers to come, for a denial it writes the answer. A malformed
// response is an error and nothing has been changed or written.
func (f *extAuthz) decide(w http.ResponseWriter, r *http.Request, resp *authv3.CheckResponse) error {
	if resp.GetStatus().GetCode() == int32(codes.OK) {
		ok := resp.GetOkResponse()
		if ok == nil {
			return nil
		}
		if err := onlyFields(ok, "ok_response", "headers", "headers_to_remove", "response_headers_to_add"); err != nil {
			return err
		}
		reqOps, err := authzHeaderOps(ok.GetHeaders(), "ok_response.headers")
		if err != nil {
			return err
		}
		respOps, err := authzHeaderOps(ok.GetResponseHeadersToAdd(), "ok_response.response_headers_to_add")
		if err != nil {
			return err
		}
		for i, name := range ok.GetHeadersToRemove() {
			if !httpguts.ValidHeaderFieldName(name) || strings.HasPrefix(name, ":") || strings.EqualFold(name, "host") {
				return fmt.Errorf("ok_response.headers_to_remove[%d]: %q may not be removed", i, name)
			}
		}
		applyAuthzOps(r.Header, reqOps)
		for _, name := range ok.GetHeadersToRemove() {
			r.Header.Del(name)
		}
		applyAuthzOps(w.Header(), respOps)
		return nil
	}
	d := resp.GetDeniedResponse()
	code := http.StatusForbidden
	if c := int(d.GetStatus().GetCode()); c != 0 {
		if c < 200 || c > 599 {
			return fmt.Errorf("denied_response.status.code: %d is not an HTTP status", c)
		}
		code = c
	}
	ops, err := authzHeaderOps(d.GetHeaders(), "denied_response.headers")
	if err != nil {
		return err
	}
	applyAuthzOps(w.Header(), ops)
	if isGRPC(r) {
		localReply(w, r, code, -1, d.GetBody())
		return nil
	}
	h := w.Header()
	h.Set("Content-Length", strconv.Itoa(len(d.GetBody())))
	w.WriteHeader(code)
	if r.Method != http.MethodHead && d.GetBody() != "" {
		_, _ = w.Write([]byte(d.GetBody())) // the downstream may be gone; nothing to do about it
	}
	return nil
}

// authzOp is one header mutation asked for by the authorization service.
type authzOp struct {
	key, value string
	appendTo   bool
	ifAbsent   bool
	ifExists   bool
}

// authzHeaderOps validates the header mutations of a CheckResponse. As in
// Envoy's ext_authz, an unset append means "set" (overwrite); otherwise
// append_action decides.
func authzHeaderOps(opts []*corev3.HeaderValueOption, path string) ([]authzOp, error) {
	ops := make([]authzOp, 0, len(opts))
	for i, o := range opts {
		p := fmt.Sprintf("%s[%d]", path, i)
		h := o.GetHeader()
		if h == nil {
			return nil, fmt.Errorf("%s.header: required", p)
		}
		k := h.GetKey()
		if !httpguts.ValidHeaderFieldName(k) || strings.EqualFold(k, "host") {
			return nil, fmt.Errorf("%s.header.key: %q may not be set", p, k)
		}
		v := h.GetValue()
		if v == "" && len(h.GetRawValue()) > 0 {
			v = string(h.GetRawValue())
		}
		if !httpguts.ValidHeaderFieldValue(v) {
			return nil, fmt.Errorf("%s.header.value: invalid header value", p)
		}
		op := authzOp{key: http.CanonicalHeaderKey(k), value: v}
		if a := o.GetAppend(); a != nil {
			op.appendTo = a.GetValue()
		} else {
			switch o.GetAppendAction() {
			case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
				// Envoy's ext_authz treats the zero value like append=false.
			case corev3.HeaderValueOption_ADD_IF_ABSENT:
				op.ifAbsent = true
			case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
				op.ifExists = true
			default:
				return nil, fmt.Errorf("%s.append_action: unknown value %d", p, o.GetAppendAction())
			}
		}
		ops = append(ops, op)
	}
	return ops, nil
}

func applyAuthzOps(h http.Header, ops []authzOp) {
	for _, op := range ops {
		_, exists := h[op.key]
		switch {
		case op.appendTo:
			h.Add(op.key, op.value)
		case op.ifAbsent:
			if !exists {
				h.Set(op.key, op.value)
			}
		case op.ifExists:
			if exists {
				h.Set(op.key, op.value)
			}
		default:
			h.Set(op.key, op.value)
		}
	}
}

// checkRequest builds the attributes of r for Check.
func (f *extAuthz) checkRequest(r *http.Request) *authv3.CheckRequest {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	p := requestPath(r)
	if r.URL.RawQuery != "" {
		p += "?" + r.URL.RawQuery
	}
	hdr := make(map[string]string, len(r.Header)+4)
	for k, vs := range r.Header {
		hdr[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	hdr[":method"] = r.Method
	hdr[":path"] = p
	hdr[":authority"] = r.Host
	hdr[":scheme"] = scheme
	src := &authv3.AttributeContext_Peer{}
	if peer, ok := PeerFrom(r.Context()); ok {
		if peer.Principal != "" {
			src.Principal = "spiffe://" + peer.Principal
		}
		if peer.IP.IsValid() {
			src.Address = socketAddress(netip.AddrPortFrom(peer.IP, 0))
		}
	}
	if src.Address == nil {
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			src.Address = socketAddress(ap)
		}
	}
	dst := &authv3.AttributeContext_Peer{}
	if d, ok := r.Context().Value(destKey{}).(netip.AddrPort); ok {
		dst.Address = socketAddress(d)
	} else if ta, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		dst.Address = socketAddress(ta.AddrPort())
	}
	size := r.ContentLength // -1 when unknown, as Envoy reports it
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      src,
		Destination: dst,
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(f.now()),
			Http: &authv3.AttributeContext_HttpRequest{
				Id:       r.Header.Get("X-Request-Id"),
				Method:   r.Method,
				Headers:  hdr,
				Path:     p,
				Host:     r.Host,
				Scheme:   scheme,
				Size:     size,
				Protocol: r.Proto,
			},
		},
	}}
}

func socketAddress(ap netip.AddrPort) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       ap.Addr().Unmap().String(),
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(ap.Port())},
	}}}
}
