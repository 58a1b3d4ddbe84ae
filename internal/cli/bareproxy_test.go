package cli

import (
	"bytes"
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
