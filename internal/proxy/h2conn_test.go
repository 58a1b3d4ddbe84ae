package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
)

// scriptConn returns its chunks one per Read, with the error given for the last one.
type scriptConn struct {
	net.Conn
	chunks [][]byte
	last   error
	reads  int
}

func (s *scriptConn) Read(p []byte) (int, error) {
	s.reads++
	if len(s.chunks) == 0 {
		return 0, io.EOF
	}
	c := s.chunks[0]
	n := copy(p, c)
	if n < len(c) {
		s.chunks[0] = c[n:]
		return n, nil
	}
	s.chunks = s.chunks[1:]
	if len(s.chunks) == 0 {
		return n, s.last
	}
	return n, nil
}

// TestReadBufConn checks that the buffered connection returns the prefix and then the connection's
// bytes in order, whatever the sizes of the reads, passes on the connection's error after the bytes
// that came with it, and serves small reads from one read of the connection.
func TestReadBufConn(t *testing.T) {
	errBroken := errors.New("broken")
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1200) // larger than the buffer
	cases := []struct {
		name   string
		pre    []byte
		chunks [][]byte
		last   error
		sizes  []int
	}{
		{"frames", []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), [][]byte{[]byte("123456789abcdefgh"), []byte("tail")}, io.EOF, []int{9, 8, 9, 1}},
		{"no prefix", nil, [][]byte{payload[:100], payload[100:5000]}, io.EOF, []int{9, 4096, 1}},
		{"large reads bypass", []byte("ab"), [][]byte{payload}, io.EOF, []int{1, 1, 1 << 16}},
		{"error with bytes", nil, [][]byte{[]byte("abcdefgh")}, errBroken, []int{3, 3, 3}},
		{"error with all bytes", []byte("x"), [][]byte{[]byte("abc")}, errBroken, []int{1, 100}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var want []byte
			want = append(want, tc.pre...)
			for _, c := range tc.chunks {
				want = append(want, c...)
			}
			chunks := make([][]byte, len(tc.chunks))
			copy(chunks, tc.chunks)
			sc := &scriptConn{chunks: chunks, last: tc.last}
			c := newReadBufConn(sc, tc.pre)
			var got []byte
			var err error
			for i := 0; err == nil; i++ {
				p := make([]byte, tc.sizes[min(i, len(tc.sizes)-1)])
				var n int
				n, err = c.Read(p)
				got = append(got, p[:n]...)
				if i > 10000 {
					t.Fatal("no end")
				}
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("read %q, want %q", got, want)
			}
			if err != tc.last {
				t.Fatalf("error %v, want %v", err, tc.last)
			}
		})
	}
	// Two frames that arrive together cost one read of the connection.
	sc := &scriptConn{chunks: [][]byte{[]byte("AAAAAAAAAbbbbCCCCCCCCCdd")}, last: nil}
	c := newReadBufConn(sc, nil)
	for _, n := range []int{9, 4, 9, 2} {
		if _, err := io.ReadFull(c, make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	if sc.reads != 1 {
		t.Fatalf("%d reads of the connection for one arrival, want 1", sc.reads)
	}
}

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
