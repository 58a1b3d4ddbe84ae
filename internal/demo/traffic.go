package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"canton.dev/canton/examples/bookinfo"
)

// Jason is the user the Istio task flows route by (header end-user).
const Jason = "jason"

// Result is one page request of the traffic generator.
type Result struct {
	At      time.Time     // when the request started
	User    string        // its end-user header; "" for none
	Status  int           // HTTP status; 0 when no response arrived
	Err     string        // why no response arrived, or why the page is unreadable
	Page    Page          // what the page shows (Status 200)
	Latency time.Duration // until the whole page arrived
}

// OK reports whether the page arrived complete: details, and reviews whose
// ratings (v2, v3) are shown.
func (r Result) OK() bool {
	return r.Status == http.StatusOK && r.Err == "" && r.Page.Details && r.Page.ReviewsVersion != "" && r.Page.Ratings != "unavailable"
}

// Page is the outcome productpage reports on its <body> element.
type Page struct {
	ReviewsVersion string // v1, v2, v3; "" when reviews failed
	Ratings        string // stars, unavailable or none
	Details        bool   // the book's details arrived
}

// ParsePage reads the outcome attributes of a product page.
func ParsePage(body []byte) (Page, error) {
	i := strings.Index(string(body), "<body ")
	if i < 0 {
		return Page{}, errors.New("product page: no <body> element")
	}
	tag := string(body[i:])
	end := strings.IndexByte(tag, '>')
	if end < 0 {
		return Page{}, errors.New("product page: unterminated <body> element")
	}
	tag = tag[:end]
	attr := func(name string) (string, error) {
		k := strings.Index(tag, " "+name+`="`)
		if k < 0 {
			return "", fmt.Errorf("product page: <body> has no %s", name)
		}
		v := tag[k+len(name)+3:]
		q := strings.IndexByte(v, '"')
		if q < 0 {
			return "", fmt.Errorf("product page: %s is not terminated", name)
		}
		return v[:q], nil
	}
	var p Page
	var err error
	if p.ReviewsVersion, err = attr(bookinfo.AttrReviewsVersion); err != nil {
		return Page{}, err
	}
	if p.ReviewsVersion != "" && !slices.Contains([]string{"v1", "v2", "v3"}, p.ReviewsVersion) {
		return Page{}, fmt.Errorf("product page: unknown reviews version %q", p.ReviewsVersion)
	}
	if p.Ratings, err = attr(bookinfo.AttrRatings); err != nil {
		return Page{}, err
	}
	if !slices.Contains([]string{"stars", "unavailable", "none"}, p.Ratings) {
		return Page{}, fmt.Errorf("product page: unknown ratings state %q", p.Ratings)
	}
	details, err := attr(bookinfo.AttrDetails)
	if err != nil {
		return Page{}, err
	}
	switch details {
	case "ok":
		p.Details = true
	case "unavailable":
	default:
		return Page{}, fmt.Errorf("product page: unknown details state %q", details)
	}
	return p, nil
}

// client fetches product pages through the traffic generator's sidecar.
type client struct {
	outbound string // the loadgen sidecar's outbound listener
	http     *http.Client
	rec      *recorder
}

func newClient(outbound string, rec *recorder) *client {
	return &client{outbound: outbound, rec: rec, http: &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}, Timeout: 15 * time.Second}}
}

