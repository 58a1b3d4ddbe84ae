package anchor

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/resolve/proof"
)

// referralStep is a proof step that followed referrals to each of domains
// (signed at signedAt, valid for ttl), each naming anchor "<first label>-1"
// and a CA "<domain> CA".
func referralStep(signedAt time.Time, ttl time.Duration, domains ...string) proof.Step {
	var s proof.Step
	parent := "demo.mesh"
	for _, d := range domains {
		label, _, _ := strings.Cut(d, ".")
		s.Referrals = append(s.Referrals, proof.Signed{Statement: proof.Statement{
			Kind: proof.KindReferral, Scope: parent, Name: d, Anchors: []string{label + "-1"},
			ChildCA: []byte(d + " CA"), SignedAt: signedAt.Unix(), TTL: uint32(ttl / time.Second),
		}})
		parent = d
	}
	return s
}

// routeOf describes the route to ns as "anchors,anchors" (hops in order).
func routeOf(t *testing.T, a *Anchor, ns string) string {
	t.Helper()
	h, hops, err := a.route(ns)
	if err != nil {
		t.Fatal(err)
	}
	if h != nil {
		return "hosted " + h.domain
	}
	var out []string
	for _, hp := range hops {
		out = append(out, strings.Join(hp.anchors, "+"))
	}
	return strings.Join(out, ",")
}

// TestRouteUsesTheDeepestLearnedReferral: an anchor hosting no scope above
// a namespace asks the anchors of the deepest referral it learned first
// while the referral is valid, and the root's voters only after them; once
// expired the root comes first (to refresh it) and the learned anchors
// after; past MaxStale the referral is forgotten. A namespace of a scope
// hosted here is answered here whatever was learned.
func TestRouteUsesTheDeepestLearnedReferral(t *testing.T) {
	a := &Anchor{
		cfg:    Config{MaxStale: time.Hour},
		meta:   &meta{ID: "w-1", Mesh: "demo.mesh", RootVoters: []string{"r1", "r2"}},
		scopes: map[string]*hosted{},
	}
	now := time.Now()
	if got := routeOf(t, a, "shop.demo.mesh"); got != "r1+r2" {
		t.Fatalf("nothing learned: route %s, want the root voters", got)
	}
	a.referrals.learn(&proof.Proof{Steps: []proof.Step{referralStep(now, 30*time.Second, "shop.demo.mesh", "pay.shop.demo.mesh")}})
	for ns, want := range map[string]string{
		"shop.demo.mesh":        "shop-1,r1+r2",
		"orders.shop.demo.mesh": "shop-1,r1+r2",
		"pay.shop.demo.mesh":    "pay-1,r1+r2",
		"eu.pay.shop.demo.mesh": "pay-1,r1+r2",
		"web.demo.mesh":         "r1+r2",
		"shopping.demo.mesh":    "r1+r2", // not below shop.demo.mesh
		"demo.mesh":             "r1+r2",
	} {
		if got := routeOf(t, a, ns); got != want {
			t.Errorf("route to %s: %s, want %s", ns, got, want)
		}
	}
	if _, _, err := a.route("orders.web.example"); err == nil {
		t.Error("route to a namespace outside the mesh: no error")
	}
	if _, ids, _ := a.governing("pay.shop.demo.mesh"); fmt.Sprint(ids) != "[pay-1 r1 r2]" {
		t.Errorf("governing pay.shop: %v, want [pay-1 r1 r2]", ids)
	}

	// Expired: the walk first, the learned anchors while it cannot be made.
	a.referrals.learn(&proof.Proof{Steps: []proof.Step{referralStep(now.Add(-time.Minute), 30*time.Second, "web.demo.mesh")}})
	if got := routeOf(t, a, "web.demo.mesh"); got != "r1+r2,web-1" {
		t.Errorf("expired referral: route %s, want the root first, then web-1", got)
	}
	// An older referral does not replace a newer one.
	a.referrals.learn(&proof.Proof{Steps: []proof.Step{referralStep(now.Add(-2*time.Minute), 30*time.Second, "shop.demo.mesh")}})
	if got := routeOf(t, a, "shop.demo.mesh"); got != "shop-1,r1+r2" {
		t.Errorf("after learning an older referral: route %s", got)
	}
	// Past MaxStale: forgotten.
	a.referrals.learn(&proof.Proof{Steps: []proof.Step{referralStep(now.Add(-2*time.Hour), 30*time.Second, "old.demo.mesh")}})
	if got := routeOf(t, a, "old.demo.mesh"); got != "r1+r2" {
		t.Errorf("referral expired past MaxStale: route %s, want the root voters alone", got)
	}
	if _, ok := a.referrals.byD["old.demo.mesh"]; ok {
		t.Error("a referral expired past MaxStale is still remembered")
	}
	// Forgetting (an answer through it was refused) goes back to the walk.
	r, _ := a.referrals.deepest("pay.shop.demo.mesh", "", now, time.Hour)
	a.referrals.forget(r)
	if got := routeOf(t, a, "pay.shop.demo.mesh"); got != "shop-1,r1+r2" {
		t.Errorf("after forgetting pay.shop: route %s, want shop's learned anchors", got)
	}
}

