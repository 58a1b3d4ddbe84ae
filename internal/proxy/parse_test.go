package proxy

import (
	"net/http"
	"strings"
	"testing"
)

func TestCookieValueAndHasToken(t *testing.T) {
	h := http.Header{"Cookie": {`a=1; session="abc"; b=2`, "c=3"}}
	for name, want := range map[string]string{"a": "1", "session": "abc", "b": "2", "c": "3"} {
		if got, ok := cookieValue(h, name); !ok || got != want {
			t.Errorf("cookie %s = %q %v, want %q", name, got, ok, want)
		}
	}
	if _, ok := cookieValue(h, "missing"); ok {
		t.Errorf("missing cookie found")
	}
	if !hasToken([]string{"keep-alive, Upgrade"}, "upgrade") || hasToken([]string{"upgraded"}, "upgrade") {
		t.Errorf("hasToken wrong")
	}
}

// FuzzCookieValue: a found cookie value occurs in the Cookie header it came from.
func FuzzCookieValue(f *testing.F) {
	f.Add(`a=1; b="2"`, "b")
	f.Add(";;=;", "")
	f.Fuzz(func(t *testing.T, line, name string) {
		v, ok := cookieValue(http.Header{"Cookie": {line}}, name)
		if ok && !strings.Contains(line, v) {
			t.Fatalf("cookie %q from %q: value %q not in the header", name, line, v)
		}
	})
}
