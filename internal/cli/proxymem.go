package cli

import (
	"context"
	"os"
	"runtime/debug"
	"time"
)

// proxyGCPercent is the GOGC of a proxy process (canton proxy and its bare form). A data plane runs
// for a long time on a small, steady heap; at Go's default (100) the heap grows to twice what is
// live between collections, at 50 to one and a half times, for somewhat more frequent collections
// (docs/performance.md, "Proxy memory").
const proxyGCPercent = 50

// proxyMemory applies the memory policy of a proxy whose readiness (first configuration applied)
// ready reports: the GC target above from the start, and, once the first configuration is
// applied, the garbage of start-up and of that configuration returned to the kernel. GOGC or
// GOMEMLIMIT set in the environment turn it off: the user's settings win. It returns at once.
func proxyMemory(ctx context.Context, ready func() bool) {
	_, gogc := os.LookupEnv("GOGC")
	_, memlimit := os.LookupEnv("GOMEMLIMIT")
	if gogc || memlimit {
		return
	}
	debug.SetGCPercent(proxyGCPercent)
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for !ready() {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		debug.FreeOSMemory()
	}()
}
