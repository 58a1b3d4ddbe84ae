package filter

import (
	"net/netip"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

const netRBACName = "envoy.filters.network.rbac"

func netFilter(t testing.TB, cfg *netrbacv3.RBAC) *listenerv3.Filter {
	t.Helper()
	return &listenerv3.Filter{Name: netRBACName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, cfg)}}
}

func buildNet(t testing.TB, cfgs ...*netrbacv3.RBAC) *NetworkFilters {
	t.Helper()
	var fs []*listenerv3.Filter
	for _, c := range cfgs {
		fs = append(fs, netFilter(t, c))
	}
	n, err := BuildNetwork(fs, "filter_chains[0].filters")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// netAllowIf is a network ALLOW filter with one policy made of perm and id.
func netAllowIf(perm *rbacconfigv3.Permission, id *rbacconfigv3.Principal) *netrbacv3.RBAC {
	return &netrbacv3.RBAC{StatPrefix: "tcp.", Rules: rules(allow, "p", policy([]*rbacconfigv3.Permission{perm}, []*rbacconfigv3.Principal{id}))}
}

// conn is a connection from 10.1.2.3 to 10.0.0.5:7000, authenticated as principal ("": plain
// text), asking for sni.
func conn(principal, sni string) *Conn {
	c := &Conn{Peer: Peer{IP: netip.MustParseAddr("10.1.2.3")}, Destination: netip.MustParseAddrPort("10.0.0.5:7000"), ServerName: sni}
	if principal != "" {
		c.Peer.Principal = principal
		c.Peer.Namespace, _, _ = strings.Cut(principal, "/")
	}
	return c
}

// The network RBAC filter matches the connection's attributes with the HTTP filter's rules.
func TestNetworkRBACMatchesConnections(t *testing.T) {
	reviews := conn("bookinfo.demo.mesh/sa/reviews", "")
	plain := conn("", "")
	mapped := conn("", "")
	mapped.Peer.IP = netip.MustParseAddr("::ffff:10.1.2.3")
	mapped.Destination = netip.MustParseAddrPort("[::ffff:10.0.0.5]:7000")
	tests := []struct {
		name string
		perm *rbacconfigv3.Permission
		id   *rbacconfigv3.Principal
		c    *Conn
		want bool
	}{
		{"any", pAny(), idAny(), plain, true},
		{"principal exact", pAny(), idAuth(smExact("spiffe://bookinfo.demo.mesh/sa/reviews")), reviews, true},
		{"principal other", pAny(), idAuth(smExact("spiffe://bookinfo.demo.mesh/sa/ratings")), reviews, false},
		{"namespace prefix", pAny(), idAuth(smPrefix("spiffe://bookinfo.demo.mesh/")), reviews, true},
		{"any authenticated", pAny(), idAuth(nil), reviews, true},
		{"plain text is never authenticated", pAny(), idAuth(nil), plain, false},
		{"not_id over plain text matches", pAny(), idNot(idAuth(smPrefix("spiffe://bookinfo.demo.mesh/"))), plain, true},
		{"source ip", pAny(), idDirect("10.1.0.0", 16), plain, true},
		{"source ip miss", pAny(), idDirect("10.2.0.0", 16), plain, false},
		{"remote ip", pAny(), idRemote("10.1.2.3", 32), plain, true},
		{"source_ip", pAny(), idSource("10.0.0.0", 8), plain, true},
		{"v4-mapped source", pAny(), idDirect("10.1.2.3", 32), mapped, true},
		{"destination port", pDstPort(7000), idAny(), plain, true},
		{"destination port miss", pDstPort(7001), idAny(), plain, false},
		{"destination port range", &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_DestinationPortRange{
			DestinationPortRange: &typev3.Int32Range{Start: 6000, End: 7001}}}, idAny(), plain, true},
		{"destination ip", pDstIP("10.0.0.0", 24), idAny(), plain, true},
		{"v4-mapped destination", pDstIP("10.0.0.5", 32), idAny(), mapped, true},
		{"sni", pSNI(smSuffix(".mesh")), idAny(), conn("", "db.data.mesh"), true},
		{"no sni", pSNI(smSuffix(".mesh")), idAny(), plain, false},
		{"and", pAnd(pDstPort(7000), pNot(pDstIP("10.9.0.0", 16))), idAnd(idAuth(nil), idDirect("10.0.0.0", 8)), reviews, true},
		{"or", pOr(pDstPort(1), pDstPort(7000)), idOr(idAuth(smExact("spiffe://x/sa/y")), idDirect("10.1.2.3", 32)), plain, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := buildNet(t, netAllowIf(tc.perm, tc.id))
			ok, details := n.Allow(tc.c)
			if ok != tc.want {
				t.Fatalf("allowed %v, want %v", ok, tc.want)
			}
			if !ok && details != "rbac_access_denied_matched_policy[none]" {
				t.Errorf("details %q", details)
			}
		})
	}
}

