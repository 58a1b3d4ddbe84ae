package httpsafe

import "testing"

func TestHeaderTokens(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want bool
	}{
		{"close", true}, {"Close", true}, {" keep-alive ,\tclose ", true}, {"keep-alive", false},
		{"closed", false}, {"", false}, {",,", false}, {"x-close, up", false},
	} {
		if got := HasToken(tc.v, "close"); got != tc.want {
			t.Errorf("HasToken(%q, close) = %v, want %v", tc.v, got, tc.want)
		}
	}
	if got := TrimOWS(" \t a b \t "); got != "a b" {
		t.Errorf("TrimOWS = %q", got)
	}
}
