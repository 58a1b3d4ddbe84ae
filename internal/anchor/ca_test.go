package anchor_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	"canton.dev/canton/internal/anchor"
	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/meshtest"
)

// offlineRoot writes a root CA the way an organisation's offline PKI would
// hand it over: a self-signed CA with no name constraints, its certificate
// and PKCS #8 key in two PEM files outside any anchor's data dir.
func offlineRoot(t *testing.T) (root *identity.CA, certFile, keyFile string) {
	t.Helper()
	key, err := identity.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(4242),
		Subject:               pkix.Name{Organization: []string{"example corp"}, CommonName: "example offline root"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(5 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	root = &identity.CA{Cert: cert, Key: key}
	dir := t.TempDir()
	if err := identity.SaveCA(dir, root); err != nil {
		t.Fatal(err)
	}
	return root, filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
}

func startAnchor(t *testing.T, cfg anchor.Config) *anchor.Anchor {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listener = l
	cfg.TickInterval = tick
	cfg.RequestTimeout = 3 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, err := anchor.Start(ctx, cfg)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// scopeCACerts reads the certificates of a scope's CertificateAuthority.
func scopeCACerts(ctx context.Context, cl *api.Client, scope string) ([]*x509.Certificate, uint64, error) {
	res, err := cl.Get(ctx, "CertificateAuthority", scope, "ca", "")
	if err != nil {
		return nil, 0, err
	}
	var spec struct{ Certificates, SealedKey string }
	if err := json.Unmarshal(res.Objects[0].Spec, &spec); err != nil {
		return nil, 0, err
	}
	var certs []*x509.Certificate
	rest := []byte(spec.Certificates)
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, 0, err
		}
		certs = append(certs, c)
	}
	return certs, res.Objects[0].Version, nil
}

// issue gets a workload certificate for id through the anchor at addr with the join token.
func issue(ctx context.Context, addr, token string, id identity.ID) (*identity.Credentials, error) {
	tok, err := identity.ParseJoinToken(strings.TrimSpace(token))
	if err != nil {
		return nil, err
	}
	key, err := identity.GenerateKey()
	if err != nil {
		return nil, err
	}
	csr, err := identity.NewCSR(id, key)
	if err != nil {
		return nil, err
	}
	// A token-only call: the anchor is checked against the token's root pin.
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(identity.PinnedClientTLS(tok.CAPin))))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	resp, err := apipb.NewAnchorClient(conn).IssueCertificate(ctx, &apipb.IssueCertificateRequest{Csr: csr, Token: tok.String()})
	if err != nil {
		return nil, api.Err(err)
	}
	creds := &identity.Credentials{Key: key}
	for _, der := range resp.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		creds.Chain = append(creds.Chain, c)
	}
	for _, der := range resp.Bundle {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		creds.Bundle = append(creds.Bundle, c)
	}
	return creds, nil
}