// Actions, absent and empty rules, shadow rules and the order of several filters follow
// Envoy; every decision is counted.
func TestNetworkRBACActions(t *testing.T) {
	reviews := policy([]*rbacconfigv3.Permission{pAny()}, []*rbacconfigv3.Principal{idAuth(smExact("spiffe://bookinfo.demo.mesh/sa/reviews"))})
	c := conn("bookinfo.demo.mesh/sa/reviews", "")
	other := conn("bookinfo.demo.mesh/sa/ratings", "")

	n := buildNet(t, &netrbacv3.RBAC{StatPrefix: "tcp.", Rules: rules(deny, "ns[x]-policy[deny]-rule[0]", reviews)})
	if ok, details := n.Allow(c); ok || details != "rbac_access_denied_matched_policy[ns[x]-policy[deny]-rule[0]]" {
		t.Errorf("DENY matching: %v %q, want denied naming the policy", ok, details)
	}
	if ok, _ := n.Allow(other); !ok {
		t.Error("DENY not matching: denied")
	}
	f := n.filters[0].(*networkRBAC)
	if f.stats.allowed.Load() != 1 || f.stats.denied.Load() != 1 {
		t.Errorf("stats allowed %d denied %d, want 1 and 1", f.stats.allowed.Load(), f.stats.denied.Load())
	}

	if ok, _ := buildNet(t, &netrbacv3.RBAC{StatPrefix: "tcp.", Rules: &rbacconfigv3.RBAC{Action: allow}}).Allow(c); ok {
		t.Error("ALLOW without policies let a connection through")
	}
	if ok, _ := buildNet(t, &netrbacv3.RBAC{StatPrefix: "tcp."}).Allow(c); !ok {
		t.Error("no rules denied a connection")
	}
	if ok, _ := (*NetworkFilters)(nil).Allow(c); !ok {
		t.Error("no filters denied a connection")
	}
	logged := buildNet(t, &netrbacv3.RBAC{StatPrefix: "tcp.", Rules: rules(rbacconfigv3.RBAC_LOG, "p", reviews)})
	if ok, _ := logged.Allow(c); !ok || logged.filters[0].(*networkRBAC).stats.logged.Load() != 1 {
		t.Error("LOG: want allowed and logged")
	}
	shadow := buildNet(t, &netrbacv3.RBAC{StatPrefix: "tcp.", ShadowRules: rules(deny, "p", reviews)})
	if ok, _ := shadow.Allow(c); !ok {
		t.Error("shadow rules enforced")
	}
	if s := &shadow.filters[0].(*networkRBAC).stats; s.shadowDenied.Load() != 1 || s.shadowAllowed.Load() != 0 {
		t.Errorf("shadow stats denied %d allowed %d, want 1 and 0", s.shadowDenied.Load(), s.shadowAllowed.Load())
	}

	// DENY before ALLOW, as the anchors generate them: the first filter that denies decides.
	chain := buildNet(t,
		&netrbacv3.RBAC{StatPrefix: "tcp.", Rules: rules(deny, "d", reviews)},
		&netrbacv3.RBAC{StatPrefix: "tcp.", Rules: rules(allow, "a", policy([]*rbacconfigv3.Permission{pAny()}, []*rbacconfigv3.Principal{idAuth(nil)}))})
	if ok, details := chain.Allow(c); ok || details != "rbac_access_denied_matched_policy[d]" {
		t.Errorf("DENY then ALLOW, denied principal: %v %q", ok, details)
	}
	if ok, _ := chain.Allow(other); !ok {
		t.Error("DENY then ALLOW, allowed principal: denied")
	}
	if ok, details := chain.Allow(conn("", "")); ok || details != "rbac_access_denied_matched_policy[none]" {
		t.Errorf("DENY then ALLOW, plain text: %v %q", ok, details)
	}
	if chain.filters[1].(*networkRBAC).stats.allowed.Load() != 1 {
		t.Error("the ALLOW filter did not see the connection the DENY filter let through")
	}
}

