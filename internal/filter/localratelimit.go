package filter

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	lrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// Response headers of local rate limiting (draft 03 of the IETF RateLimit
// header fields, as Envoy names them).
const (
	hdrRateLimitLimit     = "X-Ratelimit-Limit"
	hdrRateLimitRemaining = "X-Ratelimit-Remaining"
	hdrRateLimitReset     = "X-Ratelimit-Reset"
	hdrRetryAfter         = "Retry-After"
	rateLimitedBody       = "local_rate_limited"
	// minFillInterval is Envoy's lower bound for token_bucket.fill_interval.
	minFillInterval = 50 * time.Millisecond
)

// rateLimitConfig is a decoded LocalRateLimit. Its bucket is shared by every
// request the config applies to: the listener's requests for the filter's
// own config, one route's requests for a per-route config.
type rateLimitConfig struct {
	bucket         *tokenBucket // nil: the filter lets everything through
	status         int
	enabled        percent
	enforced       percent
	respHeaders    []headerOp
	reqHeaders     []headerOp // request_headers_to_add_when_not_enforced
	xRateLimit     bool
	retryAfter     bool
	asExhausted    bool // rate_limited_as_resource_exhausted
	limitHeaderVal string
}

// localRateLimit is envoy.filters.http.local_ratelimit: a token bucket per
// config (filter-wide, or per route via typed_per_filter_config).
//
// Supported LocalRateLimit fields: stat_prefix (required, as in Envoy),
// status, token_bucket, filter_enabled, filter_enforced (with their
// runtime_key accepted: canton has no runtime layer, so default_value always
// applies), response_headers_to_add, request_headers_to_add_when_not_enforced,
// enable_x_ratelimit_headers, enable_retry_after_header,
// rate_limited_as_resource_exhausted. Rejected: descriptors, rate_limits,
// stage, local_rate_limit_per_downstream_connection,
// local_cluster_rate_limit, vh_rate_limits, always_consume_default_token_bucket,
// max_dynamic_descriptors.
//
// Tokens are refilled in whole fills: tokens_per_fill every fill_interval,
// computed when a request arrives, up to max_tokens; a bucket starts full.
type localRateLimit struct {
	spec
	def *rateLimitConfig
}

var rateLimitRoutes = &routeCache[*rateLimitConfig]{
	typeURL: typeURL(&lrlv3.LocalRateLimit{}),
	parse:   parseRateLimitAny,
}

func buildLocalRateLimit(s spec, cfg *anypb.Any, path string) (Filter, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%s: required for envoy.filters.http.local_ratelimit", path)
	}
	c, err := parseRateLimitAny(cfg, path)
	if err != nil {
		return nil, err
	}
	return &localRateLimit{spec: s, def: c}, nil
}

func checkLocalRateLimitPerRoute(cfg *anypb.Any, path string) error {
	_, err := parseRateLimitAny(cfg, path)
	return err
}

func parseRateLimitAny(a *anypb.Any, path string) (*rateLimitConfig, error) {
	var pb lrlv3.LocalRateLimit
	if err := unmarshalAny(a, &pb, path); err != nil {
		return nil, err
	}
	return parseRateLimit(&pb, path)
}

func parseRateLimit(pb *lrlv3.LocalRateLimit, path string) (*rateLimitConfig, error) {
	if err := onlyFields(pb, path, "stat_prefix", "status", "token_bucket", "filter_enabled", "filter_enforced",
		"response_headers_to_add", "request_headers_to_add_when_not_enforced", "enable_x_ratelimit_headers",
		"enable_retry_after_header", "rate_limited_as_resource_exhausted"); err != nil {
		return nil, err
	}
	if pb.GetStatPrefix() == "" {
		return nil, fmt.Errorf("%s.stat_prefix: required", path)
	}
	c := &rateLimitConfig{
		status:      http.StatusTooManyRequests,
		retryAfter:  pb.GetEnableRetryAfterHeader(),
		asExhausted: pb.GetRateLimitedAsResourceExhausted(),
	}
	if st := pb.GetStatus(); st != nil {
		if err := onlyFields(st, path+".status", "code"); err != nil {
			return nil, err
		}
		code := int(st.GetCode())
		if code < 200 || code > 599 {
			return nil, fmt.Errorf("%s.status.code: %d not in [200, 599]", path, code)
		}
		c.status = code
	}
	switch v := pb.GetEnableXRatelimitHeaders(); v {
	case ratelimitv3.XRateLimitHeadersRFCVersion_OFF:
	case ratelimitv3.XRateLimitHeadersRFCVersion_DRAFT_VERSION_03:
		c.xRateLimit = true
	default:
		return nil, fmt.Errorf("%s.enable_x_ratelimit_headers: unknown value %d", path, v)
	}
	var err error
	if c.enabled, err = parseRuntimePercent(pb.GetFilterEnabled(), path+".filter_enabled"); err != nil {
		return nil, err
	}
	if c.enforced, err = parseRuntimePercent(pb.GetFilterEnforced(), path+".filter_enforced"); err != nil {
		return nil, err
	}
	if c.respHeaders, err = parseHeaderOps(pb.GetResponseHeadersToAdd(), path+".response_headers_to_add"); err != nil {
		return nil, err
	}
	if c.reqHeaders, err = parseHeaderOps(pb.GetRequestHeadersToAddWhenNotEnforced(), path+".request_headers_to_add_when_not_enforced"); err != nil {
		return nil, err
	}
	if tb := pb.GetTokenBucket(); tb != nil {
		p := path + ".token_bucket"
		if err := onlyFields(tb, p, "max_tokens", "tokens_per_fill", "fill_interval"); err != nil {
			return nil, err
		}
		if tb.GetMaxTokens() == 0 {
			return nil, fmt.Errorf("%s.max_tokens: must be greater than 0", p)
		}
		perFill := uint64(1)
		if tpf := tb.GetTokensPerFill(); tpf != nil {
			if tpf.GetValue() == 0 {
				return nil, fmt.Errorf("%s.tokens_per_fill: must be greater than 0", p)
			}
			perFill = uint64(tpf.GetValue())
		}
		fi := tb.GetFillInterval()
		if fi == nil {
			return nil, fmt.Errorf("%s.fill_interval: required", p)
		}
		if err := fi.CheckValid(); err != nil {
			return nil, fmt.Errorf("%s.fill_interval: %w", p, err)
		}
		if fi.AsDuration() < minFillInterval {
			return nil, fmt.Errorf("%s.fill_interval: %v is below the minimum of %v", p, fi.AsDuration(), minFillInterval)
		}
		c.bucket = &tokenBucket{max: uint64(tb.GetMaxTokens()), perFill: perFill, interval: fi.AsDuration()}
		c.limitHeaderVal = strconv.FormatUint(c.bucket.max, 10)
	}
	return c, nil
}

