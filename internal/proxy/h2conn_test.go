package proxy

import "testing"

func TestIsH2Preface(t *testing.T) {
	for in, want := range map[string]bool{
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n": true,
		"PRI * HTTP/2.0\r\n\r\n":           true,
		"PRI * HTTP/2.0":                   false,
		"GET / HTTP/1.1\r\n\r\n":           false,
		"":                                 false,
	} {
		if got := isH2Preface([]byte(in)); got != want {
			t.Errorf("isH2Preface(%q) = %v, want %v", in, got, want)
		}
	}
}