// TestCheckLearnedNeedsTheNamedCAAndAnchor: an answer obtained through a
// learned referral must be signed as its scope by the CA and one of the
// anchors the referral named.
func TestCheckLearnedNeedsTheNamedCAAndAnchor(t *testing.T) {
	r := &referral{domain: "shop.demo.mesh", parent: "demo.mesh", anchors: []string{"a5"}, childCA: []byte("shop CA")}
	final := func(scope, anchor, ca string) proof.Proof {
		return proof.Proof{Steps: []proof.Step{{Final: proof.Signed{
			Statement: proof.Statement{Kind: proof.KindAnswer, Scope: scope, Name: "cart." + scope, Anchor: anchor},
			Chain:     [][]byte{[]byte(ca)},
		}}}}
	}
	for _, tc := range []struct {
		p    proof.Proof
		want string // "" for accepted, else part of the error
	}{
		{final("shop.demo.mesh", "a5", "shop CA"), ""},
		{final("shop.demo.mesh", "a5", "other CA"), "another CA"},
		{final("shop.demo.mesh", "a6", "shop CA"), `anchor "a6"`},
		{final("pay.shop.demo.mesh", "a5", "shop CA"), "without a statement signed as scope shop.demo.mesh"},
		{proof.Proof{}, "empty proof"},
	} {
		err := checkLearned(&tc.p, r)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: refused: %v", tc.p.Steps, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: %v, want an error with %q", tc.p.Steps, err, tc.want)
		}
	}
	// A referral of the child's own (the answer came from deeper) counts too.
	p := proof.Proof{Steps: []proof.Step{referralStep(time.Now(), time.Minute, "shop.demo.mesh", "pay.shop.demo.mesh")}}
	p.Steps[0].Referrals = p.Steps[0].Referrals[1:] // the child's anchors start their walk at shop
	p.Steps[0].Referrals[0].Anchor = "a5"
	p.Steps[0].Referrals[0].Chain = [][]byte{[]byte("shop CA")}
	if err := checkLearned(&p, r); err != nil {
		t.Errorf("answer vouched for by shop's referral to pay.shop: %v", err)
	}
	if !slices.Equal(r.anchors, []string{"a5"}) {
		t.Fatal("checkLearned changed the referral")
	}
}

// signedReferrals is a hierarchy of real CAs (mesh root, the root scope's
// CA, shop's and pay.shop's) and referrals signed by them.
type signedReferrals struct {
	root, demo, shop, pay *identity.CA
}

func newSignedReferrals(t *testing.T, since time.Time) *signedReferrals {
	t.Helper()
	root, err := identity.NewRootCA("demo.mesh", since)
	if err != nil {
		t.Fatal(err)
	}
	h := &signedReferrals{root: root}
	for _, c := range []struct {
		ca     **identity.CA
		parent *identity.CA
		domain string
	}{{&h.demo, root, "demo.mesh"}, {&h.shop, nil, "shop.demo.mesh"}, {&h.pay, nil, "pay.shop.demo.mesh"}} {
		parent := c.parent
		switch c.domain {
		case "shop.demo.mesh":
			parent = h.demo
		case "pay.shop.demo.mesh":
			parent = h.shop
		}
		if *c.ca, err = parent.NewIntermediate(c.domain, 24*time.Hour, since); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func (h *signedReferrals) roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(h.root.Cert)
	return p
}

// referral is parent's referral to child (whose CA is childCA), naming anchor, signed at.
func (h *signedReferrals) referral(t *testing.T, parent *identity.CA, scope, child string, childCA *identity.CA, anchor string, at time.Time) proof.Signed {
	t.Helper()
	s, err := proof.Sign(parent, proof.Statement{Kind: proof.KindReferral, Scope: scope, Name: child, Anchor: "a1",
		Anchors: []string{anchor}, ChildCA: childCA.Cert.Raw, TTL: 30}, at)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// logBuffer is a logger writing JSON lines into a buffer.
func logBuffer() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewJSONHandler(&buf, nil)), &buf
}

