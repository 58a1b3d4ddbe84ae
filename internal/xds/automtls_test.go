package xds

import (
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"canton.dev/canton/internal/resource"
)

// transportOf describes how cluster name of res reaches its endpoints: "mtls", "plain", or
// "mtls+plain-match" (mutual TLS, plain text for the endpoints marked tlsMode: disabled).
func transportOf(t *testing.T, res Resources, name string) string {
	t.Helper()
	c, ok := res.Clusters[name].(*clusterv3.Cluster)
	if !ok {
		t.Fatalf("no cluster %s", name)
	}
	out := "plain"
	if c.GetTransportSocket() != nil {
		out = "mtls"
	}
	for _, m := range c.GetTransportSocketMatches() {
		if m.GetMatch().GetFields()[tlsModeKey].GetStringValue() != tlsModeDisabled ||
			m.GetTransportSocket().GetTypedConfig().GetTypeUrl() != "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer" {
			t.Fatalf("cluster %s: unexpected transport socket match %v", name, m)
		}
		out += "+plain-match"
	}
	return out
}

// plainMarked lists the endpoint ports of assignment name that carry tlsMode: disabled.
func plainMarked(t *testing.T, res Resources, name string) []uint32 {
	t.Helper()
	cla, ok := res.Endpoints[name].(*endpointv3.ClusterLoadAssignment)
	if !ok {
		t.Fatalf("no cluster load assignment %s", name)
	}
	var out []uint32
	for _, le := range cla.GetEndpoints() {
		for _, lb := range le.GetLbEndpoints() {
			md := lb.GetMetadata().GetFilterMetadata()[transportSocketMatchFilter]
			if md.GetFields()[tlsModeKey].GetStringValue() == tlsModeDisabled {
				out = append(out, lb.GetEndpoint().GetAddress().GetSocketAddress().GetPortValue())
			}
		}
	}
	return out
}

func skippedText(res Resources) string {
	var all []string
	for _, s := range res.Skipped {
		all = append(all, s.String())
	}
	return strings.Join(all, "\n")
}

