// Package identity is the mesh's public-key infrastructure: the mesh root CA
// (name-constrained to the mesh domain), leaf and CSR issuance, SPIFFE IDs,
// credentials files, join tokens, and the mutual-TLS configurations that the
// anchor API, replication and xDS share on their one gRPC port.
//
// Identities follow names. An anchor is spiffe://<mesh>/anchor/<id>, the
// administrator is spiffe://<mesh>/admin/<name> and a workload is
// spiffe://<namespace-domain>/sa/<account>. A CA certificate carries X.509
// name constraints (PermittedURIDomains and PermittedDNSDomains) for its
// domain and every subdomain of it, so crypto/x509 refuses any certificate it
// signs for a name outside that subtree; this package also refuses to sign
// such a certificate in the first place. URI constraints come in pairs, "d"
// and ".d", so that RFC 5280 verifiers (OpenSSL, BoringSSL: Envoy), which read
// "d" alone as the single host d, accept the same subtree as crypto/x509.
// VerifiedID checks a peer's SPIFFE ID against the constraints of its
// verified chain once more, explicitly.
//
// Keys this package generates are ECDSA P-256; it signs CSRs for P-256,
// P-384, Ed25519 and RSA (2048 bits or more) keys. Certificates are built and
// verified with crypto/x509. Only the Save/Load functions touch files.
// Issuance takes the current time as an argument, so callers and tests
// control the clock; the TLS configurations verify peers at the real clock.
//
// Who may import it: internal/anchor, internal/api, internal/proxy,
// internal/cli and internal/meshtest. It imports only the standard library
// and must stay that way (it sits below every role).
package identity
