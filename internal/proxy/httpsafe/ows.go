package httpsafe

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
