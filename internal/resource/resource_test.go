package resource

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
)

func TestLookup(t *testing.T) {
	tests := []struct{ in, want string }{
		{"VirtualService", "VirtualService"}, {"virtualservice", "VirtualService"}, {"virtualservices", "VirtualService"}, {"VS", "VirtualService"},
		{"dr", "DestinationRule"}, {"se", "ServiceEntry"}, {"gw", "Gateway"}, {"pa", "PeerAuthentication"},
		{"ra", "RequestAuthentication"}, {"ap", "AuthorizationPolicy"}, {"we", "WorkloadEntry"}, {"sidecars", "Sidecar"},
		{"svc", "Service"}, {"services", "Service"}, {"wl", "Workload"}, {"aliases", "Alias"}, {"delegation", "Delegation"}, {"anchors", "Anchor"},
		{"exports", "Export"}, {" Service ", "Service"},
	}
	for _, tt := range tests {
		k, ok := Lookup(tt.in)
		if !ok || k.Name != tt.want {
			t.Errorf("Lookup(%q) = %q, %v; want %q", tt.in, k.Name, ok, tt.want)
		}
	}
	for _, bad := range []string{"", "pod", "v", "virtual-service", "governance"} {
		if k, ok := Lookup(bad); ok {
			t.Errorf("Lookup(%q) = %q, want not found", bad, k.Name)
		}
	}
	ks := Kinds()
	if len(ks) != 17 {
		t.Fatalf("Kinds() has %d kinds, want 17", len(ks))
	}
	for i := 1; i < len(ks); i++ {
		if ks[i-1].Name >= ks[i].Name {
			t.Errorf("Kinds() not sorted: %s before %s", ks[i-1].Name, ks[i].Name)
		}
	}
	ks[0].Short = append(ks[0].Short[:0], "mutated")
	if k, _ := Lookup(ks[0].Name); len(k.Short) > 0 && k.Short[0] == "mutated" {
		t.Errorf("Kinds() shares slices with the kind table")
	}
	if got := mustKind(t, "vs").APIVersion(); got != "networking.istio.io/v1" {
		t.Errorf("APIVersion = %q", got)
	}
}

func mustKind(t *testing.T, s string) Kind {
	t.Helper()
	k, ok := Lookup(s)
	if !ok {
		t.Fatalf("Lookup(%q) failed", s)
	}
	return k
}

