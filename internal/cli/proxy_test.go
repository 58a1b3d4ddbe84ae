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

// Gateway flags that do not fit are refused before anything starts, in one line naming the flag.
func TestProxyRefusesBadGatewayFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--gateway", "--app", "127.0.0.1:9080"}, "proxy: --gateway: --app does not apply"},
		{[]string{"--gateway", "--outbound", "127.0.0.1:0"}, "proxy: --gateway: --outbound does not apply"},
		{[]string{"--gateway", "--upstream", "echo=127.0.0.1:0"}, "proxy: --gateway: --upstream does not apply"},
		{[]string{"--gateway", "--gateway-address", "localhost"}, `proxy: --gateway-address "localhost": want an IP address`},
		{[]string{"--gateway-address", "127.0.0.1"}, "proxy: --gateway-address needs --gateway"},
	} {
		var out, errb bytes.Buffer
		args := append([]string{"proxy", "--service", "ingressgateway", "--scope", "bookinfo.demo.mesh", "--anchors", "127.0.0.1:1",
			"--join-token", "/nonexistent"}, tc.args...)
		code := Main(args, strings.NewReader(""), &out, &errb)
		if code == 0 || !strings.Contains(errb.String(), tc.want) || strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want a one-line error containing %q", tc.args, code, errb.String(), tc.want)
		}
	}
}

// A certificate lifetime the anchors would not issue is refused before anything starts.
func TestProxyRefusesBadCertTTL(t *testing.T) {
	for _, ttl := range []string{"500ms", "200h"} {
		var out, errb bytes.Buffer
		code := Main([]string{"proxy", "--service", "client", "--scope", "data.demo.mesh", "--anchors", "127.0.0.1:1",
			"--join-token", "/nonexistent", "--cert-ttl", ttl}, strings.NewReader(""), &out, &errb)
		if code == 0 || !strings.Contains(errb.String(), "proxy: --cert-ttl "+ttl) {
			t.Errorf("--cert-ttl %s: exit %d, stderr %q", ttl, code, errb.String())
		}
	}
}
