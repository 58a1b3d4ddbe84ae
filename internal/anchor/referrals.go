package anchor

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
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
//
// They survive a restart: the parent's signed statements are saved in the
// data directory (referralsFile), so an anchor restarted while the scopes
// above a cut are down still reaches the cut's anchors. The file vouches for
// nothing by itself: at start every entry is verified again against the
// trust bundle as a proof's referral is (the signer's chain and name
// constraints, the signature, the child CA) except for its freshness, an
// entry expired for longer than MaxStale is dropped, and an unreadable file
// is logged and ignored. Saving runs in the background, coalesced: a new or
// changed cut is written at once, a signature that only got newer at most
// every referralSaveEvery (so a crash loses at most that much of an entry's
// age), and whatever is newer when the anchor closes.

const (
	// maxReferrals bounds the learned referrals; past it the one that
	// expired first is forgotten.
	maxReferrals = 4096
	// referralsFile, in the data directory, holds the learned referrals.
	referralsFile = "referrals.json"
	// maxReferralsFile bounds the file: saving keeps the most recently
	// signed referrals that fit, loading refuses a larger file.
	maxReferralsFile = 16 << 20
	// referralSaveEvery is how often referrals whose signature only got
	// newer are saved.
	referralSaveEvery = time.Minute
	// referralSaveGap spaces two saves, so that a burst of new cuts is
	// written once.
	referralSaveGap = 100 * time.Millisecond
)

// referral is one learned zone cut.
type referral struct {
	domain   string       // the child scope
	parent   string       // the scope that signed the referral
	anchors  []string     // the child's anchors, as the parent named them
	childCA  []byte       // DER of the child's CA, as the parent named it
	signedAt time.Time    // when the parent signed it
	expires  time.Time    // when the parent's word runs out (signed-at + ttl)
	signed   proof.Signed // the parent's statement, as saved
}

// referralCache holds the learned referrals by child domain. The zero value
// is empty, ready to use and kept in memory only; persist saves it.
type referralCache struct {
	mu    sync.Mutex
	byD   map[string]*referral
	dirty bool          // changed since the last save
	saved time.Time     // when it was last saved
	kick  chan struct{} // wakes persist; nil while not persisted
}

// learn remembers every referral of p, a proof this anchor verified. A
// referral replaces one learned earlier for the same domain unless
// that one was signed later.
func (rc *referralCache) learn(p *proof.Proof) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	urgent, refreshed := false, false
	for _, s := range p.Steps {
		for i := range s.Referrals {
			switch rc.add(&s.Referrals[i]) {
			case referralNew:
				urgent = true
			case referralRefreshed:
				refreshed = true
			}
		}
	}
	if rc.evict() {
		urgent = true
	}
	if urgent || refreshed {
		rc.dirty = true
	}
	if urgent || refreshed && time.Since(rc.saved) >= referralSaveEvery {
		rc.wake()
	}
}

// What add did with a referral.
const (
	referralKept      = iota // nothing: not a referral, or older than the one known
	referralRefreshed        // the same cut, signed later
	referralNew              // a cut not known, or known with other anchors or CA
)

// add remembers r if it is a referral and the one known for its domain
// was not signed later. rc.mu is held.
func (rc *referralCache) add(r *proof.Signed) int {
	if r.Kind != proof.KindReferral || len(r.Anchors) == 0 {
		return referralKept
	}
	signed := time.Unix(r.SignedAt, 0)
	old := rc.byD[r.Name]
	same := old != nil && old.parent == r.Scope && slices.Equal(old.anchors, r.Anchors) && bytes.Equal(old.childCA, r.ChildCA)
	if old != nil && old.signedAt.After(signed) || same && !signed.After(old.signedAt) {
		return referralKept
	}
	if rc.byD == nil {
		rc.byD = map[string]*referral{}
	}
	saved := proof.Signed{Statement: r.Statement, Sig: bytes.Clone(r.Sig)}
	saved.Anchors = slices.Clone(r.Anchors)
	saved.ChildCA = bytes.Clone(r.ChildCA)
	saved.Digest = bytes.Clone(r.Digest)
	for _, c := range r.Chain {
		saved.Chain = append(saved.Chain, bytes.Clone(c))
	}
	rc.byD[r.Name] = &referral{
		domain:   r.Name,
		parent:   r.Scope,
		anchors:  saved.Anchors,
		childCA:  saved.ChildCA,
		signedAt: signed,
		expires:  signed.Add(time.Duration(r.TTL) * time.Second),
		signed:   saved,
	}
	if same {
		return referralRefreshed
	}
	return referralNew
}

