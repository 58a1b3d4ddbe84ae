// Package proof signs and verifies resolution answers: a statement about a
// mesh name (an answer, a negative answer, an alias step) signed by the CA
// of the scope that owns the name, and referrals (zone cuts) signed by the
// CA of the scope that delegated, each carrying the signer's certificate
// chain up to the mesh root.
//
// A Proof lists, for each name looked up (the asked name, then each alias
// target), the referrals followed and the final statement. Verify checks it
// against the mesh trust bundle: chains, name constraints (explicitly, for
// the namespace answered), that each referral is signed by the CA the
// previous one named, signatures and expiry. Verifier.VerifyReferral checks
// one referral on its own the same way, but for its expiry, for callers that
// keep referrals (an anchor's learned zone cuts). The wire encoding (Marshal,
// Unmarshal) is a canonical length-prefixed binary format; see
// docs/design/0004-signed-resolution.md.
//
// It is pure (no I/O, no clock: callers pass the time). internal/anchor
// (signing, verifying what it forwards) and internal/resolve and the CLI
// (verifying what they receive) import it.
package proof
