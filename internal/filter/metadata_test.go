package filter

import (
	"context"
	"maps"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
)

// customShadow is the RBAC filter Istio generates for a CUSTOM policy: shadow DENY rules whose
// policy names carry the istio-ext-authz prefix, and the istio_ext_authz_ metadata prefix.
func customShadow() *rbacv3.RBAC {
	return &rbacv3.RBAC{
		ShadowRules: rules(rbacconfigv3.RBAC_DENY,
			"istio-ext-authz-ns[bookinfo]-policy[ext]-rule[0]", policy([]*rbacconfigv3.Permission{pPath(smPrefix("/admin"))}, []*rbacconfigv3.Principal{idAny()}),
			"istio-ext-authz-ns[bookinfo]-policy[ext]-rule[1]", policy([]*rbacconfigv3.Permission{pMethod("DELETE")}, []*rbacconfigv3.Principal{idAny()})),
		ShadowRulesStatPrefix: "istio_ext_authz_",
	}
}

// customEnabled is Istio's filter_enabled_metadata of the ext_authz filter of a CUSTOM policy.
func customEnabled() *matcherv3.MetadataMatcher {
	return &matcherv3.MetadataMatcher{Filter: "envoy.filters.http.rbac",
		Path:  []*matcherv3.MetadataMatcher_PathSegment{{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: "istio_ext_authz_shadow_effective_policy_id"}}},
		Value: vmString(smPrefix("istio-ext-authz"))}
}

func TestRBACShadowRulesPublishMetadata(t *testing.T) {
	cases := []struct {
		name string
		q    rreq
		want map[string]string
	}{
		{"matching path", rreq{target: "/admin/users"}, map[string]string{
			"istio_ext_authz_shadow_effective_policy_id": "istio-ext-authz-ns[bookinfo]-policy[ext]-rule[0]",
			"istio_ext_authz_shadow_engine_result":       "denied"}},
		{"second policy", rreq{method: "DELETE", target: "/x"}, map[string]string{
			"istio_ext_authz_shadow_effective_policy_id": "istio-ext-authz-ns[bookinfo]-policy[ext]-rule[1]",
			"istio_ext_authz_shadow_engine_result":       "denied"}},
		{"no match: result only", rreq{target: "/public"}, map[string]string{
			"istio_ext_authz_shadow_engine_result": "allowed"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := &okRouter{}
			h, f := buildRBACChainTo(t, customShadow(), up)
			code, _, _ := tc.q.do(t, h)
			if code != 200 {
				t.Fatalf("shadow rules enforced: got %d, want 200", code)
			}
			if got := RBACMetadata(up.last.Context()); !maps.Equal(got, tc.want) {
				t.Errorf("metadata %v, want %v", got, tc.want)
			}
			if d := f.stats.shadowDenied.Load(); (d == 1) != (tc.want["istio_ext_authz_shadow_engine_result"] == "denied") {
				t.Errorf("shadow_denied = %d", d)
			}
		})
	}

	// Without a prefix the keys are Envoy's bare names; enforced rules without shadow rules
	// publish nothing.
	cfg := &rbacv3.RBAC{ShadowRules: rules(rbacconfigv3.RBAC_ALLOW, "p", policy([]*rbacconfigv3.Permission{pAny()}, []*rbacconfigv3.Principal{idAny()}))}
	up := &okRouter{}
	h, _ := buildRBACChainTo(t, cfg, up)
	rreq{}.do(t, h)
	if got := RBACMetadata(up.last.Context()); got["shadow_effective_policy_id"] != "p" || got["shadow_engine_result"] != "allowed" {
		t.Errorf("unprefixed metadata %v", got)
	}
	up = &okRouter{}
	h, _ = buildRBACChainTo(t, &rbacv3.RBAC{Rules: rules(rbacconfigv3.RBAC_DENY)}, up)
	rreq{}.do(t, h)
	if got := RBACMetadata(up.last.Context()); got != nil {
		t.Errorf("rules without shadow rules published %v", got)
	}
}