// evict forgets the referrals that expired first while there are more
// than maxReferrals, and reports whether it forgot any. rc.mu is held.
func (rc *referralCache) evict() bool {
	evicted := false
	for len(rc.byD) > maxReferrals {
		var oldest *referral
		for _, r := range rc.byD {
			if oldest == nil || r.expires.Before(oldest.expires) {
				oldest = r
			}
		}
		delete(rc.byD, oldest.domain)
		evicted = true
	}
	return evicted
}

// wake asks persist to save. rc.mu is held.
func (rc *referralCache) wake() {
	if rc.kick == nil {
		return
	}
	select {
	case rc.kick <- struct{}{}:
	default:
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
				rc.dirty = true // saved with the next change, or at close
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
		rc.dirty = true
		rc.wake() // not to be followed again after a restart
	}
}

// startReferrals loads the referrals saved in the data directory and keeps
// saving them there until the anchor closes.
func (a *Anchor) startReferrals() {
	path := filepath.Join(a.cfg.DataDir, referralsFile)
	a.referrals.load(path, a.meta.Mesh, a.resolveVerifier(), time.Now(), a.maxStale(), a.log)
	a.referrals.mu.Lock()
	a.referrals.kick = make(chan struct{}, 1)
	a.referrals.mu.Unlock()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.referrals.persist(a.ctx, path, a.log)
	}()
}

// persist saves the referrals to path whenever woken, at most every
// referralSaveGap, until ctx ends; then once more.
func (rc *referralCache) persist(ctx context.Context, path string, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			rc.save(path, log)
			return
		case <-rc.kick:
		}
		rc.save(path, log)
		select {
		case <-ctx.Done():
		case <-time.After(referralSaveGap):
		}
	}
}

// savedReferrals is the content of referralsFile.
type savedReferrals struct {
	Version   int             `json:"version"` // 1
	Referrals []savedReferral `json:"referrals"`
}

// savedReferral is a parent scope's signed referral to a child scope: the
// fields of proof.Statement it signed ([]byte as base64), the chain of its
// CA (DER, the CA first) and the signature.
type savedReferral struct {
	Scope    string   `json:"scope"`
	Name     string   `json:"name"`
	Target   string   `json:"target,omitempty"`
	Anchor   string   `json:"anchor"`
	Anchors  []string `json:"anchors"`
	ChildCA  []byte   `json:"childCA"`
	Digest   []byte   `json:"digest,omitempty"`
	SignedAt int64    `json:"signedAt"`
	TTL      uint32   `json:"ttl"`
	Chain    [][]byte `json:"chain"`
	Sig      []byte   `json:"sig"`
}

// save writes the referrals to path, atomically, if they changed since the
// last save: the most recently signed first, as many as fit in
// maxReferralsFile. A failure is logged; the next save tries again.
func (rc *referralCache) save(path string, log *slog.Logger) {
	rc.mu.Lock()
	if !rc.dirty {
		rc.mu.Unlock()
		return
	}
	rs := make([]*referral, 0, len(rc.byD))
	for _, r := range rc.byD {
		rs = append(rs, r)
	}
	rc.dirty, rc.saved = false, time.Now()
	rc.mu.Unlock()

	slices.SortFunc(rs, func(a, b *referral) int {
		return cmp.Or(b.signedAt.Compare(a.signedAt), strings.Compare(a.domain, b.domain))
	})
	out := savedReferrals{Version: 1, Referrals: []savedReferral{}}
	size := 64
	for _, r := range rs {
		s := &r.signed
		e := savedReferral{Scope: s.Scope, Name: s.Name, Target: s.Target, Anchor: s.Anchor, Anchors: s.Anchors,
			ChildCA: s.ChildCA, Digest: s.Digest, SignedAt: s.SignedAt, TTL: s.TTL, Chain: s.Chain, Sig: s.Sig}
		b, err := json.Marshal(e)
		if err != nil {
			continue
		}
		if size += len(b) + 1; size > maxReferralsFile {
			log.Warn("not every zone cut learned fits in the file: the least recently signed are left out", "file", path, "saved", len(out.Referrals), "learned", len(rs))
			break
		}
		out.Referrals = append(out.Referrals, e)
	}
	b, err := json.Marshal(out)
	if err == nil {
		err = writeFileAtomic(path, b, 0o600)
	}
	if err != nil {
		log.Warn("zone cuts learned not saved", "file", path, "err", err)
		rc.mu.Lock()
		rc.dirty = true
		rc.mu.Unlock()
	}
}

