package xds

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// signedToken returns a compact ES256 JWT of issuer iss signed with key.
func signedToken(t *testing.T, key *ecdsa.PrivateKey, kid, iss string) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(map[string]any{"iss": iss, "sub": "bob", "exp": time.Now().Add(time.Hour).Unix()})
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func publicJWKS(t *testing.T, key *ecdsa.PrivateKey, kid string) string {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: kid, Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestUnusableJWKSFailsClosed: a jwtRule whose keys cannot be used is not left out (which, for
// the only rule, meant no jwt_authn filter at all and every token accepted as "no token"): its
// tokens, wherever the rule reads them, get 401, and the skip message says so.
func TestUnusableJWKSFailsClosed(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := publicJWKS(t, key, "k1")
	const broken = `{"keys":[{"kty":"EC"}]}` // valid JSON, no usable key
	ra := func(rules string) string {
		return "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt}\nspec:\n  jwtRules:\n" + rules
	}
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	cases := []struct {
		name, policies string
		reqs           []req
		want           []int
		wantSkip       string
	}{
		{"the only rule", ra(fmt.Sprintf("  - {issuer: https://bad.example, jwks: '%s'}\n", broken)),
			[]req{
				{peer: pp, method: "GET", path: "/"},
				{peer: pp, method: "GET", path: "/", headers: bearer(signedToken(t, key, "k1", "https://bad.example"))},
				{peer: pp, method: "GET", path: "/", headers: bearer("not-a-token")},
				{peer: pp, method: "GET", path: "/?access_token=" + signedToken(t, key, "k1", "https://bad.example")},
			},
			[]int{200, 401, 401, 401},
			`RequestAuthentication bookinfo.demo.mesh/jwt: jwtRules[0].jwks: the JSON Web Key Set has no usable signature verification key; the rule keeps its issuer and token locations with a key set that verifies no token, so tokens of issuer "https://bad.example" are rejected (401)`},
		{"a rule reading its own header, next to a usable rule", ra(fmt.Sprintf(
			"  - {issuer: https://good.example, jwks: '%s'}\n  - {issuer: https://bad.example, jwks: '%s', fromHeaders: [{name: x-token}]}\n", good, broken)),
			[]req{
				{peer: pp, method: "GET", path: "/", headers: bearer(signedToken(t, key, "k1", "https://good.example"))},
				{peer: pp, method: "GET", path: "/", headers: map[string]string{"X-Token": signedToken(t, key, "k1", "https://bad.example")}},
				{peer: pp, method: "GET", path: "/", headers: map[string]string{"X-Token": signedToken(t, key, "k1", "https://good.example")}},
			},
			[]int{200, 401, 401},
			`jwtRules[1].jwks: the JSON Web Key Set has no usable signature verification key`},
		{"a rule whose only header cannot exist", ra(fmt.Sprintf(
			"  - {issuer: https://good.example, jwks: '%s'}\n  - {issuer: https://odd.example, jwks: '%s', fromHeaders: [{name: \"x token\"}]}\n", good, good)),
			[]req{{peer: pp, method: "GET", path: "/", headers: bearer(signedToken(t, key, "k1", "https://good.example"))}},
			[]int{200},
			`jwtRules[1]: none of its token locations is usable: the rule is left out`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, res := inboundChain(t, tc.policies, reviewsNode())
			for i, q := range tc.reqs {
				if got := serve(h, q); got != tc.want[i] {
					t.Errorf("request %d (%s %v): got %d, want %d", i, q.path, q.headers, got, tc.want[i])
				}
			}
			var skips []string
			for _, s := range res.Skipped {
				skips = append(skips, s.String())
			}
			if joined := strings.Join(skips, "\n"); !strings.Contains(joined, tc.wantSkip) {
				t.Errorf("skipped lacks %q:\n%s", tc.wantSkip, joined)
			}
		})
	}
}

// TestUnverifiableJWKS checks the placeholder key set: the proxy's test accepts it, it is the
// same on every call, and its one key is a P-256 public key (a point on the curve).
func TestUnverifiableJWKS(t *testing.T) {
	s := unverifiableJWKS()
	if reason := checkJWKS(s); reason != "" {
		t.Fatalf("checkJWKS(%s) = %q", s, reason)
	}
	if s != unverifiableJWKS() {
		t.Fatal("not deterministic")
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(s), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("%s: %v", s, err)
	}
	pub, ok := set.Keys[0].Key.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("key %T, want a P-256 public key", set.Keys[0].Key)
	}
}
