package xds

import (
	"net/netip"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"

	"canton.dev/canton/internal/filter"
	"canton.dev/canton/internal/resource"
)

// dbNode is the sidecar of a TCP-only service, db (port 5432), its application on 5432 and
// its inbound listener on 15006.
func dbNode() Node {
	n := defaultNode()
	n.ID, n.Service, n.Labels, n.AppAddress = "db-1", "db", map[string]string{"app": "db"}, "127.0.0.1:5432"
	return n
}

const dbService = `
apiVersion: canton.dev/v1
kind: Service
metadata: {name: db, namespace: bookinfo}
spec:
  ports: [{name: tcp-pg, port: 5432, protocol: TCP}]
---
apiVersion: canton.dev/v1
kind: ExtensionProvider
metadata: {name: opa}
spec:
  envoyExtAuthzGrpc: {service: "127.0.0.1:9191"}
`

// inboundTCPFilters generates dbNode's resources for the bookinfo services, db and policies,
// and builds the network filters of its inbound TCP chain with the proxy's filter package.
func inboundTCPFilters(t testing.TB, policies string) (*filter.NetworkFilters, Resources) {
	t.Helper()
	base := loadInput(t, "testdata/authz-allow-nothing")
	var objs []resource.Object
	for _, o := range base.Objects {
		if o.Kind != "AuthorizationPolicy" {
			objs = append(objs, o)
		}
	}
	extra, err := resource.Parse("policies.yaml", []byte(dbService+"\n---\n"+policies), testMesh, "bookinfo")
	if err != nil {
		t.Fatal(err)
	}
	for i := range extra {
		extra[i].Created = uint64(len(objs) + i + 1)
	}
	base.Objects = append(objs, extra...)
	res, err := Generate(base, dbNode())
	if err != nil {
		t.Fatal(err)
	}
	l := res.Listeners[InboundListenerName].(*listenerv3.Listener)
	var chain *listenerv3.FilterChain
	for _, c := range l.GetFilterChains() {
		if c.GetName() == "inbound_mtls_tcp" {
			chain = c
		}
	}
	if chain == nil {
		t.Fatal("no inbound_mtls_tcp chain")
	}
	fs := chain.GetFilters()
	if last := fs[len(fs)-1]; last.GetName() != tcpProxyFilterName {
		t.Fatalf("last filter %s, want the tcp_proxy", last.GetName())
	}
	n, err := filter.BuildNetwork(fs[:len(fs)-1], "filters")
	if err != nil {
		t.Fatalf("the proxy's filter package rejects the generated network filters: %v", err)
	}
	return n, res
}

// tconn is a connection from a peer ("" for plain text) to dst (zero: the inbound listener
// itself, 127.0.0.1:15006).
type tconn struct {
	peer string
	dst  string
	sni  string
}

func (c tconn) conn() *filter.Conn {
	fc := &filter.Conn{Peer: filter.Peer{IP: netip.MustParseAddr("127.0.0.1")}, Destination: inboundAddr, ServerName: c.sni}
	if c.dst != "" {
		fc.Destination = netip.MustParseAddrPort(c.dst)
	}
	if c.peer != "" {
		fc.Peer.Principal = c.peer
		fc.Peer.Namespace, _, _ = strings.Cut(c.peer, "/")
	}
	return fc
}

// TestTCPAuthorizationSemantics evaluates the generated network RBAC filters with the proxy's
// filter implementation, connection by connection, for Istio's policy shapes and its
// documented TCP behaviour (the authz-tcp task): HTTP-only fields make an ALLOW rule match no
// connection and are ignored by a DENY rule.
func TestTCPAuthorizationSemantics(t *testing.T) {
	ppc, ratingsc, plain := tconn{peer: pp}, tconn{peer: ratings}, tconn{}
	captured := func(port string) tconn { return tconn{peer: pp, dst: "10.0.0.7:" + port} }
	cases := []struct {
		name, policies string
		conns          []tconn
		want           []bool
	}{
		{"no policy: allow", "", []tconn{ppc, plain}, []bool{true, true}},
		{"allow ports (the workload's)", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: tcp-policy}
spec:
  selector: {matchLabels: {app: db}}
  rules: [{to: [{operation: {ports: ["5432", "9001"]}}]}]
`, []tconn{ppc, captured("5432"), captured("9001"), captured("9002")}, []bool{true, true, true, false}},
		{"allow rule with an HTTP-only field matches nothing", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: tcp-policy}
spec:
  selector: {matchLabels: {app: db}}
  rules: [{to: [{operation: {methods: ["GET"], ports: ["5432"]}}]}]
`, []tconn{ppc, captured("5432"), plain}, []bool{false, false, false}},
		{"allow: the HTTP-only rule is dropped, the others stay", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: tcp-policy}
spec:
  selector: {matchLabels: {app: db}}
  rules:
  - from: [{source: {requestPrincipals: ["*"]}}]
  - from: [{source: {principals: ["cluster.local/ns/bookinfo/sa/productpage"]}}]
`, []tconn{ppc, ratingsc, plain}, []bool{true, false, false}},
		{"deny with only an HTTP-only field denies everything", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: tcp-policy}
spec:
  selector: {matchLabels: {app: db}}
  action: DENY
  rules: [{to: [{operation: {methods: ["GET"]}}]}]
`, []tconn{ppc, captured("9001"), plain}, []bool{false, false, false}},
		{"deny: the HTTP-only field is ignored, ports remain", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: tcp-policy}
spec:
  selector: {matchLabels: {app: db}}
  action: DENY
  rules: [{to: [{operation: {methods: ["GET"], ports: ["9000"]}}], when: [{key: "request.headers[x-a]", values: ["1"]}]}]
