package filter

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Limits on JWKS documents.
const (
	maxJWKSSize = 256 << 10 // bytes of a JWKS document, inline or fetched
	maxJWKSKeys = 100
	// jwksFailBackoff is how long a failed remote fetch is remembered:
	// requests in that window fail at once instead of each refetching.
	jwksFailBackoff = time.Second
	// defaultJWKSCache is Envoy's default remote_jwks.cache_duration.
	defaultJWKSCache = 10 * time.Minute
)

// jwk is one usable verification key of a JWKS.
type jwk struct {
	kid string
	alg string // "" when the JWK does not pin an algorithm
	key any    // *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey or []byte (oct)
}

// parseJWKS decodes a JWKS document, keeping the keys usable for signature
// verification: keys of unknown types, with "use" other than "sig", or
// that do not decode are skipped, as Envoy does. A document with no usable
// key is an error.
func parseJWKS(data []byte) ([]jwk, error) {
	if len(data) > maxJWKSSize {
		return nil, fmt.Errorf("jwks: %d bytes, limit %d", len(data), maxJWKSSize)
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("jwks: not a JSON Web Key Set: %w", err)
	}
	if len(doc.Keys) > maxJWKSKeys {
		return nil, fmt.Errorf("jwks: %d keys, limit %d", len(doc.Keys), maxJWKSKeys)
	}
	var keys []jwk
	for _, raw := range doc.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			continue
		}
		if _, oct := k.Key.([]byte); !oct && !k.Valid() {
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		var key any
		switch pk := k.Key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
			key = pk
		case *rsa.PrivateKey:
			key = &pk.PublicKey
		case *ecdsa.PrivateKey:
			key = &pk.PublicKey
		case ed25519.PrivateKey:
			key = pk.Public()
		case []byte:
			if len(pk) == 0 {
				continue
			}
			key = pk
		default:
			continue
		}
		keys = append(keys, jwk{kid: k.KeyID, alg: k.Algorithm, key: key})
	}
	if len(keys) == 0 {
		return nil, errors.New("jwks: no usable signature verification key")
	}
	return keys, nil
}

// algFitsKey reports whether a JWS algorithm can be verified with key: the
// key type pins the algorithm family, so that, for instance, an RSA public
// key is never used as an HMAC secret (the HS/RS confusion).
func algFitsKey(alg string, key any) bool {
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		_, ok := key.(*rsa.PublicKey)
		return ok
	case "ES256", "ES384", "ES512":
		k, ok := key.(*ecdsa.PublicKey)
		if !ok {
			return false
		}
		want := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}[alg]
		return k.Curve == want
	case "EdDSA":
		_, ok := key.(ed25519.PublicKey)
		return ok
	case "HS256", "HS384", "HS512":
		_, ok := key.([]byte)
		return ok
	}
	return false
}

// JWKSFetcher fetches a remote JWKS document for envoy.filters.http.jwt_authn:
// uri is remote_jwks.http_uri.uri and cluster its cluster (the upstream
// through which Envoy would send the request; a fetcher may route through
// it or ignore it). ctx carries the http_uri timeout. It returns the
// response body of a successful fetch.
type JWKSFetcher func(ctx context.Context, uri, cluster string) ([]byte, error)

type fetcherKey struct{}

// WithJWKSFetcher returns a context whose requests fetch remote JWKS with f.
// The proxy sets it once, in its servers' base context; without it the
// filter fetches the URI directly with a bounded client (no proxy from the
// environment, no redirects, the http_uri timeout, 256 KiB at most).
func WithJWKSFetcher(ctx context.Context, f JWKSFetcher) context.Context {
	return context.WithValue(ctx, fetcherKey{}, f)
}

func fetcherFrom(ctx context.Context) JWKSFetcher {
	if f, ok := ctx.Value(fetcherKey{}).(JWKSFetcher); ok && f != nil {
		return f
	}
	return directFetch
}

var directClient = &http.Client{
	Transport: &http.Transport{
		Proxy:                 nil,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       time.Minute,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// directFetch GETs uri with directClient; the caller's context bounds it.
func directFetch(ctx context.Context, uri, _ string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks fetch %s: %w", uri, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := directClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jwks fetch %s: %w", uri, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks fetch %s: status %d", uri, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
	if err != nil {
		return nil, fmt.Errorf("jwks fetch %s: reading body: %w", uri, err)
	}
	if len(body) > maxJWKSSize {
		return nil, fmt.Errorf("jwks fetch %s: body above %d bytes", uri, maxJWKSSize)
	}
	return body, nil
}

// remoteJWKS is a provider's remote_jwks with its cache. One fetch runs at
// a time; requests that need the keys meanwhile wait for it (bounded by
// their own context). The keys are kept for the cache duration; a failed
// fetch fails the requests (fail closed, as Envoy) and is remembered for
// jwksFailBackoff.
type remoteJWKS struct {
	uri, cluster string
	timeout      time.Duration
	ttl          time.Duration

	mu        sync.Mutex
	keys      []jwk
	expires   time.Time
	failUntil time.Time
	lastErr   error
	inflight  chan struct{} // closed when the running fetch ends
}

// get returns the cached keys, fetching them when absent or expired.
func (rj *remoteJWKS) get(ctx context.Context, now func() time.Time) ([]jwk, error) {
	for range 3 {
		rj.mu.Lock()
		t := now()
		switch {
		case rj.keys != nil && t.Before(rj.expires):
			keys := rj.keys
			rj.mu.Unlock()
			return keys, nil
		case rj.lastErr != nil && t.Before(rj.failUntil):
			err := rj.lastErr
			rj.mu.Unlock()
			return nil, err
		case rj.inflight != nil:
			ch := rj.inflight
			rj.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("jwks %s: waiting for fetch: %w", rj.uri, ctx.Err())
			}
		}
		ch := make(chan struct{})
		rj.inflight = ch
		rj.mu.Unlock()

		keys, err := rj.fetch(ctx)

		rj.mu.Lock()
		t = now()
		if err != nil {
			rj.lastErr, rj.failUntil = err, t.Add(jwksFailBackoff)
			rj.keys = nil
		} else {
			rj.keys, rj.expires, rj.lastErr = keys, t.Add(rj.ttl), nil
		}
		rj.inflight = nil
		close(ch)
		rj.mu.Unlock()
		return keys, err
	}
	return nil, fmt.Errorf("jwks %s: no keys after waiting for fetches", rj.uri)
}

// fetch runs one fetch, detached from the request's cancellation (other
// requests may be waiting for it) but bounded by the http_uri timeout.
func (rj *remoteJWKS) fetch(ctx context.Context) ([]jwk, error) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rj.timeout)
	defer cancel()
	body, err := fetcherFrom(ctx)(fctx, rj.uri, rj.cluster)
	if err != nil {
		return nil, err
	}
	keys, err := parseJWKS(body)
	if err != nil {
		return nil, fmt.Errorf("jwks %s: %w", rj.uri, err)
	}
	return keys, nil
}
