package anchor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/replica"
	"canton.dev/canton/internal/xds"
)

// Peer is one initial member of the root scope, given at bootstrap.
type Peer struct {
	ID      string
	Address string
}

// Config configures an anchor. The zero value of every optional field is a
// sensible default.
type Config struct {
	ID      string // required: this anchor's ID, e.g. "a1"
	DataDir string // required: where everything durable lives
	Listen  string // host:port of the one gRPC port (API, replication, xDS)
	// Listener, when set, is used instead of listening on Listen (tests pass
	// pre-bound listeners so peers know each other's ports).
	Listener net.Listener
	HTTP     string // optional host:port for /healthz and /metrics

	// First start only (ignored when DataDir already holds an anchor):
	Bootstrap bool   // create the mesh: root CA, admin credentials, root scope
	Mesh      string // the mesh domain at bootstrap; default "demo.mesh"
	Peers     []Peer // the root scope's initial voters at bootstrap; default: this anchor alone
	Join      string // address of an existing anchor to join
	JoinToken string // the join token text (contents of join.token)
	// CACert and CAKey, at bootstrap, name PEM files of a mesh root supplied
	// by the user (an offline root; the key file is PKCS #8). Its key is used
	// once, to sign the root scope's CA (an intermediate name-constrained to
	// the mesh), and is never written to DataDir nor sealed into a scope:
	// only its certificate stays, as the trust anchor. Both or neither.
	CACert string
	CAKey  string

	TickInterval    time.Duration // Raft tick; default 100ms
	SnapshotEntries uint64        // Raft snapshot interval in entries; default 10000
	RequestTimeout  time.Duration // how long a proposal may wait; default 5s
	MaxStale        time.Duration // how long another scope's last answer is served while it is unreachable; default 1h
	ScopeCATTL      time.Duration // lifetime of the scope CAs this anchor creates and renews (not the root scope's); default 365 days
	Logger          *slog.Logger  // default: discard
}

// Anchor is a running anchor process.
type Anchor struct {
	cfg      Config
	log      *slog.Logger
	meta     *meta
	creds    *identity.Credentials // as loaded at start; tls holds the current ones
	tls      *identity.Source      // credentials presented and bundle trusted, renewed and rotated live
	book     *book
	host     *replica.Host
	trans    *replica.GRPCTransport
	grpc     *grpc.Server
	lis      net.Listener
	http     *http.Server
	httpAddr string
	peers    *peerPool
	xds      *xds.Server
	imports  *importer
	meshWide meshWide // the root namespace's policies, for scopes other than the root
	kek      []byte   // seals the scope CAs' keys in scope state

	referrals referralCache // zone cuts learned from verified answers (referrals.go)

	sealingRoot atomic.Bool // the root CA is being sealed into the root scope
	publishing  atomic.Bool // the address book is being published into the root scope
	ctx         context.Context
	cancel      context.CancelFunc
	wg          sync.WaitGroup

	mu     sync.RWMutex
	scopes map[string]*hosted // domain -> replica hosted here
	metaMu sync.Mutex         // serialises meta updates
}

// Start brings an anchor up: first-start work (bootstrap or join), storage,
// the replicas it hosts, and the API. It returns once the API is serving.
func Start(ctx context.Context, cfg Config) (*Anchor, error) {
	if cfg.ID == "" || cfg.DataDir == "" {
		return nil, errors.New("anchor: --id and --data are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Mesh == "" {
		cfg.Mesh = "demo.mesh"
	}
	if cfg.TickInterval == 0 {
		cfg.TickInterval = 100 * time.Millisecond
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("anchor: data dir: %w", err)
	}
	lis := cfg.Listener
	if lis == nil {
		if cfg.Listen == "" {
			return nil, errors.New("anchor: --listen is required")
		}
		var err error
		if lis, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("anchor: listen: %w", err)
		}
	}
	a := &Anchor{cfg: cfg, log: cfg.Logger.With("anchor", cfg.ID), lis: lis, scopes: map[string]*hosted{}}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	if err := a.init(ctx); err != nil {
		lis.Close()
		a.cancel()
		return nil, err
	}
	return a, nil
}

