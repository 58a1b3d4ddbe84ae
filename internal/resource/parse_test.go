package resource

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

const (
	testMesh = "demo.mesh"
	testNS   = "bookinfo.demo.mesh"
)

// TestParseBookinfo parses the bookinfo sample manifests and compares the parsed objects
// (absolute namespaces, canonical specs) with golden files.
func TestParseBookinfo(t *testing.T) {
	tests := []struct {
		file  string
		kinds []string // kind/name of every object, in order
	}{
		{"route-all-v1.yaml", []string{"VirtualService/productpage", "VirtualService/reviews", "VirtualService/ratings", "VirtualService/details"}},
		{"destination-rule-all.yaml", []string{"DestinationRule/reviews", "DestinationRule/productpage"}},
		{"reviews-jason.yaml", []string{"VirtualService/reviews"}},
		{"reviews-50-v3.yaml", []string{"VirtualService/reviews"}},
		{"ratings-delay.yaml", []string{"VirtualService/ratings"}},
		{"circuit-breaker.yaml", []string{"DestinationRule/httpbin"}},
		{"peer-authentication-strict.yaml", []string{"PeerAuthentication/default"}},
		{"authorization-policy.yaml", []string{"AuthorizationPolicy/allow-nothing", "AuthorizationPolicy/productpage-viewer", "AuthorizationPolicy/reviews-viewer"}},
		{"canton-native.yaml", []string{"Service/reviews", "Workload/reviews-v2-1", "Alias/critics", "Delegation/shop", "Anchor/a1"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", "bookinfo", tt.file)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := Parse(tt.file, data, testMesh, testNS)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			var got []string
			for _, o := range objs {
				got = append(got, o.Kind+"/"+o.Name)
				if err := Validate(o); err != nil {
					t.Errorf("Validate(%s): %v", o.Ref(), err)
				}
			}
			if !reflect.DeepEqual(got, tt.kinds) {
				t.Fatalf("objects = %v, want %v", got, tt.kinds)
			}
			b, err := json.MarshalIndent(objs, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, filepath.Join("testdata", "bookinfo", strings.TrimSuffix(tt.file, ".yaml")+".golden.json"), append(b, '\n'))
		})
	}
}

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from the output (run with -update if the change is intended):\n got: %s\nwant: %s", path, got, want)
	}
}

func TestParseNamespaces(t *testing.T) {
	doc := func(ns string) string {
		s := "apiVersion: canton.dev/v1\nkind: Service\nmetadata:\n  name: web\n"
		if ns != "" {
			s += "  namespace: " + ns + "\n"
		}
		return s + "spec:\n  ports: [{name: http, port: 80}]\n"
	}
	tests := []struct {
		ns, defaultNS, want string
	}{
		{"bookinfo", "", "bookinfo.demo.mesh"},
		{"bookinfo.demo.mesh", "", "bookinfo.demo.mesh"},
		{"bookinfo.demo.mesh.", "", "bookinfo.demo.mesh"},
		{"demo.mesh", "", "demo.mesh"},
		{"payments.shop", "", "payments.shop.demo.mesh"},
		{"", "shop.demo.mesh", "shop.demo.mesh"},
		{"", "shop", "shop.demo.mesh"},
		{"other", "shop.demo.mesh", "other.demo.mesh"},
	}
	for _, tt := range tests {
		objs, err := Parse("ns.yaml", []byte(doc(tt.ns)), testMesh, tt.defaultNS)
		if err != nil {
			t.Errorf("namespace %q default %q: %v", tt.ns, tt.defaultNS, err)
			continue
		}
		if got := objs[0].Namespace; got != tt.want {
			t.Errorf("namespace %q default %q: got %q, want %q", tt.ns, tt.defaultNS, got, tt.want)
		}
	}
	_, err := Parse("ns.yaml", []byte(doc("")), testMesh, "")
	if want := "ns.yaml: document 1 (Service web): metadata.namespace: required (no default namespace given)"; err == nil || err.Error() != want {
		t.Errorf("no namespace: got %v, want %s", err, want)
	}
}

