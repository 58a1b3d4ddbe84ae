package bookinfo_test

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"canton.dev/canton/examples/bookinfo"
	"canton.dev/canton/examples/bookinfo/ratingspb"
	"canton.dev/canton/internal/resource"
)

// TestEveryYAMLParsesAndValidates parses every YAML file of the sample, base
// and scenarios, with the strict parser the anchors use.
func TestEveryYAMLParsesAndValidates(t *testing.T) {
	kinds := map[string]int{}
	for _, fsys := range []fs.FS{bookinfo.Manifests, bookinfo.Scenarios} {
		err := fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
				return err
			}
			b, err := fs.ReadFile(fsys, path)
			if err != nil {
				return err
			}
			objs, err := resource.Parse(path, b, "demo.mesh", "bookinfo.demo.mesh")
			if err != nil {
				t.Errorf("%s: %v", path, err)
				return nil
			}
			if len(objs) == 0 {
				t.Errorf("%s: no objects", path)
			}
			for _, o := range objs {
				if o.Namespace != "bookinfo.demo.mesh" {
					t.Errorf("%s: %s %s in namespace %q, want bookinfo.demo.mesh", path, o.Kind, o.Name, o.Namespace)
				}
				kinds[o.Kind]++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"Service", "DestinationRule", "VirtualService", "PeerAuthentication", "AuthorizationPolicy"} {
		if kinds[k] == 0 {
			t.Errorf("no %s in the sample's YAML (have %v)", k, kinds)
		}
	}
}

// router stands in for the sidecars in these tests: one listener (HTTP/1.1
// and h2c) that forwards by Host to the named service, with HTTP/2 to
// ratings as the mesh's ratings port (protocol GRPC) would.
type router struct {
	mu      sync.Mutex
	apps    map[string]string // service -> address
	headers []http.Header     // requests' headers, for propagation checks
	srv     *http.Server
	addr    string
}

func newRouter(t *testing.T) *router {
	rt := &router{apps: map[string]string{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h1 := &http.Transport{}
	h2 := &http.Transport{Protocols: new(http.Protocols)}
	h2.Protocols.SetUnencryptedHTTP2(true)
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			host, _, _ := strings.Cut(pr.In.Host, ":")
			rt.mu.Lock()
			addr := rt.apps[host]
			rt.headers = append(rt.headers, pr.In.Header.Clone())
			rt.mu.Unlock()
			pr.SetURL(&url.URL{Scheme: "http", Host: addr})
		},
		Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.ProtoMajor == 2 {
				return h2.RoundTrip(r)
			}
			return h1.RoundTrip(r)
		}),
	}
	rt.srv = &http.Server{Handler: rp, Protocols: new(http.Protocols)}
	rt.srv.Protocols.SetHTTP1(true)
	rt.srv.Protocols.SetUnencryptedHTTP2(true)
	go rt.srv.Serve(l)
	rt.addr = l.Addr().String()
	t.Cleanup(func() { rt.srv.Close(); h1.CloseIdleConnections(); h2.CloseIdleConnections() })
	return rt
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func start(t *testing.T, rt *router, cfg bookinfo.Config) *bookinfo.App {
	t.Helper()
	a, err := bookinfo.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if err := a.SetOutbound(rt.addr); err != nil {
		t.Fatal(err)
	}
	return a
}

func getPage(t *testing.T, addr, user string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/productpage", nil)
	if user != "" {
		req.Header.Set("end-user", user)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("productpage: %s: %s", resp.Status, b)
	}
	return string(b)
}

// TestPageShowsEachReviewsVersion runs the sample behind a Host router and
// checks what the page shows for each reviews version and ratings protocol,
// and that end-user reaches ratings.
func TestPageShowsEachReviewsVersion(t *testing.T) {
	for _, tc := range []struct {
		version, overHTTP string
		want              []string
	}{
		{"v1", "grpc", []string{`data-reviews-version="v1"`, `data-ratings="none"`, `data-details="ok"`, "reviews-v1"}},
		{"v2", "grpc", []string{`data-reviews-version="v2"`, `data-ratings="stars"`, `class="stars-black">★★★★★`, "★★★★☆"}},
		{"v3", "grpc", []string{`data-reviews-version="v3"`, `data-ratings="stars"`, `class="stars-red">★★★★★`}},
		{"v2", "http", []string{`data-reviews-version="v2"`, `data-ratings="stars"`, `class="stars-black">`}},
	} {
		t.Run(tc.version+"/"+tc.overHTTP, func(t *testing.T) {
			rt := newRouter(t)
			pp := start(t, rt, bookinfo.Config{Service: bookinfo.ProductPage})
			rt.apps["details"] = start(t, rt, bookinfo.Config{Service: bookinfo.Details}).Addr()
			rt.apps["reviews"] = start(t, rt, bookinfo.Config{Service: bookinfo.Reviews, Version: tc.version, RatingsOverHTTP: tc.overHTTP == "http"}).Addr()
			rt.apps["ratings"] = start(t, rt, bookinfo.Config{Service: bookinfo.Ratings}).Addr()
			page := getPage(t, pp.Addr(), "jason")
			for _, w := range tc.want {
				if !strings.Contains(page, w) {
					t.Errorf("page lacks %q:\n%s", w, page)
				}
			}
			// end-user went from productpage to reviews, and from reviews to ratings.
			rt.mu.Lock()
			defer rt.mu.Unlock()
			hops := 0
			for _, h := range rt.headers {
				if h.Get("end-user") == "jason" {
					hops++
				}
			}
			want := 2 // details, reviews
			if tc.version != "v1" {
				want = 3 // and ratings
			}
			if hops != want {
				t.Errorf("%d calls carried end-user: jason, want %d", hops, want)
			}
		})
	}
}

