package dashboard

import (
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"canton.dev/canton/internal/resource"
)

// Metric names read from the proxies (Istio's standard metrics).
const (
	metricRequests = "istio_requests_total"
	metricDuration = "istio_request_duration_milliseconds_bucket"
)

// maxCounter bounds accepted sample values and bucket bounds (2^53).
const maxCounter = 1 << 53

// svcRef names a service: Namespace is absolute ("bookinfo.demo.mesh").
// The zero value is "unknown" (a caller outside the mesh).
type svcRef struct {
	Namespace string
	Name      string
}

func (s svcRef) String() string {
	if s.Name == "" {
		return "unknown"
	}
	return s.Name + "." + s.Namespace
}

// callKey identifies one group of requests in one scrape.
type callKey struct {
	reporter string // "source" or "destination"
	from, to svcRef
	version  string // destination version ("" unknown)
	security string // connection_security_policy
}

// callCount accumulates requests and failed requests.
type callCount struct {
	total, errors float64
}

// histKey identifies a latency histogram.
type histKey struct {
	reporter string
	from, to svcRef
}

// histogram is a cumulative Prometheus histogram: bucket upper bound -> count.
type histogram map[float64]float64

// snapshot is what one scrape of one proxy yielded, aggregated.
type snapshot struct {
	at    time.Time
	calls map[callKey]callCount
	hists map[histKey]histogram
}

// proxyIdentity is what the dashboard knows of the scraped proxy; it fills
// in the side of a call the proxy's labels leave unknown.
type proxyIdentity struct {
	svc     svcRef
	version string
}

// aggregate turns the samples of one scrape into a snapshot.
func aggregate(samples []promSample, self proxyIdentity, mesh string, at time.Time) snapshot {
	snap := snapshot{at: at, calls: map[callKey]callCount{}, hists: map[histKey]histogram{}}
	for _, s := range samples {
		// Counters are non-negative and exact below 2^53; anything else is
		// garbage that would only poison the sums.
		if math.IsNaN(s.Value) || s.Value < 0 || s.Value > maxCounter {
			continue
		}
		reporter := s.Labels["reporter"]
		if reporter != "source" && reporter != "destination" {
			continue
		}
		from, to, version := endpoints(s.Labels, reporter, self, mesh)
		switch s.Name {
		case metricRequests:
			k := callKey{reporter: reporter, from: from, to: to, version: version, security: s.Labels["connection_security_policy"]}
			c := snap.calls[k]
			c.total += s.Value
			if isError(s.Labels) {
				c.errors += s.Value
			}
			snap.calls[k] = c
		case metricDuration:
			le, err := parsePromFloat(s.Labels["le"])
			if err != nil || math.IsNaN(le) || le < 0 || le > maxCounter && !math.IsInf(le, 1) {
				continue // latencies are never negative; absurd bounds are dropped
			}
			k := histKey{reporter: reporter, from: from, to: to}
			h := snap.hists[k]
			if h == nil {
				h = histogram{}
				snap.hists[k] = h
			}
			h[le] += s.Value
		}
	}
	return snap
}

// known returns v unless it is empty or Istio's "unknown".
func known(v string) string {
	if v == "unknown" {
		return ""
	}
	return v
}

// endpoints works out who called whom from a sample's labels. The proxy that
// reported it is the source (reporter=source) or the destination
// (reporter=destination) of the call, whatever its labels say.
func endpoints(l map[string]string, reporter string, self proxyIdentity, mesh string) (from, to svcRef, version string) {
	if reporter == "source" {
		from = self.svc
		to = destinationOf(l, mesh)
		version = known(l["destination_version"])
		if version == "" {
			version = subsetOf(l["destination_cluster"])
		}
		return from, to, version
	}
	to = self.svc
	version = known(l["destination_version"])
	if version == "" {
		version = self.version
	}
	ns := known(l["source_workload_namespace"])
	for _, name := range []string{l["source_canonical_service"], l["source_app"], l["source_workload"]} {
		if name = known(name); name != "" && ns != "" {
			return svcRef{Namespace: resource.AbsoluteNamespace(ns, mesh), Name: name}, to, version
		}
	}
	// spiffe://<namespace-domain>/sa/<account>: Canton's service accounts are service names.
	if p, ok := strings.CutPrefix(known(l["source_principal"]), "spiffe://"); ok {
		if dom, acct, ok := strings.Cut(p, "/sa/"); ok && dom != "" && acct != "" && !strings.Contains(acct, "/") {
			return svcRef{Namespace: resource.AbsoluteNamespace(dom, mesh), Name: acct}, to, version
		}
	}
	return svcRef{}, to, version
}