func TestParseStreamShapes(t *testing.T) {
	svc := "apiVersion: canton.dev/v1\nkind: Service\nmetadata: {name: %s}\nspec: {ports: [{name: http, port: 80}]}\n"
	a, b := strings.Replace(svc, "%s", "a", 1), strings.Replace(svc, "%s", "b", 1)
	tests := []struct {
		name  string
		input string
		want  []string
	}{
		{"empty", "", nil},
		{"only comments", "# nothing\n---\n# still nothing\n", nil},
		{"leading separator", "---\n" + a, []string{"a"}},
		{"trailing separator", a + "---\n", []string{"a"}},
		{"two docs", a + "---\n" + b, []string{"a", "b"}},
		{"empty docs between", a + "---\n---\n\n---\n" + b, []string{"a", "b"}},
		{"end marker", a + "...\n---\n" + b, []string{"a", "b"}},
		{"crlf", strings.ReplaceAll(a+"---\n"+b, "\n", "\r\n"), []string{"a", "b"}},
		{"bom", "\xef\xbb\xbf" + a, []string{"a"}},
		{"json", `{"apiVersion":"canton.dev/v1","kind":"Service","metadata":{"name":"a"},"spec":{"ports":[{"name":"http","port":80}]}}`, []string{"a"}},
		{"block scalar with dashes", "apiVersion: canton.dev/v1\nkind: Alias\nmetadata:\n  name: a\n  annotations:\n    note: |\n      ---\n      not a separator\nspec: {target: x.demo.mesh, actions: [resolve]}\n", []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := Parse("s.yaml", []byte(tt.input), testMesh, testNS)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range objs {
				got = append(got, o.Name)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("names = %v, want %v", got, tt.want)
			}
		})
	}
}

// vsDoc returns a VirtualService document named reviews with the given spec body (YAML,
// indented by two spaces).
func vsDoc(spec string) string {
	return "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n" + spec
}