func (a *Anchor) init(ctx context.Context) error {
	m, err := loadMeta(a.cfg.DataDir)
	if err != nil {
		return err
	}
	switch {
	case m != nil:
		if m.ID != a.cfg.ID {
			return fmt.Errorf("anchor: data dir %s belongs to anchor %q, not %q", a.cfg.DataDir, m.ID, a.cfg.ID)
		}
		if a.cfg.Bootstrap || a.cfg.Join != "" {
			a.log.Info("data dir already initialised; resuming", "dir", a.cfg.DataDir)
		}
	case a.cfg.Bootstrap:
		if m, err = bootstrap(a.cfg, a.lis.Addr().String()); err != nil {
			return err
		}
	case a.cfg.Join != "":
		if m, err = join(ctx, a.cfg, a.lis.Addr().String()); err != nil {
			return err
		}
	default:
		return fmt.Errorf("anchor: data dir %s holds no anchor: start it with --bootstrap or --join", a.cfg.DataDir)
	}
	if a.cfg.Listener == nil && a.cfg.Listen != "" {
		m.Address = a.lis.Addr().String()
	}
	a.meta = m
	a.book = newBook(m.Anchors)
	a.book.set(m.ID, a.lis.Addr().String())

	if a.creds, err = identity.LoadCredentials(filepath.Join(a.cfg.DataDir, credentialsFile)); err != nil {
		return fmt.Errorf("anchor: %w", err)
	}
	if a.kek, err = loadKEK(a.cfg.DataDir); err != nil {
		return err
	}
	a.startReferrals() // before the scopes: their imports may need the zone cuts learned
	mesh := m.Mesh
	a.tls = identity.NewSource(a.creds)
	clientTLS := identity.ClientTLSFrom(a.tls, func(id identity.ID) error { return requireAnchor(mesh, id) })
	a.peers = newPeerPool(clientTLS)

	a.trans, err = replica.NewGRPCTransport(replica.GRPCConfig{
		NodeID:      NodeID(m.ID),
		Resolve:     a.book.nodeAddr,
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(clientTLS))},
		Logger:      a.log,
	})
	if err != nil {
		return err
	}
	a.host, err = replica.Open(replica.Config{
		NodeID:          NodeID(m.ID),
		Dir:             a.cfg.DataDir,
		Transport:       a.trans,
		TickInterval:    a.cfg.TickInterval,
		SnapshotEntries: a.cfg.SnapshotEntries,
		Logger:          a.log,
	})
	if err != nil {
		return fmt.Errorf("anchor: storage: %w", err)
	}

	a.grpc = grpc.NewServer(
		grpc.Creds(credentials.NewTLS(identity.ServerTLSFrom(a.tls))),
		grpc.ChainUnaryInterceptor(a.authUnary),
		grpc.ChainStreamInterceptor(a.authStream),
	)
	apipb.RegisterAnchorServer(a.grpc, &server{a: a})
	a.trans.Register(a.grpc)
	if err := a.startXDS(); err != nil {
		return err
	}
	a.imports = newImporter(a)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.grpc.Serve(a.lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			a.log.Error("grpc serve", "err", err)
		}
	}()
	if a.cfg.HTTP != "" {
		if err := a.serveHTTP(); err != nil {
			return err
		}
	}

	// Resume every scope this anchor hosts; a fresh root starts with its voters.
	groups, err := a.host.Groups()
	if err != nil {
		return fmt.Errorf("anchor: storage: %w", err)
	}
	for _, g := range groups {
		if a.wasRemoved(string(g)) {
			// Removed from the scope, and stopped before its replica was deleted.
			if err := a.host.DeleteGroup(g); err != nil {
				return fmt.Errorf("anchor: %w", err)
			}
			continue
		}
		if _, err := a.startScope(string(g), nil, a.parentOf(string(g))); err != nil {
			return err
		}
	}
	if len(groups) == 0 && contains(m.RootVoters, m.ID) && !a.wasRemoved(m.Mesh) {
		if _, err := a.startScope(m.Mesh, m.RootVoters, ""); err != nil {
			return err
		}
	}
	a.wg.Add(2)
	go func() {
		defer a.wg.Done()
		a.followTrust()
	}()
	go func() {
		defer a.wg.Done()
		a.followAddressBook(a.ctx)
	}()
	a.log.Info("anchor serving", "addr", a.lis.Addr().String(), "mesh", m.Mesh, "scopes", len(a.scopes))
	return nil
}

// Addr is the address of the anchor's gRPC port.
func (a *Anchor) Addr() string { return a.lis.Addr().String() }

// ID is the anchor's ID.
func (a *Anchor) ID() string { return a.meta.ID }

// Mesh is the mesh domain.
func (a *Anchor) Mesh() string { return a.meta.Mesh }

// Close stops serving, stops every replica and closes storage. Safe to call twice.
func (a *Anchor) Close() error {
	a.cancel() // ends watches and leader duties
	if a.http != nil {
		a.http.Close()
	}
	if a.trans != nil {
		a.trans.Close() // our replication streams to peers
	}
	if a.grpc != nil {
		// Let unary calls in flight finish; peers' replication streams never
		// end by themselves, so stop hard after a short grace period.
		stopped := make(chan struct{})
		go func() { a.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(200 * time.Millisecond):
			a.grpc.Stop()
			<-stopped
		}
	}
	a.wg.Wait()
	if a.peers != nil {
		a.peers.close()
	}
	var err error
	if a.host != nil {
		err = a.host.Close()
		a.host = nil
	}
	return err
}

func requireAnchor(mesh string, id identity.ID) error {
	if id.TrustDomain != mesh || !strings.HasPrefix(id.Path, "/anchor/") {
		return fmt.Errorf("peer %s is not an anchor of mesh %s", id, mesh)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
