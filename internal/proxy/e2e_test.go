package proxy

import (
	"strings"
	"testing"

	"canton.dev/canton/internal/proxy/xdsclient"
)

func TestEndToEndBasicForwarding(t *testing.T) {
	up := startUpstream(t, "a", nil)
	e := startEnv(t)
	addr := e.basic(up.Addr())
	c := client()
	resp, body := get(t, c, addr, "example.com", "/hello/../world?x=1")
	if resp.StatusCode != 200 || body != "a /world?x=1" {
		t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, body, "a /world?x=1")
	}
	r := up.last.Load()
	if r.Host != "example.com" || r.Header.Get("X-Forwarded-Proto") != "http" || r.Header.Get("X-Request-Id") == "" {
		t.Errorf("upstream saw host %q headers %v", r.Host, r.Header)
	}
	if ok, msg := e.p.Ready(); !ok || !strings.HasPrefix(msg, "live") {
		t.Errorf("Ready = %v %q", ok, msg)
	}
	e.waitACK(xdsclient.ListenerType, "1")
}
