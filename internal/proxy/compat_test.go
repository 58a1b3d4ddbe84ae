package proxy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"canton.dev/canton/internal/proxy/xdsclient"
)

// TestAcceptsControlPlaneOutput checks that what Canton's own control plane generates (the golden
// files of internal/xds, read as data, not imported) is inside the proxy's supported subset and
// compiles: the contract between the two sides of xDS.
func TestAcceptsControlPlaneOutput(t *testing.T) {
	goldens, _ := filepath.Glob("../xds/testdata/*/golden.json")
	if len(goldens) == 0 {
		t.Skip("no internal/xds golden files in this tree")
	}
	kinds := map[string]struct {
		typeURL string
		new     func() proto.Message
	}{
		"listeners": {xdsclient.ListenerType, func() proto.Message { return &listenerv3.Listener{} }},
		"routes":    {xdsclient.RouteType, func() proto.Message { return &routev3.RouteConfiguration{} }},
		"clusters":  {xdsclient.ClusterType, func() proto.Message { return &clusterv3.Cluster{} }},
		"endpoints": {xdsclient.EndpointType, func() proto.Message { return &endpointv3.ClusterLoadAssignment{} }},
		// Secrets are left out: the goldens carry placeholder PEM that a proxy rightly rejects.
	}
	// Known differences, by golden directory: the text an error must contain to be expected. Only a
	// case generated for a node claiming an optional feature this proxy does not announce may be listed
	// (checked below from the case's node.json): Canton's control plane never sends that to a canton proxy.
	known := map[string]string{
		// Generated for a node claiming every optional feature (no node.json: Capabilities nil), so
		// with DNS clusters (cluster.dns), which the canton proxy does not implement.
		"serviceentry-dns": "STRICT_DNS is not supported",
	}
	for _, g := range goldens {
		dir := filepath.Base(filepath.Dir(g))
		if _, ok := known[dir]; ok && !claimsMoreThanProxy(t, filepath.Dir(g)) {
			t.Errorf("%s: listed as a known difference, but its node claims no feature beyond the proxy's %q", dir, Capabilities)
		}
		raw, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s: %v", g, err)
		}
		st := xdsclient.State{Resources: map[string]xdsclient.Resources{}, Versions: map[string]string{}}
		for kind, k := range kinds {
			res := xdsclient.Resources{}
			var byName map[string]json.RawMessage
			if err := json.Unmarshal(doc[kind], &byName); err != nil && doc[kind] != nil {
				t.Fatalf("%s: %s: %v", g, kind, err)
			}
			for name, js := range byName {
				m := k.new()
				if err := protojson.Unmarshal(js, m); err != nil {
					t.Fatalf("%s: %s %q: %v", g, kind, name, err)
				}
				res[name] = mustResource(t, m)
			}
			st.Resources[k.typeURL] = res
		}
		p, err := New(Options{XDSServers: []string{"127.0.0.1:1"}})
		if err != nil {
			t.Fatal(err)
		}
		old := emptySnapshot()
		for _, typ := range xdsclient.Types {
			s, created, err := p.build(old, typ, st)
			if err != nil {
				if want, ok := known[dir]; ok && strings.Contains(err.Error(), want) {
					t.Logf("%s: known difference: %v", dir, err)
				} else {
					t.Errorf("%s: %v", dir, err)
				}
				break
			}
			for _, c := range created {
				defer c.Close(0)
			}
			old = s
		}
	}
}

// claimsMoreThanProxy reports whether the node an internal/xds golden was generated for claims an
// optional feature the canton proxy does not announce in CANTON_CAPABILITIES. The case's node.json is
// read as data; without one (or without Capabilities) the node claims every feature.
func claimsMoreThanProxy(t *testing.T, dir string) bool {
	raw, err := os.ReadFile(filepath.Join(dir, "node.json"))
	if os.IsNotExist(err) {
		return true
	}
	if err != nil {
		t.Fatal(err)
	}
	var n struct{ Capabilities map[string]bool }
	if err := json.Unmarshal(raw, &n); err != nil {
		t.Fatalf("%s/node.json: %v", dir, err)
	}
	if n.Capabilities == nil {
		return true
	}
	ours := strings.Split(Capabilities, ",")
	for c, on := range n.Capabilities {
		if on && !slices.Contains(ours, c) {
			return true
		}
	}
	return false
}
