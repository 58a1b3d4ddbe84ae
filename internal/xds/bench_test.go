package xds

import (
	"fmt"
	"testing"

	"canton.dev/canton/internal/resource"
)

// scaleInput is a scope of n services in 10 namespaces, each with 3 workloads, a
// DestinationRule with two subsets and, for every other service, a header-routing
// VirtualService.
func scaleInput(b testing.TB, n int) Input {
	var objs []resource.Object
	add := func(kind, ns, name, spec string) {
		objs = append(objs, resource.Object{Kind: kind, Namespace: ns, Name: name, Spec: []byte(spec), Created: uint64(len(objs) + 1)})
	}
	for i := 0; i < n; i++ {
		ns := fmt.Sprintf("ns%d.demo.mesh", i%10)
		svc := fmt.Sprintf("svc%d", i)
		add("Service", ns, svc, `{"ports":[{"name":"http","port":8080}]}`)
		for w := 0; w < 3; w++ {
			add("Workload", ns, fmt.Sprintf("%s-%d", svc, w), fmt.Sprintf(`{"service":%q,"address":"127.0.%d.%d","port":%d,"labels":{"version":"v%d"},"lease":1}`,
				svc, i/250, w+1, 20000+i%1000, w%2+1))
		}
		add("DestinationRule", ns, svc, fmt.Sprintf(`{"host":%q,"subsets":[{"name":"v1","labels":{"version":"v1"}},{"name":"v2","labels":{"version":"v2"}}]}`, svc))
		if i%2 == 0 {
			add("VirtualService", ns, svc, fmt.Sprintf(`{"hosts":[%q],"http":[{"match":[{"headers":{"end-user":{"exact":"jason"}}}],"route":[{"destination":{"host":%q,"subset":"v2"}}]},{"route":[{"destination":{"host":%q,"subset":"v1"}}]}]}`, svc, svc, svc))
		}
	}
	for _, o := range objs {
		if err := resource.Validate(o); err != nil {
			b.Fatalf("%s: %v", o.Ref(), err)
		}
	}
	return Input{Mesh: testMesh, Scope: testMesh, Objects: objs}
}

func BenchmarkGenerate1000Services(b *testing.B) {
	in := scaleInput(b, 1000)
	node := defaultNode()
	node.Namespace = "ns0.demo.mesh"
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := Generate(in, node)
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Clusters) != 3001 {
			b.Fatalf("%d clusters", len(res.Clusters))
		}
	}
}

func TestScaleInputGenerates(t *testing.T) {
	res, err := Generate(scaleInput(t, 50), defaultNode())
	if err != nil {
		t.Fatal(err)
	}
	validateAll(t, res)
	if len(res.Clusters) != 151 || len(res.Endpoints) != 150 {
		t.Fatalf("%d clusters, %d endpoints", len(res.Clusters), len(res.Endpoints))
	}
}

// BenchmarkSnapshotGenerate1000Services is the per-proxy cost once the scope is decoded.
func BenchmarkSnapshotGenerate1000Services(b *testing.B) {
	snap, err := NewSnapshot(scaleInput(b, 1000))
	if err != nil {
		b.Fatal(err)
	}
	node := defaultNode()
	node.Namespace = "ns0.demo.mesh"
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := snap.Generate(node); err != nil {
			b.Fatal(err)
		}
	}
}
