package xds

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"canton.dev/canton/internal/resource"
)

const testMesh = "demo.mesh"

// defaultNode is the productpage sidecar of bookinfo.
func defaultNode() Node {
	return Node{ID: "productpage-v1-1", Service: "productpage", Namespace: "bookinfo.demo.mesh",
		Labels: map[string]string{"app": "productpage", "version": "v1"}, Kind: KindSidecar,
		OutboundPort: 15001, InboundPort: 15006, InboundAddress: "127.0.0.1", AppAddress: "127.0.0.1:9080"}
}

// loadInput reads a case's input.yaml; a first line "# include: FILE" prepends FILE (relative
// to the case directory).
func loadInput(t testing.TB, dir string) Input {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "input.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var objs []resource.Object
	for _, line := range strings.Split(string(data), "\n") {
		inc, ok := strings.CutPrefix(line, "# include: ")
		if !ok {
			continue
		}
		p := filepath.Join(dir, strings.TrimSpace(inc))
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		o, err := resource.Parse(p, b, testMesh, "bookinfo")
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o...)
	}
	o, err := resource.Parse(filepath.Join(dir, "input.yaml"), data, testMesh, "bookinfo")
	if err != nil {
		t.Fatal(err)
	}
	objs = append(objs, o...)
	vips := map[netip.Addr]bool{}
	for i := range objs {
		objs[i].Created = uint64(i + 1) // creation order = file order, as a scope would assign
		if objs[i].Kind == "Service" {  // and the VIPs
			a := resource.AllocateVIP(objs[i].Namespace, objs[i].Name, func(a netip.Addr) bool { return vips[a] })
			vips[a], objs[i].VIPs = true, []string{a.String()}
		}
	}
	in := Input{Mesh: testMesh, Scope: testMesh, Objects: objs, Revision: 7}
	if b, err := os.ReadFile(filepath.Join(dir, "trust.pem")); err == nil {
		in.TrustBundle = b
	}
	return in
}

// loadNode reads a case's node.json (fields of Node, overriding defaultNode) when present.
func loadNode(t testing.TB, dir string) Node {
	t.Helper()
	n := defaultNode()
	data, err := os.ReadFile(filepath.Join(dir, "node.json"))
	if os.IsNotExist(err) {
		return n
	}
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&n); err != nil {
		t.Fatalf("%s/node.json: %v", dir, err)
	}
	return n
}

// render is the golden form of r: every resource as protojson, keys sorted, indented.
func render(t testing.TB, r Resources) []byte {
	t.Helper()
	doc := map[string]any{}
	for _, typ := range []struct {
		key string
		m   map[string]proto.Message
	}{{"clusters", r.Clusters}, {"endpoints", r.Endpoints}, {"listeners", r.Listeners}, {"routes", r.Routes}, {"secrets", r.Secrets}} {
		section := map[string]any{}
		for name, msg := range typ.m {
			b, err := protojson.Marshal(msg)
			if err != nil {
				t.Fatalf("marshal %s %s: %v", typ.key, name, err)
			}
			var v any
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.UseNumber()
			if err := dec.Decode(&v); err != nil {
				t.Fatal(err)
			}
			section[name] = v
		}
		doc[typ.key] = section
	}
	skipped := []string{}
	for _, s := range r.Skipped {
		skipped = append(skipped, s.String())
	}
	doc["skipped"] = skipped
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

type validator interface{ ValidateAll() error }

// validateDeep runs the generated ValidateAll on m and, through every google.protobuf.Any it
// holds, on the messages packed inside (ValidateAll does not look into Any).
func validateDeep(m proto.Message, path string) error {
	if a, ok := m.(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s: unpack %s: %v", path, a.GetTypeUrl(), err)
		}
		return validateDeep(inner, path+"("+a.GetTypeUrl()+")")
	}
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
	}
	var err error
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsList():
			for i := 0; i < v.List().Len() && err == nil; i++ {
				err = validateDeep(v.List().Get(i).Message().Interface(), fmt.Sprintf("%s[%d]", p, i))
			}
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					err = validateDeep(mv.Message().Interface(), p+"["+k.String()+"]")
					return err == nil
				})
			}
		default:
			err = validateDeep(v.Message().Interface(), p)
		}
		return err == nil
	})
	return err
}

// validateAll checks every resource of r.
func validateAll(t testing.TB, r Resources) {
	t.Helper()
	for _, typ := range Types {
		for name, msg := range r.ByType(typ) {
			if err := validateDeep(msg, name); err != nil {
				t.Errorf("%s %s: %v", typ, name, err)
			}
		}
	}
	for name, rc := range r.Routes {
		if err := uniqueDomains(rc.(*routev3.RouteConfiguration)); err != nil {
			t.Errorf("route configuration %s: %v", name, err)
		}
	}
}

// uniqueDomains checks what protoc-gen-validate cannot: a domain appears in at most one virtual
// host of a route configuration, once (Envoy and the canton proxy reject the configuration
// otherwise). Domains compare case-insensitively.
func uniqueDomains(rc *routev3.RouteConfiguration) error {
	seen := map[string]string{}
	for _, vh := range rc.GetVirtualHosts() {
		for _, d := range vh.GetDomains() {
			d = strings.ToLower(d)
			if other, dup := seen[d]; dup {
				return fmt.Errorf("domain %q in virtual host %q and in %q", d, vh.GetName(), other)
			}
			seen[d] = vh.GetName()
		}
	}
	return nil
}