// TestAutoMutualTLS: without a DestinationRule tls, callers use plain text to the workloads
// whose PeerAuthentication is DISABLE (details; reviews v1) and keep mutual TLS to the others
// (reviews v2 and v3, ratings STRICT on its port, productpage PERMISSIVE); a cluster with both
// kinds of endpoints chooses per endpoint.
func TestAutoMutualTLS(t *testing.T) {
	dir := "testdata/peer-auth-auto-mtls"
	res, err := Generate(loadInput(t, dir), loadNode(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	validateAll(t, res)
	for name, want := range map[string]string{
		"outbound|9080||details.bookinfo.demo.mesh":     "plain",
		"outbound|9080||reviews.bookinfo.demo.mesh":     "mtls+plain-match",
		"outbound|9080|v1|reviews.bookinfo.demo.mesh":   "plain",
		"outbound|9080|v2|reviews.bookinfo.demo.mesh":   "mtls",
		"outbound|9080|v3|reviews.bookinfo.demo.mesh":   "mtls",
		"outbound|9080||ratings.bookinfo.demo.mesh":     "mtls",
		"outbound|9080||productpage.bookinfo.demo.mesh": "mtls",
	} {
		if got := transportOf(t, res, name); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
	// reviews-v1-1 (port 15103) is the only endpoint marked for plain text.
	for name, want := range map[string]string{
		"outbound|9080||reviews.bookinfo.demo.mesh":   "[15103]",
		"outbound|9080|v1|reviews.bookinfo.demo.mesh": "[]",
		"outbound|9080|v2|reviews.bookinfo.demo.mesh": "[]",
		"outbound|9080||details.bookinfo.demo.mesh":   "[]",
	} {
		if got := fmtPorts(plainMarked(t, res, name)); got != want {
			t.Errorf("%s: endpoints marked tlsMode: disabled %s, want %s", name, got, want)
		}
	}
	if len(res.Skipped) != 0 {
		t.Errorf("unexpected skips:\n%s", skippedText(res))
	}
}

func fmtPorts(ps []uint32) string {
	var s []string
	for _, p := range ps {
		s = append(s, itoa(int(p)))
	}
	return "[" + strings.Join(s, " ") + "]"
}

// A proxy that cannot choose the transport per endpoint (the capability is missing, or a
// proxyless grpc-go client) keeps mutual TLS for a cluster with both kinds of endpoints (fail
// closed: never plain text to a workload that requires mutual TLS), and the loss is reported.
func TestAutoMutualTLSWithoutTransportSocketMatches(t *testing.T) {
	dir := "testdata/peer-auth-auto-mtls"
	in := loadInput(t, dir)
	reviews := "outbound|9080||reviews.bookinfo.demo.mesh"

	node := loadNode(t, dir)
	node.Capabilities = map[string]bool{}
	res, err := Generate(in, node)
	if err != nil {
		t.Fatal(err)
	}
	if got := transportOf(t, res, reviews); got != "mtls" {
		t.Errorf("%s: %s, want mtls", reviews, got)
	}
	if got := plainMarked(t, res, reviews); len(got) != 0 {
		t.Errorf("%s: endpoints %v marked for plain text although no match uses the mark", reviews, got)
	}
	if got := transportOf(t, res, "outbound|9080||details.bookinfo.demo.mesh"); got != "plain" {
		t.Errorf("details: %s, want plain (every endpoint agrees: no match needed)", got)
	}
	if want := "Service bookinfo.demo.mesh/reviews: some of its workloads serve plain text only"; !strings.Contains(skippedText(res), want) {
		t.Errorf("skipped lacks %q:\n%s", want, skippedText(res))
	}

	node = loadNode(t, dir)
	node.Kind = KindProxyless
	res, err = Generate(in, node)
	if err != nil {
		t.Fatal(err)
	}
	if got := transportOf(t, res, reviews); got != "mtls" {
		t.Errorf("proxyless %s: %s, want mtls", reviews, got)
	}
	if want := "node: cluster " + reviews + ": grpc-go does not support transport_socket_matches"; !strings.Contains(skippedText(res), want) {
		t.Errorf("proxyless: skipped lacks %q:\n%s", want, skippedText(res))
	}
}

// The effective PeerAuthentication of a workload follows the inbound side's precedence (mesh,
// namespace, workload selector, port level), and a DestinationRule's tls overrides auto
// mutual TLS either way.
func TestAutoMutualTLSPrecedence(t *testing.T) {
	pa := func(name, ns, sel, mode, ports string) string {
		s := "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec:\n"
		if sel != "" {
			s += "  selector: {matchLabels: {app: " + sel + "}}\n"
		}
		if mode != "" {
			s += "  mtls: {mode: " + mode + "}\n"
		}
		if ports != "" {
			s += "  portLevelMtls: {" + ports + "}\n"
		}
		return s + "---\n"
	}
	dr := func(host, mode string) string {
		return "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: " + host + "}\nspec:\n  host: " + host +
			"\n  trafficPolicy: {tls: {mode: " + mode + "}}\n---\n"
	}
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"none: mutual TLS", "", "mtls"},
		{"mesh DISABLE", pa("default", "demo.mesh", "", "DISABLE", ""), "plain"},
		{"namespace PERMISSIVE over mesh DISABLE", pa("default", "demo.mesh", "", "DISABLE", "") + pa("default", "bookinfo", "", "PERMISSIVE", ""), "mtls"},
		{"workload STRICT over namespace DISABLE", pa("default", "bookinfo", "", "DISABLE", "") + pa("w", "bookinfo", "ratings", "STRICT", ""), "mtls"},
		{"workload UNSET inherits namespace DISABLE", pa("default", "bookinfo", "", "DISABLE", "") + pa("w", "bookinfo", "ratings", "UNSET", ""), "plain"},
		{"another workload's DISABLE", pa("w", "bookinfo", "details", "DISABLE", ""), "mtls"},
		{"port level DISABLE on the service port", pa("w", "bookinfo", "ratings", "STRICT", "9080: {mode: DISABLE}"), "plain"},
		{"port level DISABLE on another port", pa("w", "bookinfo", "ratings", "STRICT", "9999: {mode: DISABLE}"), "mtls"},
		{"DestinationRule ISTIO_MUTUAL over DISABLE", pa("w", "bookinfo", "ratings", "DISABLE", "") + dr("ratings", "ISTIO_MUTUAL"), "mtls"},
		{"DestinationRule DISABLE over STRICT", pa("w", "bookinfo", "ratings", "STRICT", "") + dr("ratings", "DISABLE"), "plain"},
		{"DestinationRule SIMPLE (not implemented) keeps auto", pa("w", "bookinfo", "ratings", "DISABLE", "") + dr("ratings", "SIMPLE"), "plain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := loadInput(t, "testdata/peer-auth-auto-mtls")
			var objs []resource.Object
			for _, o := range base.Objects {
				if o.Kind != "PeerAuthentication" && o.Kind != "DestinationRule" {
					objs = append(objs, o)
				}
			}
			if tc.yaml != "" {
				extra, err := resource.Parse("extra.yaml", []byte(tc.yaml), testMesh, "bookinfo")
				if err != nil {
					t.Fatal(err)
				}
				for i := range extra {
					extra[i].Created = uint64(len(objs) + i + 1)
				}
				objs = append(objs, extra...)
			}
			base.Objects = objs
			res, err := Generate(base, defaultNode())
			if err != nil {
				t.Fatal(err)
			}
			if got := transportOf(t, res, "outbound|9080||ratings.bookinfo.demo.mesh"); got != tc.want {
				t.Errorf("ratings: %s, want %s", got, tc.want)
			}
		})
	}
}
