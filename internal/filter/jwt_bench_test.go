package filter

import (
	"net/http"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// BenchmarkJWT measures jwt_authn verifying one bearer token per request
// (local JWKS, Istio's requires_any [provider, allow_missing]), including
// the request clone that carries the claims to the next filter.
func BenchmarkJWT(b *testing.B) {
	k := testKeySet(b)
	for _, bc := range []struct {
		name string
		tok  string
	}{
		{"RS256", sign(b, jose.RS256, k.rsa, "rsa1", claims(nil))},
		{"ES256", sign(b, jose.ES256, k.ec, "ec1", claims(nil))},
		{"missing", ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := localProvider(b, k.jwksJSON(b))
			p.Forward = true // keep the header so the request can be reused
			h, _ := buildJWTChain(b, jwtConfig(p, reqAnyOf(reqProviderName("p"), needAllowMissing())), newFakeClock())
			req := bearer(bc.tok)
			req = req.WithContext(WithRequest(req.Context(), nil, nil, nil))
			w := &nopWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				if err := h.ServeHTTP(w, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
