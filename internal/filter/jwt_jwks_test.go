package filter

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/types/known/durationpb"
)

func remoteProvider(uri string, cache time.Duration) *jwtv3.JwtProvider {
	rj := &jwtv3.RemoteJwks{HttpUri: &corev3.HttpUri{
		Uri: uri, HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: "outbound|443||issuer.example"}, Timeout: durationpb.New(2 * time.Second),
	}}
	if cache > 0 {
		rj.CacheDuration = durationpb.New(cache)
	}
	return &jwtv3.JwtProvider{Issuer: testIss, Audiences: []string{testAud}, JwksSourceSpecifier: &jwtv3.JwtProvider_RemoteJwks{RemoteJwks: rj}}
}

// jwksServer serves the test JWKS on 127.0.0.1 and counts requests; fail
// makes it answer 500.
type jwksServer struct {
	*httptest.Server
	hits atomic.Int32
	fail atomic.Bool
	body atomic.Value // string
}

func newJWKSServer(t *testing.T, body string) *jwksServer {
	s := &jwksServer{}
	s.body.Store(body)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if s.fail.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte(s.body.Load().(string)))
	}))
	t.Cleanup(s.Close)
	return s
}

func TestJWTRemoteJWKSCache(t *testing.T) {
	k := testKeySet(t)
	srv := newJWKSServer(t, k.jwksJSON(t))
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("test server at %s, want loopback", srv.URL)
	}
	clock := newFakeClock()
	h, _ := buildJWTChain(t, jwtConfig(remoteProvider(srv.URL+"/jwks", time.Minute), reqProviderName("p")), clock)
	tok := sign(t, jose.RS256, k.rsa, "rsa1", claims(nil))
	step := func(want int, wantHits int32) {
		t.Helper()
		rec := serveJWT(t, h, bearer(tok), nil)
		if rec.Code != want {
			t.Fatalf("status %d (%s), want %d", rec.Code, rec.Body, want)
		}
		if got := srv.hits.Load(); got != wantHits {
			t.Fatalf("%d fetches, want %d", got, wantHits)
		}
	}
	step(200, 1)
	step(200, 1) // cached
	clock.Advance(59 * time.Second)
	step(200, 1)
	clock.Advance(2 * time.Second) // past cache_duration
	step(200, 2)

	srv.fail.Store(true)
	clock.Advance(2 * time.Minute)
	step(401, 3)
	if rec := serveJWT(t, h, bearer(tok), nil); rec.Body.String() != "Jwks remote fetch is failed" {
		t.Fatalf("body %q", rec.Body)
	}
	if srv.hits.Load() != 3 {
		t.Fatal("a failed fetch was retried within the backoff")
	}
	srv.fail.Store(false)
	clock.Advance(jwksFailBackoff + time.Millisecond)
	step(200, 4)

	// A key rotation is picked up at the next refresh.
	srv.body.Store(`{"keys":[]}`)
	clock.Advance(2 * time.Minute)
	step(401, 5)
}

func TestJWTInjectedFetcher(t *testing.T) {
	k := testKeySet(t)
	clock := newFakeClock()
	h, _ := buildJWTChain(t, jwtConfig(remoteProvider("https://issuer.example/jwks", 0), reqProviderName("p")), clock)
	var calls atomic.Int32
	release := make(chan struct{})
	fetch := JWKSFetcher(func(ctx context.Context, uri, cluster string) ([]byte, error) {
		calls.Add(1)
		if uri != "https://issuer.example/jwks" || cluster != "outbound|443||issuer.example" {
			return nil, errors.New("unexpected uri or cluster " + uri + " " + cluster)
		}
		if _, ok := ctx.Deadline(); !ok {
			return nil, errors.New("fetch without deadline")
		}
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return []byte(k.jwksJSON(t)), nil
	})
	tok := sign(t, jose.ES256, k.ec, "ec1", claims(nil))
	var wg sync.WaitGroup
	codes := make([]int, 8)
	for i := range codes {
		wg.Go(func() {
			r := bearer(tok)
			r = r.WithContext(WithJWKSFetcher(r.Context(), fetch))
			codes[i] = serveJWT(t, h, r, nil).Code
		})
	}
	close(release)
	wg.Wait()
	for i, c := range codes {
		if c != 200 {
			t.Fatalf("request %d: status %d", i, c)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d fetches for concurrent requests on a cold cache, want 1", n)
	}
}

func TestJWKSFetchLimits(t *testing.T) {
	big := `{"keys":[],"pad":"` + strings.Repeat("x", maxJWKSSize) + `"}`
	srv := newJWKSServer(t, big)
	if _, err := directFetch(context.Background(), srv.URL, ""); err == nil || !strings.Contains(err.Error(), "above") {
		t.Fatalf("oversized JWKS: error %v", err)
	}
	redirect := httptest.NewServer(http.RedirectHandler(srv.URL, http.StatusFound))
	defer redirect.Close()
	if _, err := directFetch(context.Background(), redirect.URL, ""); err == nil || !strings.Contains(err.Error(), "status 302") {
		t.Fatalf("redirect followed: error %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := directFetch(ctx, srv.URL, ""); err == nil {
		t.Fatal("fetch with a cancelled context succeeded")
	}
}

func TestParseJWKS(t *testing.T) {
	k := testKeySet(t)
	tests := []struct {
		name     string
		doc      string
		wantKeys int
		wantErr  string
	}{
		{"two keys", k.jwksJSON(t), 2, ""},
		{"skips unknown kty", `{"keys":[{"kty":"XX","kid":"a"},` + strings.TrimPrefix(k.jwksJSON(t), `{"keys":[`), 2, ""},
		{"skips encryption keys", `{"keys":[{"kty":"oct","k":"c2VjcmV0","use":"enc"}]}`, 0, "no usable"},
		{"oct key", `{"keys":[{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0","alg":"HS256"}]}`, 1, ""},
		{"not json", `nope`, 0, "not a JSON Web Key Set"},
		{"no keys", `{}`, 0, "no usable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := parseJWKS([]byte(tc.doc))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(keys) != tc.wantKeys {
				t.Fatalf("%d keys, error %v; want %d keys", len(keys), err, tc.wantKeys)
			}
		})
	}
}
