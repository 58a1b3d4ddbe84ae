package anchor

import (
	"bytes"
	"slices"
	"strings"
	"sync"
	"time"

	"canton.dev/canton/internal/resolve/proof"
)

// Learned referrals: like a DNS resolver's cache of NS records, an anchor
// remembers the zone cuts it saw in verified resolution proofs — the child
// domain, its anchors and its CA, as signed by the parent scope — with the
// validity the parent gave them. Routing (route.go) uses the deepest one it
// knows for a namespace no scope hosted here governs, so two scopes keep
// reaching each other while the scopes above them, the root included, are
// down:
//
//   - while the referral is valid its anchors are asked first, the usual
//     walk (from the root's anchors, or a hosted parent's cut) after them;
//   - once it expired the usual walk comes first, so that a fresh proof
//     refreshes it (or a changed Delegation replaces it), and the learned
//     anchors only when the walk cannot be made;
//   - an expired referral is still used that way for up to Config.MaxStale,
//     then forgotten.
//
// Referrals are learned only from proofs this anchor verified, and an answer
// obtained through one must be signed, as the child scope, by exactly the CA
// it named and by one of the anchors it named (checkLearned).

// maxReferrals bounds the learned referrals; past it the one that expired
// first is forgotten.
const maxReferrals = 4096

// referral is one learned zone cut.
type referral struct {
	domain   string    // the child scope
	parent   string    // the scope that signed the referral
	anchors  []string  // the child's anchors, as the parent named them
	childCA  []byte    // DER of the child's CA, as the parent named it
	signedAt time.Time // when the parent signed it
	expires  time.Time // when the parent's word runs out (signed-at + ttl)
}

// referralCache holds the learned referrals by child domain. The zero value
// is empty and ready to use.
type referralCache struct {
	mu  sync.Mutex
	byD map[string]*referral
}

// learn remembers every referral of p, a proof this anchor verified. A
// referral replaces one learned earlier for the same domain unless
// that one was signed later.
func (rc *referralCache) learn(p *proof.Proof) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, s := range p.Steps {
		for _, r := range s.Referrals {
			if r.Kind != proof.KindReferral || len(r.Anchors) == 0 {
				continue
			}
			signed := time.Unix(r.SignedAt, 0)
			if old := rc.byD[r.Name]; old != nil && old.signedAt.After(signed) {
				continue
			}
			if rc.byD == nil {
				rc.byD = map[string]*referral{}
			}
			rc.byD[r.Name] = &referral{
				domain:   r.Name,
				parent:   r.Scope,
				anchors:  slices.Clone(r.Anchors),
				childCA:  bytes.Clone(r.ChildCA),
				signedAt: signed,
				expires:  signed.Add(time.Duration(r.TTL) * time.Second),
			}
		}
	}
	for len(rc.byD) > maxReferrals {
		var oldest *referral
		for _, r := range rc.byD {
			if oldest == nil || r.expires.Before(oldest.expires) {
				oldest = r
			}
		}
		delete(rc.byD, oldest.domain)
	}
}

// deepest returns the deepest learned referral whose zone holds ns and whose
// domain is longer than below ("" for any), and whether it is still valid at
// now. Referrals expired for longer than maxStale are forgotten.
func (rc *referralCache) deepest(ns, below string, now time.Time, maxStale time.Duration) (*referral, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var best *referral
	for d := ns; ; {
		if r := rc.byD[d]; r != nil {
			if now.Sub(r.expires) > maxStale {
				delete(rc.byD, d)
			} else if best == nil {
				best = r
			}
		}
		_, rest, ok := strings.Cut(d, ".")
		if !ok || best != nil {
			break
		}
		d = rest
	}
	if best == nil || len(best.domain) <= len(below) {
		return nil, false
	}
	return best, now.Before(best.expires)
}

// forget drops the referral learned for domain if it is r (an answer
// through it was refused: the child's CA or anchors changed).
func (rc *referralCache) forget(r *referral) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.byD[r.domain] == r {
		delete(rc.byD, r.domain)
	}
}
