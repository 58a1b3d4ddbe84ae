package httpsafe

import "strings"

// TrimOWS drops leading and trailing optional whitespace (spaces and tabs) from a header value,
// as net/http does when it reads or writes one.
func TrimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// HasToken reports whether the comma-separated header value v lists token, compared
// case-insensitively (e.g. "close" in a Connection header).
func HasToken(v, token string) bool {
	for v != "" {
		var f string
		f, v, _ = strings.Cut(v, ",")
		if strings.EqualFold(TrimOWS(f), token) {
			return true
		}
	}
	return false
}
