package filter

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// fuzzSecret is the HS256 key of the fuzz JWKS.
const fuzzSecret = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"

// FuzzJWTParse feeds arbitrary tokens to a jwt_authn filter (RSA, EC and
// HMAC keys, allow_missing) and arbitrary payloads as unsigned tokens. It
// must never panic; a token it accepts must carry a signature that one of
// the configured keys verifies under an allowed algorithm (checked
// independently with go-jose); an unsigned token is never accepted.
func FuzzJWTParse(f *testing.F) {
	k := testKeySet(f)
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal([]byte(k.jwksJSON(f)), &set); err != nil {
		f.Fatal(err)
	}
	set.Keys = append(set.Keys, json.RawMessage(`{"kty":"oct","kid":"hs1","alg":"HS256","k":"`+fuzzSecret+`"}`))
	jwks, err := json.Marshal(set)
	if err != nil {
		f.Fatal(err)
	}
	secret, err := base64.RawURLEncoding.DecodeString(fuzzSecret)
	if err != nil {
		f.Fatal(err)
	}
	good := sign(f, jose.RS256, k.rsa, "rsa1", claims(nil))
	f.Add(good, []byte(`{"iss":"`+testIss+`","aud":"bookinfo"}`))
	f.Add(sign(f, jose.ES256, k.ec, "ec1", claims(nil)), []byte(`{}`))
	f.Add(sign(f, jose.HS256, secret, "hs1", claims(nil)), []byte(`[]`))
	f.Add(sign(f, jose.HS256, secret, "rsa1", claims(nil)), []byte(`null`))
	f.Add(rawToken(f, map[string]any{"alg": "none"}, claims(nil), ""), []byte(`{"iss":1}`))
	f.Add(good[:len(good)-4]+"AAAA", []byte(`{"exp":1e400}`))
	f.Add("a.b.c", []byte{0xff})
	f.Add("", []byte(nil))

	cfg := jwtConfig(localProvider(f, string(jwks)), reqAnyOf(reqProviderName("p"), needAllowMissing()))
	clock := newFakeClock()
	h, _ := buildJWTChain(f, cfg, clock)
	var verifyKeys []any
	for _, raw := range set.Keys {
		var jk jose.JSONWebKey
		if err := jk.UnmarshalJSON(raw); err != nil {
			f.Fatal(err)
		}
		verifyKeys = append(verifyKeys, jk.Key)
	}

	f.Fuzz(func(t *testing.T, token string, payload []byte) {
		if strings.ContainsAny(token, "\r\n\x00") {
			return // not a header value
		}
		_, _ = parseJWT(token)
		if rec := serveJWT(t, h, bearer(token), nil); rec.Code == 200 && token != "" {
			jws, err := jose.ParseSignedCompact(token, jwtAlgs)
			if err != nil {
				t.Fatalf("accepted a token go-jose cannot parse: %v", err)
			}
			verified := false
			for _, key := range verifyKeys {
				if _, err := jws.Verify(key); err == nil {
					verified = true
				}
			}
			if !verified {
				t.Fatalf("accepted a token no configured key verifies: %q", token)
			}
		}
		// The payload as an unsigned token, under every spelling of none.
		for _, alg := range []string{"none", "None", ""} {
			unsigned := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"`+alg+`"}`)) + "." +
				base64.RawURLEncoding.EncodeToString(payload) + "."
			if _, st := parseJWT(unsigned); st == jwtOK {
				t.Fatalf("parsed an unsigned token with alg %q", alg)
			}
			if rec := serveJWT(t, h, bearer(unsigned), nil); rec.Code == 200 {
				t.Fatalf("accepted an unsigned token with alg %q", alg)
			}
		}
	})
}
