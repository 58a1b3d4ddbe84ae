package xds

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// testAuthz is an envoy.service.auth.v3.Authorization server on 127.0.0.1:0 that denies
// (401) requests whose path starts with /blocked and allows the rest; it records the source
// principals it was asked about.
type testAuthz struct {
	authv3.UnimplementedAuthorizationServer
	mu         sync.Mutex
	principals []string
}

func (s *testAuthz) Check(_ context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	s.mu.Lock()
	s.principals = append(s.principals, r.GetAttributes().GetSource().GetPrincipal())
	s.mu.Unlock()
	if strings.HasPrefix(r.GetAttributes().GetRequest().GetHttp().GetPath(), "/blocked") {
		return &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.PermissionDenied)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized}, Body: "no"}}}, nil
	}
	return &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.OK)}}, nil
}

func (s *testAuthz) calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.principals...)
}

func startTestAuthz(t *testing.T) (*testAuthz, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testAuthz{}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, s)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return s, lis.Addr().String()
}

func closedPort(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := lis.Addr().String()
	_ = lis.Close()
	return a
}

func customPolicies(provider, service string, failOpen bool, rules string) string {
	out := `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext}
spec:
  action: CUSTOM
  provider: {name: opa}
  rules: ` + rules + `
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-evil}
spec:
  action: DENY
  rules: [{from: [{source: {namespaces: ["other.demo.mesh"]}}]}]
`
	if provider != "" {
		out += fmt.Sprintf(`---
apiVersion: canton.dev/v1
kind: ExtensionProvider
metadata: {name: %s}
spec: {envoyExtAuthzGrpc: {service: %q, timeout: 2s, failOpen: %v}}
`, provider, service, failOpen)
	}
	return out
}

// TestCustomAuthorizationDecisions runs the generated inbound filters (ext_authz + RBAC) with
// the proxy's filter package against an in-test authorization service.
func TestCustomAuthorizationDecisions(t *testing.T) {
	srv, addr := startTestAuthz(t)
	down := closedPort(t)
	cases := []struct {
		name       string
		policies   string
		reqs       []req
		want       []int
		wantSkip   string
		wantChecks int // calls of the authorization service
	}{
		{"provider allows and denies", customPolicies("opa", addr, false, "[{}]"),
			[]req{{peer: pp, method: "GET", path: "/reviews/1"}, {peer: pp, method: "GET", path: "/blocked/x"}, {peer: evil, method: "GET", path: "/reviews/1"}},
			[]int{200, 401, 403}, "", 3},
		{"provider down fails closed", customPolicies("opa", down, false, "[{}]"),
			[]req{{peer: pp, method: "GET", path: "/reviews/1"}}, []int{403}, "", 0},
		{"provider down fails open", customPolicies("opa", down, true, "[{}]"),
			[]req{{peer: pp, method: "GET", path: "/reviews/1"}, {peer: evil, method: "GET", path: "/reviews/1"}}, []int{200, 403}, "", 0},
		{"unknown provider is DENY", customPolicies("other", addr, false, "[{to: [{operation: {paths: [\"/admin/*\"]}}]}]"),
			[]req{{peer: pp, method: "GET", path: "/admin/x"}, {peer: pp, method: "GET", path: "/blocked/x"}}, []int{403, 200},
			"AuthorizationPolicy bookinfo.demo.mesh/ext: action: CUSTOM (external authorization through provider \"opa\"): the mesh root namespace has no ExtensionProvider of that name", 0},
		// Only the requests the rules select reach the provider (RBAC shadow rules gate ext_authz).
		{"scoped rules select what the provider checks", customPolicies("opa", addr, false,
			"[{to: [{operation: {paths: [\"/admin/*\", \"/blocked/*\"]}}]}, {to: [{operation: {methods: [\"DELETE\"]}}]}]"),
			[]req{{peer: pp, method: "GET", path: "/admin/x"}, {peer: pp, method: "GET", path: "/blocked/x"},
				{peer: pp, method: "GET", path: "/reviews/1"}, {peer: pp, method: "DELETE", path: "/blocked-too"},
				{peer: evil, method: "GET", path: "/reviews/1"}},
			[]int{200, 401, 200, 401, 403}, "", 3},
		{"scoped rules, provider down fails closed for them only", customPolicies("opa", down, false, "[{to: [{operation: {paths: [\"/admin/*\"]}}]}]"),
			[]req{{peer: pp, method: "GET", path: "/admin/x"}, {peer: pp, method: "GET", path: "/reviews/1"}}, []int{403, 200}, "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(srv.calls())
			h, res := inboundChain(t, tc.policies, reviewsNode())
			for i, q := range tc.reqs {
				if got := serve(h, q); got != tc.want[i] {
					t.Errorf("%s %s from %q: %d, want %d", q.method, q.path, q.peer, got, tc.want[i])
				}
			}
			var skips []string
			for _, s := range res.Skipped {
				skips = append(skips, s.String())
			}
			joined := strings.Join(skips, "\n")
			if tc.wantSkip != "" && !strings.Contains(joined, tc.wantSkip) {
				t.Errorf("skipped lacks %q:\n%s", tc.wantSkip, joined)
			}
			if tc.wantSkip == "" && strings.Contains(joined, "CUSTOM") {
				t.Errorf("unexpected CUSTOM skip:\n%s", joined)
			}
			if n := len(srv.calls()) - before; n != tc.wantChecks {
				t.Errorf("the authorization service got %d checks, want %d", n, tc.wantChecks)
			}
		})
	}
	if got := srv.calls(); len(got) < 2 || got[0] != "spiffe://"+pp {
		t.Errorf("the authorization service saw principals %q, want spiffe://%s first", got, pp)
	}
}
