package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"fortio.org/fortio/fgrpc"
	"fortio.org/fortio/fhttp"
	"fortio.org/fortio/periodic"
	flog "fortio.org/log"
)

// Load parameters of issue #8.
const (
	fixedQPS    = 1000
	connections = 16
	resolution  = 10e-6 // histogram bucket width in seconds: 10 µs
)

// loadResult is what one load window measured.
type loadResult struct {
	P50, P90, P99, P999 time.Duration
	QPS                 float64 // achieved requests per second
	Requests            int64
	Errors              int64 // responses other than 200, and socket errors
	Wall                time.Duration
}

var quietFortio sync.Once

func silenceFortio() {
	flog.SetLogLevelQuiet(flog.Error)
	flog.SetOutput(io.Discard)
}

// grpcPayload is the ping message payload: the ping service echoes it, so requests and responses both
// carry 1 KB.
var grpcPayload = strings.Repeat("p", payloadSize)

// runLoad sends requests to addr (host:port) over connections keep-alive connections for d, with
// proto: "http1" GETs with fortio's fast client; "h2c" GETs over HTTP/2 cleartext (prior knowledge) with
// fortio's standard client, one connection per fortio thread; "grpc" unary calls of fortio's ping
// service with a 1 KB payload, one connection per thread. qps > 0 is an open-loop fixed rate (uniformly
// staggered across connections, no catch-up after a stall); qps < 0 is closed loop at maximum speed.
// Cancelling ctx ends the window early and returns ctx's error.
func runLoad(ctx context.Context, addr, proto string, qps float64, d time.Duration) (loadResult, error) {
	quietFortio.Do(silenceFortio)
	// An Aborter of our own also keeps fortio from installing (and later resetting) its own Ctrl-C
	// handler.
	stop := periodic.NewAborter()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			stop.Abort(false)
		case <-done:
		}
	}()
	ro := periodic.RunnerOptions{
		Stop:        stop,
		QPS:         qps,
		Duration:    d,
		NumThreads:  connections,
		Percentiles: []float64{50, 90, 99, 99.9},
		Resolution:  resolution,
		Uniform:     qps > 0,
		NoCatchUp:   qps > 0,
		Out:         io.Discard,
	}
	start := time.Now()
	var rr *periodic.RunnerResults
	var errors int64
	switch proto {
	case "http1", "h2c":
		h2 := proto == "h2c"
		r, err := fhttp.RunHTTPTest(&fhttp.HTTPRunnerOptions{RunnerOptions: ro, AllowInitialErrors: true,
			HTTPOptions: fhttp.HTTPOptions{URL: urlOf(addr), HTTPReqTimeOut: 5 * time.Second, H2: h2, DisableFastClient: h2}})
		if err != nil {
			return loadResult{}, fmt.Errorf("load %s %s: %w", proto, addr, err)
		}
		rr = &r.RunnerResults
		for code, n := range r.RetCodes {
			if code != 200 {
				errors += n
			}
		}
	case "grpc":
		r, err := fgrpc.RunGRPCTest(&fgrpc.GRPCRunnerOptions{RunnerOptions: ro, Destination: addr, UsePing: true,
			Payload: grpcPayload, Streams: 1, AllowInitialErrors: true})
		if err != nil {
			return loadResult{}, fmt.Errorf("load %s %s: %w", proto, addr, err)
		}
		rr = &r.RunnerResults
		if eh := r.ErrorsDurationHistogram; eh != nil {
			errors = eh.Count
		}
	default:
		return loadResult{}, fmt.Errorf("load: unknown protocol %q", proto)
	}
	wall := time.Since(start)
	if err := ctx.Err(); err != nil {
		return loadResult{}, err
	}
	h := rr.DurationHistogram
	if h == nil || h.Count == 0 {
		return loadResult{}, fmt.Errorf("load %s %s: no request completed", proto, addr)
	}
	out := loadResult{QPS: rr.ActualQPS, Requests: h.Count, Wall: wall, Errors: errors}
	for _, p := range h.Percentiles {
		v := time.Duration(p.Value * float64(time.Second))
		switch p.Percentile {
		case 50:
			out.P50 = v
		case 90:
			out.P90 = v
		case 99:
			out.P99 = v
		case 99.9:
			out.P999 = v
		}
	}
	return out, nil
}
