package proof

import (
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"

	"canton.dev/canton/internal/api/apipb"
)

// PayloadOf is the signed part of a ResolveResponse.
func PayloadOf(r *apipb.ResolveResponse) Payload {
	return Payload{Canonical: r.Canonical, Found: r.Found, Service: r.Service, Workloads: r.Workloads, Identity: r.Identity, Reason: r.Reason}
}

// VerifyResponse decodes r's proof and verifies it (Verify) for name, then
// checks that the unsigned fields a reader acts on agree with it: the
// answering scope, the aliases followed, and a TTL no longer than the
// proof's remaining validity.
func VerifyResponse(roots *x509.CertPool, name string, r *apipb.ResolveResponse, now time.Time) (*Result, error) {
	return NewVerifier(roots).VerifyResponse(name, r, now)
}

// VerifyResponse is the package's VerifyResponse with vf's roots and cache.
func (vf *Verifier) VerifyResponse(name string, r *apipb.ResolveResponse, now time.Time) (*Result, error) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if len(r.Proof) == 0 {
		return nil, fmt.Errorf("resolve %s: the answer from scope %q carries no proof", name, r.Scope)
	}
	p, err := Unmarshal(r.Proof)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", name, err)
	}
	res, err := vf.Verify(name, p, PayloadOf(r), now)
	if err != nil {
		return nil, err // names the name already
	}
	if r.Scope != res.Scope {
		return nil, fmt.Errorf("resolve %s: the response says scope %s answered, the proof is signed by scope %s", name, r.Scope, res.Scope)
	}
	if !slices.Equal(r.Aliases, res.Aliases()) {
		return nil, fmt.Errorf("resolve %s: the response lists aliases %v, the proof %v", name, r.Aliases, res.Aliases())
	}
	if left := res.Expires.Sub(now) + ClockSkew; time.Duration(r.TtlSeconds)*time.Second > left {
		return nil, fmt.Errorf("resolve %s: ttl %ds outlives the proof (valid for %s more)", name, r.TtlSeconds, left.Round(time.Second))
	}
	return res, nil
}