// TestCanonical checks that equal meanings give identical bytes, whatever the key order,
// whitespace, field spelling (JSON vs proto names), duration unit or default values.
func TestCanonical(t *testing.T) {
	tests := []struct {
		kind  string
		specs []string
		want  string
	}{
		{"VirtualService", []string{
			`{"hosts":["reviews"],"http":[{"route":[{"destination":{"host":"reviews","subset":"v1"},"weight":100}],"timeout":"1.5s"}]}`,
			`{ "http": [ { "timeout": "1500ms", "route": [ { "weight": 100, "destination": { "subset": "v1", "host": "reviews" } } ] } ], "hosts": [ "reviews" ] }`,
			`{"hosts":["reviews"],"http":[{"route":[{"destination":{"host":"reviews","subset":"v1","port":null},"weight":"100"}],"timeout":"1s500ms","name":""}],"gateways":[]}`,
		}, `{"hosts":["reviews"],"http":[{"route":[{"destination":{"host":"reviews","subset":"v1"},"weight":100}],"timeout":"1.500s"}]}`},
		{"DestinationRule", []string{
			`{"host":"r","traffic_policy":{"outlier_detection":{"base_ejection_time":"3m","max_ejection_percent":10}}}`,
			`{"host":"r","trafficPolicy":{"outlierDetection":{"baseEjectionTime":"180s","maxEjectionPercent":10}}}`,
		}, `{"host":"r","trafficPolicy":{"outlierDetection":{"baseEjectionTime":"180s","maxEjectionPercent":10}}}`},
		{"ap", []string{`{"action":"ALLOW"}`, `{}`, ``, `null`}, `{}`},
		{"svc", []string{
			`{"ports":[{"name":"http","port":80}],"exportTo":[]}`,
			`{"exportTo":null,"ports":[{"port":80,"name":"http","protocol":""}]}`,
		}, `{"ports":[{"name":"http","port":80}]}`},
		{"Workload", []string{
			`{"service":"web","address":"10.0.0.1","port":80,"lease":7,"labels":{"b":"2","a":"1"}}`,
			`{"labels":{"a":"1","b":"2"},"lease":7,"port":80,"address":"10.0.0.1","service":"web"}`,
		}, `{"address":"10.0.0.1","labels":{"a":"1","b":"2"},"lease":7,"port":80,"service":"web"}`},
		{"Workload", []string{
			`{"service":"gw","address":"10.0.0.1","port":80,"lease":7,"proxy":"gw-1","gateway":true}`,
			`{"gateway":true,"proxy":"gw-1","lease":7,"port":80,"address":"10.0.0.1","service":"gw"}`,
		}, `{"address":"10.0.0.1","gateway":true,"lease":7,"port":80,"proxy":"gw-1","service":"gw"}`},
		{"Workload", []string{
			`{"service":"web","address":"10.0.0.1","port":80,"lease":7,"gateway":false}`,
			`{"service":"web","address":"10.0.0.1","port":80,"lease":7}`,
		}, `{"address":"10.0.0.1","lease":7,"port":80,"service":"web"}`},
	}
	for _, tt := range tests {
		for _, spec := range tt.specs {
			got, err := Canonical(tt.kind, []byte(spec))
			if err != nil {
				t.Errorf("Canonical(%s, %s): %v", tt.kind, spec, err)
				continue
			}
			if string(got) != tt.want {
				t.Errorf("Canonical(%s, %s)\n got %s\nwant %s", tt.kind, spec, got, tt.want)
			}
			again, err := Canonical(tt.kind, got)
			if err != nil || string(again) != string(got) {
				t.Errorf("Canonical is not idempotent for %s: %s -> %s (%v)", tt.kind, got, again, err)
			}
		}
	}
	if _, err := Canonical("Pod", []byte(`{}`)); err == nil || err.Error() != `kind "Pod" is not supported` {
		t.Errorf("Canonical(Pod) error = %v", err)
	}
	if _, err := Canonical("svc", []byte(`{"ports":[]} {}`)); err == nil || err.Error() != "spec: unexpected data after the JSON value" {
		t.Errorf("trailing data: error = %v", err)
	}
	if _, err := Canonical("svc", []byte(`{"ports":[],"ports":[]}`)); err == nil || err.Error() != "spec.ports: duplicate field" {
		t.Errorf("duplicate key: error = %v", err)
	}
	deep := strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100)
	if _, err := Canonical("svc", []byte(deep)); err == nil || !strings.Contains(err.Error(), "nested deeper than 64 levels") {
		t.Errorf("deep nesting: error = %v", err)
	}
}

func TestTyped(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "bookinfo", "reviews-50-v3.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Parse("r.yaml", data, testMesh, testNS)
	if err != nil {
		t.Fatal(err)
	}
	v, err := Typed(objs[0])
	if err != nil {
		t.Fatal(err)
	}
	vs, ok := v.(*networking.VirtualService)
	if !ok {
		t.Fatalf("Typed returned %T", v)
	}
	if got := vs.GetHttp()[0].GetRoute()[1].GetDestination().GetSubset(); got != "v3" {
		t.Errorf("subset = %q", got)
	}
	if w := vs.GetHttp()[0].GetRoute()[1].GetWeight(); w != 50 {
		t.Errorf("weight = %d", w)
	}
	pa, err := Typed(Object{Kind: "pa", Spec: []byte(`{"mtls":{"mode":"STRICT"}}`)})
	if err != nil {
		t.Fatal(err)
	}
	if pa.(*security.PeerAuthentication).GetMtls().GetMode() != security.PeerAuthentication_MutualTLS_STRICT {
		t.Errorf("mode = %v", pa)
	}
	wl, err := Typed(Object{Kind: "Workload", Spec: []byte(`{"service":"web","lease":9}`)})
	if err != nil {
		t.Fatal(err)
	}
	if wl.(*WorkloadSpec).Lease != 9 {
		t.Errorf("lease = %v", wl)
	}
	if _, err := Typed(Object{Kind: "nope"}); err == nil {
		t.Error("Typed of an unknown kind succeeded")
	}
}

