package main

import (
	"os"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and parentheses must not shift the fields.
	stat := "1234 (my (odd) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0 100 1000 200"
	got, err := parseStatCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if want := 3250 * time.Millisecond; got != want {
		t.Errorf("parseStatCPU = %v, want %v (utime 250 + stime 75 ticks)", got, want)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 x 0"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseStatCPU(%q) succeeded, want an error", bad)
		}
	}
}

func TestParseSchedstat(t *testing.T) {
	got, err := parseSchedstat([]byte("299089996 368365832 745\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := 299089996 * time.Nanosecond; got != want {
		t.Errorf("parseSchedstat = %v, want %v", got, want)
	}
	for _, bad := range []string{"", "1 2", "1 2 3 4", "x 2 3", "-1 2 3", "99999999999999999999 2 3"} {
		if _, err := parseSchedstat([]byte(bad)); err == nil {
			t.Errorf("parseSchedstat(%q) succeeded, want an error", bad)
		}
	}
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t4\n"
	got, err := parseVmRSS([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	if got != 2048*1024 {
		t.Errorf("parseVmRSS = %d, want %d", got, 2048*1024)
	}
	for _, bad := range []string{"Name:\tx\n", "VmRSS:\t12 MB\n", "VmRSS:\tx kB\n"} {
		if _, err := parseVmRSS([]byte(bad)); err == nil {
			t.Errorf("parseVmRSS(%q) succeeded, want an error", bad)
		}
	}
}

func TestParseProcStatBusy(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	got, err := parseProcStatBusy([]byte("cpu  100 5 50 9999 77 3 2 10 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := 1700 * time.Millisecond; got != want { // 100+5+50+3+2+10 = 170 ticks
		t.Errorf("parseProcStatBusy = %v, want %v", got, want)
	}
	if _, err := parseProcStatBusy([]byte("cpu0 1 2 3 4 5 6 7 8\n")); err == nil {
		t.Error("parseProcStatBusy accepted a per-CPU line as the total")
	}
}

// TestOwnProcess reads this test process's own /proc entries, checking the parsers against the real
// kernel format.
func TestOwnProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	if _, err := cpuTime(os.Getpid()); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat("/proc/self/schedstat"); err == nil {
		// The per-thread sum must count this goroutine's work to well under a tick.
		before, err := schedCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		for x, start := 0, time.Now(); time.Since(start) < 20*time.Millisecond; x++ {
			_ = x * x
		}
		after, err := schedCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if after <= before {
			t.Errorf("schedCPU did not grow over 20 ms of busy work: %v then %v", before, after)
		}
	}
	rss, err := rssBytes(os.Getpid())
	if err != nil || rss <= 0 {
		t.Errorf("rssBytes = %d, %v; want > 0", rss, err)
	}
	if m, err := memStatus(os.Getpid()); err != nil || m.anon <= 0 || m.file <= 0 || m.anon+m.file > m.rss+1<<20 {
		t.Errorf("memStatus = %+v, %v; want anonymous and file-backed parts of VmRSS", m, err)
	}
	if _, err := systemBusy(); err != nil {
		t.Error(err)
	}
}

func FuzzParseStatCPU(f *testing.F) {
	f.Add([]byte("1 (a b) S 1 1 1 0 -1 0 0 0 0 0 10 20 0 0 20 0 1 0 1 1 1"))
	f.Add([]byte("1 (x) S"))
	f.Add([]byte(")"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if d, err := parseStatCPU(b); err == nil && d < 0 {
			t.Errorf("negative CPU time %v", d)
		}
	})
}

func FuzzParseSchedstat(f *testing.F) {
	f.Add([]byte("299089996 368365832 745\n"))
	f.Add([]byte("1 2"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if d, err := parseSchedstat(b); err == nil && d < 0 {
			t.Errorf("negative run time %v", d)
		}
	})
}

func FuzzParseVmRSS(f *testing.F) {
	f.Add([]byte("VmRSS:\t  1 kB\n"))
	f.Add([]byte("VmRSS:\n"))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseVmRSS(b) })
}

func FuzzParseProcStatBusy(f *testing.F) {
	f.Add([]byte("cpu  1 2 3 4 5 6 7 8 9 10\n"))
	f.Add([]byte("cpu 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseProcStatBusy(b) })
}
