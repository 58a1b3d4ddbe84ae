package filter

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// authzServer is an in-test envoy.service.auth.v3.Authorization server on
// 127.0.0.1:0 whose answer is computed by decide.
type authzServer struct {
	authv3.UnimplementedAuthorizationServer
	addr   string
	decide func(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error)

	mu   sync.Mutex
	last *authv3.CheckRequest
	md   metadata.MD
}

func (s *authzServer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	s.last, s.md = req, md
	s.mu.Unlock()
	return s.decide(ctx, req)
}

func (s *authzServer) lastRequest() (*authv3.CheckRequest, metadata.MD) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.md
}

func startAuthzServer(t testing.TB, decide func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error)) *authzServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &authzServer{addr: lis.Addr().String(), decide: decide}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, s)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return s
}

func extAuthzConfig(target string, timeout time.Duration, failOpen bool) *extauthzv3.ExtAuthz {
	return &extauthzv3.ExtAuthz{
		FailureModeAllow: failOpen,
		Services: &extauthzv3.ExtAuthz_GrpcService{GrpcService: &corev3.GrpcService{
			TargetSpecifier: &corev3.GrpcService_GoogleGrpc_{GoogleGrpc: &corev3.GrpcService_GoogleGrpc{TargetUri: target, StatPrefix: "authz"}},
			Timeout:         durationpb.New(timeout),
		}},
	}
}

func okStatus() *status.Status { return &status.Status{Code: int32(codes.OK)} }

func hvo(k, v string, appendTo *bool) *corev3.HeaderValueOption {
	o := &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}}
	if appendTo != nil {
		o.Append = wrapperspb.Bool(*appendTo)
	}
	return o
}

func TestExtAuthzDecisions(t *testing.T) {
	yes := true
	// blocked answers only when the call's deadline passes: the timeout case.
	blocked := func(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	allow := func(_ context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{Status: okStatus(), HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:              []*corev3.HeaderValueOption{hvo("x-authz-user", "alice", nil), hvo("x-multi", "b", &yes)},
			HeadersToRemove:      []string{"x-secret"},
			ResponseHeadersToAdd: []*corev3.HeaderValueOption{hvo("x-authz-resp", "r1", nil)},
		}}}, nil
	}
	deny := func(_ context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.PermissionDenied)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
				Headers: []*corev3.HeaderValueOption{hvo("www-authenticate", "Bearer", nil)},
				Body:    "go away",
			}}}, nil
	}
	denyBare := func(_ context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.PermissionDenied)}}, nil
	}
	badMutation := func(_ context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{Status: okStatus(), HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{hvo("host", "evil", nil)},
		}}}, nil
	}
	downAddr := func() string { // a loopback port nobody listens on
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := lis.Addr().String()
		_ = lis.Close()
		return a
	}()

	cases := []struct {
		name       string
		decide     func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) // nil: server down
		failOpen   bool
		statusErr  int
		wantCode   int
		wantBody   string
		wantUp     bool
		wantHeader map[string]string // response headers
		wantReq    map[string]string // upstream request headers ("" = absent)
	}{
		{name: "allow", decide: allow, wantCode: 200, wantBody: "upstream", wantUp: true,
			wantHeader: map[string]string{"X-Authz-Resp": "r1"},
			wantReq:    map[string]string{"X-Authz-User": "alice", "X-Multi": "a,b", "X-Secret": ""}},
		{name: "deny with status body headers", decide: deny, wantCode: 401, wantBody: "go away",
			wantHeader: map[string]string{"Www-Authenticate": "Bearer"}},
		{name: "deny bare is 403", decide: denyBare, wantCode: 403},
		{name: "timeout fail closed", decide: blocked, wantCode: 403},
		{name: "timeout fail closed status_on_error", decide: blocked, statusErr: 503, wantCode: 503},
		{name: "timeout fail open", decide: blocked, failOpen: true, wantCode: 200, wantBody: "upstream", wantUp: true},
		{name: "server down fail closed", wantCode: 403},
		{name: "server down fail open", failOpen: true, wantCode: 200, wantBody: "upstream", wantUp: true},
		{name: "invalid mutation is an error", decide: badMutation, wantCode: 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			target := downAddr
			var srv *authzServer
			if tc.decide != nil {
				srv = startAuthzServer(t, tc.decide)
				target = srv.addr
			}
			cfg := extAuthzConfig(target, 100*time.Millisecond, tc.failOpen)
			if tc.statusErr != 0 {
				cfg.StatusOnError = &typev3.HttpStatus{Code: typev3.StatusCode(tc.statusErr)}
			}
			up := &okRouter{}
			h, err := Build([]*hcmv3.HttpFilter{httpFilter(t, "envoy.filters.http.ext_authz", cfg), routerFilter(t)}, up)
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest("POST", "http://reviews.bookinfo:9080/api/v1/items?x=1", strings.NewReader("body"))
			req.Header.Add("X-Multi", "a")
			req.Header.Set("X-Secret", "s")
			req.RemoteAddr = "10.1.2.3:5555"
			peer := Peer{Principal: "bookinfo.demo.mesh/sa/productpage", Namespace: "bookinfo.demo.mesh", IP: netip.MustParseAddr("10.1.2.3")}
			req = req.WithContext(WithPeer(req.Context(), peer))
			rec := httptest.NewRecorder()
			if err := h.ServeHTTP(rec, req); err != nil {
				t.Fatal(err)
			}
			if rec.Code != tc.wantCode || rec.Body.String() != tc.wantBody {
				t.Fatalf("got %d %q, want %d %q", rec.Code, rec.Body.String(), tc.wantCode, tc.wantBody)
			}
			if got := up.count() == 1; got != tc.wantUp {
				t.Fatalf("upstream called: %v, want %v", got, tc.wantUp)
			}
			for k, v := range tc.wantHeader {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("response header %s = %q, want %q", k, got, v)
				}
			}
			for k, v := range tc.wantReq {
				if got := strings.Join(up.last.Header.Values(k), ","); got != v {
					t.Errorf("upstream header %s = %q, want %q", k, got, v)
				}
			}
			if srv == nil {
				return
			}
			cr, _ := srv.lastRequest()
			if cr == nil {
				t.Fatal("the authorization server got no request")
			}
			a := cr.GetAttributes()
			hr := a.GetRequest().GetHttp()
			if hr.GetMethod() != "POST" || hr.GetPath() != "/api/v1/items?x=1" || hr.GetHost() != "reviews.bookinfo:9080" ||
				hr.GetHeaders()["x-secret"] != "s" || hr.GetHeaders()[":authority"] != "reviews.bookinfo:9080" {
				t.Errorf("http attributes: %v", hr)
			}
			if got := a.GetSource().GetPrincipal(); got != "spiffe://bookinfo.demo.mesh/sa/productpage" {
				t.Errorf("source principal %q", got)
			}
			if got := a.GetSource().GetAddress().GetSocketAddress().GetAddress(); got != "10.1.2.3" {
				t.Errorf("source address %q", got)
			}
		})
	}
}

