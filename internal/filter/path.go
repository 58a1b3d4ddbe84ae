package filter

import (
	"net/http"
	"strings"
)

// requestPath is the request's path as Envoy's filters see the :path header, without the query:
// escaped. The proxy sets r.URL.RawPath to its normalized path whenever that path has an escape,
// so this is the very path it routes on and forwards; for requests built elsewhere (tests) an
// escaped form is computed. It allocates only in that last case.
func requestPath(r *http.Request) string {
	if r.URL.RawPath != "" {
		return r.URL.RawPath
	}
	if strings.IndexFunc(r.URL.Path, needsEscape) >= 0 {
		return r.URL.EscapedPath()
	}
	return r.URL.Path
}

func needsEscape(c rune) bool {
	return c <= ' ' || c >= 0x7f || c == '%' || c == '?' || c == '#'
}
