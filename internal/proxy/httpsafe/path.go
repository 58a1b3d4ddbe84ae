package httpsafe

import (
	"errors"
	"strings"
)

// SlashAction is what to do with %2F and %5C (escaped slash and backslash) in a path; the values
// mirror Envoy's HttpConnectionManager.PathWithEscapedSlashesAction.
type SlashAction int

const (
	// KeepEscapedSlashes leaves %2F and %5C as they are (Envoy's default).
	KeepEscapedSlashes SlashAction = iota
	// RejectEscapedSlashes fails the normalization (the request gets a 400).
	RejectEscapedSlashes
	// UnescapeSlashesAndRedirect unescapes them; the caller redirects the client to the result.
	UnescapeSlashesAndRedirect
	// UnescapeSlashesAndForward unescapes them and forwards.
	UnescapeSlashesAndForward
)

// PathOptions select the normalization steps; the zero value only validates. The steps run in
// Envoy's order (and Istio's, whose pathNormalization options map onto them): escaped slashes
// first (EscapedSlashes), then Normalize, then MergeSlashes.
type PathOptions struct {
	// Normalize resolves "." and ".." segments (RFC 3986 section 5.2.4), decodes percent-encoded
	// unreserved characters, upper-cases the hex digits of other escapes and turns '\' into '/'.
	// It is Envoy's HttpConnectionManager.normalize_path.
	Normalize bool
	// MergeSlashes collapses runs of '/' into one, after Normalize (merge_slashes).
	MergeSlashes bool
	// EscapedSlashes says what to do with %2F and %5C.
	EscapedSlashes SlashAction
}

// Errors returned by NormalizePath.
var (
	ErrPathNotOrigin    = errors.New("path does not start with '/'")
	ErrPathBadEscape    = errors.New("path has an invalid percent escape")
	ErrPathBadChar      = errors.New("path has a control, space, '#' or non-ASCII byte")
	ErrPathEscapedSlash = errors.New("path has an escaped slash (%2F or %5C)")
	ErrPathEscapedNUL   = errors.New("path has an escaped NUL (%00)")
)

// NormalizePath returns the canonical form of the escaped path p (the request target without its query)
// according to o, and whether escaped slashes were unescaped (the caller redirects when o asks for
// UnescapeSlashesAndRedirect). A path already canonical is returned as is, without allocating.
//
// Whatever o says, a path is refused when it does not start with '/', has a control byte, a space,
// '#' (a fragment is never sent to a server) or a non-ASCII byte, has a malformed escape, or has an
// escaped NUL: %00 would reach the application as a NUL byte, which C-based servers take for the
// end of the path (Istio rejects it too).
func NormalizePath(p string, o PathOptions) (string, bool, error) {
	if len(p) == 0 || p[0] != '/' {
		return "", false, ErrPathNotOrigin
	}
	// Fast scan: validate, and find out whether any work is needed.
	work := false
	escSlash := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c <= ' ' || c >= 0x7f || c == '#':
			return "", false, ErrPathBadChar
		case c == '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return "", false, ErrPathBadEscape
			}
			d := unhex(p[i+1])<<4 | unhex(p[i+2])
			if d == 0 {
				return "", false, ErrPathEscapedNUL
			}
			if d == '/' || d == '\\' {
				escSlash = true
			}
			if o.Normalize && (isUnreserved(d) || isLowerHex(p[i+1]) || isLowerHex(p[i+2])) {
				work = true
			}
			i += 2
		case c == '\\':
			if o.Normalize {
				work = true
			}
		case c == '/':
			if i+1 < len(p) && p[i+1] == '/' && o.MergeSlashes {
				work = true
			}
		case c == '.':
			if o.Normalize && (i == 0 || p[i-1] == '/') {
				// "." or ".." as a whole segment.
				rest := p[i:]
				if rest == "." || rest == ".." || strings.HasPrefix(rest, "./") || strings.HasPrefix(rest, "../") {
					work = true
				}
			}
		}
	}
	unescaped := false
	if escSlash {
		switch o.EscapedSlashes {
		case RejectEscapedSlashes:
			return "", false, ErrPathEscapedSlash
		case UnescapeSlashesAndForward, UnescapeSlashesAndRedirect:
			work, unescaped = true, true
		}
	}
	if !work {
		return p, false, nil
	}
	return normalizeSlow(p, o, unescaped), unescaped, nil
}

func normalizeSlow(p string, o PathOptions, unescapeSlashes bool) string {
	// 1. Decode: unreserved escapes (and slashes if asked) become literal; hex is upper-cased.
	b := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' {
			d := unhex(p[i+1])<<4 | unhex(p[i+2])
			switch {
			case o.Normalize && isUnreserved(d):
				b = append(b, d)
			case unescapeSlashes && (d == '/' || d == '\\'):
				b = append(b, d)
			case o.Normalize:
				b = append(b, '%', upperHex(p[i+1]), upperHex(p[i+2]))
			default:
				b = append(b, p[i:i+3]...)
			}
			i += 2
			continue
		}
		b = append(b, c)
	}
	if o.Normalize {
		for i, c := range b {
			if c == '\\' {
				b[i] = '/'
			}
		}
		b = removeDotSegments(b)
	}
	if o.MergeSlashes {
		// After the dot segments, as Envoy does: "/a//../b" is "/a/b", not "/b".
		w := 0
		for i, c := range b {
			if c == '/' && i > 0 && b[i-1] == '/' {
				continue
			}
			b[w] = c
			w++
		}
		b = b[:w]
	}
	return string(b)
}

// removeDotSegments resolves "." and ".." segments of an absolute path in place (RFC 3986 5.2.4):
// ".." never climbs above the root.
func removeDotSegments(b []byte) []byte {
	out := make([]byte, 0, len(b))
	i := 0
	for i < len(b) {
		// b[i] == '/' here: one segment is b[i+1:j].
		j := i + 1
		for j < len(b) && b[j] != '/' {
			j++
		}
		seg := string(b[i+1 : j])
		switch seg {
		case ".":
			if j == len(b) {
				out = append(out, '/')
			}
		case "..":
			if k := lastSlash(out); k >= 0 {
				out = out[:k]
			}
			if j == len(b) {
				out = append(out, '/')
			}
		default:
			out = append(out, b[i:j]...)
		}
		i = j
	}
	if len(out) == 0 {
		out = append(out, '/')
	}
	return out
}

func lastSlash(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '/' {
			return i
		}
	}
	return -1
}

func isHex(c byte) bool      { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }
func isLowerHex(c byte) bool { return 'a' <= c && c <= 'f' }
func upperHex(c byte) byte {
	if isLowerHex(c) {
		return c - 'a' + 'A'
	}
	return c
}
func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}