// TestRBACMetadataAcrossFilters: two RBAC filters merge their keys into one namespace, and an
// enforcing RBAC filter after them can match the first one's shadow result.
func TestRBACMetadataAcrossFilters(t *testing.T) {
	second := &rbacv3.RBAC{
		ShadowRules:           rules(rbacconfigv3.RBAC_ALLOW, "dry-run", policy([]*rbacconfigv3.Permission{pAny()}, []*rbacconfigv3.Principal{idAny()})),
		ShadowRulesStatPrefix: "istio_dry_run_allow_",
	}
	// Deny what the CUSTOM shadow rules selected.
	enforce := &rbacv3.RBAC{Rules: rules(rbacconfigv3.RBAC_DENY, "by-metadata", policy([]*rbacconfigv3.Permission{pAny()},
		[]*rbacconfigv3.Principal{idMeta("envoy.filters.http.rbac", vmString(smPrefix("istio-ext-authz")), "istio_ext_authz_shadow_effective_policy_id")}))}
	up := &okRouter{}
	h, err := Build([]*hcmv3.HttpFilter{httpFilter(t, "rbac.custom", customShadow()), httpFilter(t, "rbac.dry", second),
		httpFilter(t, "rbac.enforce", enforce), routerFilter(t)}, up)
	if err != nil {
		t.Fatal(err)
	}
	if code, _, _ := (rreq{target: "/admin"}).do(t, h); code != 403 {
		t.Errorf("/admin: %d, want 403 from the metadata match", code)
	}
	if code, _, _ := (rreq{target: "/public"}).do(t, h); code != 200 {
		t.Fatalf("/public: %d, want 200", code)
	}
	want := map[string]string{"istio_ext_authz_shadow_engine_result": "allowed",
		"istio_dry_run_allow_shadow_effective_policy_id": "dry-run", "istio_dry_run_allow_shadow_engine_result": "allowed"}
	if got := RBACMetadata(up.last.Context()); !maps.Equal(got, want) {
		t.Errorf("merged metadata %v, want %v", got, want)
	}
}

// TestExtAuthzFilterEnabledMetadata: behind the CUSTOM shadow RBAC filter, ext_authz calls the
// service only for the requests the shadow rules matched; the service's denial is enforced for
// them, and the others pass without any call.
func TestExtAuthzFilterEnabledMetadata(t *testing.T) {
	var calls atomic.Int32
	srv := startAuthzServer(t, func(_ context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		calls.Add(1)
		if strings.HasPrefix(r.GetAttributes().GetRequest().GetHttp().GetPath(), "/admin/blocked") {
			return &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.PermissionDenied)},
				HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
					Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden}, Body: "denied by provider"}}}, nil
		}
		return &authv3.CheckResponse{Status: okStatus()}, nil
	})
	build := func(t *testing.T, enabled *matcherv3.MetadataMatcher, pct *corev3.RuntimeFractionalPercent) (Handler, *okRouter) {
		cfg := extAuthzConfig(srv.addr, 5*time.Second, false)
		cfg.FilterEnabledMetadata = enabled
		cfg.FilterEnabled = pct
		up := &okRouter{}
		h, err := Build([]*hcmv3.HttpFilter{httpFilter(t, "rbac.custom", customShadow()), httpFilter(t, "authz", cfg), routerFilter(t)}, up)
		if err != nil {
			t.Fatal(err)
		}
		return h, up
	}
	type step struct {
		q         rreq
		code      int
		body      string
		wantCalls int32
	}
	cases := []struct {
		name    string
		enabled *matcherv3.MetadataMatcher
		pct     *corev3.RuntimeFractionalPercent
		steps   []step
	}{
		{"metadata selects", customEnabled(), nil, []step{
			{rreq{target: "/admin/x"}, 200, "upstream", 1},
			{rreq{target: "/admin/blocked"}, 403, "denied by provider", 1},
			{rreq{target: "/public"}, 200, "upstream", 0},
			{rreq{target: "/public/blocked"}, 200, "upstream", 0},
			{rreq{method: "DELETE", target: "/admin/blocked/1"}, 403, "denied by provider", 1},
		}},
		{"inverted matcher", func() *matcherv3.MetadataMatcher { m := customEnabled(); m.Invert = true; return m }(), nil, []step{
			{rreq{target: "/admin/blocked"}, 200, "upstream", 0},
			{rreq{target: "/public"}, 200, "upstream", 1},
		}},
		{"no matcher: every request", nil, nil, []step{
			{rreq{target: "/public"}, 200, "upstream", 1},
			{rreq{target: "/admin/blocked"}, 403, "denied by provider", 1},
		}},
		{"filter_enabled 0%", nil, &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 0}, RuntimeKey: "k"}, []step{
			{rreq{target: "/admin/blocked"}, 200, "upstream", 0},
		}},
		{"filter_enabled 100% and metadata", customEnabled(), &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 100}}, []step{
			{rreq{target: "/admin/blocked"}, 403, "denied by provider", 1},
			{rreq{target: "/public/blocked"}, 200, "upstream", 0},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := build(t, tc.enabled, tc.pct)
			for _, s := range tc.steps {
				before := calls.Load()
				code, body, _ := s.q.do(t, h)
				if code != s.code || !strings.Contains(body, s.body) {
					t.Errorf("%s %s: %d %q, want %d %q", s.q.method, s.q.target, code, body, s.code, s.body)
				}
				if got := calls.Load() - before; got != s.wantCalls {
					t.Errorf("%s %s: %d Check calls, want %d", s.q.method, s.q.target, got, s.wantCalls)
				}
			}
		})
	}
}

