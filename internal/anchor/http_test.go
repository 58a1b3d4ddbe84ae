package anchor_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"canton.dev/canton/internal/meshtest"
)

func TestAnchorServesDashboardAndHealth(t *testing.T) {
	c := startCluster(t, meshtest.Options{HTTP: "127.0.0.1:0"})
	put(t, client(t, c, 0), vs("reviews", "v1"))
	base := "http://" + c.Anchor(0).HTTPAddr()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	code, body := get("/")
	if code != 200 || !strings.Contains(body, "demo.mesh") || !strings.Contains(body, "a3") {
		t.Fatalf("/: %d, anchors or mesh missing", code)
	}
	code, body = get("/scope/demo.mesh")
	if code != 200 || !strings.Contains(body, "reviews") || !strings.Contains(body, "genesis") {
		t.Fatalf("/scope/demo.mesh: %d, lineage or objects missing:\n%.2000s", code, body)
	}
	code, body = get("/api/overview.json")
	var v map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &v) != nil {
		t.Fatalf("/api/overview.json: %d %.200s", code, body)
	}
}
