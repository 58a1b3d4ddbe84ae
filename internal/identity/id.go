package identity

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Limits from the SPIFFE ID specification.
const (
	maxIDLength          = 2048 // bytes, whole URI
	maxTrustDomainLength = 255  // bytes
)

const spiffeScheme = "spiffe://"

// ID is a SPIFFE ID: spiffe://<TrustDomain><Path>.
//
// TrustDomain is lowercase, without scheme or slashes ("demo.mesh"). Path is
// either empty (the ID of the trust domain itself) or starts with "/" and has
// no trailing slash ("/anchor/a1"). The zero ID is not a valid SPIFFE ID.
type ID struct {
	TrustDomain string
	Path        string
}

// AnchorID is the identity of anchor process anchor in mesh:
// spiffe://<mesh>/anchor/<anchor>. It does not validate; Issue and Validate do.
func AnchorID(mesh, anchor string) ID {
	return ID{TrustDomain: mesh, Path: "/anchor/" + anchor}
}

// AdminID is the identity of administrator name of mesh:
// spiffe://<mesh>/admin/<name>. It does not validate; Issue and Validate do.
func AdminID(mesh, name string) ID {
	return ID{TrustDomain: mesh, Path: "/admin/" + name}
}

// WorkloadID is the identity of service account account in a namespace:
// spiffe://<namespace>/sa/<account>, where namespace is the absolute
// namespace domain (bookinfo.demo.mesh). It does not validate.
func WorkloadID(namespace, account string) ID {
	return ID{TrustDomain: namespace, Path: "/sa/" + account}
}

// String returns the URI form, spiffe://<trust-domain><path>, or "" for the
// zero ID.
func (id ID) String() string {
	if id == (ID{}) {
		return ""
	}
	return spiffeScheme + id.TrustDomain + id.Path
}

// URL returns id as a URL, the form a certificate's URI SAN takes.
func (id ID) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: id.Path}
}

// Validate reports whether id is a valid SPIFFE ID whose fields are exactly
// what ParseID would return for its String form.
func (id ID) Validate() error {
	parsed, err := ParseID(id.String())
	if err != nil {
		return err
	}
	if parsed != id {
		return fmt.Errorf("identity: spiffe id %s: trust domain %q and path %q do not split as given", quote(id.String()), id.TrustDomain, id.Path)
	}
	return nil
}

// MemberOf reports whether id's trust domain is domain or a subdomain of it
// (label-wise: a.b is in b, ab is not).
func (id ID) MemberOf(domain string) bool {
	return domainWithin(id.TrustDomain, domain)
}

// AcceptAnchors returns an accept function for ClientTLS that admits any
// anchor of mesh (spiffe://<mesh>/anchor/<id>) and nothing else.
func AcceptAnchors(mesh string) func(ID) error {
	return func(id ID) error {
		name, ok := strings.CutPrefix(id.Path, "/anchor/")
		if id.TrustDomain != mesh || !ok || name == "" || strings.Contains(name, "/") {
			return fmt.Errorf("identity: peer %s is not an anchor of mesh %q", quote(id.String()), mesh)
		}
		return nil
	}
}

// ParseID parses s strictly as a SPIFFE ID, per the SPIFFE ID specification:
// scheme exactly "spiffe://"; a non-empty trust domain of at most 255 bytes of
// [a-z0-9.-_] (no uppercase, port, user info or percent-encoding); an
// optional path of "/"-separated non-empty segments of [a-zA-Z0-9.-_], none
// of them "." or "..", without a trailing slash; no query or fragment; at
// most 2048 bytes in all.
func ParseID(s string) (ID, error) {
	if s == "" {
		return ID{}, errors.New("identity: spiffe id: empty")
	}
	if len(s) > maxIDLength {
		return ID{}, fmt.Errorf("identity: spiffe id %s: %d bytes, longer than %d", quote(s), len(s), maxIDLength)
	}
	rest, ok := strings.CutPrefix(s, spiffeScheme)
	if !ok {
		return ID{}, fmt.Errorf("identity: spiffe id %s: must start with %q", quote(s), spiffeScheme)
	}
	td, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		td, path = rest[:i], rest[i:]
	}
	if err := checkTrustDomain(td); err != nil {
		return ID{}, fmt.Errorf("identity: spiffe id %s: %w", quote(s), err)
	}
	if err := checkPath(path); err != nil {
		return ID{}, fmt.Errorf("identity: spiffe id %s: %w", quote(s), err)
	}
	return ID{TrustDomain: td, Path: path}, nil
}

func checkTrustDomain(td string) error {
	if td == "" {
		return errors.New("trust domain is empty")
	}
	if len(td) > maxTrustDomainLength {
		return fmt.Errorf("trust domain is %d bytes, longer than %d", len(td), maxTrustDomainLength)
	}
	for i := 0; i < len(td); i++ {
		c := td[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("trust domain: invalid character %q at offset %d (allowed: a-z 0-9 . - _)", c, i)
		}
	}
	return nil
}

func checkPath(path string) error {
	if path == "" {
		return nil
	}
	// path starts with '/': every segment follows a slash.
	for seg := range strings.SplitSeq(path[1:], "/") {
		switch seg {
		case "":
			return errors.New("path: empty segment (double or trailing slash)")
		case ".", "..":
			return fmt.Errorf("path: relative segment %q", seg)
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
				return fmt.Errorf("path: invalid character %q in segment %q (allowed: a-z A-Z 0-9 . - _)", c, truncate(seg))
			}
		}
	}
	return nil
}

// checkDNSName checks that name is a lowercase DNS host name: labels of 1..63
// bytes of [a-z0-9-] not starting or ending with '-', at most 253 bytes, no
// trailing dot, no wildcard. Domains that CAs are constrained to, and DNS SANs,
// must pass it.
func checkDNSName(name string) error {
	if name == "" {
		return errors.New("empty DNS name")
	}
	if len(name) > 253 {
		return fmt.Errorf("DNS name %s is %d bytes, longer than 253", quote(name), len(name))
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("DNS name %s: label %q must be 1..63 bytes", quote(name), truncate(label))
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("DNS name %s: label %q starts or ends with '-'", quote(name), label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("DNS name %s: invalid character %q (allowed: a-z 0-9 - and dots between labels)", quote(name), c)
			}
		}
	}
	return nil
}

// domainWithin reports whether name is domain or a label-wise subdomain of it.
func domainWithin(name, domain string) bool {
	if domain == "" || name == "" {
		return false
	}
	return name == domain || strings.HasSuffix(name, "."+domain)
}

// quote quotes s for an error message, shortening very long inputs.
func quote(s string) string { return fmt.Sprintf("%q", truncate(s)) }

func truncate(s string) string {
	const max = 96
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
