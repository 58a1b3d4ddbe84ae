package dashboard

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"canton.dev/canton/internal/resource"
)

// maxScrapeBytes bounds one /stats/prometheus response.
const maxScrapeBytes = 8 << 20

// maxHistory bounds the snapshots kept per proxy.
const maxHistory = 16

// scraper fetches the proxies' metrics, keeps a short history per proxy and
// caches the combined traffic for the scrape interval.
type scraper struct {
	log         *slog.Logger
	client      *http.Client
	interval    time.Duration
	timeout     time.Duration
	concurrency int
	window      time.Duration
	allowRemote bool
	now         func() time.Time

	mu      sync.Mutex // held across a scrape round: concurrent callers share it
	last    time.Time
	lastSet string // the proxy set (IDs and admin addresses) of the last round
	history map[string][]snapshot
	status  map[string]string // proxy ID -> "" (ok), "no admin address" or the error
	result  traffic
}

func newScraper(o Options, log *slog.Logger, now func() time.Time) *scraper {
	c := o.Client
	if c == nil {
		c = &http.Client{Transport: &http.Transport{
			Proxy:               nil, // never an environment proxy: admin ports are local
			DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     30 * time.Second,
		}}
	}
	if o.ScrapeConcurrency <= 0 {
		o.ScrapeConcurrency = 8
	}
	return &scraper{
		log: log, client: c, now: now,
		interval:    orDefault(o.ScrapeInterval, 2*time.Second),
		timeout:     orDefault(o.ScrapeTimeout, time.Second),
		window:      orDefault(o.RateWindow, 30*time.Second),
		concurrency: o.ScrapeConcurrency,
		allowRemote: o.AllowRemoteScrape,
		history:     map[string][]snapshot{},
		status:      map[string]string{},
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// traffic returns the combined traffic of proxies and each proxy's scrape
// status, scraping again when the cache is older than the interval or the
// set of proxies changed.
func (s *scraper) traffic(ctx context.Context, mesh string, proxies []Proxy) (traffic, map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := ""
	for _, p := range proxies {
		set += p.ID + "=" + p.Admin + ";"
	}
	now := s.now()
	if set == s.lastSet && !s.last.IsZero() && now.Sub(s.last) < s.interval {
		return s.result, s.status
	}
	s.round(ctx, mesh, proxies)
	s.last, s.lastSet = s.now(), set
	return s.result, s.status
}

// round scrapes every proxy once (bounded concurrency), updates the
// histories and recomputes the result. Called with s.mu held.
func (s *scraper) round(ctx context.Context, mesh string, proxies []Proxy) {
	// A scrape round outlives a cancelled page request (its result is
	// shared) but not two scrape timeouts, however many proxies wait.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*s.timeout)
	defer cancel()
	sem := make(chan struct{}, s.concurrency)
	type result struct {
		id   string
		snap snapshot
		err  string
	}
	results := make([]result, len(proxies))
	var wg sync.WaitGroup
	for i, p := range proxies {
		results[i].id = p.ID
		if p.Admin == "" {
			results[i].err = "no admin address"
			continue
		}
		if err := s.allowed(p.Admin); err != nil {
			results[i].err = err.Error()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			snap, err := s.scrape(ctx, p, mesh)
			if err != nil {
				s.log.Debug("dashboard scrape failed", "proxy", p.ID, "admin", p.Admin, "err", err)
				results[i].err = err.Error()
				return
			}
			results[i].snap = snap
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	status := map[string]string{}
	for _, r := range results {
		seen[r.id] = true
		status[r.id] = r.err
		if r.err != "" {
			continue
		}
		h := append(s.history[r.id], r.snap)
		// Keep what the window needs: drop snapshots older than the window
		// before the newest, and bound the count.
		for len(h) > 1 && (len(h) > maxHistory || r.snap.at.Sub(h[0].at) > s.window) {
			h = h[1:]
		}
		s.history[r.id] = h
	}
	for id := range s.history {
		if !seen[id] {
			delete(s.history, id)
		}
	}
	s.status = status
	s.result = combine(s.history, s.window)
}

// allowed checks that admin is a loopback IP literal and port, unless
// remote scrapes are allowed.
func (s *scraper) allowed(admin string) error {
	ap, err := netip.ParseAddrPort(admin)
	if err != nil {
		if s.allowRemote {
			if _, _, err := net.SplitHostPort(admin); err == nil {
				return nil
			}
		}
		return fmt.Errorf("admin address %q is not an IP:port", admin)
	}
	if !s.allowRemote && !ap.Addr().Unmap().IsLoopback() {
		return fmt.Errorf("admin address %s is not loopback; not scraped", admin)
	}
	return nil
}

// scrape fetches and parses one proxy's metrics.
func (s *scraper) scrape(ctx context.Context, p Proxy, mesh string) (snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.Admin+"/stats/prometheus", nil)
	if err != nil {
		return snapshot{}, fmt.Errorf("scrape %s: %w", p.Admin, err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.client.Do(req)
	if err != nil {
		return snapshot{}, fmt.Errorf("scrape %s: %w", p.Admin, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return snapshot{}, fmt.Errorf("scrape %s: status %s", p.Admin, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxScrapeBytes+1))
	if err != nil {
		return snapshot{}, fmt.Errorf("scrape %s: %w", p.Admin, err)
	}
	if len(body) > maxScrapeBytes {
		return snapshot{}, fmt.Errorf("scrape %s: response larger than %d bytes", p.Admin, maxScrapeBytes)
	}
	samples, err := parsePromText(body, map[string]bool{metricRequests: true, metricDuration: true})
	if err != nil {
		return snapshot{}, fmt.Errorf("scrape %s: %w", p.Admin, err)
	}
	self := proxyIdentity{svc: svcRef{Namespace: resource.AbsoluteNamespace(p.Namespace, mesh), Name: p.Service}, version: p.Labels["version"]}
	return aggregate(samples, self, mesh, s.now()), nil
}