// parseRuntimePercent decodes a RuntimeFractionalPercent. Absent means 0%,
// as in Envoy (the filter is then neither enabled nor enforced).
func parseRuntimePercent(p *corev3.RuntimeFractionalPercent, path string) (percent, error) {
	if p == nil {
		return percent{num: 0, den: 100}, nil
	}
	if err := onlyFields(p, path, "default_value", "runtime_key"); err != nil {
		return percent{}, err
	}
	if p.GetDefaultValue() == nil {
		return percent{}, fmt.Errorf("%s.default_value: required", path)
	}
	return parsePercent(p.GetDefaultValue(), path+".default_value")
}

func (f *localRateLimit) ServeHTTP(w http.ResponseWriter, r *http.Request, next Handler) error {
	ri := infoFrom(r.Context())
	c, ok, err := resolve(routeLookup{ri}, rateLimitRoutes, f.name, f.disabled, f.def)
	if err != nil {
		return err
	}
	if !ok || c.bucket == nil || !c.enabled.sample(f.rand) {
		return next.ServeHTTP(w, r)
	}
	allowed, remaining, reset := c.bucket.take(f.now())
	if c.xRateLimit {
		h := w.Header()
		h.Set(hdrRateLimitLimit, c.limitHeaderVal)
		h.Set(hdrRateLimitRemaining, strconv.FormatUint(remaining, 10))
		h.Set(hdrRateLimitReset, strconv.FormatInt(ceilSeconds(reset), 10))
	}
	if allowed {
		return next.ServeHTTP(w, r)
	}
	if !c.enforced.sample(f.rand) {
		applyHeaderOps(r.Header, c.reqHeaders)
		return next.ServeHTTP(w, r)
	}
	addFlags(ri, FlagRateLimited)
	h := w.Header()
	applyHeaderOps(h, c.respHeaders)
	if c.retryAfter {
		h.Set(hdrRetryAfter, strconv.FormatInt(ceilSeconds(reset), 10))
	}
	grpcStatus := -1
	if c.asExhausted {
		grpcStatus = 8 // RESOURCE_EXHAUSTED
	}
	localReply(w, r, c.status, grpcStatus, rateLimitedBody)
	return nil
}

func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// tokenBucket is a token bucket refilled in whole fills, computed lazily.
type tokenBucket struct {
	max, perFill uint64
	interval     time.Duration

	mu     sync.Mutex
	tokens uint64
	last   time.Time // the last fill boundary; zero before first use
}

// take consumes one token if there is one. It returns the tokens left and
// the time until the next fill.
func (b *tokenBucket) take(now time.Time) (ok bool, remaining uint64, reset time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.last.IsZero():
		b.tokens, b.last = b.max, now
	case now.Before(b.last): // the clock went backwards; count from now
		b.last = now
	case now.Sub(b.last) >= b.interval:
		elapsed := now.Sub(b.last)
		fills := uint64(elapsed / b.interval)
		if fills >= b.max || fills*b.perFill >= b.max-b.tokens {
			b.tokens = b.max
		} else {
			b.tokens += fills * b.perFill
		}
		b.last = b.last.Add(time.Duration(fills) * b.interval)
	}
	reset = b.interval - now.Sub(b.last)
	if b.tokens == 0 {
		return false, 0, reset
	}
	b.tokens--
	return true, b.tokens, reset
}
