package cli

import (
	"bytes"
	"strings"
	"testing"
)

// A bad --upstream is refused before anything starts, in one line naming the flag and the entry.
func TestProxyRefusesBadUpstream(t *testing.T) {
	for _, tc := range []struct{ flag, want string }{
		{"echo", `proxy: --upstream: upstream "echo": want NAME[:PORT]=HOST:PORT`},
		{"echo=10.0.0.1:5432", "must be a loopback address"},
		{"echo=127.0.0.1:1,db=127.0.0.1:1", "bound twice"},
	} {
		var out, errb bytes.Buffer
		code := Main([]string{"proxy", "--service", "client", "--scope", "data.demo.mesh", "--anchors", "127.0.0.1:1",
			"--join-token", "/nonexistent", "--upstream", tc.flag}, strings.NewReader(""), &out, &errb)
		if code == 0 || !strings.Contains(errb.String(), tc.want) || strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
			t.Errorf("--upstream %s: exit %d, stderr %q; want a one-line error containing %q", tc.flag, code, errb.String(), tc.want)
		}
	}
}
