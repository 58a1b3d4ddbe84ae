package resource

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// FieldError is a validation error at a field path such as "spec.http[0].route[1].weight".
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// errorf returns a *FieldError at path.
func errorf(path, format string, args ...any) error {
	return &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// field and index build field paths.
func field(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

func key(path, k string) string { return path + "[" + strconv.Quote(k) + "]" }

// isDNSLabel reports whether s is an RFC 1123 label: lower-case alphanumerics and '-',
// starting and ending with an alphanumeric, at most 63 characters.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

// isDNSSubdomain reports whether s is an RFC 1123 subdomain: dot-separated labels, at most
// 253 characters.
func isDNSSubdomain(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !isDNSLabel(l) {
			return false
		}
	}
	return true
}

// IsName reports whether s is a valid object name: an RFC 1123 subdomain (lower-case
// letters, digits, '-' and '.', at most 253 characters).
func IsName(s string) bool { return isDNSSubdomain(s) }

// checkName validates an object name (DNS-1123 subdomain).
func checkName(path, s string) error {
	if s == "" {
		return errorf(path, "required")
	}
	if !isDNSSubdomain(s) {
		return errorf(path, "%q is not a valid name: use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters", s)
	}
	return nil
}

// checkNamespace validates an absolute namespace domain.
func checkNamespace(path, s string) error {
	if s == "" {
		return errorf(path, "required")
	}
	if !isDNSSubdomain(s) {
		return errorf(path, "%q is not a valid namespace domain: use dot-separated lower-case DNS labels", s)
	}
	return nil
}

// isQualifiedNamePart reports whether s is the name part of a Kubernetes qualified name:
// alphanumerics, '-', '_' and '.', starting and ending with an alphanumeric, at most 63.
func isQualifiedNamePart(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if alnum {
			continue
		}
		if (c == '-' || c == '_' || c == '.') && i > 0 && i < len(s)-1 {
			continue
		}
		return false
	}
	return true
}

// checkQualifiedKey validates a label or annotation key: [prefix/]name where prefix is a
// DNS-1123 subdomain.
func checkQualifiedKey(path, k string) error {
	name := k
	if prefix, rest, ok := strings.Cut(k, "/"); ok {
		if !isDNSSubdomain(prefix) {
			return errorf(path, "key %q: prefix %q must be a DNS-1123 subdomain", k, prefix)
		}
		name = rest
	}
	if !isQualifiedNamePart(name) {
		return errorf(path, "key %q: name part must be 1..63 characters of [A-Za-z0-9-_.], starting and ending with an alphanumeric", k)
	}
	return nil
}

// checkLabels validates a label map (Kubernetes rules for keys and values), in key order.
func checkLabels(path string, m map[string]string) error {
	for _, k := range sortedKeys(m) {
		if err := checkQualifiedKey(path, k); err != nil {
			return err
		}
		if v := m[k]; v != "" && !isQualifiedNamePart(v) {
			return errorf(key(path, k), "value %q must be empty or 1..63 characters of [A-Za-z0-9-_.], starting and ending with an alphanumeric", v)
		}
	}
	return nil
}

// maxAnnotationBytes bounds the total size of an object's annotations (as Kubernetes does).
const maxAnnotationBytes = 256 * 1024

func checkAnnotations(path string, m map[string]string) error {
	total := 0
	for _, k := range sortedKeys(m) {
		if err := checkQualifiedKey(path, k); err != nil {
			return err
		}
		total += len(k) + len(m[k])
	}
	if total > maxAnnotationBytes {
		return errorf(path, "total size %d bytes exceeds %d", total, maxAnnotationBytes)
	}
	return nil
}

// isHostname reports whether s is a DNS name made of labels of letters, digits and '-'
// (case-insensitive, as hosts in Istio resources are).
func isHostname(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	return isDNSSubdomain(strings.ToLower(strings.TrimSuffix(s, ".")))
}

// checkHost validates a service host as used by VirtualService, DestinationRule and
// ServiceEntry: a DNS name (short or fully qualified), optionally with a leading "*." wildcard,
// or "*" alone when allowStar.
func checkHost(path, h string, allowStar bool) error {
	switch {
	case h == "":
		return errorf(path, "host must not be empty")
	case h == "*":
		if !allowStar {
			return errorf(path, "host \"*\" is not allowed here")
		}
		return nil
	case strings.HasPrefix(h, "*."):
		if !isHostname(h[2:]) {
			return errorf(path, "%q is not a valid wildcard host", h)
		}
		return nil
	case strings.Contains(h, "*"):
		return errorf(path, "%q: a wildcard is only allowed as the whole first label (\"*.example.com\")", h)
	case !isHostname(h):
		return errorf(path, "%q is not a valid host name", h)
	}
	return nil
}

// checkPort validates a port number 1..65535.
func checkPort(path string, p uint32) error {
	if p < 1 || p > 65535 {
		return errorf(path, "port %d must be 1..65535", p)
	}
	return nil
}

// checkIPOrCIDR validates an IP address or CIDR prefix.
func checkIPOrCIDR(path, s string) error {
	if strings.Contains(s, "/") {
		if _, err := netip.ParsePrefix(s); err != nil {
			return errorf(path, "%q is not a valid CIDR prefix", s)
		}
		return nil
	}
	if _, err := netip.ParseAddr(s); err != nil {
		return errorf(path, "%q is not a valid IP address or CIDR prefix", s)
	}
	return nil
}

// checkExportTo validates an exportTo list: ".", "*", "~" or namespace names, no duplicates.
func checkExportTo(path string, list []string) error {
	seen := map[string]bool{}
	for i, e := range list {
		p := index(path, i)
		switch {
		case e == "." || e == "*" || e == "~":
		case isDNSSubdomain(e):
		default:
			return errorf(p, "%q must be \".\", \"*\", \"~\" or a namespace", e)
		}
		if seen[e] {
			return errorf(p, "duplicate entry %q", e)
		}
		seen[e] = true
	}
	if seen["~"] && len(list) > 1 {
		return errorf(path, "\"~\" (export to none) cannot be combined with other entries")
	}
	return nil
}
