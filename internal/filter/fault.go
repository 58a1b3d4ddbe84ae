package filter

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// Request headers of header-controlled faults (Envoy's names).
const (
	hdrFaultAbort        = "X-Envoy-Fault-Abort-Request"
	hdrFaultAbortGRPC    = "X-Envoy-Fault-Abort-Grpc-Request"
	hdrFaultAbortPercent = "X-Envoy-Fault-Abort-Request-Percentage"
	hdrFaultDelay        = "X-Envoy-Fault-Delay-Request"
	hdrFaultDelayPercent = "X-Envoy-Fault-Delay-Request-Percentage"
	hdrDownstreamNode    = "X-Envoy-Downstream-Service-Node"
)

// faultBody is the body of an aborted request unless the config names one.
const faultBody = "fault filter abort"

// faultConfig is a decoded HTTPFault.
type faultConfig struct {
	delay     *faultDelay // nil: no delay
	abort     *faultAbort // nil: no abort
	nodes     []string    // downstream_nodes; empty matches every node
	maxActive uint32      // max_active_faults; 0 with !hasMax means unlimited
	hasMax    bool
}

type faultDelay struct {
	fixed  time.Duration // fixed_delay; unused when header is set
	header bool          // header_delay: the duration comes from the request
	pct    percent
}

type faultAbort struct {
	httpStatus int  // 0 when the abort is gRPC-only or header-controlled
	grpcStatus int  // -1 when unset
	header     bool // header_abort: the status comes from the request
	pct        percent
	body       string
}

// fault is envoy.filters.http.fault: it delays and/or aborts a configured
// fraction of requests, or what the request's x-envoy-fault-* headers ask
// for when the config allows header control.
//
// Supported HTTPFault fields: delay (fixed_delay or header_delay, percentage),
// abort (http_status, grpc_status or header_abort, percentage,
// response_body), downstream_nodes, max_active_faults,
// disable_downstream_cluster_stats (canton has no such stats). Rejected:
// upstream_cluster, headers, response_rate_limit, the *_runtime keys,
// filter_metadata.
type fault struct {
	spec
	def    *faultConfig
	active atomic.Int64 // faults in progress through this filter
}

var faultRoutes = &routeCache[*faultConfig]{
	typeURL: typeURL(&faultv3.HTTPFault{}),
	parse:   parseFaultAny,
}

func buildFault(s spec, cfg *anypb.Any, path string) (Filter, error) {
	f := &fault{spec: s, def: &faultConfig{}}
	if cfg != nil {
		c, err := parseFaultAny(cfg, path)
		if err != nil {
			return nil, err
		}
		f.def = c
	}
	return f, nil
}

func checkFaultPerRoute(cfg *anypb.Any, path string) error {
	_, err := parseFaultAny(cfg, path)
	return err
}

func parseFaultAny(a *anypb.Any, path string) (*faultConfig, error) {
	var pb faultv3.HTTPFault
	if err := unmarshalAny(a, &pb, path); err != nil {
		return nil, err
	}
	return parseFault(&pb, path)
}

func parseFault(pb *faultv3.HTTPFault, path string) (*faultConfig, error) {
	if err := onlyFields(pb, path, "delay", "abort", "downstream_nodes", "max_active_faults", "disable_downstream_cluster_stats"); err != nil {
		return nil, err
	}
	c := &faultConfig{nodes: pb.GetDownstreamNodes()}
	if m := pb.GetMaxActiveFaults(); m != nil {
		c.maxActive, c.hasMax = m.GetValue(), true
	}
	if d := pb.GetDelay(); d != nil {
		p := path + ".delay"
		if err := onlyFields(d, p, "fixed_delay", "header_delay", "percentage"); err != nil {
			return nil, err
		}
		pct, err := parsePercent(d.GetPercentage(), p+".percentage")
		if err != nil {
			return nil, err
		}
		c.delay = &faultDelay{pct: pct}
		switch spec := d.GetFaultDelaySecifier().(type) {
		case *faultcommonv3.FaultDelay_FixedDelay:
			fd := spec.FixedDelay
			if err := fd.CheckValid(); err != nil {
				return nil, fmt.Errorf("%s.fixed_delay: %w", p, err)
			}
			if fd.AsDuration() <= 0 {
				return nil, fmt.Errorf("%s.fixed_delay: must be greater than 0", p)
			}
			c.delay.fixed = fd.AsDuration()
		case *faultcommonv3.FaultDelay_HeaderDelay_:
			c.delay.header = true
		default:
			return nil, fmt.Errorf("%s: one of fixed_delay or header_delay is required", p)
		}
	}
	if ab := pb.GetAbort(); ab != nil {
		p := path + ".abort"
		if err := onlyFields(ab, p, "http_status", "grpc_status", "header_abort", "percentage", "response_body"); err != nil {
			return nil, err
		}
		pct, err := parsePercent(ab.GetPercentage(), p+".percentage")
		if err != nil {
			return nil, err
		}
		c.abort = &faultAbort{grpcStatus: -1, pct: pct, body: ab.GetResponseBody()}
		if c.abort.body == "" {
			c.abort.body = faultBody
		}
		switch et := ab.GetErrorType().(type) {
		case *faultv3.FaultAbort_HttpStatus:
			if et.HttpStatus < 200 || et.HttpStatus >= 600 {
				return nil, fmt.Errorf("%s.http_status: %d not in [200, 600)", p, et.HttpStatus)
			}
			c.abort.httpStatus = int(et.HttpStatus)
		case *faultv3.FaultAbort_GrpcStatus:
			c.abort.grpcStatus = int(et.GrpcStatus)
		case *faultv3.FaultAbort_HeaderAbort_:
			c.abort.header = true
		default:
			return nil, fmt.Errorf("%s: one of http_status, grpc_status or header_abort is required", p)
		}
	}
	return c, nil
}

