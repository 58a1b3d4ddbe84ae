package anchor_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"canton.dev/canton/internal/anchor"
	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/meshtest"
)

// openScopeCA reads and opens a scope's sealed CA with the mesh KEK of dir.
func openScopeCA(ctx context.Context, t *testing.T, cl *api.Client, dir, scope string) *identity.CA {
	t.Helper()
	kek, err := os.ReadFile(filepath.Join(dir, "kek"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := cl.Get(ctx, "CertificateAuthority", scope, "ca", "")
	if err != nil {
		t.Fatalf("CA of %s: %v", scope, err)
	}
	var spec struct{ Certificates, SealedKey string }
	if err := json.Unmarshal(res.Objects[0].Spec, &spec); err != nil {
		t.Fatal(err)
	}
	key, err := base64.StdEncoding.DecodeString(spec.SealedKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := identity.OpenCA(identity.SealedCA{Certificates: []byte(spec.Certificates), SealedKey: key}, kek)
	if err != nil {
		t.Fatalf("open CA of %s: %v", scope, err)
	}
	return ca
}

// presentedChain is the chain an anchor presents in a handshake.
func presentedChain(addr string) ([]*x509.Certificate, error) {
	conn, err := tls.Dial("tcp", addr, &tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}, InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates, nil
}

func rotateRoot(t *testing.T, cl *api.Client, req *apipb.RotateRootRequest) (*apipb.RotateRootResponse, error) {
	t.Helper()
	var resp *apipb.RotateRootResponse
	var err error
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err = cl.Raw().RotateRoot(ctx, req)
		cancel()
		if c := api.Code(api.Err(err)); (c != codes.Unavailable && c != codes.Aborted) || time.Now().After(deadline) {
			return resp, api.Err(err)
		}
	}
}

// TestRotateRoot: phase add puts {R1, R2} in every scope CA down the
// hierarchy (also a scope on an anchor outside the root scope), new
// certificates verify with either root, anchors renew under R2 and follow
// the bundle (across a restart); finish is refused before the workload TTL
// and allowed with force, after which anchors refuse a client of R1 alone.
// Only the admin may rotate the root.
func TestRotateRoot(t *testing.T) {
	c := startCluster(t, meshtest.Options{Anchors: 4, RootVoters: 3})
	// a1, which admitted a4, surely knows a4's address (the others learn it
	// only when a1 led the root scope as a4 joined).
	cl := client(t, c, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	const shop = "shop." + mesh
	eventually(t, 10*time.Second, func() error { // a4's address reaches the root scope after it joined
		_, err := cl.CreateScope(ctx, shop, []string{"a4"})
		return err
	})
	if err := c.WaitScope(ctx, shop); err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(filepath.Join(c.DataDir(0), "join.token"))
	if err != nil {
		t.Fatal(err)
	}
	cart := identity.WorkloadID("cart."+shop, "cart")
	var before *identity.Credentials
	eventually(t, 10*time.Second, func() error {
		before, err = issue(ctx, c.Addr(0), string(token), cart)
		return err
	})
	r1 := before.Bundle[0]

	// A workload may not rotate the root.
	wcl, err := api.Dial(c.Addr(1), before)
	if err != nil {
		t.Fatal(err)
	}
	defer wcl.Close()
	if _, err := wcl.Raw().RotateRoot(ctx, &apipb.RotateRootRequest{}); api.Code(api.Err(err)) != codes.PermissionDenied {
		t.Fatalf("a workload rotating the root: %v", err)
	}
	if _, err := rotateRoot(t, cl, &apipb.RotateRootRequest{Finish: true}); api.Code(err) != codes.FailedPrecondition {
		t.Fatalf("finish with no rotation in progress: %v", err)
	}

	resp, err := rotateRoot(t, cl, &apipb.RotateRootRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Bundle) != 2 || fmt.Sprint(resp.RotatedScopes) != fmt.Sprintf("[%s %s]", mesh, shop) {
		t.Fatalf("add: bundle of %d, rotated %v", len(resp.Bundle), resp.RotatedScopes)
	}
	rootCA := openScopeCA(ctx, t, cl, c.DataDir(0), mesh)
	r2 := rootCA.Root()
	if r2.Equal(r1) || !identity.InBundle(rootCA.TrustBundle(), r1) || !identity.InBundle(rootCA.TrustBundle(), r2) || len(rootCA.Cross) != 1 {
		t.Fatalf("root scope CA after add: root %q, bundle %d, cross %d", r2.Subject.CommonName, len(rootCA.TrustBundle()), len(rootCA.Cross))
	}
	shopCA := openScopeCA(ctx, t, cl, c.DataDir(0), shop)
	if !shopCA.Root().Equal(r2) || len(shopCA.TrustBundle()) != 2 {
		t.Fatalf("shop CA after add chains to %q with a bundle of %d", shopCA.Root().Subject.CommonName, len(shopCA.TrustBundle()))
	}
	// A second add while one is in progress is refused when it brings a root.
	if _, err := rotateRoot(t, cl, &apipb.RotateRootRequest{NewRootCertPem: []byte("x"), NewRootKeyPem: []byte("y")}); api.Code(err) != codes.FailedPrecondition {
		t.Fatalf("second add: %v", err)
	}

	after, err := issue(ctx, c.Addr(3), string(token), cart)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Bundle) != 2 {
		t.Fatalf("a workload got a bundle of %d roots during the rotation", len(after.Bundle))
	}
	if err := verifiesTo(after, r1, time.Now()); err != nil {
		t.Fatalf("a new certificate does not verify with the old root alone: %v", err)
	}
	if err := verifiesTo(after, r2, time.Now()); err != nil {
		t.Fatalf("a new certificate does not verify with the new root alone: %v", err)
	}
	if err := verifiesTo(before, r1, time.Now()); err != nil {
		t.Fatalf("an old certificate no longer verifies: %v", err)
	}

	// Every anchor renews its certificate under R2 (a4 through the root
	// scope's anchors), and a restarted anchor keeps the bundle.
	anchorsOnR2 := func() error {
		for i := range c.Len() {
			chain, err := presentedChain(c.Addr(i))
			if err != nil {
				return err
			}
			if !identity.ChainsTo(chain, r2, time.Now()) || !identity.ChainsTo(chain, r1, time.Now()) {
				return fmt.Errorf("anchor %s presents a chain that does not reach both roots", c.Name(i))
			}
		}
		return nil
	}
	eventually(t, 15*time.Second, anchorsOnR2)
	if err := c.Stop(3); err != nil {
		t.Fatal(err)
	}
	saved, err := identity.LoadCredentials(filepath.Join(c.DataDir(3), "anchor.credentials"))
	if err != nil {
		t.Fatal(err)
	}
	if len(saved.Bundle) != 2 {
		t.Fatalf("a4 saved a bundle of %d roots", len(saved.Bundle))
	}
	if err := c.Restart(ctx, 3); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, anchorsOnR2)
	if err := c.WaitScope(ctx, shop); err != nil { // a4, shop's only voter, leads it again
		t.Fatal(err)
	}

	// Finish: refused before the workload TTL has passed, unless forced.
	_, err = rotateRoot(t, cl, &apipb.RotateRootRequest{Finish: true})
	if api.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("finish right after add: %v", err)
	}
	fin, err := rotateRoot(t, cl, &apipb.RotateRootRequest{Finish: true, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(fin.Bundle) != 1 {
		t.Fatalf("finish left a bundle of %d", len(fin.Bundle))
	}
	if b := openScopeCA(ctx, t, cl, c.DataDir(0), shop).TrustBundle(); len(b) != 1 || !b[0].Equal(r2) {
		t.Fatalf("shop CA after finish trusts %d roots", len(b))
	}
	// Anchors (a4 too) now refuse a client whose certificate chains only to
	// R1: its handshake fails, where it used to reach the permission check.
	eventually(t, 15*time.Second, func() error {
		for i := range c.Len() {
			old, err := api.Dial(c.Addr(i), before)
			if err != nil {
				return err
			}
			_, err = old.RotateCA(ctx, shop, 0)
			old.Close()
			if api.Code(err) == codes.PermissionDenied {
				return fmt.Errorf("anchor %s still accepts a client of the old root", c.Name(i))
			}
		}
		return nil
	})
	// The join token follows: same secret, pinned to R2 now. A workload joins with it; the
	// token pinned to R1 no longer admits anyone.
	var repinned []byte
	eventually(t, 15*time.Second, func() error {
		for i := range c.Len() { // every anchor holds the token (joining anchors get a copy)
			if repinned, err = os.ReadFile(filepath.Join(c.DataDir(i), "join.token")); err != nil {
				return err
			}
			tok, err := identity.ParseJoinToken(strings.TrimSpace(string(repinned)))
			if err != nil {
				return err
			}
			if tok.CAPin != identity.SPKIPin(r2) {
				return fmt.Errorf("%s's join.token still pins the old root", c.Name(i))
			}
		}
		return nil
	})
	joined, err := issue(ctx, c.Addr(0), string(repinned), cart)
	if err != nil {
		t.Fatalf("joining with the re-pinned token: %v", err)
	}
	if err := verifiesTo(joined, r2, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := issue(ctx, c.Addr(0), string(token), cart); err == nil {
		t.Fatal("the token pinned to the retired root still admits a workload")
	}
}

// TestRotateOfflineRoot: with an offline current root, phase add needs its
// key (no anchor holds it) and an offline new root signs the root scope's CA
// without being stored; certificates issued then verify with either root.
func TestRotateOfflineRoot(t *testing.T) {
	r1, certFile, keyFile := offlineRoot(t)
	r2, certFile2, keyFile2 := offlineRoot(t)
	dir := filepath.Join(t.TempDir(), "a1")
	a1 := startAnchor(t, anchor.Config{ID: "a1", DataDir: dir, Bootstrap: true, Mesh: mesh, CACert: certFile, CAKey: keyFile})
	admin, err := identity.LoadCredentials(filepath.Join(dir, "admin.credentials"))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := api.Dial(a1.Addr(), admin)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	req := &apipb.RotateRootRequest{NewRootCertPem: read(certFile2), NewRootKeyPem: read(keyFile2)}
	if _, err := rotateRoot(t, cl, req); api.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "--current-ca-key") {
		t.Fatalf("add without the offline current root's key: %v", err)
	}
	req.CurrentRootKeyPem = read(keyFile2) // the wrong key
	if _, err := rotateRoot(t, cl, req); api.Code(err) != codes.InvalidArgument {
		t.Fatalf("add with the wrong current root key: %v", err)
	}
	req.CurrentRootKeyPem = read(keyFile)
	if _, err := rotateRoot(t, cl, req); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ca := openScopeCA(ctx, t, cl, dir, mesh)
	if !ca.Root().Equal(r2.Cert) || len(ca.Parents) != 1 || !identity.InBundle(ca.TrustBundle(), r1.Cert) {
		t.Fatalf("root scope CA: chains to %q with %d parents", ca.Root().Subject.CommonName, len(ca.Parents))
	}
	token := read(filepath.Join(dir, "join.token"))
	creds, err := issue(ctx, a1.Addr(), string(token), identity.WorkloadID("web."+mesh, "web"))
	if err != nil {
		t.Fatal(err)
	}
	for _, root := range []*x509.Certificate{r1.Cert, r2.Cert} {
		if err := verifiesTo(creds, root, time.Now()); err != nil {
			t.Fatalf("certificate issued during the rotation does not verify with %q alone: %v", root.Subject.CommonName, err)
		}
	}
	// Neither root's key was stored.
	for _, r := range []*identity.CA{r1, r2} {
		der, err := x509.MarshalPKCS8PrivateKey(r.Key)
		if err != nil {
			t.Fatal(err)
		}
		filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() && (bytes.Contains(read(path), der) || bytes.Contains(read(path), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))) {
				t.Errorf("%s holds an offline root's key", path)
			}
			return nil
		})
	}
}