// TestExtAuthzFilterEnabledFailureMode: a request the filter is not enabled for never meets the
// provider's failure (no call, no 403), one it is enabled for does (fail closed).
func TestExtAuthzFilterEnabledFailureMode(t *testing.T) {
	cfg := extAuthzConfig(closedLoopbackPort(t), time.Second, false)
	cfg.FilterEnabledMetadata = customEnabled()
	h, err := Build([]*hcmv3.HttpFilter{httpFilter(t, "rbac.custom", customShadow()), httpFilter(t, "authz", cfg), routerFilter(t)}, &okRouter{})
	if err != nil {
		t.Fatal(err)
	}
	if code, _, _ := (rreq{target: "/public"}).do(t, h); code != 200 {
		t.Errorf("/public with the provider down: %d, want 200 (not checked)", code)
	}
	if code, _, _ := (rreq{target: "/admin"}).do(t, h); code != 403 {
		t.Errorf("/admin with the provider down: %d, want 403 (fail closed)", code)
	}
}

func TestExtAuthzFilterEnabledConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		mut  func(m *matcherv3.MetadataMatcher, fe **corev3.RuntimeFractionalPercent)
		want string
	}{
		{"unknown namespace", func(m *matcherv3.MetadataMatcher, _ **corev3.RuntimeFractionalPercent) {
			m.Filter = "envoy.filters.http.lua"
		}, "filter_enabled_metadata.filter"},
		{"no path", func(m *matcherv3.MetadataMatcher, _ **corev3.RuntimeFractionalPercent) { m.Path = nil }, "filter_enabled_metadata.path"},
		{"no value", func(m *matcherv3.MetadataMatcher, _ **corev3.RuntimeFractionalPercent) { m.Value = nil }, "filter_enabled_metadata.value"},
		{"percent without default", func(_ *matcherv3.MetadataMatcher, fe **corev3.RuntimeFractionalPercent) {
			*fe = &corev3.RuntimeFractionalPercent{RuntimeKey: "k"}
		}, "filter_enabled.default_value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := extAuthzConfig("127.0.0.1:1", time.Second, false)
			m := customEnabled()
			var fe *corev3.RuntimeFractionalPercent
			tc.mut(m, &fe)
			cfg.FilterEnabledMetadata, cfg.FilterEnabled = m, fe
			_, err := Build([]*hcmv3.HttpFilter{httpFilter(t, "authz", cfg), routerFilter(t)}, &okRouter{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
}

func closedLoopbackPort(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(nil)
	addr := srv.Listener.Addr().String()
	srv.Close()
	return addr
}