const okVS = "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n"

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  string
	}{
		// Stream and envelope.
		{"invalid yaml", "kind: [", "e.yaml: document 1: invalid YAML: yaml: line 1: did not find expected node content"},
		{"not an object", "- a\n- b\n", "e.yaml: document 1: a document must be an object with apiVersion, kind, metadata and spec, not a list"},
		{"duplicate key", "kind: Service\nkind: Service\n", "e.yaml: document 1: invalid YAML: yaml: unmarshal errors:\n  line 2: key \"kind\" already set in map"},
		{"missing kind", "apiVersion: v1\nmetadata: {name: x}\n", "e.yaml: document 1: kind: required"},
		{"unknown kind", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n", "e.yaml: document 1 (Pod x): kind: unknown kind \"Pod\" (supported: VirtualService, DestinationRule, ServiceEntry, WorkloadEntry, Gateway, Sidecar, PeerAuthentication, RequestAuthentication, AuthorizationPolicy, Service, Workload, Alias, Delegation, Anchor, CertificateAuthority, Export, ExtensionProvider)"},
		{"kind spelling", "apiVersion: networking.istio.io/v1\nkind: virtualservice\nmetadata: {name: x}\n", "e.yaml: document 1 (VirtualService x): kind: \"virtualservice\" must be written \"VirtualService\""},
		{"wrong api version", "apiVersion: security.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\n", "e.yaml: document 1 (VirtualService x): apiVersion: \"security.istio.io/v1\" is not valid for VirtualService (use networking.istio.io/v1, networking.istio.io/v1beta1, networking.istio.io/v1alpha3)"},
		{"missing api version", "kind: Service\nmetadata: {name: x}\n", "e.yaml: document 1 (Service x): apiVersion: required (a string such as \"canton.dev/v1\")"},
		{"unknown top-level field", vsDoc(okVS) + "state: {}\n", "e.yaml: document 1 (VirtualService reviews): state: unknown field \"state\" (allowed: apiVersion, kind, metadata, spec, status)"},
		{"unknown metadata field", "apiVersion: canton.dev/v1\nkind: Service\nmetadata: {name: x, generation: 3}\n", "e.yaml: document 1 (Service x): metadata.generation: unknown field \"generation\" (allowed: name, namespace, labels, annotations, resourceVersion, uid)"},
		{"missing metadata", "apiVersion: canton.dev/v1\nkind: Service\n", "e.yaml: document 1 (Service): metadata: required (with at least a name)"},
		{"missing name", "apiVersion: canton.dev/v1\nkind: Service\nmetadata: {namespace: x}\n", "e.yaml: document 1 (Service): metadata.name: required"},
		{"bad name", "apiVersion: canton.dev/v1\nkind: Service\nmetadata: {name: Web_1}\n", "e.yaml: document 1 (Service Web_1): metadata.name: \"Web_1\" is not a valid name: use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters"},
		{"bad namespace", "apiVersion: canton.dev/v1\nkind: Service\nmetadata: {name: web, namespace: Book_Info}\n", "e.yaml: document 1 (Service web): metadata.namespace: \"Book_Info.demo.mesh\" is not a valid namespace domain: use dot-separated lower-case DNS labels"},
		{"label value not string", "apiVersion: canton.dev/v1\nkind: Service\nmetadata: {name: web, labels: {version: 2}}\n", "e.yaml: document 1 (Service web): metadata.labels[\"version\"]: must be a string, not a number (quote it in YAML)"},
		{"bad label key", "apiVersion: canton.dev/v1\nkind: Service\nmetadata: {name: web, labels: {\"-x\": a}}\nspec: {ports: [{name: http, port: 80}]}\n", "e.yaml: document 1 (Service web): metadata.labels: key \"-x\": name part must be 1..63 characters of [A-Za-z0-9-_.], starting and ending with an alphanumeric"},
		{"bad label value", "apiVersion: canton.dev/v1\nkind: Service\nmetadata: {name: web, labels: {app: \"a b\"}}\nspec: {ports: [{name: http, port: 80}]}\n", "e.yaml: document 1 (Service web): metadata.labels[\"app\"]: value \"a b\" must be empty or 1..63 characters of [A-Za-z0-9-_.], starting and ending with an alphanumeric"},
		{"second document", "apiVersion: canton.dev/v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{name: http, port: 80}]}\n---\n" + vsDoc("  hosts: []\n"), "e.yaml: document 2 (VirtualService reviews): spec.hosts: at least one host is required (or http routes, for a delegate)"},
		{"delegate with gateways", vsDoc("  gateways: [gw]\n  http:\n  - route:\n    - destination: {host: reviews}\n"), "e.yaml: document 1 (VirtualService reviews): spec.gateways: a VirtualService without hosts is a delegate: the root VirtualService's gateways apply, set none"},
		{"delegate with tcp", vsDoc("  tcp:\n  - route:\n    - destination: {host: reviews}\n"), "e.yaml: document 1 (VirtualService reviews): spec: a VirtualService without hosts is a delegate: only http routes can be delegated"},
		{"delegate delegating", vsDoc("  http:\n  - delegate: {name: other}\n"), "e.yaml: document 1 (VirtualService reviews): spec.http[0].delegate: a delegate cannot delegate again (one level only)"},
		{"anchor with namespace", "apiVersion: canton.dev/v1\nkind: Anchor\nmetadata: {name: a1, namespace: bookinfo}\nspec: {address: \"127.0.0.1:1\", nodeId: 1}\n", "e.yaml: document 1 (Anchor a1): metadata.namespace: Anchor objects live in the mesh root namespace \"demo.mesh\"; leave namespace empty"},

		// Structural spec errors (from the protobuf descriptor walk).
		{"spec not an object", vsDoc("  - a\n"), "e.yaml: document 1 (VirtualService reviews): spec: must be an object, not a list"},
		{"unknown spec field", vsDoc(okVS + "  retries: {}\n"), "e.yaml: document 1 (VirtualService reviews): spec.retries: unknown field \"retries\""},
		{"unknown nested field", vsDoc("  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, version: v1}\n"), "e.yaml: document 1 (VirtualService reviews): spec.http[0].route[0].destination.version: unknown field \"version\""},
		{"field case hint", vsDoc("  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n    Timeout: 1s\n"), "e.yaml: document 1 (VirtualService reviews): spec.http[0].Timeout: unknown field \"Timeout\" (did you mean \"timeout\"?)"},
		{"wrong type", vsDoc("  hosts: reviews\n"), "e.yaml: document 1 (VirtualService reviews): spec.hosts: must be a list, not a string"},
		{"weight not a number", vsDoc("  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n      weight: half\n"), "e.yaml: document 1 (VirtualService reviews): spec.http[0].route[0].weight: must be an integer in -2147483648..2147483647, not half"},
		{"weight overflow", vsDoc("  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n      weight: 4294967296\n"), "e.yaml: document 1 (VirtualService reviews): spec.http[0].route[0].weight: 4294967296 is out of range -2147483648..2147483647"},
		{"bad enum", "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default}\nspec: {mtls: {mode: STRICTER}}\n", "e.yaml: document 1 (PeerAuthentication default): spec.mtls.mode: unknown value \"STRICTER\" (want one of UNSET, DISABLE, PERMISSIVE, STRICT)"},
		{"oneof conflict", vsDoc("  hosts: [reviews]\n  http:\n  - match:\n    - uri: {exact: /a, prefix: /b}\n    route:\n    - destination: {host: reviews}\n"), "e.yaml: document 1 (VirtualService reviews): spec.http[0].match[0].uri.prefix: cannot be set together with \"exact\" (only one of them may be set)"},
		{"duplicate field spellings", vsDoc("  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n    retries: {perTryTimeout: 1s, per_try_timeout: 2s}\n"), "e.yaml: document 1 (VirtualService reviews): spec.http[0].retries.per_try_timeout: duplicate field (also given as \"perTryTimeout\")"},
		{"bad duration", vsDoc(okVS + "    timeout: soon\n"), "e.yaml: document 1 (VirtualService reviews): spec.http[0].timeout: invalid duration \"soon\": use a number with a unit, such as \"5s\", \"100ms\" or \"1m\""},
		{"null in list", vsDoc("  hosts: [reviews, null]\n" + okVS[len("  hosts: [reviews]\n"):]), "e.yaml: document 1 (VirtualService reviews): spec.hosts[1]: null is not allowed in a list"},
		{"bad map key", "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default}\nspec:\n  selector: {matchLabels: {app: x}}\n  portLevelMtls: {http: {mode: STRICT}}\n", "e.yaml: document 1 (PeerAuthentication default): spec.portLevelMtls[\"http\"]: map key must be an integer of type uint32"},

		// VirtualService semantics.
		{"weight range", vsDoc("  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: 50\n    - destination: {host: reviews, subset: v2}\n      weight: 150\n"), "e.yaml: document 1 (VirtualService reviews): spec.http[0].route[1].weight: must be 0..100"},
		{"weight sum", vsDoc("  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: 50\n    - destination: {host: reviews, subset: v2}\n      weight: 40\n"), "e.yaml: document 1 (VirtualService reviews): spec.http[0].route: weights must sum to 100, not 90"},
		{"no routes", vsDoc("  hosts: [reviews]\n"), "e.yaml: document 1 (VirtualService reviews): spec: at least one of http, tcp or tls routes is required"},
		{"bad host", vsDoc("  hosts: [\"rev iews\"]\n  http:\n  - route:\n    - destination: {host: reviews}\n"), "e.yaml: document 1 (VirtualService reviews): spec.hosts[0]: \"rev iews\" is not a valid host name"},
		{"destination host required", vsDoc("  hosts: [reviews]\n  http:\n  - route:\n    - destination: {subset: v1}\n"), "e.yaml: document 1 (VirtualService reviews): spec.http[0].route[0].destination.host: required"},
		{"destination required", vsDoc("  hosts: [reviews]\n  http:\n  - route:\n    - weight: 100\n"), "e.yaml: document 1 (VirtualService reviews): spec.http[0].route[0].destination: required"},
		{"bad regex", vsDoc("  hosts: [reviews]\n  http:\n  - match:\n    - uri: {regex: \"/a(b\"}\n    route:\n    - destination: {host: reviews}\n"), "e.yaml: document 1 (VirtualService reviews): spec.http[0].match[0].uri.regex: invalid RE2 regular expression \"/a(b\": missing closing )"},
		{"perl regex", vsDoc("  hosts: [reviews]\n  http:\n  - match:\n    - headers: {cookie: {regex: \"(?=x)\"}}\n    route:\n    - destination: {host: reviews}\n"), "e.yaml: document 1 (VirtualService reviews): spec.http[0].match[0].headers[\"cookie\"].regex: invalid RE2 regular expression \"(?=x)\": invalid or unsupported Perl syntax"},
		{"negative timeout", vsDoc(okVS + "    timeout: -1s\n"), "e.yaml: document 1 (VirtualService reviews): spec.http[0].timeout: must be a positive duration, not -1s"},
		{"zero timeout", vsDoc(okVS + "    timeout: 0s\n"), "e.yaml: document 1 (VirtualService reviews): spec.http[0].timeout: must be a positive duration, not 0s"},
		{"fault percentage", vsDoc(okVS + "    fault: {delay: {fixedDelay: 1s, percentage: {value: 120}}}\n"), "e.yaml: document 1 (VirtualService reviews): spec.http[0].fault.delay.percentage.value: must be 0..100, not 120"},
		{"fault abort status", vsDoc(okVS + "    fault: {abort: {httpStatus: 700, percentage: {value: 10}}}\n"), "e.yaml: document 1 (VirtualService reviews): spec.http[0].fault.abort.httpStatus: 700 must be an HTTP status code 200..599"},
		{"fault delay needs duration", vsDoc(okVS + "    fault: {delay: {percentage: {value: 10}}}\n"), "e.yaml: document 1 (VirtualService reviews): spec.http[0].fault.delay.fixedDelay: required"},
		{"retries attempts", vsDoc(okVS + "    retries: {attempts: -1}\n"), "e.yaml: document 1 (VirtualService reviews): spec.http[0].retries.attempts: must be >= 0"},
		{"redirect and route", vsDoc(okVS + "    redirect: {uri: /x}\n"), "e.yaml: document 1 (VirtualService reviews): spec.http[0]: redirect and route are mutually exclusive"},
		{"direct response and route", vsDoc(okVS + "    directResponse: {status: 503}\n"), "e.yaml: document 1 (VirtualService reviews): spec.http[0]: directResponse cannot be combined with route or redirect"},
		{"nothing to do", vsDoc("  hosts: [reviews]\n  http:\n  - timeout: 1s\n"), "e.yaml: document 1 (VirtualService reviews): spec.http[0]: one of route, redirect, directResponse or delegate is required"},
		{"mirror percentage", vsDoc(okVS + "    mirror: {host: reviews-shadow}\n    mirrorPercentage: {value: 101}\n"), "e.yaml: document 1 (VirtualService reviews): spec.http[0].mirrorPercentage.value: must be 0..100, not 101"},
		{"uppercase header", vsDoc("  hosts: [reviews]\n  http:\n  - match:\n    - headers: {End-User: {exact: jason}}\n    route:\n    - destination: {host: reviews}\n"), "e.yaml: document 1 (VirtualService reviews): spec.http[0].match[0].headers[\"End-User\"]: header name \"End-User\" must be lower-case"},
		{"tls route needs sni", vsDoc("  hosts: [x.com]\n  tls:\n  - match: [{port: 443}]\n    route: [{destination: {host: x.com}}]\n"), "e.yaml: document 1 (VirtualService reviews): spec.tls[0].match[0].sniHosts: at least one SNI host is required"},

		// DestinationRule.
		{"dr host required", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {subsets: [{name: v1}]}\n", "e.yaml: document 1 (DestinationRule r): spec.host: required"},
		{"dr subset name", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: reviews, subsets: [{name: V1}]}\n", "e.yaml: document 1 (DestinationRule r): spec.subsets[0].name: \"V1\" must be a DNS-1123 label (lower-case letters, digits, '-')"},
		{"dr subset duplicate", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: reviews, subsets: [{name: v1}, {name: v1}]}\n", "e.yaml: document 1 (DestinationRule r): spec.subsets[1].name: duplicate subset name \"v1\" (also subsets[0])"},
		{"dr negative pool", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: reviews, trafficPolicy: {connectionPool: {http: {http1MaxPendingRequests: -1}}}}\n", "e.yaml: document 1 (DestinationRule r): spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests: must be >= 0"},
		{"dr ejection percent", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: reviews, subsets: [{name: v1, trafficPolicy: {outlierDetection: {maxEjectionPercent: 101}}}]}\n", "e.yaml: document 1 (DestinationRule r): spec.subsets[0].trafficPolicy.outlierDetection.maxEjectionPercent: must be 0..100"},
		{"dr lb consistent", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: reviews, trafficPolicy: {loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}}}\n", "e.yaml: document 1 (DestinationRule r): spec.trafficPolicy.loadBalancer.simple: cannot be set together with \"consistentHash\" (only one of them may be set)"},
		{"dr warmup with hash", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: reviews, trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true}, warmupDurationSecs: 10s}}}\n", "e.yaml: document 1 (DestinationRule r): spec.trafficPolicy.loadBalancer: warmup is only supported with the ROUND_ROBIN and LEAST_REQUEST policies, not consistentHash"},
		{"dr locality weights", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: reviews, trafficPolicy: {loadBalancer: {localityLbSetting: {distribute: [{from: a/*, to: {a/*: 70, b/*: 20}}]}}}}\n", "e.yaml: document 1 (DestinationRule r): spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to: weights must sum to 100, not 90"},
		{"dr port level duplicate", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: reviews, trafficPolicy: {portLevelSettings: [{port: {number: 80}}, {port: {number: 80}}]}}\n", "e.yaml: document 1 (DestinationRule r): spec.trafficPolicy.portLevelSettings[1].port.number: duplicate port 80 (also portLevelSettings[0])"},

		// ServiceEntry, WorkloadEntry, Gateway, Sidecar.
		{"se hosts", "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: e}\nspec: {ports: [{number: 80, name: http}]}\n", "e.yaml: document 1 (ServiceEntry e): spec.hosts: at least one host is required"},
		{"se port range", "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: e}\nspec: {hosts: [a.com], ports: [{number: 70000, name: http}]}\n", "e.yaml: document 1 (ServiceEntry e): spec.ports[0].number: port 70000 must be 1..65535"},
		{"se port unique", "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: e}\nspec: {hosts: [a.com], ports: [{number: 80, name: http}, {number: 80, name: http2}]}\n", "e.yaml: document 1 (ServiceEntry e): spec.ports[1].number: duplicate port 80 (also ports[0])"},
		{"se static needs endpoints", "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: e}\nspec: {hosts: [a.com], resolution: STATIC}\n", "e.yaml: document 1 (ServiceEntry e): spec.endpoints: resolution STATIC needs endpoints or a workloadSelector"},
		{"se static needs ips", "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: e}\nspec: {hosts: [a.com], resolution: STATIC, endpoints: [{address: db.internal}]}\n", "e.yaml: document 1 (ServiceEntry e): spec.endpoints[0].address: \"db.internal\" must be an IP address with resolution STATIC"},
		{"se dns wildcard", "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: e}\nspec: {hosts: [\"*.a.com\"], resolution: DNS}\n", "e.yaml: document 1 (ServiceEntry e): spec.hosts: resolution DNS without endpoints cannot resolve wildcard hosts"},
		{"se none with endpoints", "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: e}\nspec: {hosts: [a.com], resolution: NONE, endpoints: [{address: 10.0.0.1}]}\n", "e.yaml: document 1 (ServiceEntry e): spec.endpoints: endpoints are not used with resolution NONE; use STATIC or DNS"},
		{"se endpoint port name", "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: e}\nspec: {hosts: [a.com], ports: [{number: 80, name: http}], resolution: STATIC, endpoints: [{address: 10.0.0.1, ports: {grpc: 8080}}]}\n", "e.yaml: document 1 (ServiceEntry e): spec.endpoints[0].ports[\"grpc\"]: no port named \"grpc\" in spec.ports"},
		{"we address", "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: w}\nspec: {labels: {app: x}}\n", "e.yaml: document 1 (WorkloadEntry w): spec.address: required (unless network is set)"},
		{"gw servers", "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec: {selector: {istio: ingressgateway}}\n", "e.yaml: document 1 (Gateway g): spec.servers: at least one server is required"},
		{"gw hosts", "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec: {servers: [{port: {number: 80, name: http, protocol: HTTP}}]}\n", "e.yaml: document 1 (Gateway g): spec.servers[0].hosts: at least one host is required"},
		{"gw port", "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec: {servers: [{hosts: [\"*\"]}]}\n", "e.yaml: document 1 (Gateway g): spec.servers[0].port: required"},
		{"gw https needs tls", "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec: {servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: [\"*\"]}]}\n", "e.yaml: document 1 (Gateway g): spec.servers[0].tls: required for protocol HTTPS"},
		{"sidecar egress host form", "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default}\nspec: {egress: [{hosts: [reviews.bookinfo.svc.cluster.local]}]}\n", "e.yaml: document 1 (Sidecar default): spec.egress[0].hosts[0]: \"reviews.bookinfo.svc.cluster.local\" must have the form namespace/host (e.g. \"./*\" or \"istio-system/*\")"},
		{"sidecar egress namespace", "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default}\nspec: {egress: [{hosts: [\"Bad_NS/*\"]}]}\n", "e.yaml: document 1 (Sidecar default): spec.egress[0].hosts[0]: \"Bad_NS/*\": namespace \"Bad_NS\" must be \"*\", \".\", \"~\" or a namespace"},

		// Security kinds.
		{"ap action", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {action: PERMIT}\n", "e.yaml: document 1 (AuthorizationPolicy p): spec.action: unknown value \"PERMIT\" (want one of ALLOW, DENY, AUDIT, CUSTOM)"},
		{"ap custom provider", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {action: CUSTOM, rules: [{}]}\n", "e.yaml: document 1 (AuthorizationPolicy p): spec.provider.name: required when action is CUSTOM"},
		{"ap provider without custom", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {action: DENY, provider: {name: ext}}\n", "e.yaml: document 1 (AuthorizationPolicy p): spec.provider: only allowed when action is CUSTOM"},
		{"ap empty value", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {rules: [{from: [{source: {principals: [\"\"]}}]}]}\n", "e.yaml: document 1 (AuthorizationPolicy p): spec.rules[0].from[0].source.principals[0]: must not be empty"},
		{"ap empty source", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {rules: [{from: [{source: {}}]}]}\n", "e.yaml: document 1 (AuthorizationPolicy p): spec.rules[0].from[0].source: must set at least one field"},
		{"ap bad port", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {rules: [{to: [{operation: {ports: [\"http\"]}}]}]}\n", "e.yaml: document 1 (AuthorizationPolicy p): spec.rules[0].to[0].operation.ports[0]: \"http\" must be a port number 1..65535"},
		{"ap condition values", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {rules: [{when: [{key: \"request.auth.claims[iss]\"}]}]}\n", "e.yaml: document 1 (AuthorizationPolicy p): spec.rules[0].when[0]: one of values or notValues is required"},
		{"ap selector and targetRefs", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {selector: {matchLabels: {app: x}}, targetRefs: [{kind: Gateway, name: gw}]}\n", "e.yaml: document 1 (AuthorizationPolicy p): spec: selector and targetRef/targetRefs are mutually exclusive"},
		{"ap bad ip block", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {rules: [{from: [{source: {ipBlocks: [10.0.0.0/33]}}]}]}\n", "e.yaml: document 1 (AuthorizationPolicy p): spec.rules[0].from[0].source.ipBlocks[0]: \"10.0.0.0/33\" is not a valid CIDR prefix"},
		{"pa port level needs selector", "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default}\nspec: {portLevelMtls: {8080: {mode: DISABLE}}}\n", "e.yaml: document 1 (PeerAuthentication default): spec.portLevelMtls: requires a selector with matchLabels (port-level settings apply to selected workloads only)"},
		{"pa port range", "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default}\nspec: {selector: {matchLabels: {app: x}}, portLevelMtls: {0: {mode: DISABLE}}}\n", "e.yaml: document 1 (PeerAuthentication default): spec.portLevelMtls[\"0\"]: port 0 must be 1..65535"},
		{"ra issuer", "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt}\nspec: {jwtRules: [{jwksUri: \"https://example.com/jwks.json\"}]}\n", "e.yaml: document 1 (RequestAuthentication jwt): spec.jwtRules[0].issuer: required"},
		{"ra jwks", "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt}\nspec: {jwtRules: [{issuer: me}]}\n", "e.yaml: document 1 (RequestAuthentication jwt): spec.jwtRules[0]: one of jwksUri or jwks is required"},
		{"ra jwks both", "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt}\nspec: {jwtRules: [{issuer: me, jwksUri: \"https://a/j\", jwks: \"{}\"}]}\n", "e.yaml: document 1 (RequestAuthentication jwt): spec.jwtRules[0]: jwksUri and jwks are mutually exclusive"},

		// Native kinds.
		{"svc unknown field", "apiVersion: canton.dev/v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{name: http, port: 80, targetPort: 8080}]}\n", "e.yaml: document 1 (Service web): spec.ports[0].targetPort: unknown field \"targetPort\" (known fields: name, port, protocol)"},
		{"svc port range", "apiVersion: canton.dev/v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{name: http, port: 0}]}\n", "e.yaml: document 1 (Service web): spec.ports[0].port: port 0 must be 1..65535"},
		{"svc protocol", "apiVersion: canton.dev/v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{name: http, port: 80, protocol: UDP}]}\n", "e.yaml: document 1 (Service web): spec.ports[0].protocol: \"UDP\" must be one of HTTP, HTTP2, GRPC, TCP, TLS"},
		{"svc port type", "apiVersion: canton.dev/v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{name: http, port: \"80\"}]}\n", "e.yaml: document 1 (Service web): spec.ports[0].port: must be a number, not a string"},
		{"svc no ports", "apiVersion: canton.dev/v1\nkind: Service\nmetadata: {name: web}\nspec: {}\n", "e.yaml: document 1 (Service web): spec.ports: at least one port is required"},
		{"wl address", "apiVersion: canton.dev/v1\nkind: Workload\nmetadata: {name: w}\nspec: {service: web, address: localhost, port: 80, lease: 1}\n", "e.yaml: document 1 (Workload w): spec.address: \"localhost\" must be an IP address"},
		{"wl lease", "apiVersion: canton.dev/v1\nkind: Workload\nmetadata: {name: w}\nspec: {service: web, address: 127.0.0.1, port: 80}\n", "e.yaml: document 1 (Workload w): spec.lease: required (the ID of the lease the workload lives under)"},
		{"wl gateway proxy", "apiVersion: canton.dev/v1\nkind: Workload\nmetadata: {name: w}\nspec: {service: web, address: 127.0.0.1, port: 80, lease: 1, gateway: true}\n", "e.yaml: document 1 (Workload w): spec.proxy: required for a gateway (the ID of the proxy that runs it: only that proxy gets its gateway configuration)"},
		{"wl gateway type", "apiVersion: canton.dev/v1\nkind: Workload\nmetadata: {name: w}\nspec: {service: web, address: 127.0.0.1, port: 80, lease: 1, proxy: w, gateway: \"yes\"}\n", "e.yaml: document 1 (Workload w): spec.gateway: must be true or false, not a string"},
		{"alias action", "apiVersion: canton.dev/v1\nkind: Alias\nmetadata: {name: a}\nspec: {target: x.demo.mesh, actions: [resolve, delete]}\n", "e.yaml: document 1 (Alias a): spec.actions[1]: \"delete\" must be one of resolve, invoke, admin"},
		{"delegation outside", "apiVersion: canton.dev/v1\nkind: Delegation\nmetadata: {name: d, namespace: shop}\nspec: {domain: other.demo.mesh, anchors: [a1]}\n", "e.yaml: document 1 (Delegation d): spec.domain: \"other.demo.mesh\" must be a subdomain of the namespace \"shop.demo.mesh\""},
		{"delegation cert", "apiVersion: canton.dev/v1\nkind: Delegation\nmetadata: {name: d, namespace: demo.mesh}\nspec: {domain: shop.demo.mesh, anchors: [a1], caCert: nonsense}\n", "e.yaml: document 1 (Delegation d): spec.caCert: must be exactly one PEM CERTIFICATE block"},
		{"anchor address", "apiVersion: canton.dev/v1\nkind: Anchor\nmetadata: {name: a1}\nspec: {address: \"127.0.0.1\", nodeId: 1}\n", "e.yaml: document 1 (Anchor a1): spec.address: \"127.0.0.1\" must be host:port"},
		{"anchor node id", "apiVersion: canton.dev/v1\nkind: Anchor\nmetadata: {name: a1}\nspec: {address: \"127.0.0.1:7000\", nodeId: -1}\n", "e.yaml: document 1 (Anchor a1): spec.nodeId: must be an integer in 0..18446744073709551615, not -1"},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		if seen[tt.name] {
			t.Fatalf("duplicate test name %q", tt.name)
		}
		seen[tt.name] = true
		t.Run(tt.name, func(t *testing.T) {
			objs, err := Parse("e.yaml", []byte(tt.input), testMesh, testNS)
			if err == nil {
				t.Fatalf("Parse succeeded (%d objects), want error %q", len(objs), tt.want)
			}
			if objs != nil {
				t.Errorf("Parse returned objects with an error")
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got: %s\nwant: %s", err, tt.want)
			}
		})
	}
}
