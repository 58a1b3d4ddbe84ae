package httpsafe

import (
	"errors"
	"strings"
	"testing"
)

func TestScanner(t *testing.T) {
	tests := []struct {
		name, in string
		bad      string // substring of the error, empty: accepted
	}{
		{"simple", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", ""},
		{"keep-alive with bodies", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" +
			"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n" +
			"GET / HTTP/1.1\r\nHost: a\r\n\r\n", ""},
		{"body bytes are not heads", "POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n\n\n\x00\n", ""},
		{"CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", "both Content-Length and Transfer-Encoding"},
		{"smuggled second head", "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\nHost: a\n\n", "bare LF"},
		{"conflicting CL", "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", "conflicting Content-Length"},
		{"bad CL", "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", "bad Content-Length"},
		{"bare LF", "GET / HTTP/1.1\nHost: a\r\n\r\n", "bare LF"},
		{"bare CR", "GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", "bare CR"},
		{"NUL", "GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", "NUL"},
		{"folding", "GET / HTTP/1.1\r\nHost: a\r\n  folded\r\n\r\n", "folding"},
		{"gzip TE", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "single chunked"},
		{"bad chunk", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"},
		{"chunk overrun", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", "longer than its size"},
		{"bare LF in chunk", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\nab\r\n", "bare LF"},
		{"too large", "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 200) + "\r\n\r\n", "larger than"},
		{"h2 preface passes", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\n\n", ""},
		{"upgrade passes", "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\n\x00\r", ""},
	}
	for _, tt := range tests {
		// Feed whole and byte by byte: the result must not depend on read boundaries.
		for _, split := range []bool{false, true} {
			s := NewScanner(128)
			var err error
			if split {
				for i := 0; i < len(tt.in) && err == nil; i++ {
					err = s.Feed([]byte{tt.in[i]})
				}
			} else {
				err = s.Feed([]byte(tt.in))
			}
			switch {
			case tt.bad == "" && err != nil:
				t.Errorf("%s (split %v): rejected: %v", tt.name, split, err)
			case tt.bad != "" && (err == nil || !strings.Contains(err.Error(), tt.bad) || !errors.Is(err, ErrRequest)):
				t.Errorf("%s (split %v): error %v, want %q", tt.name, split, err, tt.bad)
			}
		}
	}
}

// FuzzScanner checks that the verdict does not depend on how the stream is split into reads.
func FuzzScanner(f *testing.F) {
	f.Add([]byte("POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET / HTTP/1.1\r\n\r\n"), uint8(3))
	f.Add([]byte("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"), uint8(7))
	f.Add([]byte("GET / HTTP/1.1\nHost: a\r\n\r\n"), uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		whole := NewScanner(1024).Feed(in)
		s := NewScanner(1024)
		var split error
		n := int(step%16) + 1
		for i := 0; i < len(in) && split == nil; i += n {
			split = s.Feed(in[i:min(i+n, len(in))])
		}
		if (whole == nil) != (split == nil) {
			t.Fatalf("whole: %v, split by %d: %v", whole, n, split)
		}
	})
}
