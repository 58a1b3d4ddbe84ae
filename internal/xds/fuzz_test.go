package xds

import (
	"os"
	"path/filepath"
	"testing"

	"canton.dev/canton/internal/resource"
)

// FuzzGenerate feeds manifests that resource.Parse accepts to Generate for a sidecar, a gateway
// and a sidecar with upstream listeners: it must never panic or fail, and everything it emits
// must pass ValidateAll.
func FuzzGenerate(f *testing.F) {
	base, err := os.ReadFile("testdata/bookinfo.yaml")
	if err != nil {
		f.Fatal(err)
	}
	cases, _ := filepath.Glob("testdata/*/input.yaml")
	for _, c := range cases {
		b, err := os.ReadFile(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append(append(append([]byte(nil), base...), "\n---\n"...), b...))
	}
	gw := Node{ID: "gw", Namespace: "bookinfo.demo.mesh", Kind: KindGateway, Labels: map[string]string{"istio": "ingressgateway"}, OutboundPort: 15001}
	// A sidecar with upstream listeners for the seeds' TCP, TLS and HTTP services.
	up := defaultNode()
	up.ID = "productpage-v1-2"
	up.Upstreams = []Upstream{{Service: "mysql", Port: 3306, Address: "127.0.0.1:13306"}, {Service: "vault", Address: "127.0.0.1:18200"},
		{Service: "reviews", Address: "127.0.0.1:19080"}, {Service: "echo", Address: "127.0.0.1:17000"}, {Service: "cache", Port: 6380, Address: "[::1]:16380"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := resource.Parse("fuzz.yaml", data, testMesh, "bookinfo")
		if err != nil {
			return
		}
		in := Input{Mesh: testMesh, Scope: testMesh, Objects: objs}
		for _, n := range []Node{defaultNode(), gw, up} {
			res, err := Generate(in, n)
			if err != nil {
				t.Fatalf("node %s: %v", n.ID, err)
			}
			validateAll(t, res)
		}
	})
}