// Every unsupported field and every HTTP rule is an error naming the filter and the field.
func TestNetworkRBACConfigErrors(t *testing.T) {
	one := func(p *rbacconfigv3.Permission, id *rbacconfigv3.Principal) *netrbacv3.RBAC { return netAllowIf(p, id) }
	tests := []struct {
		name    string
		cfg     *netrbacv3.RBAC
		wantErr string
	}{
		{"no stat_prefix", &netrbacv3.RBAC{}, ".typed_config.stat_prefix: required"},
		{"continuous", &netrbacv3.RBAC{StatPrefix: "tcp.", EnforcementType: netrbacv3.RBAC_CONTINUOUS}, ".typed_config.enforcement_type: not supported"},
		{"delay_deny", &netrbacv3.RBAC{StatPrefix: "tcp.", DelayDeny: durationpb.New(1)}, ".typed_config.delay_deny: not supported"},
		{"header permission", one(pMethod("GET"), idAny()), `.typed_config.rules.policies["p"].permissions[0].header: an HTTP rule, not supported by the network RBAC filter`},
		{"nested url_path", one(pAnd(pDstPort(1), pNot(pPath(smExact("/")))), idAny()), `permissions[0].and_rules.rules[1].not_rule.url_path: an HTTP rule`},
		{"header principal", one(pAny(), idOr(idAny(), idHeader(hmPresent("x", true)))), `principals[0].or_ids.ids[1].header: an HTTP rule`},
		{"url_path principal", one(pAny(), idPath(smExact("/"))), `principals[0].url_path: an HTTP rule`},
		{"metadata principal", one(pAny(), idMeta(istioAuthnNamespace, vmString(smExact("x")), "request.auth.principal")), `principals[0].metadata: an HTTP rule`},
		{"shadow header", &netrbacv3.RBAC{StatPrefix: "tcp.", ShadowRules: rules(deny, "p", policy([]*rbacconfigv3.Permission{pMethod("GET")}, []*rbacconfigv3.Principal{idAny()}))},
			`shadow_rules.policies["p"].permissions[0].header: an HTTP rule`},
		{"permission metadata", one(&rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_Metadata{Metadata: &matcherv3.MetadataMatcher{}}}, idAny()), "permissions[0]: permission metadata is not supported"},
		{"bad cidr", one(pAny(), idDirect("10.0.0.300", 8)), "direct_remote_ip.address_prefix"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := BuildNetwork([]*listenerv3.Filter{netFilter(t, tc.cfg)}, "filter_chains[1].filters")
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "filter_chains[1].filters[0](envoy.filters.network.rbac).typed_config") {
				t.Fatalf("error %q does not name the filter", err)
			}
		})
	}

	_, err := BuildNetwork([]*listenerv3.Filter{{Name: netRBACName}}, "f")
	if err == nil || !strings.Contains(err.Error(), "f[0](envoy.filters.network.rbac).typed_config: required") {
		t.Errorf("filter without typed_config: %v", err)
	}
	_, err = BuildNetwork([]*listenerv3.Filter{{Name: "x", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, &rbacv3.RBAC{})}}}, "f")
	if err == nil || !strings.Contains(err.Error(), `network filter type "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC" is not supported`) {
		t.Errorf("HTTP RBAC config as a network filter: %v", err)
	}
}

// TestNetworkRBACDoesNotAllocate: deciding a connection against Istio-shaped policies
// allocates nothing.
func TestNetworkRBACDoesNotAllocate(t *testing.T) {
	n := buildNet(t, istioLikeNetworkRBAC(10))
	c := benchConn(10)
	allocs := testing.AllocsPerRun(200, func() {
		if ok, _ := n.Allow(c); !ok {
			t.Fatal("connection denied")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per connection, want 0", allocs)
	}
}