// verifiesTo checks creds' chain against root alone at now.
func verifiesTo(creds *identity.Credentials, root *x509.Certificate, now time.Time) error {
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inter := x509.NewCertPool()
	for _, c := range creds.Chain[1:] {
		inter.AddCert(c)
	}
	_, err := creds.Chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

// TestBootstrapWithOfflineRoot: with --ca-cert/--ca-key the root's key stays
// out of the data dir and out of every scope; the root scope seals an
// intermediate of it, name-constrained to the mesh; the root certificate is
// the one trust anchor of anchors, the admin, joining anchors and workloads.
func TestBootstrapWithOfflineRoot(t *testing.T) {
	root, certFile, keyFile := offlineRoot(t)
	rootKeyDER, err := x509.MarshalPKCS8PrivateKey(root.Key)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "a1")
	a1 := startAnchor(t, anchor.Config{ID: "a1", DataDir: dir, Bootstrap: true, Mesh: mesh, CACert: certFile, CAKey: keyFile})

	// The data dir holds the root certificate but nowhere the root's key.
	err = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, rootKeyDER) || bytes.Contains(b, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rootKeyDER})) {
			return fmt.Errorf("%s holds the offline root's private key", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := identity.LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if sealed.Cert.Equal(root.Cert) || len(sealed.Parents) != 1 || !sealed.Parents[0].Equal(root.Cert) {
		t.Fatalf("ca.crt: want an intermediate under the offline root, got %q under %d parents", sealed.Cert.Subject.CommonName, len(sealed.Parents))
	}
	admin, err := identity.LoadCredentials(filepath.Join(dir, "admin.credentials"))
	if err != nil {
		t.Fatal(err)
	}
	if len(admin.Bundle) != 1 || !admin.Bundle[0].Equal(root.Cert) {
		t.Fatalf("admin bundle: %d certificates, want the offline root alone", len(admin.Bundle))
	}
	if err := verifiesTo(admin, root.Cert, time.Now()); err != nil {
		t.Fatalf("admin credentials do not verify against the offline root alone: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := api.Dial(a1.Addr(), admin)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	// The root scope seals the intermediate, name-constrained to the mesh.
	var rootScope []*x509.Certificate
	eventually(t, 10*time.Second, func() error {
		rootScope, _, err = scopeCACerts(ctx, cl, mesh)
		return err
	})
	if len(rootScope) != 2 || !rootScope[0].Equal(sealed.Cert) || !rootScope[1].Equal(root.Cert) {
		t.Fatalf("root scope CA: %d certificates, want the intermediate then the offline root", len(rootScope))
	}
	if fmt.Sprint(rootScope[0].PermittedURIDomains, rootScope[0].PermittedDNSDomains) != "["+mesh+" ."+mesh+"] ["+mesh+"]" {
		t.Fatalf("root scope CA name constraints: URI %v DNS %v, want %s", rootScope[0].PermittedURIDomains, rootScope[0].PermittedDNSDomains, mesh)
	}

	// A child scope's CA chains through the mesh intermediate to the offline root.
	const shop = "shop." + mesh
	if _, err := cl.CreateScope(ctx, shop, []string{"a1"}); err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(filepath.Join(dir, "join.token"))
	if err != nil {
		t.Fatal(err)
	}
	cart := identity.WorkloadID("cart."+shop, "cart")
	var w *identity.Credentials
	eventually(t, 10*time.Second, func() error {
		w, err = issue(ctx, a1.Addr(), string(token), cart)
		return err
	})
	if len(w.Chain) != 3 || len(w.Bundle) != 1 || !w.Bundle[0].Equal(root.Cert) {
		t.Fatalf("workload credentials: chain of %d, bundle of %d; want leaf, shop CA, mesh CA and the offline root", len(w.Chain), len(w.Bundle))
	}
	if err := verifiesTo(w, root.Cert, time.Now()); err != nil {
		t.Fatalf("workload certificate does not verify against the offline root: %v", err)
	}

	// Another anchor joins with the join token (pinned to the offline root)
	// and gets a certificate under the intermediate.
	a2dir := filepath.Join(t.TempDir(), "a2")
	startAnchor(t, anchor.Config{ID: "a2", DataDir: a2dir, Join: a1.Addr(), JoinToken: string(token)})
	a2creds, err := identity.LoadCredentials(filepath.Join(a2dir, "anchor.credentials"))
	if err != nil {
		t.Fatal(err)
	}
	if err := verifiesTo(a2creds, root.Cert, time.Now()); err != nil || len(a2creds.Chain) != 2 {
		t.Fatalf("joined anchor's credentials (chain of %d): %v", len(a2creds.Chain), err)
	}
	if _, err := os.Stat(filepath.Join(a2dir, "ca.key")); err == nil {
		t.Fatal("the joined anchor holds a CA key on disk")
	}
}

func TestBootstrapRefusesABadOfflineRoot(t *testing.T) {
	_, certFile, keyFile := offlineRoot(t)
	_, otherCert, _ := offlineRoot(t)
	for name, cfg := range map[string]anchor.Config{
		"cert without key":     {CACert: certFile},
		"key of another root":  {CACert: otherCert, CAKey: keyFile},
		"missing file":         {CACert: certFile + ".nope", CAKey: keyFile},
		"key file as the cert": {CACert: keyFile, CAKey: keyFile},
	} {
		cfg.ID, cfg.DataDir, cfg.Bootstrap, cfg.Mesh = "a1", filepath.Join(t.TempDir(), "a1"), true, mesh
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Listener = l
		a, err := anchor.Start(context.Background(), cfg)
		if err == nil {
			a.Close()
			t.Errorf("%s: the anchor bootstrapped", name)
			continue
		}
		if !strings.Contains(err.Error(), "ca") {
			t.Errorf("%s: error %q does not name the CA flags", name, err)
		}
	}
}

// rotate rotates a scope's CA, retrying while the scope cannot commit (a
// young scope may still be electing).
func rotate(t *testing.T, cl *api.Client, scope string) *apipb.RotateCAResponse {
	t.Helper()
	var resp *apipb.RotateCAResponse
	eventually(t, 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		resp, err = cl.RotateCA(ctx, scope, 0)
		if c := api.Code(err); err != nil && c != codes.Unavailable && c != codes.Aborted {
			t.Fatalf("rotate CA of %s: %v", scope, err)
		}
		return err
	})
	return resp
}

// TestRotateScopeCA: a rotation replaces the scope's CA with a new one under
// the same root; certificates of the old CA still verify, new ones come from
// the new CA, and the root scope rotates too.
// shopWithCart starts a mesh with opts and a scope shop on a2 and a3, and issues a first
// certificate for cart in it with the join token; cl is a client of anchor clientOf.
func shopWithCart(ctx context.Context, t *testing.T, opts meshtest.Options, clientOf int) (c *meshtest.Cluster, cl *api.Client, token string, cart identity.ID, first *identity.Credentials) {
	t.Helper()
	c = startCluster(t, opts)
	cl = client(t, c, clientOf)
	const shop = "shop." + mesh
	if _, err := cl.CreateScope(ctx, shop, []string{"a2", "a3"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(c.DataDir(0), "join.token"))
	if err != nil {
		t.Fatal(err)
	}
	token, cart = string(b), identity.WorkloadID("cart."+shop, "cart")
	eventually(t, 10*time.Second, func() error {
		first, err = issue(ctx, c.Addr(0), token, cart)
		return err
	})
	return c, cl, token, cart, first
}

func TestRotateScopeCA(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const shop = "shop." + mesh
	c, cl, token, cart, before := shopWithCart(ctx, t, meshtest.Options{}, 1) // not the bootstrap anchor: forwarding works too
	root := before.Bundle[0]
	oldCA, version, err := scopeCACerts(ctx, cl, shop)
	if err != nil {
		t.Fatal(err)
	}

	resp := rotate(t, cl, shop)
	newCA, newVersion, err := scopeCACerts(ctx, cl, shop)
	if err != nil {
		t.Fatal(err)
	}
	if newVersion <= version || newCA[0].Equal(oldCA[0]) || newCA[0].SerialNumber.Text(16) != resp.Serial || oldCA[0].SerialNumber.Text(16) != resp.PreviousSerial {
		t.Fatalf("after rotation: version %d -> %d, serial %s -> %s (response %s -> %s)", version, newVersion,
			oldCA[0].SerialNumber.Text(16), newCA[0].SerialNumber.Text(16), resp.PreviousSerial, resp.Serial)
	}
	if fmt.Sprint(newCA[0].PermittedURIDomains) != "["+shop+" ."+shop+"]" || !newCA[len(newCA)-1].Equal(root) {
		t.Fatalf("new CA: permitted %v, chain ends at %q", newCA[0].PermittedURIDomains, newCA[len(newCA)-1].Subject.CommonName)
	}
	if err := verifiesTo(before, root, time.Now()); err != nil {
		t.Fatalf("a certificate of the old CA no longer verifies: %v", err)
	}
	after, err := issue(ctx, c.Addr(2), string(token), cart)
	if err != nil {
		t.Fatal(err)
	}
	if !after.Chain[1].Equal(newCA[0]) {
		t.Fatalf("a certificate issued after the rotation comes from %s, not the new CA %s", after.Chain[1].SerialNumber.Text(16), resp.Serial)
	}
	if err := verifiesTo(after, root, time.Now()); err != nil {
		t.Fatal(err)
	}

	// The root scope rotates too: its new CA is signed by the one sealed in it.
	rootResp := rotate(t, cl, mesh)
	rootCA, _, err := scopeCACerts(ctx, cl, mesh)
	if err != nil {
		t.Fatal(err)
	}
	if rootCA[0].SerialNumber.Text(16) != rootResp.Serial || rootCA[0].Equal(root) || !rootCA[len(rootCA)-1].Equal(root) {
		t.Fatalf("root scope after rotation: %d certificates, first %q", len(rootCA), rootCA[0].Subject.CommonName)
	}
	// A child scope rotated after that chains through the new root-scope CA.
	rotate(t, cl, shop)
	third, err := issue(ctx, c.Addr(1), string(token), cart)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifiesTo(third, root, time.Now()); err != nil || !third.Chain[2].Equal(rootCA[0]) {
		t.Fatalf("after rotating the root scope then shop: %v (chain of %d)", err, len(third.Chain))
	}
	if err := verifiesTo(before, root, time.Now()); err != nil {
		t.Fatalf("the first certificate no longer verifies: %v", err)
	}

	// A namespace is not a scope; workloads may not rotate.
	if _, err := cl.RotateCA(ctx, "cart."+shop, 0); api.Code(err) != codes.InvalidArgument {
		t.Fatalf("rotating a namespace: %v", err)
	}
	wcl, err := api.Dial(c.Addr(1), third)
	if err != nil {
		t.Fatal(err)
	}
	defer wcl.Close()
	if _, err := wcl.RotateCA(ctx, shop, 0); api.Code(err) != codes.PermissionDenied {
		t.Fatalf("a workload rotating its scope's CA: %v", err)
	}
}

// TestScopeCARenewsItself: a child scope's CA is replaced by its leader, from the parent
// scope's CA, once less than a third of its lifetime is left (here 3 s instead of a year), again
// and again: each new CA chains to the same root, lives longer than the one before, and signs
// the certificates issued after it; certificates of an earlier CA keep verifying until they
// expire.
func TestScopeCARenewsItself(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const shop = "shop." + mesh
	c, cl, token, cart, first := shopWithCart(ctx, t, meshtest.Options{ScopeCATTL: 3 * time.Second}, 0)
	root := first.Bundle[0]
	prev, _, err := scopeCACerts(ctx, cl, shop)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		var next []*x509.Certificate
		eventually(t, 10*time.Second, func() error {
			if next, _, err = scopeCACerts(ctx, cl, shop); err != nil {
				return err
			}
			if next[0].Equal(prev[0]) {
				return fmt.Errorf("round %d: scope CA %s (not after %s) not renewed yet", round, prev[0].SerialNumber.Text(16), prev[0].NotAfter)
			}
			return nil
		})
		if !next[0].NotAfter.After(prev[0].NotAfter) || !next[len(next)-1].Equal(root) ||
			fmt.Sprint(next[0].PermittedURIDomains) != "["+shop+" ."+shop+"]" {
			t.Fatalf("round %d: renewed CA not after %s (previous %s), chain ends at %q, permits %v", round,
				next[0].NotAfter, prev[0].NotAfter, next[len(next)-1].Subject.CommonName, next[0].PermittedURIDomains)
		}
		prev = next
	}
	creds, err := issue(ctx, c.Addr(1), string(token), cart)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifiesTo(creds, root, time.Now()); err != nil {
		t.Fatalf("a certificate of a renewed CA: %v", err)
	}
	if err := verifiesTo(first, root, first.Chain[0].NotAfter.Add(-time.Second)); err != nil {
		t.Fatalf("a certificate of the first CA no longer verifies within its lifetime: %v", err)
	}
}
