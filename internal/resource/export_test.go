package resource

import (
	"strings"
	"testing"
)

func exportDoc(spec string) string {
	return "apiVersion: canton.dev/v1\nkind: Export\nmetadata: {name: e}\nspec: " + spec + "\n"
}

func TestExportValidation(t *testing.T) {
	tests := []struct {
		name, spec, err string
	}{
		{"one service to one scope", "{services: [cart], to: [web.demo.mesh]}", ""},
		{"everything to everyone", `{services: ["*"], to: ["*"]}`, ""},
		{"ports by name and number", "{services: [cart], to: [web.demo.mesh], ports: [http, 8080, \"9090\"]}", ""},
		{"no services", "{to: [web.demo.mesh]}", "spec.services: at least one entry is required"},
		{"no scopes", "{services: [cart], to: []}", "spec.to: at least one entry is required"},
		{"star with others", `{services: ["*", cart], to: [a.demo.mesh]}`, `spec.services[0]: "*" cannot be combined`},
		{"duplicate scope", "{services: [cart], to: [a.demo.mesh, a.demo.mesh]}", `spec.to[1]: duplicate entry "a.demo.mesh" (also [0])`},
		{"service is a label", "{services: [cart.shop], to: [a.demo.mesh]}", `spec.services[0]: "cart.shop" must be a service name`},
		{"scope is a domain", "{services: [cart], to: [Web]}", `spec.to[0]: "Web" must be a scope domain`},
		{"port zero", "{services: [cart], to: [a.demo.mesh], ports: [0]}", "spec.ports[0]: port 0 must be 1..65535"},
		{"port too big", "{services: [cart], to: [a.demo.mesh], ports: [70000]}", "spec.ports[0]: port must be 1..65535, not 70000"},
		{"port too big as a string", `{services: [cart], to: [a.demo.mesh], ports: ["70000"]}`, "spec.ports[0]: port 70000 must be 1..65535"},
		{"bad port name", "{services: [cart], to: [a.demo.mesh], ports: [HTTP]}", `spec.ports[0]: "HTTP" must be a port name`},
		{"negative port", "{services: [cart], to: [a.demo.mesh], ports: [-1]}", "spec.ports[0]: port must be 1..65535, not -1"},
		{"duplicate port across forms", `{services: [cart], to: [a.demo.mesh], ports: [8080, "08080"]}`, "spec.ports[1]: duplicate port 8080 (also ports[0])"},
		{"port as object", "{services: [cart], to: [a.demo.mesh], ports: [{name: http}]}", "spec.ports[0]: must be a port name or number, not an object"},
		{"unknown field", "{services: [cart], to: [a.demo.mesh], namespaces: [x]}", `spec.namespaces: unknown field "namespaces"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("e.yaml", []byte(exportDoc(tt.spec)), testMesh, testNS)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error %v, want it to contain %q", err, tt.err)
			}
		})
	}
}

func TestExportCanonicalPortsAndCoverage(t *testing.T) {
	objs, err := Parse("e.yaml", []byte(exportDoc(`{services: [cart], to: [web.demo.mesh], ports: ["08080", http]}`)), testMesh, testNS)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(objs[0].Spec), `{"ports":[8080,"http"],"services":["cart"],"to":["web.demo.mesh"]}`; got != want {
		t.Fatalf("canonical spec %s, want %s", got, want)
	}
	typed, err := Typed(objs[0])
	if err != nil {
		t.Fatal(err)
	}
	e := typed.(*ExportSpec)
	if !e.Covers("cart", "web.demo.mesh") || e.Covers("cart", "shop.demo.mesh") || e.Covers("orders", "web.demo.mesh") {
		t.Fatalf("coverage of %+v is wrong", e)
	}
	if e.Covers("cart", "sub.web.demo.mesh") {
		t.Fatal("an export to a scope covers its children")
	}
	for _, tt := range []struct {
		p    ServicePort
		want bool
	}{{ServicePort{Name: "http", Port: 80}, true}, {ServicePort{Name: "admin", Port: 8080}, true}, {ServicePort{Name: "grpc", Port: 9090}, false}} {
		if got := e.ExportsPort(tt.p); got != tt.want {
			t.Errorf("ExportsPort(%+v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	all := &ExportSpec{Services: []string{"*"}, To: []string{"*"}}
	if !all.Covers("anything", "any.demo.mesh") || !all.ExportsPort(ServicePort{Name: "x", Port: 1}) {
		t.Fatal(`"*" does not cover everything`)
	}
}

func FuzzExportSpec(f *testing.F) {
	f.Add(`{services: [cart], to: [web.demo.mesh], ports: [http, 8080]}`)
	f.Add(`{services: ["*"], to: ["*"], ports: ["0080"]}`)
	f.Add(`{services: [a, b], to: [x.y], ports: [65535, "1"]}`)
	f.Fuzz(func(t *testing.T, spec string) {
		objs, err := Parse("e.yaml", []byte(exportDoc(spec)), testMesh, testNS)
		if err != nil {
			return
		}
		canon, err := Canonical("Export", objs[0].Spec)
		if err != nil || string(canon) != string(objs[0].Spec) {
			t.Fatalf("spec not canonical: %s -> %s (%v)", objs[0].Spec, canon, err)
		}
		if err := Validate(objs[0]); err != nil {
			t.Fatalf("parsed export does not validate: %v", err)
		}
	})
}