// TestManifestRoundTrip renders parsed objects back to YAML and parses them again.
func TestManifestRoundTrip(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "bookinfo", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := Parse(f, data, testMesh, testNS)
		if err != nil {
			t.Fatal(err)
		}
		for i := range objs {
			objs[i].UID = "0123abcd-" + string(rune('1'+i))
			objs[i].Version = uint64(10 + i)
		}
		y, err := ToYAML(objs, testMesh)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse("again.yaml", y, testMesh, "")
		if err != nil {
			t.Fatalf("%s: reparse: %v\n%s", f, err, y)
		}
		if !reflect.DeepEqual(objs, again) {
			t.Errorf("%s: round trip differs:\n%+v\n%+v", f, objs, again)
		}
	}
	m := Manifest(Object{Kind: "VirtualService", Namespace: "bookinfo.demo.mesh", Name: "r", Spec: []byte(`{"hosts":["r"]}`), Version: 42, UID: "u"}, testMesh)
	meta := m["metadata"].(map[string]any)
	if m["apiVersion"] != "networking.istio.io/v1" || meta["namespace"] != "bookinfo" || meta["resourceVersion"] != "42" || meta["uid"] != "u" {
		t.Errorf("Manifest = %v", m)
	}
	if ns := Manifest(Object{Kind: "Anchor", Namespace: "demo.mesh", Name: "a"}, testMesh)["metadata"].(map[string]any)["namespace"]; ns != "demo.mesh" {
		t.Errorf("root namespace rendered as %v", ns)
	}
}

