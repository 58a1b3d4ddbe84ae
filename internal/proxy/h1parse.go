package proxy

import (
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"

	"canton.dev/canton/internal/proxy/httpsafe"
)

// h1Head is a request head the fast HTTP/1.1 path accepted (see parseH1Head).
type h1Head struct {
	method  string
	target  string // the request target as sent (origin form)
	path    string // target before '?'
	query   string // target after '?'
	host    string
	cl      int64 // Content-Length, 0 when absent
	close   bool  // Connection: close
	escaped bool  // the path has a '%': r.URL must come from url.ParseRequestURI
}

// parseH1Head parses a complete HTTP/1.1 request head s (request line, header lines, each ended by
// CRLF, then an empty line) into h, reusing vals as the backing array of h's values. Keys and values
// are substrings of s. It accepts only a strict subset of what both net/http and httpsafe.Scanner
// accept, and ok false means "not this path's business": the caller hands the connection to net/http
// (behind the guard), which then answers exactly as it always did. Left to net/http: anything but
// HTTP/1.1, request targets other than origin form, CONNECT and unusual methods, Transfer-Encoding,
// Expect, Upgrade, Trailer, repeated or odd Content-Length, missing, repeated or invalid Host,
// obsolete line folding, header names that are not tokens, control bytes, bare CR or LF, and leading
// empty lines.
func parseH1Head(s string, h http.Header, vals []string) (hd h1Head, _ []string, ok bool) {
	if !strings.HasSuffix(s, "\r\n\r\n") {
		return hd, vals, false
	}
	// Every CR is followed by LF and every LF preceded by CR; no other control bytes but HTAB.
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\r':
			if i+1 >= len(s) || s[i+1] != '\n' {
				return hd, vals, false
			}
			i++
		case c == '\n', c == 0x7f, c < 0x20 && c != '\t':
			return hd, vals, false
		}
	}
	line, rest, _ := strings.Cut(s, "\r\n")
	method, line, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(line, " ")
	if !ok1 || !ok2 || proto != "HTTP/1.1" || !validMethod(method) || len(target) == 0 || target[0] != '/' {
		return hd, vals, false
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c >= 0x7f {
			return hd, vals, false
		}
	}
	hd.method, hd.target = method, target
	hd.path, hd.query, _ = strings.Cut(target, "?")
	for i := 0; i < len(hd.path); i++ {
		if hd.path[i] == '%' {
			// url.ParseRequestURI (net/http) refuses a path with a bad escape.
			if i+2 >= len(hd.path) || !isHex(hd.path[i+1]) || !isHex(hd.path[i+2]) {
				return hd, vals, false
			}
			hd.escaped = true
		}
	}
	hosts, cls := 0, 0
	for {
		line, rest, _ = strings.Cut(rest, "\r\n")
		if line == "" {
			break
		}
		name, value, found := strings.Cut(line, ":")
		if !found || name == "" || !isToken(name) {
			return hd, vals, false // also obsolete line folding (a line starting with SP or HTAB)
		}
		value = httpsafe.TrimOWS(value)
		key, canon := canonicalKey(name)
		if !canon {
			key = http.CanonicalHeaderKey(name)
		}
		switch key {
		case "Host":
			hosts++
			if hosts > 1 || !httpguts.ValidHostHeader(value) {
				return hd, vals, false
			}
			hd.host = value
			continue // net/http moves Host out of the header map
		case "Content-Length":
			cls++
			n, ok := parseDecimal(value)
			if cls > 1 || !ok {
				return hd, vals, false
			}
			hd.cl = n
		case "Transfer-Encoding", "Expect", "Upgrade", "Trailer", "Http2-Settings":
			return hd, vals, false
		case "Connection":
			if httpsafe.HasToken(value, "close") {
				hd.close = true
			}
		}
		vals = append(vals, value)
		n := len(vals)
		if vs, ok := h[key]; ok {
			h[key] = append(vs, value) // a copy: the shared backing array is never written through
		} else {
			h[key] = vals[n-1 : n : n]
		}
	}
	if hosts == 0 {
		return hd, vals, false
	}
	// net/http's fixPragmaCacheControl (RFC 7234 5.4).
	if p := h["Pragma"]; len(p) > 0 && p[0] == "no-cache" {
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = noCache
		}
	}
	return hd, vals, true
}

var noCache = []string{"no-cache"}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// isToken reports whether s is an RFC 9110 token (the bytes net/http accepts in a header name).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if !httpguts.IsTokenRune(rune(s[i])) {
			return false
		}
	}
	return true
}

// canonicalKey returns s and true when s (a token) is already in canonical MIME form.
func canonicalKey(s string) (string, bool) {
	upper := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return "", false
		}
		upper = c == '-'
	}
	return s, true
}

// parseDecimal parses a Content-Length: 1 to 18 ASCII digits.
func parseDecimal(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
