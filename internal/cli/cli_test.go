package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"canton.dev/canton/internal/meshtest"
)

func TestNamespace(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "default.demo.mesh"},
		{"bookinfo", "bookinfo.demo.mesh"},
		{"Bookinfo.", "bookinfo.demo.mesh"},
		{"bookinfo.demo.mesh", "bookinfo.demo.mesh"},
		{"demo.mesh", "demo.mesh"},
		{"payments.shop", "payments.shop.demo.mesh"},
	} {
		if got := namespace(tc.in, "demo.mesh"); got != tc.want {
			t.Errorf("namespace(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParsePeers(t *testing.T) {
	got, err := parsePeers("a1=127.0.0.1:7001, a2=127.0.0.1:7002")
	if err != nil || len(got) != 2 || got[1].ID != "a2" || got[1].Address != "127.0.0.1:7002" {
		t.Fatalf("parsePeers: %+v %v", got, err)
	}
	for _, bad := range []string{"a1", "=127.0.0.1:1", "a1=", "a1=x,,"} {
		if _, err := parsePeers(bad); err == nil {
			t.Errorf("parsePeers(%q) accepted", bad)
		}
	}
}

// run runs the CLI in-process against anchor 0 of c.
func run(t *testing.T, c *meshtest.Cluster, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{"--server", c.Addr(0), "--credentials", c.AdminCredentials()}, args...)
	code := Main(full, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

func TestApplyGetDeleteLineage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := startMesh(ctx, t)
	manifests := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: bookinfo
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
`
	out, stderr, code := run(t, c, manifests, "apply", "-f", "-")
	if code != 0 {
		t.Fatalf("apply: %s", stderr)
	}
	for _, want := range []string{"virtualservice/reviews created in bookinfo", "destinationrule/reviews created in bookinfo"} {
		if !strings.Contains(out, want) {
			t.Errorf("apply output lacks %q:\n%s", want, out)
		}
	}
	out, _, code = run(t, c, manifests, "apply", "-f", "-")
	if code != 0 || !strings.Contains(out, "virtualservice/reviews unchanged") {
		t.Errorf("re-apply: %d %q", code, out)
	}
	changed := strings.Replace(manifests, "subset: v1}", "subset: v2}", 1)
	out, _, code = run(t, c, changed, "apply", "-f", "-")
	if code != 0 || !strings.Contains(out, "virtualservice/reviews configured") || !strings.Contains(out, "destinationrule/reviews unchanged") {
		t.Errorf("apply of a change: %d %q", code, out)
	}
	out, _, code = run(t, c, changed, "apply", "-f", "-", "--dry-run")
	if code != 0 || !strings.Contains(out, "unchanged (dry run)") {
		t.Errorf("dry run: %d %q", code, out)
	}

	out, stderr, code = run(t, c, "", "get", "vs", "reviews", "-n", "bookinfo", "-o", "yaml")
	if code != 0 || !strings.Contains(out, "kind: VirtualService") || !strings.Contains(out, "subset: v2") || !strings.Contains(out, "namespace: bookinfo") {
		t.Fatalf("get -o yaml: %d %s %s", code, out, stderr)
	}
	out, _, code = run(t, c, "", "get", "dr", "-A")
	if code != 0 || !strings.Contains(out, "reviews") {
		t.Fatalf("get dr -A: %d %s", code, out)
	}

	// A bad second document rejects the whole stream: the first is not committed either.
	bad := strings.Replace(manifests, "name: reviews\n  namespace: bookinfo\nspec:\n  host: reviews", "name: ratings\n  namespace: bookinfo\nspec:\n  host: reviews\n  bogus: 1", 1)
	bad = strings.Replace(bad, "name: reviews\n  namespace: bookinfo\nspec:\n  hosts", "name: details\n  namespace: bookinfo\nspec:\n  hosts", 1)
	_, stderr, code = run(t, c, bad, "apply", "-f", "-")
	if code == 0 || !strings.Contains(stderr, "<stdin>") || !strings.Contains(stderr, "bogus") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Fatalf("bad apply: code %d stderr %q", code, stderr)
	}
	if _, _, code := run(t, c, "", "get", "vs", "details", "-n", "bookinfo"); code == 0 {
		t.Fatal("the valid first document of a rejected apply was committed")
	}

	if _, stderr, code := run(t, c, "", "delete", "vs", "reviews", "-n", "bookinfo"); code != 0 {
		t.Fatalf("delete: %s", stderr)
	}
	if _, stderr, code := run(t, c, "", "get", "vs", "reviews", "-n", "bookinfo"); code == 0 || !strings.Contains(stderr, "not found") {
		t.Fatalf("get after delete: %d %q", code, stderr)
	}
	out, stderr, code = run(t, c, "", "lineage", "--verify")
	if code != 0 || !strings.Contains(out, "verified") {
		t.Fatalf("lineage --verify: %d %s %s", code, out, stderr)
	}
	out, _, _ = run(t, c, "", "lineage")
	if !regexp.MustCompile(`(?m)^\d+ +[0-9a-f]{12} +spiffe://\S+ +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z +delete VirtualService bookinfo.demo.mesh/reviews$`).MatchString(out) {
		t.Fatalf("lineage listing lacks the delete with its time:\n%s", out)
	}
	out, _, code = run(t, c, "", "status")
	if code != 0 || strings.Count(out, "leader") < 1 {
		t.Fatalf("status: %s", out)
	}
}

func TestClientErrorsAreOneLine(t *testing.T) {
	var out, errb bytes.Buffer
	code := Main([]string{"get", "vs", "--server", "", "--credentials", ""}, strings.NewReader(""), &out, &errb)
	if code == 0 || !strings.HasPrefix(errb.String(), "canton: no anchor to talk to") || strings.Count(errb.String(), "\n") != 1 {
		t.Fatalf("code %d stderr %q", code, errb.String())
	}
	errb.Reset()
	code = Main([]string{"get", "nope", "--server", "127.0.0.1:1", "--credentials", "x"}, strings.NewReader(""), &out, &errb)
	if code == 0 || !strings.Contains(errb.String(), `unknown kind "nope"`) {
		t.Fatalf("unknown kind: %q", errb.String())
	}
}

// TestLineageVerifyDetectsTamperedReplica corrupts one record stored on one
// anchor's disk (the proposer inside a Raft log entry) and checks that
// `lineage --verify` fails loudly, naming the anchors that disagree.
func TestLineageVerifyDetectsTamperedReplica(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := startMesh(ctx, t)
	vs := "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n"
	if _, stderr, code := run(t, c, vs, "apply", "-f", "-"); code != 0 {
		t.Fatal(stderr)
	}
	if out, stderr, code := run(t, c, "", "lineage", "--verify"); code != 0 || !strings.Contains(out, "[a1 a2 a3] agree") {
		t.Fatalf("verify before tampering: %s %s", out, stderr)
	}
	victim := 2
	if err := c.Stop(victim); err != nil {
		t.Fatal(err)
	}
	// An anchor that cannot be read is not verified: the check fails, naming it.
	if out, stderr, code := run(t, c, "", "lineage", "--verify"); code == 0 || !strings.Contains(stderr, "INCOMPLETE") || !strings.Contains(stderr, "[a3] could not be checked") {
		t.Fatalf("verify with a3 down: code %d out %q stderr %q", code, out, stderr)
	}
	db := filepath.Join(c.DataDir(victim), "raft.db")
	b, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.ReplaceAll(b, []byte("demo.mesh/admin/admin"), []byte("demo.mesh/admin/evil!"))
	if bytes.Equal(tampered, b) {
		t.Fatal("the admin's proposals are not in a3's raft.db")
	}
	if err := os.WriteFile(db, tampered, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(ctx, victim); err != nil {
		t.Fatalf("restart after tampering: %v", err)
	}
	var out, stderr string
	var code int
	// The restarted anchor replays its log; until it answers, verify only
	// says it could not be checked. Poll with a deadline (loaded machines).
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		out, stderr, code = run(t, c, "", "lineage", "--verify")
		if strings.Contains(stderr, "disagree") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code == 0 || !strings.Contains(stderr, "FAILED verification") || !strings.Contains(stderr, "a3") {
		t.Fatalf("verify after tampering a3: code %d out %q stderr %q", code, out, stderr)
	}
	t.Logf("detected: %s", strings.TrimSpace(stderr))
}

func TestResolveFollowsDelegationsAndAliases(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := startMesh(ctx, t, "shop")
	manifests := `apiVersion: canton.dev/v1
kind: Service
metadata: {name: cart, namespace: payments.shop}
spec:
  ports: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: canton.dev/v1
kind: Alias
metadata: {name: basket, namespace: default}
spec: {target: cart.payments.shop.demo.mesh, actions: [resolve]}
---
apiVersion: canton.dev/v1
kind: Alias
metadata: {name: loop1, namespace: default}
spec: {target: loop2.default.demo.mesh, actions: [resolve]}
---
apiVersion: canton.dev/v1
kind: Alias
metadata: {name: loop2, namespace: default}
spec: {target: loop1.default.demo.mesh, actions: [resolve]}
`
	if _, stderr, code := run(t, c, manifests, "apply", "-f", "-"); code != 0 {
		t.Fatal(stderr)
	}
	// a1 hosts only the root: it follows the zone cut to shop's anchors.
	out, stderr, code := run(t, c, "", "resolve", "cart.payments.shop")
	if code != 0 || !strings.Contains(out, "referred to:  shop.demo.mesh") || !strings.Contains(out, "answered by:  scope shop.demo.mesh") || !strings.Contains(out, "spiffe://payments.shop.demo.mesh/sa/cart") || !strings.Contains(out, "http 8080/HTTP") {
		t.Fatalf("resolve cart: %d %s %s", code, out, stderr)
	}
	out, stderr, code = run(t, c, "", "resolve", "basket.default")
	if code != 0 || !strings.Contains(out, "basket.default.demo.mesh -> cart.payments.shop.demo.mesh") {
		t.Fatalf("resolve through an alias: %d %s %s", code, out, stderr)
	}
	out, stderr, code = run(t, c, "", "resolve", "nope.payments.shop")
	if code == 0 || !strings.Contains(out, "does not exist (negative answer") {
		t.Fatalf("negative answer: %d %s %s", code, out, stderr)
	}
	if _, stderr, code = run(t, c, "", "resolve", "loop1.default"); code == 0 || !strings.Contains(stderr, "alias loop") {
		t.Fatalf("alias loop: %d %s", code, stderr)
	}
}

func TestRenameKeepsUIDAndLeavesAlias(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := startMesh(ctx, t, "shop")
	manifest := `apiVersion: canton.dev/v1
kind: Service
metadata: {name: cart, namespace: payments.shop}
spec:
  ports: [{name: http, port: 8080, protocol: HTTP}]
`
	if _, stderr, code := run(t, c, manifest, "apply", "-f", "-"); code != 0 {
		t.Fatal(stderr)
	}
	out, stderr, code := run(t, c, "", "get", "service", "cart", "-n", "payments.shop", "-o", "json")
	if code != 0 {
		t.Fatalf("get: %s", stderr)
	}
	var before struct {
		Metadata struct{ UID string } `json:"metadata"`
	}
	if err := json.Unmarshal([]byte(out), &before); err != nil || before.Metadata.UID == "" {
		t.Fatalf("get output %q: %v", out, err)
	}
	// a1 hosts only the root: the rename is forwarded to shop's anchors.
	out, stderr, code = run(t, c, "", "rename", "service", "cart", "basket", "-n", "payments.shop")
	if code != 0 || !strings.Contains(out, "uid "+before.Metadata.UID) {
		t.Fatalf("rename: %d %s %s", code, out, stderr)
	}
	out, stderr, code = run(t, c, "", "resolve", "cart.payments.shop")
	if code != 0 || !strings.Contains(out, "cart.payments.shop.demo.mesh -> basket.payments.shop.demo.mesh") ||
		!strings.Contains(out, "service:      basket.payments.shop.demo.mesh (uid "+before.Metadata.UID+")") {
		t.Fatalf("resolve the old name: %d %s %s", code, out, stderr)
	}
	out, stderr, code = run(t, c, "", "resolve", "basket.payments.shop")
	if code != 0 || !strings.Contains(out, "(uid "+before.Metadata.UID+")") {
		t.Fatalf("resolve the new name: %d %s %s", code, out, stderr)
	}
	// The new name is taken now; the old one is an alias.
	if _, stderr, code = run(t, c, "", "rename", "service", "basket", "cart", "-n", "payments.shop"); code == 0 || !strings.Contains(stderr, "Alias") {
		t.Fatalf("rename onto the alias: %d %s", code, stderr)
	}
	if _, stderr, code = run(t, c, "", "rename", "service", "nope", "x", "-n", "payments.shop"); code == 0 || !strings.Contains(stderr, "does not exist") {
		t.Fatalf("rename a missing service: %d %s", code, stderr)
	}
	if _, stderr, code = run(t, c, "", "rename", "dr", "a", "b"); code == 0 || !strings.Contains(stderr, "only services") {
		t.Fatalf("rename a DestinationRule: %d %s", code, stderr)
	}
}

// startMesh starts three in-process anchors and waits for the root scope;
// each named scope (relative to the mesh) is then created on a2 and a3 with
// the CLI and waited for.
func startMesh(ctx context.Context, t *testing.T, scopes ...string) *meshtest.Cluster {
	t.Helper()
	c, err := meshtest.Start(ctx, meshtest.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.WaitScope(ctx, c.Mesh()); err != nil {
		t.Fatal(err)
	}
	for _, sc := range scopes {
		if _, stderr, code := run(t, c, "", "scope", "create", sc, "--anchors", "a2,a3"); code != 0 {
			t.Fatal(stderr)
		}
		if err := c.WaitScope(ctx, sc+"."+c.Mesh()); err != nil {
			t.Fatal(err)
		}
	}
	return c
}
