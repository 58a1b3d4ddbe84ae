package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of utime and stime in /proc/<pid>/stat. Linux reports them in USER_HZ, which is
// 100 on every architecture Go supports (the kernel scales its internal HZ to it).
const userHZ = 100

// cpuTime returns the CPU time a process has used so far: the sum of its threads' run times in
// nanoseconds (/proc/<pid>/task/*/schedstat), or, on a kernel without schedstat, user+system time
// from /proc/<pid>/stat, which the kernel samples in 10 ms ticks (too coarse to tell a few per cent
// apart in a short window). A thread that exits takes its time with it; the processes measured
// here keep theirs (Go runtime threads, one HAProxy thread, single-threaded nginx workers).
func cpuTime(pid int) (time.Duration, error) {
	if t, err := schedCPU(pid); err == nil {
		return t, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time of pid %d: %w", pid, err)
	}
	return parseStatCPU(b)
}

// schedCPU sums the run time of pid's threads from their schedstat files.
func schedCPU(pid int) (time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var t time.Duration
	found := 0
	for _, task := range tasks {
		b, err := os.ReadFile(dir + "/" + task.Name() + "/schedstat")
		if errors.Is(err, fs.ErrNotExist) {
			continue // the thread exited meanwhile, or the kernel keeps no schedstat
		}
		if err != nil {
			return 0, err
		}
		d, err := parseSchedstat(b)
		if err != nil {
			return 0, fmt.Errorf("%s/%s/schedstat: %w", dir, task.Name(), err)
		}
		t += d
		found++
	}
	if found == 0 {
		return 0, fmt.Errorf("%s: no thread has a schedstat file", dir)
	}
	return t, nil
}

// parseSchedstat returns the first field of a /proc schedstat file: the time the task has run on a
// CPU, in nanoseconds ("run wait timeslices").
func parseSchedstat(b []byte) (time.Duration, error) {
	f := strings.Fields(string(b))
	if len(f) != 3 {
		return 0, fmt.Errorf("%d fields, want 3 (run, wait, timeslices)", len(f))
	}
	ns, err := strconv.ParseUint(f[0], 10, 63)
	if err != nil {
		return 0, fmt.Errorf("run time: %w", err)
	}
	return time.Duration(ns), nil
}

// parseStatCPU parses utime and stime (fields 14 and 15) from the contents of /proc/<pid>/stat. The
// command name (field 2) is in parentheses and may contain spaces, so fields are counted after the
// last ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat: no ')' after the command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat: %d fields after the command name, want at least 13", len(f))
	}
	ut, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc stat: utime: %w", err)
	}
	st, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc stat: stime: %w", err)
	}
	return time.Duration(ut+st) * time.Second / userHZ, nil
}

// rssBytes returns a process's resident set size (/proc/<pid>/status VmRSS).
func rssBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("rss of pid %d: %w", pid, err)
	}
	return parseVmRSS(b)
}

// memParts is a process's resident set size and its anonymous and file-backed parts, in bytes
// (/proc/<pid>/status VmRSS, RssAnon and RssFile; shared memory, RssShmem, is the rest).
type memParts struct{ rss, anon, file int64 }

// memStatus returns a process's memParts.
func memStatus(pid int) (memParts, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memParts{}, fmt.Errorf("memory of pid %d: %w", pid, err)
	}
	var m memParts
	for _, f := range []struct {
		key string
		to  *int64
	}{{"VmRSS", &m.rss}, {"RssAnon", &m.anon}, {"RssFile", &m.file}} {
		if *f.to, err = parseStatusKB(b, f.key); err != nil {
			return memParts{}, err
		}
	}
	return m, nil
}

// parseVmRSS returns the VmRSS line of /proc/<pid>/status in bytes.
func parseVmRSS(b []byte) (int64, error) { return parseStatusKB(b, "VmRSS") }

// parseStatusKB returns the value of the line "key: N kB" of /proc/<pid>/status in bytes.
func parseStatusKB(b []byte, key string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, key+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("/proc status: %s: unexpected %q", key, line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc status: %s: %w", key, err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("/proc status: no %s line", key)
}

// sumCPU returns the total CPU time of pids.
func sumCPU(pids []int) (time.Duration, error) {
	var t time.Duration
	for _, p := range pids {
		c, err := cpuTime(p)
		if err != nil {
			return 0, err
		}
		t += c
	}
	return t, nil
}

// sumRSS returns the total RSS of pids.
func sumRSS(pids []int) (int64, error) {
	var t int64
	for _, p := range pids {
		r, err := rssBytes(p)
		if err != nil {
			return 0, err
		}
		t += r
	}
	return t, nil
}

// systemBusy returns the CPU time all CPUs have spent busy since boot (/proc/stat "cpu" line: user,
// nice, system, irq, softirq and steal; not idle or iowait).
func systemBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("system cpu time: %w", err)
	}
	return parseProcStatBusy(b)
}

func parseProcStatBusy(b []byte) (time.Duration, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: first line %q is not the cpu total", line)
	}
	var busy uint64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system [idle iowait] irq softirq steal
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: field %d: %w", i, err)
		}
		busy += v
	}
	return time.Duration(busy) * time.Second / userHZ, nil
}

// ownCPU returns the CPU time of this process and all its descendants (load generator, xDS server,
// upstream and every proxy), ignoring processes that exit meanwhile.
func ownCPU() time.Duration {
	var t time.Duration
	for _, p := range descendants(os.Getpid()) {
		if c, err := cpuTime(p); err == nil {
			t += c
		}
	}
	return t
}