// TestSavedReferralsVerifyAgain: the zone cuts saved by an anchor are
// loaded at start only when they verify again against the trust bundle and
// are not expired for longer than MaxStale: a tampered entry, one signed by
// the wrong scope's CA, or a file made under another mesh root is ignored
// with a log line naming the file, never trusted, never a crash.
func TestSavedReferralsVerifyAgain(t *testing.T) {
	now := time.Now()
	h := newSignedReferrals(t, now.Add(-3*time.Hour))
	dir := t.TempDir()
	path := filepath.Join(dir, referralsFile)
	log, logs := logBuffer()

	var rc referralCache
	shop := h.referral(t, h.demo, "demo.mesh", "shop.demo.mesh", h.shop, "a3", now.Add(-time.Minute)) // expired, within MaxStale
	pay := h.referral(t, h.shop, "shop.demo.mesh", "pay.shop.demo.mesh", h.pay, "a4", now)
	old := h.referral(t, h.demo, "demo.mesh", "old.demo.mesh", h.shop, "a9", now.Add(-2*time.Hour)) // past MaxStale
	rc.learn(&proof.Proof{Steps: []proof.Step{{Referrals: []proof.Signed{shop, pay}}, {Referrals: []proof.Signed{old}}}})
	rc.save(path, log)
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("after saving, the data directory holds %v, want %s alone (no temporary file left)", entries, referralsFile)
	}

	load := func(roots *x509.CertPool) (*referralCache, string) {
		t.Helper()
		logs.Reset()
		var got referralCache
		got.load(path, "demo.mesh", proof.NewVerifier(roots), now, time.Hour, log)
		var ds []string
		for d := range got.byD {
			ds = append(ds, d)
		}
		slices.Sort(ds)
		return &got, strings.Join(ds, ",")
	}
	got, ds := load(h.roots())
	if ds != "pay.shop.demo.mesh,shop.demo.mesh" || !strings.Contains(logs.String(), `"loaded":2,"expired_past_max_stale":1,"ignored":0`) {
		t.Fatalf("loaded %s, want pay.shop and shop (old.demo.mesh expired past MaxStale); log:\n%s", ds, logs)
	}
	if r, valid := got.deepest("eu.pay.shop.demo.mesh", "", now, time.Hour); r == nil || !valid || r.anchors[0] != "a4" || !bytes.Equal(r.childCA, h.pay.Cert.Raw) {
		t.Fatalf("loaded referral for pay.shop: %+v valid %v", r, valid)
	}
	if r, valid := got.deepest("shop.demo.mesh", "", now, time.Hour); r == nil || valid || r.parent != "demo.mesh" {
		t.Fatalf("loaded referral for shop: %+v valid %v, want expired (signed a minute ago, ttl 30s)", r, valid)
	}
	if _, ok := got.byD["old.demo.mesh"]; ok {
		t.Fatal("a referral expired past MaxStale was loaded")
	}

	// Another mesh root: nothing verifies.
	other := newSignedReferrals(t, now.Add(-time.Hour))
	if _, ds := load(other.roots()); ds != "" || !strings.Contains(logs.String(), path) || !strings.Contains(logs.String(), "does not verify against the mesh trust bundle") {
		t.Fatalf("under another trust bundle: loaded %q; log:\n%s", ds, logs)
	}

	// Tampered: shop's anchors changed, and pay.shop's referral re-signed as
	// if by the root scope with shop's CA.
	var f savedReferrals
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	forged := h.referral(t, h.shop, "demo.mesh", "web.demo.mesh", h.pay, "a6", now)
	for i := range f.Referrals {
		if f.Referrals[i].Name == "shop.demo.mesh" {
			f.Referrals[i].Anchors = []string{"evil"}
		}
	}
	f.Referrals = append(f.Referrals, savedReferral{Scope: forged.Scope, Name: forged.Name, Anchor: forged.Anchor, Anchors: forged.Anchors,
		ChildCA: forged.ChildCA, SignedAt: forged.SignedAt, TTL: forged.TTL, Chain: forged.Chain, Sig: forged.Sig})
	b, _ = json.Marshal(f)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, ds = load(h.roots())
	if ds != "pay.shop.demo.mesh" {
		t.Fatalf("tampered file: loaded %s, want pay.shop alone", ds)
	}
	for _, want := range []string{`"cut":"shop.demo.mesh"`, "signature by CA", `"cut":"web.demo.mesh"`, "not of scope demo.mesh", `"ignored":2`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("tampered file: no %q in the log:\n%s", want, logs)
		}
	}

	// Garbage, an unknown field, another version, a file too large: ignored
	// with a line naming the file.
	for what, content := range map[string][]byte{
		"garbage":       []byte("\x00\x01not json"),
		"unknown field": []byte(`{"version":1,"referrals":[],"trustMe":true}`),
		"version 2":     []byte(`{"version":2,"referrals":[]}`),
		"truncated":     b[:len(b)/2],
		"too large":     append(b, bytes.Repeat([]byte(" "), maxReferralsFile)...),
		"too many":      []byte(`{"version":1,"referrals":[` + strings.Repeat(`{},`, maxReferrals) + `{}]}`),
	} {
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, ds := load(h.roots()); ds != "" || !strings.Contains(logs.String(), "ignoring the saved zone cuts") || !strings.Contains(logs.String(), path) {
			t.Errorf("%s: loaded %q; log:\n%s", what, ds, logs)
		}
	}
	// No file: nothing, quietly.
	os.Remove(path)
	if _, ds := load(h.roots()); ds != "" || strings.Contains(logs.String(), "ignoring") {
		t.Errorf("no file: loaded %q; log:\n%s", ds, logs)
	}
}