func TestExtAuthzNoPeerAndMetadata(t *testing.T) {
	srv := startAuthzServer(t, func(_ context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{Status: okStatus()}, nil
	})
	cfg := extAuthzConfig(srv.addr, time.Second, false)
	cfg.GetGrpcService().InitialMetadata = []*corev3.HeaderValue{{Key: "x-tenant", Value: "t1"}}
	up := &okRouter{}
	h, err := Build([]*hcmv3.HttpFilter{httpFilter(t, "authz", cfg), routerFilter(t)}, up)
	if err != nil {
		t.Fatal(err)
	}
	rec, _, err := serve(t, h, httptest.NewRequest("GET", "http://a/x", nil), nil)
	if err != nil || rec.Code != 200 {
		t.Fatalf("got %d, %v", rec.Code, err)
	}
	cr, md := srv.lastRequest()
	if p := cr.GetAttributes().GetSource().GetPrincipal(); p != "" {
		t.Errorf("unauthenticated request reported principal %q", p)
	}
	if got := md.Get("x-tenant"); len(got) != 1 || got[0] != "t1" {
		t.Errorf("initial metadata %v", got)
	}
}

func TestExtAuthzConfigErrors(t *testing.T) {
	ok := func() *extauthzv3.ExtAuthz { return extAuthzConfig("127.0.0.1:1", time.Second, false) }
	cases := []struct {
		name string
		mut  func(c *extauthzv3.ExtAuthz)
		want string
	}{
		{"with_request_body", func(c *extauthzv3.ExtAuthz) {
			c.WithRequestBody = &extauthzv3.BufferSettings{MaxRequestBytes: 10}
		}, "with_request_body"},
		{"envoy_grpc", func(c *extauthzv3.ExtAuthz) {
			c.GetGrpcService().TargetSpecifier = &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: "outbound|9191||opa"}}
		}, "envoy_grpc"},
		{"http_service", func(c *extauthzv3.ExtAuthz) {
			c.Services = &extauthzv3.ExtAuthz_HttpService{HttpService: &extauthzv3.HttpService{}}
		}, "http_service"},
		{"credentials", func(c *extauthzv3.ExtAuthz) {
			c.GetGrpcService().GetGoogleGrpc().ChannelCredentials = &corev3.GrpcService_GoogleGrpc_ChannelCredentials{}
		}, "channel_credentials"},
		{"empty target", func(c *extauthzv3.ExtAuthz) { c.GetGrpcService().GetGoogleGrpc().TargetUri = "" }, "target_uri: required"},
		{"zero timeout", func(c *extauthzv3.ExtAuthz) { c.GetGrpcService().Timeout = durationpb.New(0) }, "timeout"},
		{"status_on_error", func(c *extauthzv3.ExtAuthz) { c.StatusOnError = &typev3.HttpStatus{Code: 42} }, "status_on_error.code"},
		{"v2", func(c *extauthzv3.ExtAuthz) { c.TransportApiVersion = corev3.ApiVersion_V2 }, "transport_api_version"},
		{"clear_route_cache", func(c *extauthzv3.ExtAuthz) { c.ClearRouteCache = true }, "clear_route_cache"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ok()
			tc.mut(c)
			_, err := Build([]*hcmv3.HttpFilter{httpFilter(t, "authz", c), routerFilter(t)}, &okRouter{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
	if _, err := Build([]*hcmv3.HttpFilter{httpFilter(t, "authz", ok()), routerFilter(t)}, &okRouter{}); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}

func TestExtAuthzGRPCDownstreamDenied(t *testing.T) {
	srv := startAuthzServer(t, func(_ context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.PermissionDenied)}}, nil
	})
	h, err := Build([]*hcmv3.HttpFilter{httpFilter(t, "authz", extAuthzConfig(srv.addr, time.Second, false)), routerFilter(t)}, &okRouter{})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("POST", "http://a/pkg.Svc/M", nil)
	req.Header.Set("Content-Type", "application/grpc")
	rec, _, err := serve(t, h, req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusOK || rec.Header().Get("Grpc-Status") != "7" {
		t.Fatalf("got %d grpc-status %q, want 200 with grpc-status 7", rec.Code, rec.Header().Get("Grpc-Status"))
	}
}
