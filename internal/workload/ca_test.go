package workload_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"canton.dev/canton/internal/api"
	"canton.dev/canton/internal/api/apipb"
	"canton.dev/canton/internal/identity"
	"canton.dev/canton/internal/meshtest"
	"canton.dev/canton/internal/workload"
)

// shortIdle makes productpage's proxy close its pooled connections to
// reviews after 5ms idle, so that requests keep opening new mTLS connections
// (fresh handshakes with the certificates current at that moment) instead of
// riding one connection made long before. (maxRequestsPerConnection would be
// stricter, but our proxy does not announce it yet.)
const shortIdle = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      http: {idleTimeout: 5ms}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`

func shortCerts(ttl time.Duration) func(*workload.Options) {
	return func(o *workload.Options) { o.CertTTL = ttl }
}

func allAnchors(c *meshtest.Cluster) []int {
	var all []int
	for i := range c.Len() {
		all = append(all, i)
	}
	return all
}

// issuerSerial is the serial of the CA that issued a workload's current SVID.
func issuerSerial(s *sidecar) string {
	c := s.w.Credentials()
	if len(c.Chain) < 2 {
		return "(no intermediate)"
	}
	return c.Chain[1].SerialNumber.Text(16)
}

// TestScopeCARotationUnderLoad: the bookinfo scope's CA rotates while
// productpage calls reviews over mTLS, one handshake per request, and the
// workloads re-issue every two seconds: old and new leaves meet in every
// combination, and not one request fails.
func TestScopeCARotationUnderLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, cl := startBookinfo(ctx, t)
	apply(t, cl, shortIdle)
	short := shortCerts(4 * time.Second) // rotated every 2s
	v1 := startSidecarWith(t, c, ns, allAnchors(c), "reviews", "v1", app(t, "reviews-v1"), short)
	pp := startSidecarWith(t, c, ns, allAnchors(c), "productpage", "v1", app(t, "productpage"), short)
	eventually(t, 15*time.Second, func() error {
		if got := fetch(t, pp, "reviews:9080", 10); got["reviews-v1"] != 10 {
			return fmt.Errorf("route-all-v1: %v", got)
		}
		return nil
	})
	oldCA := issuerSerial(v1)

	var (
		mu       sync.Mutex
		ok       int
		failures = map[string]int{}
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for body, n := range fetch(t, pp, "reviews:9080", 5) {
				mu.Lock()
				if body == "reviews-v1" {
					ok += n
				} else {
					failures[body] += n
				}
				mu.Unlock()
			}
		}
	}()
	succeeded := func() int { mu.Lock(); defer mu.Unlock(); return ok }

	resp, err := cl.RotateCA(ctx, ns, 0)
	if err != nil {
		t.Fatal(err)
	}
	if resp.PreviousSerial != oldCA || resp.Serial == oldCA {
		t.Fatalf("rotation answered %s -> %s; the workloads' CA was %s", resp.PreviousSerial, resp.Serial, oldCA)
	}
	// Both workloads re-issue from the new CA at their next rotation.
	eventually(t, 15*time.Second, func() error {
		if a, b := issuerSerial(v1), issuerSerial(pp); a != resp.Serial || b != resp.Serial {
			return fmt.Errorf("issuers: reviews %s, productpage %s; want %s", a, b, resp.Serial)
		}
		return nil
	})
	// And traffic goes on with new leaves on both sides, through more rotations.
	base := succeeded()
	eventually(t, 15*time.Second, func() error {
		if n := succeeded(); n < base+40 {
			return fmt.Errorf("%d requests since both sides moved to the new CA", n-base)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("requests failed while the scope CA rotated (%d succeeded): %v", ok, failures)
	}
	t.Logf("%d requests, none failed, across the rotation of CA %s to %s", ok, oldCA, resp.Serial)
}

// meshHandshake opens a TLS connection to addr as a mesh client holding
// creds (the admin's), verifying the server's chain against the mesh root.
func meshHandshake(addr string, creds *identity.Credentials) error {
	cfg := identity.ClientTLS(creds, func(identity.ID) error { return nil })
	cfg.NextProtos = nil // the inbound listener speaks HTTP, not the API's h2-only ALPN
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	return conn.Close()
}

// TestExpiredSVIDFailsClosed: with every anchor down, the workloads cannot
// renew their short-lived SVIDs; once those expire, no new mTLS connection
// is made (handshakes fail, the request gets an error, never the service's
// answer) and nothing falls back to plaintext.
func TestExpiredSVIDFailsClosed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, cl := startBookinfo(ctx, t)
	apply(t, cl, shortIdle)
	short := shortCerts(3 * time.Second)
	v1 := startSidecarWith(t, c, ns, allAnchors(c), "reviews", "v1", app(t, "reviews-v1"), short)
	pp := startSidecarWith(t, c, ns, allAnchors(c), "productpage", "v1", app(t, "productpage"), short)
	eventually(t, 15*time.Second, func() error {
		if got := fetch(t, pp, "reviews:9080", 10); got["reviews-v1"] != 10 {
			return fmt.Errorf("route-all-v1: %v", got)
		}
		return nil
	})
	admin, err := identity.LoadCredentials(c.AdminCredentials())
	if err != nil {
		t.Fatal(err)
	}
	if err := meshHandshake(v1.w.Inbound(), admin); err != nil {
		t.Fatalf("handshake with reviews while its SVID is valid: %v", err)
	}

	for i := range c.Len() {
		if err := c.Stop(i); err != nil {
			t.Fatal(err)
		}
	}
	// No anchor can renew them now: wait for both SVIDs to expire.
	eventually(t, 10*time.Second, func() error {
		now := time.Now()
		for _, s := range []*sidecar{v1, pp} {
			if err := s.w.Credentials().Verify(now); err == nil {
				return fmt.Errorf("%s's SVID is still valid until %s", s.w.Inbound(), s.w.Credentials().NotAfter().Format(time.RFC3339Nano))
			}
		}
		return nil
	})

	// productpage's proxy refuses to talk to reviews with an expired identity.
	got := fetch(t, pp, "reviews:9080", 5)
	if got["reviews-v1"] != 0 {
		t.Fatalf("requests reached reviews after both SVIDs expired: %v", got)
	}
	t.Logf("after expiry, productpage -> reviews: %v", got)
	// A mesh client refuses reviews' expired certificate: the handshake fails.
	err = meshHandshake(v1.w.Inbound(), admin)
	if err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("handshake with reviews after its SVID expired: %v, want a certificate-expired failure", err)
	}
	// And reviews does not fall back to plaintext.
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + v1.w.Inbound() + "/")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("reviews' inbound answered plaintext HTTP with %s after its SVID expired", resp.Status)
	}
	var tlsErr tls.RecordHeaderError
	if errors.As(err, &tlsErr) {
		t.Logf("plaintext refused at the TLS layer: %v", err)
	}
}

// chainsToRoot reports whether a workload's current chain reaches root and
// how many roots its bundle holds.
func chainsToRoot(s *sidecar, root *x509.Certificate) (bool, int) {
	c := s.w.Credentials()
	return identity.ChainsTo(c.Chain, root, time.Now()), len(c.Bundle)
}

// inboundAccepts makes one HTTP request over TLS to a workload's inbound with
// creds as the client certificate, trusting bundle. It fails when either
// side refuses the other's certificate.
func inboundAccepts(addr string, creds *identity.Credentials, bundle []*x509.Certificate) error {
	c := &identity.Credentials{Chain: creds.Chain, Key: creds.Key, Bundle: bundle}
	cfg := identity.ClientTLS(c, func(identity.ID) error { return nil })
	cfg.NextProtos = nil
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n")); err != nil {
		return err
	}
	_, err = conn.Read(make([]byte, 1))
	return err
}

// TestRootRotationUnderLoad: the mesh root rotates (add, then finish) while
// productpage calls reviews over mTLS, one handshake per request, with
// 4-second SVIDs: no request fails, both workloads end on chains to the new
// root with the new bundle alone, and a client whose certificate chains only
// to the old root is refused by reviews after finish (and not before).
func TestRootRotationUnderLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, cl := startBookinfo(ctx, t)
	apply(t, cl, shortIdle)
	short := shortCerts(4 * time.Second)
	v1 := startSidecarWith(t, c, ns, allAnchors(c), "reviews", "v1", app(t, "reviews-v1"), short)
	pp := startSidecarWith(t, c, ns, allAnchors(c), "productpage", "v1", app(t, "productpage"), short)
	eventually(t, 15*time.Second, func() error {
		if got := fetch(t, pp, "reviews:9080", 10); got["reviews-v1"] != 10 {
			return fmt.Errorf("route-all-v1: %v", got)
		}
		return nil
	})
	admin, err := identity.LoadCredentials(c.AdminCredentials()) // issued under R1 at bootstrap
	if err != nil {
		t.Fatal(err)
	}
	r1 := admin.Bundle[0]

	var (
		mu       sync.Mutex
		ok       int
		failures = map[string]int{}
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for body, n := range fetch(t, pp, "reviews:9080", 5) {
				mu.Lock()
				if body == "reviews-v1" {
					ok += n
				} else {
					failures[body] += n
				}
				mu.Unlock()
			}
		}
	}()
	succeeded := func() int { mu.Lock(); defer mu.Unlock(); return ok }
	moreTraffic := func(what string) {
		base := succeeded()
		eventually(t, 15*time.Second, func() error {
			if n := succeeded(); n < base+30 {
				return fmt.Errorf("%d requests since %s", n-base, what)
			}
			return nil
		})
	}

	add, err := cl.Raw().RotateRoot(ctx, &apipb.RotateRootRequest{})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := x509.ParseCertificate(add.Bundle[len(add.Bundle)-1])
	if err != nil || len(add.Bundle) != 2 || r2.Equal(r1) {
		t.Fatalf("add answered a bundle of %d roots (%v)", len(add.Bundle), err)
	}
	// Both workloads renew under R2 and receive {R1, R2}.
	eventually(t, 15*time.Second, func() error {
		for name, s := range map[string]*sidecar{"reviews": v1, "productpage": pp} {
			if to, n := chainsToRoot(s, r2); !to || n != 2 {
				return fmt.Errorf("%s: chains to R2 %v, bundle of %d", name, to, n)
			}
		}
		return nil
	})
	moreTraffic("both workloads moved under R2")
	// During the overlap reviews still accepts a client of R1 alone.
	both := []*x509.Certificate{r1, r2}
	if err := inboundAccepts(v1.w.Inbound(), admin, both); err != nil {
		t.Fatalf("during the overlap, reviews refused a client of the old root: %v", err)
	}

	if _, err := cl.Raw().RotateRoot(ctx, &apipb.RotateRootRequest{Finish: true}); api.Code(api.Err(err)) != codes.FailedPrecondition {
		t.Fatalf("finish before the workload TTL passed: %v", err)
	}
	var fin *apipb.RotateRootResponse
	eventually(t, 15*time.Second, func() error { // anchors renew their certificates under R2 first
		var err error
		fin, err = cl.Raw().RotateRoot(ctx, &apipb.RotateRootRequest{Finish: true, Force: true})
		return err
	})
	if len(fin.Bundle) != 1 {
		t.Fatalf("finish left a bundle of %d roots", len(fin.Bundle))
	}
	eventually(t, 15*time.Second, func() error {
		for name, s := range map[string]*sidecar{"reviews": v1, "productpage": pp} {
			if to, n := chainsToRoot(s, r2); !to || n != 1 || !s.w.Credentials().Bundle[0].Equal(r2) {
				return fmt.Errorf("%s: chains to R2 %v, bundle of %d", name, to, n)
			}
		}
		return nil
	})
	moreTraffic("both workloads trust R2 alone")
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("requests failed while the root rotated (%d succeeded): %v", ok, failures)
	}
	if err := inboundAccepts(v1.w.Inbound(), admin, both); err == nil {
		t.Fatal("after finish, reviews accepted a client whose certificate chains only to the old root")
	}
	t.Logf("%d requests, none failed, across the rotation of the mesh root", ok)
}