// destinationOf reads the destination service of a source-reported sample.
func destinationOf(l map[string]string, mesh string) svcRef {
	name, ns := known(l["destination_service_name"]), known(l["destination_service_namespace"])
	if name != "" && ns != "" {
		return svcRef{Namespace: resource.AbsoluteNamespace(ns, mesh), Name: name}
	}
	fqdn := known(l["destination_service"])
	if fqdn == "" {
		if parts := strings.Split(l["destination_cluster"], "|"); len(parts) == 4 {
			fqdn = parts[3]
		}
	}
	if n, d, ok := strings.Cut(fqdn, "."); ok {
		return svcRef{Namespace: d, Name: n}
	}
	if fqdn != "" {
		return svcRef{Name: fqdn}
	}
	return svcRef{}
}

// subsetOf extracts the subset from an Istio cluster name "outbound|port|subset|fqdn".
func subsetOf(cluster string) string {
	if parts := strings.Split(cluster, "|"); len(parts) == 4 {
		return parts[2]
	}
	return ""
}

// isError reports whether a request failed: a 5xx or no response (code 0),
// or a gRPC status other than OK.
func isError(l map[string]string) bool {
	code, err := strconv.Atoi(l["response_code"])
	if err == nil && (code >= 500 || code == 0) {
		return true
	}
	if g := known(l["grpc_response_status"]); g != "" && g != "0" {
		return true
	}
	return false
}

// EdgeStats is the traffic of one call edge over the rate window.
type EdgeStats struct {
	// Requests counted in the window (or since the proxies started when
	// HasRate is false).
	Requests float64 `json:"requests"`
	// RPS is requests per second; valid when HasRate.
	RPS     float64 `json:"rps"`
	HasRate bool    `json:"hasRate"`
	// ErrorRate is failed/total in 0..1 (5xx, no response, gRPC non-OK).
	ErrorRate float64 `json:"errorRate"`
	// P99 is the 99th percentile latency in milliseconds; negative when unknown.
	P99 float64 `json:"p99Ms"`
	// MTLS is "mutual_tls", "none", "mixed" or "" (unknown), as the
	// destination proxies report it.
	MTLS string `json:"mtls,omitempty"`
	// Versions splits Requests by destination version ("" = unknown).
	Versions map[string]float64 `json:"versions,omitempty"`
}

// edgeKey is a directed edge between two services.
type edgeKey struct{ from, to svcRef }

// traffic is the result of combining the kept snapshots of every proxy.
type traffic struct {
	edges map[edgeKey]*EdgeStats
}

// window returns the newest snapshot and the baseline for rates: the oldest
// one no older than span before the newest. ok is false without snapshots.
func window(hist []snapshot, span time.Duration) (newest, base snapshot, hasBase bool) {
	newest = hist[len(hist)-1]
	for _, s := range hist[:len(hist)-1] {
		if newest.at.Sub(s.at) <= span && newest.at.After(s.at) {
			return newest, s, true
		}
	}
	return newest, snapshot{}, false
}

// counterDelta is the increase of a counter between two samples, treating a
// decrease as a reset (the proxy restarted).
func counterDelta(cur, prev float64) float64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