// TestPageDegradesWhenServicesFail checks the page's outcome attributes when
// reviews, details or ratings are unreachable.
func TestPageDegradesWhenServicesFail(t *testing.T) {
	rt := newRouter(t)
	pp := start(t, rt, bookinfo.Config{Service: bookinfo.ProductPage, CallTimeout: time.Second})
	rt.apps["reviews"] = start(t, rt, bookinfo.Config{Service: bookinfo.Reviews, Version: "v3", RatingsOverHTTP: true}).Addr()
	rt.apps["details"] = "127.0.0.1:1" // refused
	rt.apps["ratings"] = "127.0.0.1:1"
	page := getPage(t, pp.Addr(), "")
	for _, w := range []string{`data-details="unavailable"`, `data-ratings="unavailable"`, `data-reviews-version="v3"`, "Ratings service is currently unavailable"} {
		if !strings.Contains(page, w) {
			t.Errorf("page lacks %q", w)
		}
	}
	rt.mu.Lock()
	rt.apps["reviews"] = "127.0.0.1:1"
	rt.mu.Unlock()
	if page := getPage(t, pp.Addr(), ""); !strings.Contains(page, `data-reviews-version=""`) || !strings.Contains(page, "product reviews are currently unavailable") {
		t.Errorf("page with reviews down:\n%s", page)
	}
}

// TestRatingsServesGRPCAndJSON calls ratings directly over h2c gRPC and HTTP/1.1.
func TestRatingsServesGRPCAndJSON(t *testing.T) {
	a, err := bookinfo.Start(bookinfo.Config{Service: bookinfo.Ratings})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	conn, err := bookinfo.DialRatings(a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "end-user", "jason")
	resp, err := ratingspb.NewRatingsClient(conn).GetRatings(ctx, &ratingspb.GetRatingsRequest{ProductId: 7})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetProductId() != 7 || resp.GetRatings()["Reviewer1"] != 5 || resp.GetRatings()["Reviewer2"] != 4 {
		t.Errorf("gRPC answer %v", resp)
	}
	if _, err := ratingspb.NewRatingsClient(conn).GetRatings(ctx, &ratingspb.GetRatingsRequest{ProductId: -1}); err == nil {
		t.Error("negative product id accepted")
	}
	r, err := http.Get("http://" + a.Addr() + "/ratings/7")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var body struct {
		ID      int              `json:"id"`
		Ratings map[string]int32 `json:"ratings"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.ID != 7 || body.Ratings["Reviewer1"] != 5 {
		t.Errorf("JSON answer %+v, %v", body, err)
	}
}

func TestStartRejectsUnknownServiceAndVersion(t *testing.T) {
	for _, cfg := range []bookinfo.Config{{Service: "nope"}, {Service: bookinfo.Reviews, Version: "v9"}, {Service: bookinfo.Reviews}} {
		if a, err := bookinfo.Start(cfg); err == nil {
			a.Close()
			t.Errorf("Start(%+v) succeeded", cfg)
		}
	}
}

// TestLoginSetsEndUser checks that a browser user who signs in is routed as
// that user: the cookie becomes the end-user header of productpage's calls.
func TestLoginSetsEndUser(t *testing.T) {
	rt := newRouter(t)
	pp := start(t, rt, bookinfo.Config{Service: bookinfo.ProductPage})
	rt.apps["details"] = start(t, rt, bookinfo.Config{Service: bookinfo.Details}).Addr()
	rt.apps["reviews"] = start(t, rt, bookinfo.Config{Service: bookinfo.Reviews, Version: "v1"}).Addr()
	c := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.PostForm("http://"+pp.Addr()+"/login", url.Values{"username": {"jason"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Fatalf("login: %s, cookies %v", resp.Status, resp.Cookies())
	}
	req, _ := http.NewRequest("GET", "http://"+pp.Addr()+"/productpage", nil)
	req.AddCookie(resp.Cookies()[0])
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "signed in as <b>jason</b>") {
		t.Errorf("page does not greet jason")
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if n := len(rt.headers); n != 2 || rt.headers[0].Get("end-user") != "jason" || rt.headers[1].Get("end-user") != "jason" {
		t.Errorf("calls carried %v", rt.headers)
	}
	if resp, err := c.PostForm("http://"+pp.Addr()+"/login", url.Values{"username": {"a b"}}); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad user name accepted: %v %v", resp, err)
	}
}

// TestRatingsRefusesGRPCOverHTTP1 checks that a gRPC call downgraded to
// HTTP/1.1 (by a proxy in front) gets a plain 505 naming the protocol.
func TestRatingsRefusesGRPCOverHTTP1(t *testing.T) {
	a, err := bookinfo.Start(bookinfo.Config{Service: bookinfo.Ratings})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	req, _ := http.NewRequest("POST", "http://"+a.Addr()+"/canton.bookinfo.ratings.v1.Ratings/GetRatings", strings.NewReader(""))
	req.Header.Set("Content-Type", "application/grpc")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusHTTPVersionNotSupported || !strings.Contains(string(b), "HTTP/1.1") {
		t.Errorf("got %s %q", resp.Status, b)
	}
}
