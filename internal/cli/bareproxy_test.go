package cli

import (
	"bytes"
	"context"
	"os"
	"runtime/debug"
	"strings"
	"testing"
)

// The hidden bare-proxy command refuses to start without a server and a node ID, in one line.
func TestBareProxyNeedsServerAndID(t *testing.T) {
	for _, args := range [][]string{{"bare-proxy"}, {"bare-proxy", "--xds", "127.0.0.1:1"}, {"bare-proxy", "--id", "n"}} {
		var out, errb bytes.Buffer
		code := Main(args, strings.NewReader(""), &out, &errb)
		if code == 0 || !strings.Contains(errb.String(), "--xds HOST:PORT and --id NODE are required") {
			t.Errorf("%q: exit %d, stderr %q; want the missing flags named", args, code, errb.String())
		}
	}
}

// A proxy runs with GOGC 50 unless the environment sets GOGC or GOMEMLIMIT.
func TestProxyMemoryPolicy(t *testing.T) {
	if _, ok := os.LookupEnv("GOGC"); ok {
		t.Skip("GOGC is set: the policy steps aside")
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		t.Skip("GOMEMLIMIT is set: the policy steps aside")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	proxyMemory(ctx, func() bool { return false })
	if got := debug.SetGCPercent(100); got != proxyGCPercent {
		t.Fatalf("GOGC %d after proxyMemory, want %d", got, proxyGCPercent)
	}
	t.Setenv("GOGC", "100")
	proxyMemory(ctx, func() bool { return false })
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GOGC %d with GOGC set in the environment, want it untouched (100)", got)
	}
}