`, []tconn{captured("9000"), captured("9001"), ppc}, []bool{false, true, true}},
		{"deny before allow", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-ns}
spec:
  selector: {matchLabels: {app: db}}
  rules: [{from: [{source: {namespaces: ["bookinfo"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-ratings}
spec:
  selector: {matchLabels: {app: db}}
  action: DENY
  rules: [{from: [{source: {principals: ["bookinfo.demo.mesh/sa/ratings"]}}]}]
`, []tconn{ppc, ratingsc, {peer: evil}, plain}, []bool{true, false, false, false}},
		{"deny notPrincipals catches plain text", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mtls-only}
spec:
  selector: {matchLabels: {app: db}}
  action: DENY
  rules: [{from: [{source: {notPrincipals: ["*"]}}]}]
`, []tconn{ppc, plain}, []bool{true, false}},
		{"connection conditions", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: sni}
spec:
  selector: {matchLabels: {app: db}}
  rules:
  - when:
    - {key: connection.sni, values: ["db.*"]}
    - {key: source.ip, values: ["127.0.0.0/8"]}
    - {key: source.namespace, values: ["bookinfo"]}
`, []tconn{{peer: pp, sni: "db.bookinfo.demo.mesh"}, {peer: pp, sni: "cache.bookinfo"}, ppc, {sni: "db.x"}}, []bool{true, false, false, false}},
		{"audit does not block", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit}
spec:
  selector: {matchLabels: {app: db}}
  action: AUDIT
  rules: [{}]
`, []tconn{ppc, plain}, []bool{true, true}},
		{"custom denies the connections its rules select", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext}
spec:
  selector: {matchLabels: {app: db}}
  action: CUSTOM
  provider: {name: opa}
  rules: [{to: [{operation: {ports: ["9000"]}}]}]
`, []tconn{ppc, captured("9000")}, []bool{true, false}},
		{"custom with an HTTP-only rule denies every connection", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext}
spec:
  selector: {matchLabels: {app: db}}
  action: CUSTOM
  provider: {name: opa}
  rules: [{to: [{operation: {paths: ["/admin"]}}]}]
`, []tconn{ppc, plain}, []bool{false, false}},
		{"custom without rules selects nothing", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext}
spec:
  selector: {matchLabels: {app: db}}
  action: CUSTOM
  provider: {name: opa}
  rules: []
`, []tconn{ppc, plain}, []bool{true, true}},
		{"allow nothing", `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: nothing}
spec:
  selector: {matchLabels: {app: db}}
`, []tconn{ppc}, []bool{false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, _ := inboundTCPFilters(t, tc.policies)
			for i, c := range tc.conns {
				if got, details := n.Allow(c.conn()); got != tc.want[i] {
					t.Errorf("connection %d %+v: allowed %v (%s), want %v", i, c, got, details, tc.want[i])
				}
			}
		})
	}
}

// TestTCPAuthorizationReports: what TCP connections cannot have is reported, per rule, and
// CUSTOM's fallback to DENY too; the "refused until supported" report is gone.
func TestTCPAuthorizationReports(t *testing.T) {
	_, res := inboundTCPFilters(t, `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mixed}
spec:
  selector: {matchLabels: {app: db}}
  rules: [{to: [{operation: {paths: ["/x"]}}]}, {from: [{source: {namespaces: ["bookinfo"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext}
spec:
  selector: {matchLabels: {app: db}}
  action: CUSTOM
  provider: {name: opa}
  rules: [{}]
`)
	want := map[string]string{
		"AuthorizationPolicy bookinfo.demo.mesh/mixed: rules[0].to[0].operation.paths": "this rule matches no TCP connection",
		"AuthorizationPolicy bookinfo.demo.mesh/ext: action":                           "not supported for TCP connections",
	}
	for _, s := range res.Skipped {
		key := s.Object + ": " + s.Field
		if w, ok := want[key]; ok && strings.Contains(s.Reason, w) {
			delete(want, key)
		}
		if strings.Contains(s.Reason, "cannot be authorized yet") || strings.Contains(s.Field, "rules[1]") {
			t.Errorf("unexpected report %s: %s", key, s.Reason)
		}
	}
	for k, w := range want {
		t.Errorf("missing report %s: ...%s...", k, w)
	}
}

// Under PERMISSIVE the plain-text TCP chain gets the same network RBAC filters as the mTLS one:
// a plain-text peer has no principal, so an ALLOW on principals refuses it.
func TestTCPAuthorizationOnPlaintextChain(t *testing.T) {
	_, res := inboundTCPFilters(t, `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: db}
spec:
  selector: {matchLabels: {app: db}}
  mtls: {mode: PERMISSIVE}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: db}
spec:
  selector: {matchLabels: {app: db}}
  rules: [{from: [{source: {principals: ["bookinfo.demo.mesh/sa/productpage"]}}]}]
`)
	chains := map[string][]*listenerv3.Filter{}
	for _, c := range res.Listeners[InboundListenerName].(*listenerv3.Listener).GetFilterChains() {
		chains[c.GetName()] = c.GetFilters()
	}
	mtls, plain := chains["inbound_mtls_tcp"], chains["inbound_plaintext_tcp"]
	if len(plain) != 2 || len(mtls) != 2 || !proto.Equal(plain[0], mtls[0]) || plain[0].GetName() != NetworkRBACAllowFilterName {
		t.Fatalf("plain-text chain filters %v, want the mTLS chain's RBAC filter then the tcp_proxy", plain)
	}
	n, err := filter.BuildNetwork(plain[:1], "filters")
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := n.Allow(tconn{}.conn()); ok {
		t.Error("plain-text connection allowed by an ALLOW on principals")
	}
	if ok, _ := n.Allow(tconn{peer: pp}.conn()); !ok {
		t.Error("productpage denied")
	}
}