// fetch requests one product page as user and records the result.
func (c *client) fetch(ctx context.Context, user string) (res Result) {
	res = Result{At: time.Now(), User: user}
	defer func() {
		res.Latency = time.Since(res.At)
		if ctx.Err() == nil { // not cut short by shutdown
			c.rec.add(res)
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.outbound+"/productpage", nil)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	req.Host = fmt.Sprintf("%s:%d", bookinfo.ProductPage, bookinfo.Port)
	if user != "" {
		req.Header.Set("end-user", user)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	res.Status = resp.StatusCode
	if err != nil {
		res.Err = err.Error()
		return res
	}
	if resp.StatusCode == http.StatusOK {
		if res.Page, err = ParsePage(body); err != nil {
			res.Err = err.Error()
		}
	}
	return res
}

// sample fetches n pages as user, at most concurrency at a time and at most
// perSecond per second, and returns the results in completion order.
func (c *client) sample(ctx context.Context, n int, user string, concurrency int, perSecond float64) []Result {
	lim := rate.NewLimiter(rate.Limit(perSecond), concurrency)
	out := make([]Result, 0, n)
	var mu sync.Mutex
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				r := c.fetch(ctx, user)
				mu.Lock()
				out = append(out, r)
				mu.Unlock()
			}
		}()
	}
	for range n {
		if lim.Wait(ctx) != nil {
			break
		}
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	return out
}

// generate sends pages at perSecond until ctx ends; every jasonEvery-th
// request (0: none) is jason's. At most workers requests are in flight;
// when they are all busy the rate drops rather than queueing.
func (c *client) generate(ctx context.Context, perSecond float64, jasonEvery, workers int) {
	lim := rate.NewLimiter(rate.Limit(perSecond), 1)
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := 0; ; i++ {
		if lim.Wait(ctx) != nil {
			return
		}
		user := ""
		if jasonEvery > 0 && i%jasonEvery == jasonEvery-1 {
			user = Jason
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c.fetch(ctx, user)
		}()
	}
}

// recorder keeps the latest results for the live summary.
type recorder struct {
	mu   sync.Mutex
	ring []Result
	next int
	n    int
}

func newRecorder(size int) *recorder { return &recorder{ring: make([]Result, size)} }

func (r *recorder) add(res Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ring[r.next] = res
	r.next = (r.next + 1) % len(r.ring)
	r.n = min(r.n+1, len(r.ring))
}

// since returns the kept results that started at or after t.
func (r *recorder) since(t time.Time) []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Result
	for i := range r.n {
		res := r.ring[(r.next-1-i+len(r.ring))%len(r.ring)]
		if res.At.Before(t) {
			continue
		}
		out = append(out, res)
	}
	return out
}

// Stats summarises results.
type Stats struct {
	Requests  int
	OK        int
	Versions  map[string]int // reviews version -> pages
	Failures  map[string]int // short reason -> requests
	Latencies []time.Duration
}

func summarize(results []Result) Stats {
	s := Stats{Versions: map[string]int{}, Failures: map[string]int{}}
	for _, r := range results {
		s.Requests++
		s.Latencies = append(s.Latencies, r.Latency)
		if r.Page.ReviewsVersion != "" {
			s.Versions[r.Page.ReviewsVersion]++
		}
		switch {
		case r.OK():
			s.OK++
		case r.Status == 0:
			s.Failures["no response"]++
		case r.Status != http.StatusOK:
			s.Failures[fmt.Sprintf("HTTP %d", r.Status)]++
		case r.Err != "":
			s.Failures["unreadable page"]++
		case !r.Page.Details:
			s.Failures["details unavailable"]++
		case r.Page.ReviewsVersion == "":
			s.Failures["reviews unavailable"]++
		default:
			s.Failures["ratings unavailable"]++
		}
	}
	slices.Sort(s.Latencies)
	return s
}

// Share is the fraction of pages served by reviews version v, 0..1.
func (s Stats) Share(v string) float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.Versions[v]) / float64(s.Requests)
}

// SuccessRate is the fraction of complete pages, 0..1.
func (s Stats) SuccessRate() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.OK) / float64(s.Requests)
}

// Quantile is the latency at q (0..1), 0 without results.
func (s Stats) Quantile(q float64) time.Duration {
	if len(s.Latencies) == 0 {
		return 0
	}
	return s.Latencies[min(len(s.Latencies)-1, int(q*float64(len(s.Latencies))))]
}
