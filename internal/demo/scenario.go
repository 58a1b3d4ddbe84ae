package demo

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"canton.dev/canton/examples/bookinfo"
	"canton.dev/canton/examples/bookinfo/ratingspb"
	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/resource"
)

// Check is one expected outcome of a scenario beside the measured one.
type Check struct {
	What     string // e.g. "jason → reviews v2"
	Expected string
	Measured string
	Pass     bool
}

// Report is what running a scenario found.
type Report struct {
	Scenario string
	Applied  []string      // the YAML files applied, relative to examples/bookinfo
	Settled  time.Duration // from the apply until the new behaviour showed (or the wait gave up)
	Checks   []Check
}

// scenario is one Istio task flow: the YAML it applies on top of the base
// and how it measures the outcome.
type scenario struct {
	name    string
	summary string
	files   []string // under bookinfo.Scenarios
	measure func(ctx context.Context, m *Mesh, r *Report) error
}

// Scenarios are the names --scenario accepts, in the order "all" runs them.
var Scenarios = []string{"routing", "canary", "fault", "circuit-breaking", "security"}

var scenarios = map[string]scenario{
	"routing": {
		name: "routing", summary: "requests of user jason (header end-user) go to reviews v2, everyone else's to v1",
		files:   []string{"scenarios/virtual-service-reviews-test-v2.yaml"},
		measure: measureRouting,
	},
	"canary": {
		name: "canary", summary: "half of the requests go to reviews v1, half to v3",
		files:   []string{"scenarios/virtual-service-reviews-50-v3.yaml"},
		measure: measureCanary,
	},
	"fault": {
		name: "fault", summary: "jason's calls from reviews to ratings are delayed by 2s; nobody else's",
		files:   []string{"scenarios/virtual-service-reviews-test-v2.yaml", "scenarios/virtual-service-ratings-test-delay.yaml"},
		measure: measureFault,
	},
	"circuit-breaking": {
		name: "circuit-breaking", summary: "one request in flight to ratings per caller; the excess fails fast with x-envoy-overloaded",
		files:   []string{"scenarios/destination-rule-ratings-circuit-breaker.yaml"},
		measure: measureCircuitBreaking,
	},
	"security": {
		name: "security", summary: "STRICT mTLS in bookinfo; only productpage may call reviews",
		files:   []string{"scenarios/peer-authentication-strict.yaml", "scenarios/authorization-policy-reviews.yaml"},
		measure: measureSecurity,
	},
}

// parseScenarios turns --scenario's value (a name, a comma-separated list or
// "all") into scenarios.
func parseScenarios(s string) ([]scenario, error) {
	if s == "" {
		return nil, nil
	}
	names := strings.Split(s, ",")
	if s == "all" {
		names = Scenarios
	}
	var out []scenario
	for _, n := range names {
		sc, ok := scenarios[strings.TrimSpace(n)]
		if !ok {
			return nil, fmt.Errorf("demo: --scenario %q: unknown scenario; choose one of %s or all", n, strings.Join(Scenarios, ", "))
		}
		out = append(out, sc)
	}
	return out, nil
}

// RunScenario puts the base configuration back, applies the scenario's YAML
// and measures its outcome with requests of its own.
func (m *Mesh) RunScenario(ctx context.Context, name string) (Report, error) {
	sc, ok := scenarios[name]
	if !ok {
		return Report{}, fmt.Errorf("demo: unknown scenario %q; choose one of %s", name, strings.Join(Scenarios, ", "))
	}
	r := Report{Scenario: name, Applied: sc.files}
	if err := m.Reset(ctx); err != nil {
		return r, err
	}
	var objs []resource.Object
	for _, f := range sc.files {
		o, err := parseFile(bookinfo.Scenarios, f, m.cluster.Mesh(), m.namespace)
		if err != nil {
			return r, err
		}
		objs = append(objs, o...)
	}
	if _, err := applyRetry(ctx, m.client, objs); err != nil {
		return r, fmt.Errorf("demo: scenario %s: apply: %w", name, err)
	}
	err := sc.measure(ctx, m, &r)
	return r, err
}

