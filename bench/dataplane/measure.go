package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"fortio.org/fortio/fgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// meter measures scenarios, repeating a window that other processes on the machine disturbed.
type meter struct {
	o           options
	logf        func(string, ...any)
	retryBudget int // retries left for the whole run, so a busy machine cannot stretch it unboundedly
}

// window is one load window and what the machine did meanwhile.
type window struct {
	res          loadResult
	proxyCPU     time.Duration // CPU time of the scenario's proxy processes
	foreignCores float64       // CPU used by processes that are not part of the benchmark, in cores
}

func observe(ctx context.Context, s *scenario, pids []int, qps float64, d time.Duration) (window, error) {
	busy0, err := systemBusy()
	if err != nil {
		return window{}, err
	}
	own0 := ownCPU()
	cpu0, err := sumCPU(pids)
	if err != nil {
		return window{}, err
	}
	res, err := runLoad(ctx, s.addr, s.Proto, qps, d)
	if err != nil {
		return window{}, err
	}
	cpu1, err := sumCPU(pids)
	if err != nil {
		return window{}, err
	}
	own1 := ownCPU()
	busy1, err := systemBusy()
	if err != nil {
		return window{}, err
	}
	foreign := (busy1 - busy0 - (own1 - own0)).Seconds() / res.Wall.Seconds()
	return window{res: res, proxyCPU: cpu1 - cpu0, foreignCores: max(foreign, 0)}, nil
}

// measure runs the fixed-rate and the saturated window of one scenario. A window during which other
// processes used more than -max-foreign cores, or a fixed-rate window that fell 5% short of its rate,
// is repeated (at most -retries times, within the run's retry budget) after waiting for the machine
// to calm down; a sample that stays disturbed is kept and marked noisy.
func (m *meter) measure(ctx context.Context, s *scenario) (*sample, error) {
	pids := s.pids()
	var fixed, sat window
	var err error
	for attempt := 0; ; attempt++ {
		if fixed, err = observe(ctx, s, pids, fixedQPS, m.o.duration); err != nil {
			return nil, err
		}
		if sat, err = observe(ctx, s, pids, -1, m.o.satDuration); err != nil {
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		quiet := fixed.foreignCores <= m.o.maxForeign && sat.foreignCores <= m.o.maxForeign && fixed.res.QPS >= 0.95*fixedQPS
		if quiet || attempt >= m.o.retries || m.retryBudget <= 0 || ctx.Err() != nil {
			break
		}
		m.retryBudget--
		m.logf("  %s disturbed (other processes used %.2f / %.2f cores, rate %.0f/s): waiting and repeating",
			s.Name, fixed.foreignCores, sat.foreignCores, fixed.res.QPS)
		waitQuiet(ctx, m.o.maxForeign, 10*time.Second)
	}
	rss, err := sumRSS(pids)
	if err != nil {
		return nil, err
	}
	f := fixed.res
	sm := &sample{P50: us(f.P50), P90: us(f.P90), P99: us(f.P99), P999: us(f.P999), FixedQPS: f.QPS,
		SatRPS: sat.res.QPS, Errors: f.Errors + sat.res.Errors, ForeignCores: max(fixed.foreignCores, sat.foreignCores)}
	sm.Noisy = sm.ForeignCores > m.o.maxForeign || f.QPS < 0.95*fixedQPS
	if len(pids) > 0 {
		// CPU seconds per 1,000 requests = cores busy at 1,000 requests/s; in millicores.
		sm.CPUPer1k = fixed.proxyCPU.Seconds() / (float64(f.Requests) / 1000) * 1000
		sm.RSSMB = float64(rss) / (1 << 20)
		if n := sat.res.Requests; n > 0 {
			sm.SatCPUus = sat.proxyCPU.Seconds() / float64(n) * 1e6
		}
	}
	return sm, nil
}

// waitQuiet waits until other processes use at most limit cores over half a second, or for at most d.
func waitQuiet(ctx context.Context, limit float64, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		busy0, err0 := systemBusy()
		own0 := ownCPU()
		t0 := time.Now()
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
		busy1, err1 := systemBusy()
		if err0 != nil || err1 != nil {
			return
		}
		if (busy1-busy0-(ownCPU()-own0)).Seconds()/time.Since(t0).Seconds() <= limit {
			return
		}
	}
}

// protoOf returns the protocol of a scenario name: its suffix -h2c or -grpc, else http1.
func protoOf(name string) string {
	for _, p := range []string{"h2c", "grpc"} {
		if strings.HasSuffix(name, "-"+p) {
			return p
		}
	}
	return "http1"
}

// check sends one request through a scenario: a GET expecting 200 with the full payload, or one gRPC
// ping.
func check(addr, proto string) error {
	if proto == "grpc" {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("check gRPC ping %s: %w", addr, err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := fgrpc.NewPingServerClient(conn).Ping(ctx, &fgrpc.PingMessage{Payload: grpcPayload})
		if err != nil {
			return fmt.Errorf("check gRPC ping %s: %w", addr, err)
		}
		if resp.GetPayload() != grpcPayload {
			return fmt.Errorf("check gRPC ping %s: echoed %d bytes, want %d", addr, len(resp.GetPayload()), len(grpcPayload))
		}
		return nil
	}
	url := urlOf(addr)
	h2c := proto == "h2c"
	tr := &http.Transport{}
	if h2c {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		tr.Protocols = &p
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Timeout: 5 * time.Second, Transport: tr}
	resp, err := c.Get(url)
	if err != nil {
		return fmt.Errorf("check GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("check GET %s: body: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK || len(b) != payloadSize || (h2c && resp.ProtoMajor != 2) {
		return fmt.Errorf("check GET %s: got %d %s with %d bytes, want 200 with %d", url, resp.StatusCode, resp.Proto, len(b), payloadSize)
	}
	return nil
}
