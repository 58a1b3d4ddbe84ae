package anchor

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
)

const (
	credentialsFile      = "anchor.credentials"
	adminCredentialsFile = "admin.credentials"
	joinTokenFile        = "join.token"

	anchorCertTTL = 365 * 24 * time.Hour
	adminCertTTL  = 365 * 24 * time.Hour
)

// bootstrap creates a new mesh in cfg.DataDir: the root CA, this anchor's
// credentials, the admin's credentials and a join token. The root scope's
// replica is started afterwards by init, with cfg.Peers as its voters.
func bootstrap(cfg Config, listenAddr string) (*meta, error) {
	peers := cfg.Peers
	if len(peers) == 0 {
		peers = []Peer{{ID: cfg.ID, Address: listenAddr}}
	}
	m := &meta{ID: cfg.ID, Mesh: cfg.Mesh, Address: listenAddr, Anchors: map[string]string{}}
	self := false
	for _, p := range peers {
		if p.ID == "" || p.Address == "" {
			return nil, fmt.Errorf("anchor: --peers: %q: want ID=HOST:PORT", p.ID+"="+p.Address)
		}
		if _, dup := m.Anchors[p.ID]; dup {
			return nil, fmt.Errorf("anchor: --peers: anchor %q listed twice", p.ID)
		}
		m.Anchors[p.ID] = p.Address
		m.RootVoters = append(m.RootVoters, p.ID)
		self = self || p.ID == cfg.ID
	}
	if !self {
		return nil, fmt.Errorf("anchor: --peers must include this anchor (%s)", cfg.ID)
	}
	if err := checkNodeIDs(m.RootVoters); err != nil {
		return nil, err
	}
	now := time.Now()
	ca, err := bootstrapCA(cfg, now)
	if err != nil {
		return nil, fmt.Errorf("anchor: bootstrap: %w", err)
	}
	if err := identity.SaveCA(cfg.DataDir, ca); err != nil {
		return nil, fmt.Errorf("anchor: bootstrap: %w", err)
	}
	issue := func(id identity.ID, ttl time.Duration, path string) error {
		key, err := identity.GenerateKey()
		if err != nil {
			return err
		}
		cert, err := ca.Issue(id, key.Public(), ttl, now, nil, nil)
		if err != nil {
			return err
		}
		c := &identity.Credentials{Chain: append([]*x509.Certificate{cert}, ca.Chain()...), Key: key, Bundle: []*x509.Certificate{ca.Root()}}
		return c.Save(path)
	}
	if err := issue(identity.AnchorID(cfg.Mesh, cfg.ID), anchorCertTTL, filepath.Join(cfg.DataDir, credentialsFile)); err != nil {
		return nil, fmt.Errorf("anchor: bootstrap: %w", err)
	}
	if err := issue(identity.AdminID(cfg.Mesh, "admin"), adminCertTTL, filepath.Join(cfg.DataDir, adminCredentialsFile)); err != nil {
		return nil, fmt.Errorf("anchor: bootstrap: %w", err)
	}
	kek, err := identity.NewKEK()
	if err != nil {
		return nil, fmt.Errorf("anchor: bootstrap: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(cfg.DataDir, kekFile), kek, 0o600); err != nil {
		return nil, fmt.Errorf("anchor: bootstrap: %w", err)
	}
	tok, err := identity.NewJoinToken(ca.Root())
	if err != nil {
		return nil, fmt.Errorf("anchor: bootstrap: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(cfg.DataDir, joinTokenFile), []byte(tok.String()+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("anchor: bootstrap: %w", err)
	}
	// anchor.json last: its presence marks a complete bootstrap.
	if err := m.save(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("anchor: bootstrap: %w", err)
	}
	return m, nil
}

// bootstrapCA returns the CA the root scope will seal, which bootstrap keeps
// in the data dir (ca.crt, ca.key) until it is sealed: a new self-signed mesh
// root, or, with --ca-cert/--ca-key, an intermediate signed by the user's
// offline root and name-constrained to the mesh. The offline root's key is
// only used here, in memory.
func bootstrapCA(cfg Config, now time.Time) (*identity.CA, error) {
	if (cfg.CACert == "") != (cfg.CAKey == "") {
		return nil, errors.New("--ca-cert and --ca-key go together")
	}
	if cfg.CACert == "" {
		return identity.NewRootCA(cfg.Mesh, now)
	}
	root, err := identity.LoadCAFiles(cfg.CACert, cfg.CAKey)
	if err != nil {
		return nil, fmt.Errorf("--ca-cert/--ca-key: %w", err)
	}
	ca, err := root.NewIntermediate(cfg.Mesh, scopeCATTL, now)
	if err != nil {
		return nil, fmt.Errorf("--ca-cert/--ca-key: the supplied CA cannot sign the mesh's CA: %w", err)
	}
	return ca, nil
}

// join asks an existing anchor for credentials, proving itself with the join
// token and checking the server against the token's CA pin.
func join(ctx context.Context, cfg Config, listenAddr string) (*meta, error) {
	tok, err := identity.ParseJoinToken(strings.TrimSpace(cfg.JoinToken))
	if err != nil {
		return nil, fmt.Errorf("anchor: --join-token: %w", err)
	}
	key, err := identity.GenerateKey()
	if err != nil {
		return nil, err
	}
	// The mesh domain is not known yet: the CSR names it once the server told us.
	conn, err := grpc.NewClient(cfg.Join, grpc.WithTransportCredentials(credentials.NewTLS(identity.PinnedClientTLS(tok.CAPin))))
	if err != nil {
		return nil, fmt.Errorf("anchor: --join %s: %w", cfg.Join, err)
	}
	defer conn.Close()
	client := apipb.NewAnchorClient(conn)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// First ask with no CSR to learn the mesh, then with the CSR.
	probe, err := client.Join(ctx, &apipb.JoinRequest{Token: tok.String(), AnchorId: cfg.ID, Address: listenAddr})
	if err != nil {
		return nil, fmt.Errorf("anchor: join %s: %w", cfg.Join, err)
	}
	csr, err := identity.NewCSR(identity.AnchorID(probe.Mesh, cfg.ID), key)
	if err != nil {
		return nil, err
	}
	resp, err := client.Join(ctx, &apipb.JoinRequest{Token: tok.String(), AnchorId: cfg.ID, Address: listenAddr, Csr: csr})
	if err != nil {
		return nil, fmt.Errorf("anchor: join %s: %w", cfg.Join, err)
	}
	creds := &identity.Credentials{Key: key}
	for _, der := range resp.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("anchor: join: bad certificate from %s: %w", cfg.Join, err)
		}
		creds.Chain = append(creds.Chain, c)
	}
	for _, der := range resp.Bundle {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("anchor: join: bad bundle from %s: %w", cfg.Join, err)
		}
		creds.Bundle = append(creds.Bundle, c)
	}
	if len(creds.Chain) == 0 || len(creds.Bundle) == 0 {
		return nil, errors.New("anchor: join: the server sent no certificate")
	}
	if err := creds.Save(filepath.Join(cfg.DataDir, credentialsFile)); err != nil {
		return nil, err
	}
	if len(resp.Kek) != identity.KEKSize {
		return nil, errors.New("anchor: join: the server sent no key-encryption key")
	}
	if err := writeFileAtomic(filepath.Join(cfg.DataDir, kekFile), resp.Kek, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(cfg.DataDir, joinTokenFile), []byte(resp.JoinToken+"\n"), 0o600); err != nil {
		return nil, err
	}
	m := &meta{ID: cfg.ID, Mesh: resp.Mesh, Address: listenAddr, Anchors: map[string]string{}, RootVoters: resp.RootVoters}
	for _, p := range resp.Anchors {
		m.Anchors[p.Id] = p.Address
	}
	m.Anchors[cfg.ID] = listenAddr
	if err := m.save(cfg.DataDir); err != nil {
		return nil, err
	}
	return m, nil
}

func checkNodeIDs(ids []string) error {
	seen := map[uint64]string{}
	for _, id := range ids {
		n := NodeID(id)
		if other, ok := seen[n]; ok {
			return fmt.Errorf("anchor IDs %q and %q hash to the same Raft node ID; rename one", other, id)
		}
		seen[n] = id
	}
	return nil
}
