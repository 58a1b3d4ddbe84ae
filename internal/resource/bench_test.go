package resource

import (
	"os"
	"path/filepath"
	"testing"
)

func BenchmarkParseBookinfo(b *testing.B) {
	files, _ := filepath.Glob(filepath.Join("testdata", "bookinfo", "*.yaml"))
	var docs [][]byte
	for _, f := range files {
		d, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		docs = append(docs, d)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, d := range docs {
			if _, err := Parse("b.yaml", d, testMesh, testNS); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkNormalizeVirtualService(b *testing.B) {
	o := Object{Kind: "VirtualService", Namespace: testNS, Name: "reviews",
		Spec: []byte(`{"hosts":["reviews"],"http":[{"match":[{"headers":{"end-user":{"exact":"jason"}}}],"route":[{"destination":{"host":"reviews","subset":"v2"}}]},{"route":[{"destination":{"host":"reviews","subset":"v1"},"weight":50},{"destination":{"host":"reviews","subset":"v3"},"weight":50}],"timeout":"2s","retries":{"attempts":3,"perTryTimeout":"500ms"}}]}`)}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Normalize(o); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNormalizeAlias(b *testing.B) {
	o := Object{Kind: "Alias", Namespace: testNS, Name: "a1",
		Spec: []byte(`{"actions":["resolve"],"target":"t1.default.demo.mesh"}`)}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Normalize(o); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNormalizeService(b *testing.B) {
	o := Object{Kind: "Service", Namespace: testNS, Name: "reviews",
		Spec: []byte(`{"ports":[{"name":"http","port":9080,"protocol":"HTTP"},{"name":"grpc","port":9090,"protocol":"GRPC"}],"exportTo":["*"]}`)}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Normalize(o); err != nil {
			b.Fatal(err)
		}
	}
}
