package xds

import (
	"reflect"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"

	"canton.dev/canton/internal/resource"
)

func TestParseUpstreams(t *testing.T) {
	got, err := ParseUpstreams(" echo=127.0.0.1:15432, db.data:5432=[::1]:0,Redis.Cache.Demo.Mesh.=127.0.0.2:0,x=[::ffff:127.0.0.1]:7")
	if err != nil {
		t.Fatal(err)
	}
	want := []Upstream{
		{Service: "echo", Address: "127.0.0.1:15432"},
		{Service: "db.data", Port: 5432, Address: "[::1]:0"},
		{Service: "redis.cache.demo.mesh", Address: "127.0.0.2:0"},
		{Service: "x", Address: "127.0.0.1:7"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	for _, tc := range []struct{ in, want string }{
		{"echo", "want NAME[:PORT]=HOST:PORT"},
		{"echo=localhost:80", "an IP literal"},
		{"echo=10.0.0.1:80", "must be a loopback address"},
		{"echo=0.0.0.0:80", "must be a loopback address"},
		{"echo:0=127.0.0.1:80", "service port"},
		{"echo:x=127.0.0.1:80", "service port"},
		{"ec_ho=127.0.0.1:80", "not a DNS label"},
		{"*.echo=127.0.0.1:80", "not a DNS label"},
		{"=127.0.0.1:80", "must be 1..253"},
		{"a=127.0.0.1:80,b=127.0.0.1:80", "bound twice"},
	} {
		if _, err := ParseUpstreams(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want %q", tc.in, err, tc.want)
		}
	}
	if _, err := ParseUpstreams(strings.Repeat("a=127.0.0.1:0,", maxUpstreams+1)); err == nil {
		t.Errorf("%d upstreams accepted", maxUpstreams+1)
	}
}

// Upstreams travel in CANTON_UPSTREAMS; the anchors accept only canonical entries with a port.
func TestUpstreamsInNodeMetadata(t *testing.T) {
	in := defaultNode()
	in.Upstreams = []Upstream{{Service: "echo", Address: "127.0.0.1:15432"}, {Service: "db.data", Port: 5432, Address: "[::1]:15433"}}
	meta := NodeMetadata(in)
	if got := meta[MetaUpstreams]; got != "echo=127.0.0.1:15432,db.data:5432=[::1]:15433" {
		t.Fatalf("%s = %q", MetaUpstreams, got)
	}
	out, err := NodeFromProto(protoNode(t, in.ID, meta))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out.Upstreams, in.Upstreams) {
		t.Fatalf("round trip: %+v, want %+v", out.Upstreams, in.Upstreams)
	}
	for _, bad := range []string{"echo=127.0.0.1:0", "echo=192.0.2.1:80", "echo=127.0.0.1:1,b=127.0.0.1:1", strings.Repeat("a", 300) + "=127.0.0.1:1"} {
		meta[MetaUpstreams] = bad
		if _, err := NodeFromProto(protoNode(t, in.ID, meta)); err == nil || !strings.Contains(err.Error(), MetaUpstreams) {
			t.Errorf("%s=%q: err %v, want a rejection naming the key", MetaUpstreams, bad, err)
		}
	}
}

func TestGenerateRejectsBadUpstreams(t *testing.T) {
	in := Input{Mesh: testMesh, Scope: testMesh}
	for _, tc := range []struct {
		name string
		u    []Upstream
		want string
	}{
		{"outbound address", []Upstream{{Service: "a", Address: "127.0.0.1:15001"}}, "outbound listener"},
		{"inbound address", []Upstream{{Service: "a", Address: "127.0.0.1:15006"}}, "inbound listener"},
		{"twice", []Upstream{{Service: "a", Address: "127.0.0.1:1"}, {Service: "b", Address: "127.0.0.1:1"}}, "bound twice"},
		{"zero port", []Upstream{{Service: "a", Address: "127.0.0.1:0"}}, "port must not be 0"},
		{"not canonical", []Upstream{{Service: "A", Address: "127.0.0.1:1"}}, "canonical"},
		{"not loopback", []Upstream{{Service: "a", Address: "10.0.0.1:1"}}, "loopback"},
	} {
		n := defaultNode()
		n.Upstreams = tc.u
		if _, err := Generate(in, n); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
}

// A tcp route's subsets, weights and port match decide the upstream listener's tcp_proxy, for
// the one port it applies to (the golden case upstream-tcp-routes shows the whole output).
func TestUpstreamTCPRouteFollowsVirtualService(t *testing.T) {
	in := loadInput(t, "testdata/upstream-tcp-routes")
	node := loadNode(t, "testdata/upstream-tcp-routes")
	res, err := Generate(in, node)
	if err != nil {
		t.Fatal(err)
	}
	proxyOf := func(addr string) *tcpproxyv3.TcpProxy {
		l, ok := res.Listeners[UpstreamListenerName(addr)].(*listenerv3.Listener)
		if !ok {
			t.Fatalf("no listener for %s", addr)
		}
		tp := &tcpproxyv3.TcpProxy{}
		if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(tp); err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		return tp
	}
	var split []string
	for _, c := range proxyOf("127.0.0.1:13306").GetWeightedClusters().GetClusters() {
		split = append(split, c.GetName()+"="+itoa(int(c.GetWeight())))
	}
	if want := "outbound|3306|v1|mysql.bookinfo.demo.mesh=80,outbound|3306|v2|mysql.bookinfo.demo.mesh=20"; strings.Join(split, ",") != want {
		t.Errorf("port 3306: %v, want %s", split, want)
	}
	if got := proxyOf("127.0.0.1:13307").GetCluster(); got != "outbound|33060||mysql.bookinfo.demo.mesh" {
		t.Errorf("port 33060 (its only route matches a subnet): %q, want the service cluster", got)
	}
	// reviews (the first route's sourceLabels) gets subset v2 only.
	reviews := node
	reviews.ID, reviews.Service, reviews.Labels = "reviews-v1-1", "reviews", map[string]string{"app": "reviews", "version": "v1"}
	if res, err = Generate(in, reviews); err != nil {
		t.Fatal(err)
	}
	if got := proxyOf("127.0.0.1:13306").GetCluster(); got != "outbound|3306|v2|mysql.bookinfo.demo.mesh" {
		t.Errorf("reviews, port 3306: %q, want subset v2", got)
	}
}

// The inbound listener's chains follow the node's service ports: HTTP ports the connection
// manager, other ports a tcp_proxy; with both, mTLS connections offering ALPN "istio" (what
// mesh clusters of TCP ports offer) go to the tcp_proxy, which needs the TLS inspector even
// under STRICT. DISABLE leaves one plain-text chain, HTTP when the service has HTTP ports.
func TestInboundChainsFollowServicePorts(t *testing.T) {
	in := loadInput(t, "testdata/inbound-tcp-mixed-permissive")
	node := loadNode(t, "testdata/inbound-tcp-mixed-permissive")
	var objs []resource.Object
	for _, o := range in.Objects {
		if o.Kind != "PeerAuthentication" && o.Kind != "AuthorizationPolicy" {
			objs = append(objs, o)
		}
	}
	in.Objects = objs
	shape := func(in Input) string {
		res, err := Generate(in, node)
		if err != nil {
			t.Fatal(err)
		}
		validateAll(t, res)
		l := res.Listeners[InboundListenerName].(*listenerv3.Listener)
		var parts []string
		for _, f := range l.GetListenerFilters() {
			parts = append(parts, f.GetName())
		}
		for _, c := range l.GetFilterChains() {
			p := c.GetName() + "(" + c.GetFilters()[0].GetName()
			if alpn := c.GetFilterChainMatch().GetApplicationProtocols(); len(alpn) > 0 {
				p += " alpn=" + strings.Join(alpn, ",")
			}
			if c.GetTransportSocket() != nil {
				p += " tls"
			}
			parts = append(parts, p+")")
		}
		return strings.Join(parts, " ")
	}
	const hcm, tcp = "envoy.filters.network.http_connection_manager", "envoy.filters.network.tcp_proxy"
	if got, want := shape(in), "envoy.filters.listener.tls_inspector inbound_mtls("+hcm+" tls) inbound_mtls_tcp("+tcp+" alpn=istio tls)"; got != want {
		t.Errorf("HTTP and TCP ports, STRICT:\n got %s\nwant %s", got, want)
	}
	disable, err := resource.Parse("pa.yaml", []byte("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: bookinfo}\nspec: {mtls: {mode: DISABLE}}\n"), testMesh, "bookinfo")
	if err != nil {
		t.Fatal(err)
	}
	off := in
	off.Objects = append(append([]resource.Object(nil), in.Objects...), disable...)
	if got, want := shape(off), "inbound_plaintext("+hcm+")"; got != want {
		t.Errorf("HTTP and TCP ports, DISABLE:\n got %s\nwant %s", got, want)
	}
	tcpOnly := in
	tcpOnly.Objects = nil
	for _, o := range in.Objects {
		if o.Kind == "Service" && o.Name == "cache" {
			o.Spec = []byte(`{"ports":[{"name":"tcp","port":6380,"protocol":"TCP"}]}`)
		}
		tcpOnly.Objects = append(tcpOnly.Objects, o)
	}
	if got, want := shape(tcpOnly), "inbound_mtls_tcp("+tcp+" tls)"; got != want {
		t.Errorf("TCP port only, STRICT:\n got %s\nwant %s", got, want)
	}
}

// FuzzParseUpstreams: CANTON_UPSTREAMS comes from proxies. Parsing never panics; whatever the
// strict parser accepts is a valid Node.Upstreams and survives NodeMetadata unchanged.
func FuzzParseUpstreams(f *testing.F) {
	for _, s := range []string{"echo=127.0.0.1:15432", "db.data:5432=[::1]:1,x=127.0.0.2:2", "a=127.0.0.1:0", "A.B.=[::ffff:127.0.0.1]:9", "=,,", "x:=1.2.3.4:5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ParseUpstreams(s)
		ups, err := parseUpstreams(s, false)
		if err != nil {
			return
		}
		n := defaultNode()
		n.OutboundPort, n.InboundPort, n.Upstreams = 0, 0, ups
		if err := checkUpstreams(n); err != nil {
			t.Fatalf("%q parsed to %+v, which a node may not have: %v", s, ups, err)
		}
		if len(ups) == 0 {
			return
		}
		again, err := parseUpstreams(NodeMetadata(n)[MetaUpstreams], false)
		if err != nil || !reflect.DeepEqual(again, ups) {
			t.Fatalf("%q: %+v rendered and parsed again: %+v, %v", s, ups, again, err)
		}
	})
}