func TestValidateObject(t *testing.T) {
	good := Object{Kind: "Service", Namespace: "bookinfo.demo.mesh", Name: "web", Spec: []byte(`{"ports":[{"name":"http","port":80}]}`)}
	if err := Validate(good); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mod  func(o *Object)
		want string
	}{
		{"kind", func(o *Object) { o.Kind = "Pod" }, `kind: kind "Pod" is not supported`},
		{"name", func(o *Object) { o.Name = "" }, "metadata.name: required"},
		{"namespace", func(o *Object) { o.Namespace = "" }, "metadata.namespace: required"},
		{"annotation key", func(o *Object) { o.Annotations = map[string]string{"a/b/c": "x"} }, `metadata.annotations: key "a/b/c": name part must be 1..63 characters of [A-Za-z0-9-_.], starting and ending with an alphanumeric`},
		{"annotation size", func(o *Object) { o.Annotations = map[string]string{"big": strings.Repeat("x", 300*1024)} }, "metadata.annotations: total size 307203 bytes exceeds 262144"},
		{"spec", func(o *Object) { o.Spec = []byte(`{"ports":[{"name":"http","port":80}],"x":1}`) }, `spec.x: unknown field "x" (known fields: ports, exportTo)`},
		{"spec json", func(o *Object) { o.Spec = []byte(`{"ports":`) }, "spec.ports: unexpected end of JSON input"},
	}
	for _, tt := range tests {
		o := good
		tt.mod(&o)
		if err := Validate(o); err == nil || err.Error() != tt.want {
			t.Errorf("%s: Validate error = %v, want %s", tt.name, err, tt.want)
		}
	}
	n, err := Normalize(Object{Kind: "svc", Namespace: "a.demo.mesh", Name: "web", Labels: map[string]string{}, UID: "x", Version: 3, Created: 2,
		Spec: []byte(`{ "ports" : [ {"port":80, "name":"http"} ] }`)})
	if err != nil {
		t.Fatal(err)
	}
	want := Object{Kind: "Service", Namespace: "a.demo.mesh", Name: "web", Spec: []byte(`{"ports":[{"name":"http","port":80}]}`)}
	if !reflect.DeepEqual(n, want) {
		t.Errorf("Normalize = %+v, want %+v", n, want)
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "bookinfo", "*.yaml"))
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(vsDoc(okVS)))
	f.Add([]byte("---\n...\n--- {}\n"))
	f.Add([]byte(`{"apiVersion":"canton.dev/v1","kind":"Alias","metadata":{"name":"a"},"spec":{"target":"t","actions":["admin"]}}`))
	f.Add([]byte("apiVersion: canton.dev/v1\nkind: Export\nmetadata: {name: e}\nspec: {services: [cart], to: [web.demo.mesh], ports: [http, \"08080\", 9090]}\n"))
	f.Add([]byte("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: d}\nspec: {selector: {matchLabels: {a: b}}, portLevelMtls: {80: {mode: STRICT}}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := Parse("fuzz.yaml", data, testMesh, testNS)
		if err != nil {
			if objs != nil {
				t.Fatal("objects returned with an error")
			}
			return
		}
		for _, o := range objs {
			if err := Validate(o); err != nil {
				t.Fatalf("parsed object %s does not validate: %v", o.Ref(), err)
			}
			canon, err := Canonical(o.Kind, o.Spec)
			if err != nil || string(canon) != string(o.Spec) {
				t.Fatalf("spec of %s is not canonical: %s -> %s (%v)", o.Ref(), o.Spec, canon, err)
			}
		}
		y, err := ToYAML(objs, testMesh)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse("again.yaml", y, testMesh, testNS)
		if err != nil {
			t.Fatalf("rendered objects do not parse: %v\n%s", err, y)
		}
		if !reflect.DeepEqual(objs, again) {
			t.Fatalf("round trip differs:\n%+v\n%+v", objs, again)
		}
	})
}

func TestAllocateVIP(t *testing.T) {
	free := func(netip.Addr) bool { return false }
	a := AllocateVIP("bookinfo.demo.mesh", "reviews", free)
	if b := AllocateVIP("bookinfo.demo.mesh", "reviews", free); a != b {
		t.Fatalf("not deterministic: %s vs %s", a, b)
	}
	if !IsVIP(a) || !a.Is4() || !IsVIP(netip.AddrFrom16(a.As16())) {
		t.Fatalf("%s: not an IPv4 VIP", a)
	}
	if c := AllocateVIP("bookinfo.demo.mesh", "ratings", free); c == a {
		t.Fatalf("reviews and ratings hash to the same %s", a)
	}
	if c := AllocateVIP("other.demo.mesh", "reviews", free); c == a {
		t.Fatalf("reviews of two namespaces hash to the same %s", a)
	}
	// Taken addresses are probed past, one at a time.
	if n := AllocateVIP("bookinfo.demo.mesh", "reviews", func(x netip.Addr) bool { return x == a }); n != a.Next() {
		t.Fatalf("with %s taken got %s, want %s", a, n, a.Next())
	}
	for _, x := range []string{"240.0.0.1", "247.255.255.255"} {
		if !IsVIP(netip.MustParseAddr(x)) {
			t.Errorf("IsVIP(%s) = false", x)
		}
	}
	for _, x := range []string{"10.0.0.1", "248.0.0.1", "127.0.0.1", "fd00::1"} {
		if IsVIP(netip.MustParseAddr(x)) {
			t.Errorf("IsVIP(%s) = true", x)
		}
	}
}