// Reset applies the base YAML again and deletes what scenarios add beyond
// it, so each scenario starts from "everything to v1".
func (m *Mesh) Reset(ctx context.Context) error {
	base, err := manifests(m.cluster.Mesh(), m.namespace)
	if err != nil {
		return err
	}
	if _, err := applyRetry(ctx, m.client, base); err != nil {
		return fmt.Errorf("demo: reset to the base configuration: %w", err)
	}
	inBase := map[string]bool{}
	for _, o := range base {
		inBase[o.Kind+"/"+o.Name] = true
	}
	files, err := fs.Glob(bookinfo.Scenarios, "scenarios/*.yaml")
	if err != nil {
		return err
	}
	for _, f := range files {
		objs, err := parseFile(bookinfo.Scenarios, f, m.cluster.Mesh(), m.namespace)
		if err != nil {
			return err
		}
		for _, o := range objs {
			if inBase[o.Kind+"/"+o.Name] {
				continue
			}
			if _, err := m.client.Delete(ctx, o.Kind, o.Namespace, o.Name, nil); err != nil && api.Code(err) != 5 /* NotFound */ {
				return fmt.Errorf("demo: reset: delete %s %s: %w", o.Kind, o.Name, err)
			}
		}
	}
	return nil
}

// settle samples until ok holds for a whole batch or timeout passes, and
// returns how long that took: the time the new configuration needed to reach
// the sidecars. Batches start at most every settleInterval. The measurement
// that follows uses fresh requests.
func settle(ctx context.Context, timeout time.Duration, batch func() bool) time.Duration {
	start := time.Now()
	tick := time.NewTicker(settleInterval)
	defer tick.Stop()
	for time.Since(start) < timeout && ctx.Err() == nil {
		if batch() {
			break
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	return time.Since(start)
}

// settleInterval is the shortest time between two batches of settle.
const settleInterval = 20 * time.Millisecond

func pct(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }

func measureRouting(ctx context.Context, m *Mesh, r *Report) error {
	r.Settled = settle(ctx, 15*time.Second, func() bool {
		return summarize(m.load.sample(ctx, 10, Jason, 5, 200)).Share("v2") == 1
	})
	const n = 200
	jason := summarize(m.load.sample(ctx, n, Jason, 8, 200))
	anon := summarize(m.load.sample(ctx, n, "", 8, 200))
	r.Checks = append(r.Checks,
		Check{What: "jason → reviews v2", Expected: "100%", Measured: fmt.Sprintf("%s of %d", pct(jason.Share("v2")), jason.Requests), Pass: jason.Versions["v2"] == n},
		Check{What: "others → reviews v1", Expected: "100%", Measured: fmt.Sprintf("%s of %d", pct(anon.Share("v1")), anon.Requests), Pass: anon.Versions["v1"] == n},
		Check{What: "complete pages", Expected: "100%", Measured: pct(float64(jason.OK+anon.OK) / float64(2*n)), Pass: jason.OK+anon.OK == 2*n},
	)
	return nil
}

// canaryTolerance is how far the measured v3 share may be from 50% over
// canarySamples pages: about 3.2 standard deviations of a fair coin.
const (
	canarySamples   = 1000
	canaryTolerance = 0.05
)

func measureCanary(ctx context.Context, m *Mesh, r *Report) error {
	r.Settled = settle(ctx, 15*time.Second, func() bool {
		s := summarize(m.load.sample(ctx, 20, "", 5, 200))
		return s.Versions["v3"] > 0 && s.Versions["v1"] > 0
	})
	n, tol := canarySamples, canaryTolerance
	if m.canarySamples > 0 { // tests: fewer samples, the same confidence
		n, tol = m.canarySamples, canaryTolerance*math.Sqrt(float64(canarySamples)/float64(m.canarySamples))
	}
	s := summarize(m.load.sample(ctx, n, "", 16, 1000))
	v1, v3 := s.Share("v1"), s.Share("v3")
	r.Checks = append(r.Checks,
		Check{What: "reviews v1 / v3 split", Expected: fmt.Sprintf("50%% / 50%% (± %.1f%%)", 100*tol),
			Measured: fmt.Sprintf("%s / %s of %d", pct(v1), pct(v3), s.Requests),
			Pass:     s.Requests == n && abs(v3-0.5) <= tol && s.Versions["v1"]+s.Versions["v3"] == s.Requests},
		Check{What: "reviews v2", Expected: "0%", Measured: pct(s.Share("v2")), Pass: s.Versions["v2"] == 0},
		Check{What: "v3 pages show red stars", Expected: "100%", Measured: pct(s.SuccessRate()), Pass: s.OK == s.Requests},
	)
	return nil
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

const faultDelay = 2 * time.Second

func measureFault(ctx context.Context, m *Mesh, r *Report) error {
	r.Settled = settle(ctx, 15*time.Second, func() bool {
		s := summarize(m.load.sample(ctx, 1, Jason, 1, 10))
		return s.Requests > 0 && s.Quantile(0) >= faultDelay
	})
	jason := summarize(m.load.sample(ctx, 10, Jason, 10, 100))
	anon := summarize(m.load.sample(ctx, 100, "", 8, 200))
	r.Checks = append(r.Checks,
		Check{What: "jason's page (v2 → ratings)", Expected: fmt.Sprintf("≥ %s, stars shown", faultDelay),
			Measured: fmt.Sprintf("min %s, p50 %s, %d/%d complete", jason.Quantile(0).Round(time.Millisecond), jason.Quantile(0.5).Round(time.Millisecond), jason.OK, jason.Requests),
			Pass:     jason.Requests > 0 && jason.Quantile(0) >= faultDelay && jason.OK == jason.Requests},
		Check{What: "others' page", Expected: fmt.Sprintf("not delayed (all < %s)", faultDelay),
			Measured: fmt.Sprintf("p50 %s, max %s, %d/%d complete", anon.Quantile(0.5).Round(time.Millisecond), anon.Quantile(1).Round(time.Millisecond), anon.OK, anon.Requests),
			Pass:     anon.Requests > 0 && anon.Quantile(1) < faultDelay && anon.OK == anon.Requests},
	)
	return nil
}

// ratingsCalls is the outcome of calls to ratings.
type ratingsCalls struct {
	ok, overflow, other int
	firstOther          string
}

// callRatings makes n calls to ratings through the loadgen sidecar,
// concurrency at a time, with gRPC or HTTP/JSON as reviews does, and sorts
// the answers: served, rejected by a circuit breaker (x-envoy-overloaded),
// failed otherwise.
func (m *Mesh) callRatings(ctx context.Context, n, concurrency int) (ratingsCalls, error) {
	call := m.ratingsOverHTTP
	if !m.ratingsHTTP {
		conn, err := bookinfo.DialRatings(m.loadgen.w.Outbound())
		if err != nil {
			return ratingsCalls{}, err
		}
		defer conn.Close()
		rc := ratingspb.NewRatingsClient(conn)
		call = func(ctx context.Context) (bool, error) {
			var hdr, trl metadata.MD
			_, err := rc.GetRatings(ctx, &ratingspb.GetRatingsRequest{ProductId: 0}, grpc.Header(&hdr), grpc.Trailer(&trl))
			overloaded := status.Code(err) == codes.Unavailable && (len(hdr.Get("x-envoy-overloaded")) > 0 || len(trl.Get("x-envoy-overloaded")) > 0)
			return overloaded, err
		}
	}
	var mu sync.Mutex
	var out ratingsCalls
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				overloaded, err := call(cctx)
				cancel()
				mu.Lock()
				switch {
				case overloaded:
					out.overflow++
				case err == nil:
					out.ok++
				default:
					out.other++
					if out.firstOther == "" {
						out.firstOther = strings.Join(strings.Fields(err.Error()), " ")
						if len(out.firstOther) > 160 {
							out.firstOther = out.firstOther[:160] + "…"
						}
					}
				}
				mu.Unlock()
			}
		}()
	}
	for range n {
		select {
		case jobs <- struct{}{}:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
	return out, ctx.Err()
}

// ratingsOverHTTP makes one GET /ratings/0 through the loadgen sidecar.
func (m *Mesh) ratingsOverHTTP(ctx context.Context) (overloaded bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.loadgen.w.Outbound()+"/ratings/0", nil)
	if err != nil {
		return false, err
	}
	req.Host = fmt.Sprintf("%s:%d", bookinfo.Ratings, bookinfo.Port)
	resp, err := m.load.http.Do(req)
	if err != nil {
		return false, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("x-envoy-overloaded") != "" {
		return true, fmt.Errorf("HTTP %d (overloaded)", resp.StatusCode)
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return false, nil
}

func measureCircuitBreaking(ctx context.Context, m *Mesh, r *Report) error {
	var calls ratingsCalls
	var err error
	r.Settled = settle(ctx, 15*time.Second, func() bool {
		calls, err = m.callRatings(ctx, 40, 10)
		return err == nil && calls.overflow > 0
	})
	if err != nil {
		return err
	}
	const n, conc = 500, 10
	if calls, err = m.callRatings(ctx, n, conc); err != nil {
		return err
	}
	// How the caller's sidecar answers a call the breaker rejects.
	overflowAnswer := "gRPC UNAVAILABLE, x-envoy-overloaded"
	if m.ratingsHTTP {
		overflowAnswer = "HTTP 503, x-envoy-overloaded"
	}
	other := fmt.Sprint(calls.other)
	if calls.firstOther != "" {
		other += " (" + calls.firstOther + ")"
	}
	r.Checks = append(r.Checks,
		Check{What: fmt.Sprintf("%d calls to ratings, %d at a time: served", n, conc), Expected: "> 0",
			Measured: fmt.Sprint(calls.ok), Pass: calls.ok > 0},
		Check{What: "rejected at once by the breaker (" + overflowAnswer + ")", Expected: "> 0",
			Measured: fmt.Sprintf("%d (%s)", calls.overflow, pct(float64(calls.overflow)/n)), Pass: calls.overflow > 0},
		Check{What: "other failures", Expected: "0", Measured: other, Pass: calls.other == 0},
	)
	// The same calls one at a time stay under the limit.
	if calls, err = m.callRatings(ctx, 50, 1); err != nil {
		return err
	}
	r.Checks = append(r.Checks, Check{What: "50 calls one at a time", Expected: "all served",
		Measured: fmt.Sprintf("%d served, %d rejected, %d failed", calls.ok, calls.overflow, calls.other), Pass: calls.ok == 50})
	return nil
}

// securityTimeout bounds how long the security scenario waits for the
// PeerAuthentication and AuthorizationPolicy to reach reviews' sidecars.
const securityTimeout = 15 * time.Second

func measureSecurity(ctx context.Context, m *Mesh, r *Report) error {
	// A caller that is not productpage: the traffic generator's own sidecar.
	// Its calls reach reviews over mTLS with loadgen's identity, and the
	// AuthorizationPolicy, which allows only productpage, must answer 403.
	var last denial
	r.Settled = settle(ctx, securityTimeout, func() bool {
		last = m.callReviewsAsLoadgen(ctx)
		return last.denied()
	})
	const n = 20
	var denied int
	for range n {
		if last = m.callReviewsAsLoadgen(ctx); last.denied() {
			denied++
		}
	}
	measured := fmt.Sprintf("%d/%d HTTP 403 (%s)", denied, n, rbacDenied)
	if denied < n {
		measured = fmt.Sprintf("%d/%d HTTP 403; last: %s", denied, n, last)
	}
	r.Checks = append(r.Checks, Check{What: "loadgen → reviews (not productpage)", Expected: "HTTP 403 (" + rbacDenied + ")",
		Measured: measured, Pass: denied == n})

	// Plaintext straight to each reviews sidecar's inbound listener: STRICT
	// mTLS accepts the TCP connection, finds no TLS handshake and closes it
	// unanswered; the same port speaks TLS with the sidecar's identity.
	for _, in := range m.fleet.instances {
		if in.service != bookinfo.Reviews {
			continue
		}
		want := fmt.Sprintf("spiffe://%s/sa/%s", m.namespace, bookinfo.Reviews)
		var pt plaintextProbe
		settle(ctx, securityTimeout, func() bool {
			pt = probePlaintext(ctx, in.w.Inbound())
			return pt.refused && pt.identity == want
		})
		r.Checks = append(r.Checks, Check{What: "plaintext HTTP to " + in.name() + "'s inbound " + in.w.Inbound(),
			Expected: "refused: TLS only, as " + want, Measured: pt.String(), Pass: pt.refused && pt.identity == want})
	}

	s := summarize(m.load.sample(ctx, 100, "", 8, 200))
	r.Checks = append(r.Checks, Check{What: "productpage → reviews over mTLS", Expected: "100% complete pages",
		Measured: fmt.Sprintf("%s of %d", pct(s.SuccessRate()), s.Requests), Pass: s.OK == s.Requests && s.Requests > 0})
	return nil
}

// rbacDenied is the body of the proxy's 403 when an AuthorizationPolicy
// denies a request (Envoy's text).
const rbacDenied = "RBAC: access denied"

// denial is the answer to one call of loadgen to reviews.
type denial struct {
	status int    // 0: no answer
	body   string // the start of the body
	err    error
}

func (d denial) denied() bool {
	return d.err == nil && d.status == http.StatusForbidden && strings.Contains(d.body, rbacDenied)
}

func (d denial) String() string {
	if d.err != nil {
		return shortErr(d.err)
	}
	return fmt.Sprintf("HTTP %d %q", d.status, d.body)
}

// callReviewsAsLoadgen makes one GET /reviews/0 through the loadgen sidecar.
func (m *Mesh) callReviewsAsLoadgen(ctx context.Context) denial {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.loadgen.w.Outbound()+"/reviews/0", nil)
	if err != nil {
		return denial{err: err}
	}
	req.Host = fmt.Sprintf("%s:%d", bookinfo.Reviews, bookinfo.Port)
	resp, err := m.load.http.Do(req)
	if err != nil {
		return denial{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 200))
	return denial{status: resp.StatusCode, body: strings.TrimSpace(string(b)), err: err}
}

// plaintextProbe is how a sidecar's inbound listener treated a plaintext
// HTTP request, and which identity it presents to a TLS client.
type plaintextProbe struct {
	refused  bool   // the listener closed or reset the connection without answering
	outcome  string // what happened to the plaintext request
	identity string // the URI SAN of the certificate the port presents over TLS; "" if none
	tlsErr   string // why no certificate was seen
}

func (p plaintextProbe) String() string {
	if p.identity != "" {
		return p.outcome + "; TLS as " + p.identity
	}
	return p.outcome + "; no TLS certificate (" + p.tlsErr + ")"
}

// probePlaintext sends a plaintext HTTP request to addr and reads the
// answer. A STRICT mTLS listener accepts the connection (so a wrong port,
// refused at dial, does not pass), reads the request as a TLS record that is
// no handshake, and closes the connection: the client reads EOF or a reset
// and no byte of an HTTP answer. Then a TLS handshake to addr records the
// listener's certificate (the listener rejects the handshake for want of a
// client certificate).
func probePlaintext(ctx context.Context, addr string) plaintextProbe {
	var p plaintextProbe
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	d := net.Dialer{}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		p.outcome = "not connected: " + shortErr(err)
		return p
	}
	deadline, _ := ctx.Deadline()
	_ = c.SetDeadline(deadline)
	_, err = io.WriteString(c, "GET /reviews/0 HTTP/1.1\r\nHost: "+fmt.Sprintf("%s:%d", bookinfo.Reviews, bookinfo.Port)+"\r\n\r\n")
	var answer []byte
	if err == nil {
		answer, err = io.ReadAll(io.LimitReader(c, 64))
	}
	c.Close()
	switch {
	case len(answer) > 0:
		line, _, _ := strings.Cut(string(answer), "\r\n")
		p.outcome = fmt.Sprintf("answered %q", line)
	case err == nil: // io.ReadAll: EOF
		p.refused, p.outcome = true, "closed unanswered"
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		p.refused, p.outcome = true, "reset unanswered"
	default:
		p.outcome = "no answer: " + shortErr(err) // e.g. a timeout: the listener waits for more
	}

	tc := tls.Dialer{Config: &tls.Config{
		InsecureSkipVerify: true, // only the certificate is read, nothing is sent
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 {
				for _, u := range cs.PeerCertificates[0].URIs {
					p.identity = u.String()
				}
			}
			return nil
		},
	}}
	conn, err := tc.DialContext(ctx, "tcp", addr)
	if err == nil {
		conn.Close()
	} else if p.identity == "" {
		p.tlsErr = shortErr(err)
	}
	if p.identity == "" && p.tlsErr == "" {
		p.tlsErr = "the certificate names no URI"
	}
	return p
}

func shortErr(err error) string {
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(err) {
		err = u
	}
	return err.Error()
}