// combine computes the edge statistics from each proxy's snapshot history
// (oldest first). Requests of an edge are counted from the client side
// (reporter=source) when any client proxy reported the edge, else from the
// server side, so that no request is counted twice; mTLS always comes from
// the server side, which is the side that knows.
func combine(hists map[string][]snapshot, span time.Duration) traffic {
	type acc struct {
		total, errors   float64
		versions        map[string]float64
		hist            histogram
		seconds         float64 // longest window among contributing proxies
		rate            bool
		mtlsYes, mtlsNo float64
	}
	type sideKey struct {
		e        edgeKey
		reporter string
	}
	sides := map[sideKey]*acc{}
	get := func(k sideKey) *acc {
		a := sides[k]
		if a == nil {
			a = &acc{versions: map[string]float64{}, hist: histogram{}}
			sides[k] = a
		}
		return a
	}
	ids := make([]string, 0, len(hists))
	for id := range hists {
		ids = append(ids, id)
	}
	sort.Strings(ids) // deterministic float sums
	for _, id := range ids {
		h := hists[id]
		if len(h) == 0 {
			continue
		}
		newest, base, hasBase := window(h, span)
		secs := newest.at.Sub(base.at).Seconds()
		for k, c := range newest.calls {
			b := base.calls[k]
			total, errs := c.total, c.errors
			if hasBase {
				total, errs = counterDelta(c.total, b.total), counterDelta(c.errors, b.errors)
				if errs > total {
					errs = total
				}
			}
			a := get(sideKey{edgeKey{k.from, k.to}, k.reporter})
			a.total += total
			a.errors += errs
			a.versions[k.version] += total
			if hasBase {
				a.rate = true
				a.seconds = math.Max(a.seconds, secs)
			}
			if k.reporter == "destination" {
				switch k.security {
				case "mutual_tls":
					a.mtlsYes += c.total
				case "none":
					a.mtlsNo += c.total
				}
			}
		}
		for k, hg := range newest.hists {
			a := get(sideKey{edgeKey{k.from, k.to}, k.reporter})
			bh := base.hists[k]
			for le, v := range hg {
				if hasBase {
					v = counterDelta(v, bh[le])
				}
				a.hist[le] += v
			}
		}
	}
	out := traffic{edges: map[edgeKey]*EdgeStats{}}
	for k := range sides {
		if out.edges[k.e] != nil {
			continue
		}
		src, dst := sides[sideKey{k.e, "source"}], sides[sideKey{k.e, "destination"}]
		use := src
		if use == nil {
			use = dst
		}
		st := &EdgeStats{Requests: use.total, P99: quantile(0.99, use.hist), HasRate: use.rate && use.seconds > 0}
		if st.HasRate {
			st.RPS = use.total / use.seconds
		}
		if use.total > 0 {
			st.ErrorRate = use.errors / use.total
		}
		for v, n := range use.versions {
			if n > 0 {
				if st.Versions == nil {
					st.Versions = map[string]float64{}
				}
				st.Versions[v] += n
			}
		}
		if dst != nil {
			switch {
			case dst.mtlsYes > 0 && dst.mtlsNo > 0:
				st.MTLS = "mixed"
			case dst.mtlsYes > 0:
				st.MTLS = "mutual_tls"
			case dst.mtlsNo > 0:
				st.MTLS = "none"
			}
		}
		out.edges[k.e] = st
	}
	return out
}

// quantile estimates the q-quantile of a cumulative histogram as
// Prometheus's histogram_quantile does: find the bucket holding the rank and
// interpolate linearly inside it (the first bucket starts at 0; a rank in
// the +Inf bucket gives the highest finite bound). It returns -1 for an
// empty histogram.
func quantile(q float64, h histogram) float64 {
	if len(h) == 0 || math.IsNaN(q) {
		return -1
	}
	les := make([]float64, 0, len(h))
	for le := range h {
		les = append(les, le)
	}
	sort.Float64s(les)
	// Counts are cumulative; make them monotonic (merged or reset series
	// can break that slightly).
	counts := make([]float64, len(les))
	for i, le := range les {
		counts[i] = h[le]
		if i > 0 && counts[i] < counts[i-1] {
			counts[i] = counts[i-1]
		}
	}
	total := counts[len(counts)-1] // the +Inf bucket, or the largest we have
	if total <= 0 {
		return -1
	}
	rank := q * total
	i := sort.Search(len(counts), func(i int) bool { return counts[i] >= rank })
	if i >= len(les) {
		i = len(les) - 1
	}
	if math.IsInf(les[i], 1) {
		if i == 0 {
			return -1
		}
		return les[i-1]
	}
	lower, below := 0.0, 0.0
	if i > 0 {
		lower, below = les[i-1], counts[i-1]
	}
	if lower > les[i] { // negative bounds are not used by latency histograms
		lower = les[i]
	}
	inBucket := counts[i] - below
	if inBucket <= 0 {
		return les[i]
	}
	return lower + (les[i]-lower)*(rank-below)/inBucket
}