// TestReferralsAreSavedInTheBackground: a new zone cut wakes the saver at
// once, a referral that was only signed again not before referralSaveEvery;
// the saver writes what is new, a forgotten cut leaves the file, and what
// changed since the last save is written when the anchor closes.
func TestReferralsAreSavedInTheBackground(t *testing.T) {
	now := time.Now()
	h := newSignedReferrals(t, now.Add(-time.Hour))
	signed := func(at time.Time) *proof.Proof {
		r := h.referral(t, h.demo, "demo.mesh", "shop.demo.mesh", h.shop, "a3", at)
		return &proof.Proof{Steps: []proof.Step{{Referrals: []proof.Signed{r}}}}
	}
	woken := func(rc *referralCache) bool {
		select {
		case <-rc.kick:
			return true
		default:
			return false
		}
	}

	// When the saver is woken (no saver runs here).
	rc := &referralCache{kick: make(chan struct{}, 1)}
	rc.learn(signed(now.Add(-10 * time.Second)))
	if !woken(rc) {
		t.Fatal("a new zone cut did not wake the saver")
	}
	rc.saved = time.Now()
	rc.learn(signed(now.Add(-5 * time.Second)))
	if w := woken(rc); w || !rc.dirty {
		t.Fatalf("a referral only signed again: woke the saver %v, dirty %v; want false (not before referralSaveEvery), true", w, rc.dirty)
	}
	rc.saved = time.Now().Add(-referralSaveEvery) // as if the last save were that old
	rc.learn(signed(now))
	if !woken(rc) {
		t.Fatal("a referral signed again referralSaveEvery after the last save did not wake the saver")
	}

	// What the saver writes.
	path := filepath.Join(t.TempDir(), referralsFile)
	log, _ := logBuffer()
	rc = &referralCache{kick: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rc.persist(ctx, path, log) }()
	t.Cleanup(func() { cancel(); <-done })
	// savedAt waits until the file holds shop's referral signed at want (0: none).
	savedAt := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			var f savedReferrals
			b, err := os.ReadFile(path)
			if err == nil {
				err = json.Unmarshal(b, &f)
			}
			var at []int64
			for _, e := range f.Referrals {
				at = append(at, e.SignedAt)
			}
			if err == nil && (want == 0 && len(at) == 0 || slices.Equal(at, []int64{want})) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the file holds referrals signed at %v (err %v), want [%d]", at, err, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	rc.learn(signed(now.Add(-10 * time.Second)))
	savedAt(now.Add(-10 * time.Second).Unix())
	r, _ := rc.deepest("shop.demo.mesh", "", now, time.Hour)
	rc.forget(r)
	savedAt(0)
	rc.learn(signed(now.Add(-5 * time.Second))) // new again: saved at once
	savedAt(now.Add(-5 * time.Second).Unix())
	rc.mu.Lock()
	rc.saved = time.Now() // the next refresh waits for the close
	rc.mu.Unlock()
	rc.learn(signed(now))
	cancel()
	<-done
	savedAt(now.Unix())
}
