package dashboard

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"canton.dev/canton/internal/resource"
	"canton.dev/canton/internal/scope"
)

// Source is what the dashboard reads. The anchor implements it from its own
// state; every method is called per request (the dashboard caches only
// scraped telemetry), must honour ctx, and may fail: the page then shows
// what it could get and says what failed.
type Source interface {
	// Mesh is the mesh's root domain, e.g. "demo.mesh".
	Mesh() string
	// Anchors lists every anchor of the address book, including the ones
	// this anchor cannot reach (Reachable false).
	Anchors(ctx context.Context) ([]Anchor, error)
	// Scopes lists the scope tree: every scope this anchor knows of.
	Scopes(ctx context.Context) ([]Scope, error)
	// Objects returns every object of the scope governing domain (all kinds,
	// all namespaces of the scope).
	Objects(ctx context.Context, domain string) ([]resource.Object, error)
	// Lineage returns the last limit records of the scope's lineage (all of
	// them when limit <= 0), oldest first.
	Lineage(ctx context.Context, domain string, limit int) ([]scope.Record, error)
	// Proxies lists the proxies connected to the mesh's anchors.
	Proxies(ctx context.Context) ([]Proxy, error)
}

// Anchor is one anchor process.
type Anchor struct {
	// ID is the anchor ID, e.g. "a1".
	ID string `json:"id"`
	// Address is host:port of its API.
	Address string `json:"address"`
	// Reachable is false when the anchor did not answer; Scopes is then
	// empty or stale and Error says why.
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	// Scopes are the replicas it hosts.
	Scopes []Replica `json:"scopes,omitempty"`
}

// Replica is one anchor's replica of one scope.
type Replica struct {
	// Domain is the scope's domain.
	Domain string `json:"domain"`
	// Role is RoleLeader, RoleFollower or RoleLearner ("" = unknown).
	Role string `json:"role"`
	// Leader is the anchor ID of the leader as this replica sees it ("" = none).
	Leader string `json:"leader,omitempty"`
	// Term is the Raft term, Applied the last applied Raft index.
	Term    uint64 `json:"term"`
	Applied uint64 `json:"applied"`
	// LineageHead is the hash of the replica's last lineage record.
	LineageHead string `json:"lineageHead,omitempty"`
}

// Replica roles.
const (
	RoleLeader   = "leader"
	RoleFollower = "follower"
	RoleLearner  = "learner"
)

// Scope is one scope (zone) of the mesh.
type Scope struct {
	// Domain is the scope's domain, e.g. "bookinfo.demo.mesh".
	Domain string `json:"domain"`
	// Parent is the parent scope's domain; "" for the root scope.
	Parent string `json:"parent,omitempty"`
	// Anchors are the IDs of the anchors replicating it (voters and learners).
	Anchors []string `json:"anchors"`
	// Leader is the leader's anchor ID; "" when there is none (no quorum) or
	// when it is not known.
	Leader string `json:"leader,omitempty"`
	// Revision is the scope's revision (the Raft index of its last change).
	Revision uint64 `json:"revision"`
}

// Proxy is one proxy connected to an anchor over xDS.
type Proxy struct {
	// ID is the proxy's node ID.
	ID string `json:"id"`
	// Service and Namespace (absolute) name the service it fronts.
	Service   string `json:"service"`
	Namespace string `json:"namespace"`
	// Labels are the workload labels, e.g. version: v2.
	Labels map[string]string `json:"labels,omitempty"`
	// Anchor is the ID of the anchor it is connected to.
	Anchor string `json:"anchor"`
	// Acked maps xDS type URL to the version last acknowledged.
	Acked map[string]string `json:"acked,omitempty"`
	// Nack is the message of the last rejection when the latest answer was
	// one; "" otherwise.
	Nack string `json:"nack,omitempty"`
	// Admin is host:port of its admin endpoint (serving /stats/prometheus);
	// "" when it has none or did not say.
	Admin string `json:"admin,omitempty"`
}

// Options configures the dashboard. The zero value is usable.
type Options struct {
	// Logger receives scrape failures at debug level. Nil: discard.
	Logger *slog.Logger
	// ScrapeInterval is how long scraped telemetry is reused; rates are
	// computed between scrapes. Zero: 2s.
	ScrapeInterval time.Duration
	// ScrapeTimeout bounds one proxy scrape. Zero: 1s.
	ScrapeTimeout time.Duration
	// ScrapeConcurrency bounds parallel scrapes. Zero: 8.
	ScrapeConcurrency int
	// RateWindow is how far back the rates, error rates and p99 look: the
	// oldest kept scrape at most this old is the baseline. Zero: 30s.
	RateWindow time.Duration
	// AllowRemoteScrape allows scraping admin addresses that are not loopback
	// IP literals. Off by default: addresses are reported by proxies, and
	// the dashboard must not become a way to make the anchor fetch anything.
	AllowRemoteScrape bool
	// Refresh is the browser's polling period. Zero: 3s; negative: no polling.
	Refresh time.Duration
	// LineageLimit is how many lineage records the scope page shows. Zero: 50.
	LineageLimit int
	// Now is the clock (tests). Nil: time.Now.
	Now func() time.Time
	// Client is the HTTP client used to scrape. Nil: a private client with
	// no proxy from the environment.
	Client *http.Client
}