// load remembers the referrals saved at path that verify with vf, against
// the trust bundle (verifySaved), and are not expired for longer than
// maxStale at now. A missing file is no referral; an unreadable file is
// logged and ignored, as is each entry that does not verify.
func (rc *referralCache) load(path, mesh string, vf *proof.Verifier, now time.Time, maxStale time.Duration, log *slog.Logger) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var saved savedReferrals
	if err == nil {
		err = decodeSaved(f, &saved)
		f.Close()
	}
	if err != nil {
		log.Warn("ignoring the saved zone cuts: file unreadable; they are learned again from the next answers", "file", path, "err", err)
		return
	}
	if len(saved.Referrals) > maxReferrals {
		log.Warn("ignoring the saved zone cuts: file unreadable; they are learned again from the next answers", "file", path,
			"err", fmt.Sprintf("%d entries, more than %d", len(saved.Referrals), maxReferrals))
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	loaded, stale, rejected := 0, 0, 0
	for _, e := range saved.Referrals {
		s := proof.Signed{
			Statement: proof.Statement{Kind: proof.KindReferral, Scope: e.Scope, Name: e.Name, Target: e.Target, Anchor: e.Anchor,
				Anchors: e.Anchors, ChildCA: e.ChildCA, Digest: e.Digest, SignedAt: e.SignedAt, TTL: e.TTL},
			Chain: e.Chain, Sig: e.Sig,
		}
		if now.Sub(time.Unix(s.SignedAt, 0).Add(time.Duration(s.TTL)*time.Second)) > maxStale {
			stale++
			continue
		}
		if err := verifySaved(vf, &s, mesh, now); err != nil {
			if rejected++; rejected <= maxRejectsLogged {
				log.Warn("ignoring a saved zone cut that does not verify", "file", path, "cut", e.Name, "err", err)
			}
			continue
		}
		if rc.add(&s) != referralKept {
			loaded++
		}
	}
	rc.evict()
	log.Info("zone cuts loaded", "file", path, "loaded", loaded, "expired_past_max_stale", stale, "ignored", rejected)
}

// maxRejectsLogged bounds the log lines of one load about entries that do
// not verify (after a root rotation, all of them may not); the rest are
// counted.
const maxRejectsLogged = 5

// decodeSaved decodes a referrals file strictly (known fields, one JSON
// value, at most maxReferralsFile bytes).
func decodeSaved(r io.Reader, out *savedReferrals) error {
	b, err := io.ReadAll(io.LimitReader(r, maxReferralsFile+1))
	if err != nil {
		return err
	}
	if len(b) > maxReferralsFile {
		return fmt.Errorf("larger than %d bytes", maxReferralsFile)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	if out.Version != 1 {
		return fmt.Errorf("version %d, want 1", out.Version)
	}
	return nil
}

// verifySaved checks a saved referral as proof.Verify checks a referral
// inside a proof, at now, except that it may have expired (the caller
// applies MaxStale; see proof.Verifier.VerifyReferral), and that it was
// signed by a scope of mesh.
func verifySaved(vf *proof.Verifier, s *proof.Signed, mesh string, now time.Time) error {
	if !inZone(s.Scope, mesh) {
		return fmt.Errorf("signed as scope %s, outside mesh %s", s.Scope, mesh)
	}
	_, err := vf.VerifyReferral(s, now)
	return err
}