func (f *fault) ServeHTTP(w http.ResponseWriter, r *http.Request, next Handler) error {
	ctx := r.Context()
	ri := infoFrom(ctx)
	c, ok, err := resolve(routeLookup{ri}, faultRoutes, f.name, f.disabled, f.def)
	if err != nil {
		return err
	}
	if !ok || (c.delay == nil && c.abort == nil) || !c.matches(r) {
		return next.ServeHTTP(w, r)
	}
	if c.hasMax && f.active.Load() >= int64(c.maxActive) {
		return next.ServeHTTP(w, r) // faults_overflow in Envoy's terms
	}
	counted := false
	defer func() {
		if counted {
			f.active.Add(-1)
		}
	}()
	if d, ok := c.delayFor(r, f.rand); ok {
		counted = true
		f.active.Add(1)
		addFlags(ri, FlagDelayInjected)
		if err := sleepCtx(ctx, d); err != nil {
			return fmt.Errorf("filter %s: fault delay interrupted: %w", f.name, err)
		}
	}
	if httpStatus, grpcStatus, ok := c.abortFor(r, f.rand); ok {
		if !counted {
			counted = true
			f.active.Add(1)
		}
		addFlags(ri, FlagFaultInjected)
		localReply(w, r, httpStatus, grpcStatus, c.abort.body)
		return nil
	}
	return next.ServeHTTP(w, r)
}

func addFlags(ri *reqInfo, fl Flags) {
	if ri != nil && ri.flags != nil {
		*ri.flags |= fl
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// matches applies the request-selection fields of the config.
func (c *faultConfig) matches(r *http.Request) bool {
	if len(c.nodes) > 0 {
		return slices.Contains(c.nodes, r.Header.Get(hdrDownstreamNode))
	}
	return true
}

// delayFor returns the delay to inject, if any.
func (c *faultConfig) delayFor(r *http.Request, rnd func(uint64) uint64) (time.Duration, bool) {
	d := c.delay
	if d == nil {
		return 0, false
	}
	dur := d.fixed
	pct := d.pct
	if d.header {
		ms, ok := parseFaultDelay(r.Header.Get(hdrFaultDelay))
		if !ok {
			return 0, false
		}
		dur = ms
		pct = headerPercent(pct, r.Header.Get(hdrFaultDelayPercent))
	}
	if dur <= 0 || !pct.sample(rnd) {
		return 0, false
	}
	return dur, true
}

// abortFor returns the statuses to abort with, if the request is aborted.
// grpcStatus is -1 when it is to be derived from httpStatus.
func (c *faultConfig) abortFor(r *http.Request, rnd func(uint64) uint64) (httpStatus, grpcStatus int, ok bool) {
	a := c.abort
	if a == nil {
		return 0, 0, false
	}
	httpStatus, grpcStatus, pct := a.httpStatus, a.grpcStatus, a.pct
	if a.header {
		var hok, gok bool
		httpStatus, hok = parseFaultAbortStatus(r.Header.Get(hdrFaultAbort))
		grpcStatus, gok = parseFaultGRPCStatus(r.Header.Get(hdrFaultAbortGRPC))
		switch {
		case hok:
			grpcStatus = -1
		case gok:
			httpStatus = 0
		default:
			return 0, 0, false
		}
		pct = headerPercent(pct, r.Header.Get(hdrFaultAbortPercent))
	}
	if !pct.sample(rnd) {
		return 0, 0, false
	}
	if httpStatus == 0 {
		httpStatus = http.StatusOK // gRPC-only abort: the status travels in grpc-status
	}
	return httpStatus, grpcStatus, true
}

// parseUintHeader parses a header value made only of ASCII digits (at most
// 9 of them, so the value fits any use below).
func parseUintHeader(v string) (uint64, bool) {
	if v == "" || len(v) > 9 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

// parseFaultAbortStatus parses x-envoy-fault-abort-request: an HTTP status
// in [200, 600).
func parseFaultAbortStatus(v string) (int, bool) {
	n, ok := parseUintHeader(v)
	if !ok || n < 200 || n >= 600 {
		return 0, false
	}
	return int(n), true
}

// parseFaultGRPCStatus parses x-envoy-fault-abort-grpc-request: a gRPC
// status code (0..16 are defined; any non-negative 32-bit value is passed on,
// as Envoy does).
func parseFaultGRPCStatus(v string) (int, bool) {
	n, ok := parseUintHeader(v)
	if !ok || n > 1<<31-1 {
		return 0, false
	}
	return int(n), true
}

// parseFaultDelay parses x-envoy-fault-delay-request: milliseconds.
func parseFaultDelay(v string) (time.Duration, bool) {
	n, ok := parseUintHeader(v)
	if !ok {
		return 0, false
	}
	return time.Duration(n) * time.Millisecond, true
}

// headerPercent applies an x-envoy-fault-*-percentage header to the
// configured percentage: the header gives the numerator over the configured
// denominator, capped at the configured numerator. A missing or invalid
// header leaves the configured percentage.
func headerPercent(cfg percent, v string) percent {
	if v == "" {
		return cfg
	}
	n, ok := parseUintHeader(v)
	if !ok {
		return cfg
	}
	return percent{num: min(n, cfg.num), den: cfg.den}
}
