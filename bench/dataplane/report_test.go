package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestStatOf(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want stat
	}{
		{[]float64{3}, stat{3, 3, 3}},
		{[]float64{5, 1, 3}, stat{3, 1, 5}},
		{[]float64{4, 1, 3, 2}, stat{2.5, 1, 4}},
	} {
		if got := statOf(tc.in); *got != tc.want {
			t.Errorf("statOf(%v) = %+v, want %+v", tc.in, *got, tc.want)
		}
	}
	if statOf(nil) != nil {
		t.Error("statOf(nil) != nil")
	}
}

func TestRatiosPairPeersByPathAndProtocol(t *testing.T) {
	mk := func(name, peer string, hops int, proto string, added, cpu float64) *scenarioResult {
		r := &scenarioResult{Name: name, Peer: peer, Hops: hops, Proto: proto,
			samples: []sample{{AddedP50: added, AddedP99: added * 2, CPUPer1k: cpu, RSSMB: 10, SatRPS: 1000, SatCPUus: cpu / 4}}}
		r.finish()
		return r
	}
	r := &report{Scenarios: []*scenarioResult{
		mk("canton-1hop", "canton", 1, "http1", 100, 200),
		mk("haproxy-1hop", "haproxy", 1, "http1", 50, 100),
		mk("canton-2hop-mtls", "canton", 2, "http1", -5, 300),
		mk("haproxy-2hop-mtls", "haproxy", 2, "http1", 20, 150),
	}}
	r.computeRatios()
	one := r.Ratios["1hop"]
	if one.AddedP50 == nil || *one.AddedP50 != 2 || one.CPUPer1k == nil || *one.CPUPer1k != 2 || *one.SatRPS != 1 ||
		one.SatCPU == nil || *one.SatCPU != 2 {
		t.Errorf("1hop ratios = %+v, want added p50 2, cpu 2, throughput 1, saturated cpu 2", one)
	}
	two := r.Ratios["2hop"]
	if two.AddedP50 != nil {
		t.Errorf("2hop added p50 ratio = %v, want null for a non-positive added latency", *two.AddedP50)
	}
	if h2 := r.Ratios["1hop-h2c"]; h2.AddedP50 != nil || h2.CPUPer1k != nil {
		t.Errorf("1hop-h2c ratios = %+v, want all null without h2c scenarios", h2)
	}
	var buf bytes.Buffer
	if err := r.writeJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatalf("JSON output does not parse: %v", err)
	}
	if !strings.Contains(buf.String(), `"added_p50": null`) {
		t.Errorf("JSON output has no null ratio:\n%s", buf.String())
	}
}

func TestParseFlagsDefaults(t *testing.T) {
	var sink bytes.Buffer
	o, err := parseFlags(nil, &sink)
	if err != nil || o.reps != 5 || o.duration.Seconds() != 3 || len(o.protocols) != 3 {
		t.Errorf("defaults = %+v, %v; want 5 repetitions of 3s, 3 protocols", o, err)
	}
	q, err := parseFlags([]string{"-quick"}, &sink)
	if err != nil || q.reps != 3 || q.duration.Seconds() != 1 {
		t.Errorf("-quick = %+v, %v; want 3 repetitions of 1s", q, err)
	}
	if _, err := parseFlags([]string{"-protocols", "http1,spdy"}, &sink); err == nil {
		t.Error("-protocols spdy accepted")
	}
	if _, err := parseFlags([]string{"-reps", "-1"}, &sink); err == nil {
		t.Error("-reps -1 accepted")
	}
}
