package resource

import (
	"testing"
	"time"
)

func TestExtensionProviderParse(t *testing.T) {
	const ok = "apiVersion: canton.dev/v1\nkind: ExtensionProvider\nmetadata: {name: opa}\nspec: {envoyExtAuthzGrpc: {service: \"127.0.0.1:9191\", timeout: 500ms, failOpen: true}}\n"
	objs, err := Parse("e.yaml", []byte(ok), testMesh, testNS)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].Kind != "ExtensionProvider" || objs[0].Namespace != testMesh || objs[0].Name != "opa" {
		t.Fatalf("objects %+v", objs)
	}
	typed, err := Typed(objs[0])
	if err != nil {
		t.Fatal(err)
	}
	g := typed.(*ExtensionProviderSpec).EnvoyExtAuthzGrpc
	if g == nil || g.Service != "127.0.0.1:9191" || !g.FailOpen || g.TimeoutDuration() != 500*time.Millisecond {
		t.Fatalf("spec %+v", g)
	}

	bad := []struct{ name, spec, want string }{
		{"no type", "{}", "e.yaml: document 1 (ExtensionProvider opa): spec.envoyExtAuthzGrpc: required (the only supported provider type)"},
		{"unknown type", "{envoyExtAuthzHttp: {service: \"a:1\"}}", "e.yaml: document 1 (ExtensionProvider opa): spec.envoyExtAuthzHttp: unknown field \"envoyExtAuthzHttp\" (known fields: envoyExtAuthzGrpc)"},
		{"unknown field", "{envoyExtAuthzGrpc: {service: \"a:1\", port: 9}}", "e.yaml: document 1 (ExtensionProvider opa): spec.envoyExtAuthzGrpc.port: unknown field \"port\" (known fields: service, timeout, failOpen)"},
		{"no port", "{envoyExtAuthzGrpc: {service: opa.demo.mesh}}", "e.yaml: document 1 (ExtensionProvider opa): spec.envoyExtAuthzGrpc.service: \"opa.demo.mesh\" must be host:port"},
		{"port zero", "{envoyExtAuthzGrpc: {service: \"opa:0\"}}", "e.yaml: document 1 (ExtensionProvider opa): spec.envoyExtAuthzGrpc.service: \"opa:0\": port must be 1..65535"},
		{"bad host", "{envoyExtAuthzGrpc: {service: \"o_p a:9191\"}}", "e.yaml: document 1 (ExtensionProvider opa): spec.envoyExtAuthzGrpc.service: \"o_p a:9191\": host must be an IP address or a DNS name"},
		{"bad timeout", "{envoyExtAuthzGrpc: {service: \"opa:1\", timeout: soon}}", "e.yaml: document 1 (ExtensionProvider opa): spec.envoyExtAuthzGrpc.timeout: \"soon\" is not a duration (e.g. \"500ms\")"},
		{"timeout range", "{envoyExtAuthzGrpc: {service: \"opa:1\", timeout: 2h}}", "e.yaml: document 1 (ExtensionProvider opa): spec.envoyExtAuthzGrpc.timeout: 2h0m0s is out of range (1ms..1m0s)"},
		{"failOpen type", "{envoyExtAuthzGrpc: {service: \"opa:1\", failOpen: \"yes\"}}", "e.yaml: document 1 (ExtensionProvider opa): spec.envoyExtAuthzGrpc.failOpen: must be true or false, not a string"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			in := "apiVersion: canton.dev/v1\nkind: ExtensionProvider\nmetadata: {name: opa}\nspec: " + tt.spec + "\n"
			_, err := Parse("e.yaml", []byte(in), testMesh, testNS)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error:\n got: %v\nwant: %s", err, tt.want)
			}
		})
	}
}
