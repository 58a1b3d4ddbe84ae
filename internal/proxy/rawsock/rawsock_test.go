package rawsock

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pair returns both ends of a loopback TCP connection; the first is wrapped with New when raw.
func pair(t *testing.T, raw bool) (net.Conn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { d.Close(); peer.Close() })
	var c net.Conn = d.(*net.TCPConn)
	if raw {
		rc := New(d.(*net.TCPConn))
		if rc.rawPath() != (runtime.GOOS == "linux") {
			t.Fatalf("New took the raw path: %v on %s", rc.rawPath(), runtime.GOOS)
		}
		c = rc
	}
	return c, peer.(*net.TCPConn)
}

// both runs f against a plain *net.TCPConn and against a Conn: the two must behave alike.
func both(t *testing.T, f func(t *testing.T, c net.Conn, peer *net.TCPConn)) {
	for _, raw := range []bool{false, true} {
		name := "net"
		if raw {
			name = "raw"
		}
		t.Run(name, func(t *testing.T) {
			c, peer := pair(t, raw)
			f(t, c, peer)
		})
	}
}

func TestReadWrite(t *testing.T) {
	both(t, func(t *testing.T, c net.Conn, peer *net.TCPConn) {
		if n, err := c.Write([]byte("hello")); n != 5 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "hello" {
			t.Fatalf("peer read %q, %v", buf, err)
		}
		if _, err := peer.Write([]byte("world!")); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 3) // shorter than what arrived: the rest stays for the next Read
		if n, err := c.Read(got); n != 3 || err != nil || string(got) != "wor" {
			t.Fatalf("Read = %d %q, %v", n, got, err)
		}
		if n, err := c.Read(got); n != 3 || err != nil || string(got) != "ld!" {
			t.Fatalf("second Read = %d %q, %v", n, got, err)
		}
		if n, err := c.Read(nil); n != 0 || err != nil {
			t.Fatalf("Read(nil) = %d, %v", n, err)
		}
		if n, err := c.Write(nil); n != 0 || err != nil {
			t.Fatalf("Write(nil) = %d, %v", n, err)
		}
		peer.CloseWrite()
		if n, err := c.Read(got); n != 0 || err != io.EOF {
			t.Fatalf("Read at the end = %d, %v; want 0, io.EOF", n, err)
		}
	})
}

// TestLargeWrite writes more than the socket buffers hold: Write must wait for the peer to drain
// them and return only when everything is written.
func TestLargeWrite(t *testing.T) {
	both(t, func(t *testing.T, c net.Conn, peer *net.TCPConn) {
		want := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
		got := make(chan []byte)
		go func() {
			b, _ := io.ReadAll(peer)
			got <- b
		}()
		if n, err := c.Write(want); n != len(want) || err != nil {
			t.Fatalf("Write = %d, %v; want %d", n, err, len(want))
		}
		c.(interface{ CloseWrite() error }).CloseWrite()
		if b := <-got; !bytes.Equal(b, want) {
			t.Fatalf("peer read %d bytes, want the %d written", len(b), len(want))
		}
	})
}

func TestDeadlines(t *testing.T) {
	both(t, func(t *testing.T, c net.Conn, peer *net.TCPConn) {
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := c.Read(make([]byte, 8))
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Read past the deadline = %v; want a timeout wrapping os.ErrDeadlineExceeded", err)
		}
		var op *net.OpError
		if !errors.As(err, &op) || op.Op != "read" {
			t.Fatalf("Read error %T %v; want a *net.OpError of op read", err, err)
		}
		// A deadline already past fails a write that would otherwise succeed.
		c.SetWriteDeadline(time.Now().Add(-time.Second))
		if _, err := c.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Write past the deadline = %v", err)
		}
		// Lifting the deadlines makes the connection usable again.
		c.SetDeadline(time.Time{})
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := peer.Write([]byte("y")); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Read(make([]byte, 1)); n != 1 || err != nil {
			t.Fatalf("Read after the deadline was lifted = %d, %v", n, err)
		}
	})
}

// TestCloseWakesReader closes the connection while a Read waits in the poller.
func TestCloseWakesReader(t *testing.T) {
	both(t, func(t *testing.T, c net.Conn, _ *net.TCPConn) {
		done := make(chan error)
		go func() {
			_, err := c.Read(make([]byte, 8))
			done <- err
		}()
		// The reader may or may not be waiting yet; either way it must see the close.
		c.Close()
		if err := <-done; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read on a closed connection = %v; want net.ErrClosed", err)
		}
		if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Write on a closed connection = %v; want net.ErrClosed", err)
		}
	})
}

// TestPeerReset: after the peer reset the connection, Read and Write fail with the system's error.
func TestPeerReset(t *testing.T) {
	both(t, func(t *testing.T, c net.Conn, peer *net.TCPConn) {
		peer.SetLinger(0) // close with RST
		peer.Close()
		var se *os.SyscallError
		if _, err := c.Read(make([]byte, 8)); !errors.As(err, &se) { // waits for the RST
			t.Fatalf("Read after the peer's reset = %v; want an *os.SyscallError", err)
		}
		if _, err := c.Write(make([]byte, 1024)); !errors.As(err, &se) {
			t.Fatalf("Write after the peer's reset = %v; want an *os.SyscallError", err)
		}
	})
}

// TestConcurrent runs a reader and a writer on each end at once (run it with -race).
func TestConcurrent(t *testing.T) {
	both(t, func(t *testing.T, c net.Conn, peer *net.TCPConn) {
		const total = 1 << 20
		var wg sync.WaitGroup
		echo := func(dst, src net.Conn) {
			defer wg.Done()
			buf := make([]byte, 3000)
			for n := 0; n < total; {
				m, err := src.Read(buf)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := dst.Write(buf[:m]); err != nil {
					t.Error(err)
					return
				}
				n += m
			}
		}
		wg.Add(1)
		go echo(peer, peer) // the peer echoes everything back
		sent := bytes.Repeat([]byte{7}, total)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for off := 0; off < total; off += 1000 {
				if _, err := c.Write(sent[off:min(off+1000, total)]); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		got, err := io.ReadAll(io.LimitReader(c, total))
		if err != nil || !bytes.Equal(got, sent) {
			t.Fatalf("read back %d bytes, %v; want the %d sent", len(got), err, total)
		}
		wg.Wait()
	})
}

func TestUnwrap(t *testing.T) {
	c, _ := pair(t, true)
	tc, ok := TCP(c)
	if !ok || Unwrap(c) != net.Conn(tc) {
		t.Fatalf("TCP/Unwrap of %T = %T, %v / %T", c, tc, ok, Unwrap(c))
	}
	if _, ok := TCP(&net.UnixConn{}); ok {
		t.Fatal("TCP found a TCP connection in a Unix one")
	}
}

// TestReadAllocs: a Read and a Write that need not wait allocate nothing.
func TestReadAllocs(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the raw path is Linux's")
	}
	c, peer := pair(t, true)
	buf := make([]byte, 64)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(peer, buf); err != nil {
			t.Fatal(err)
		}
		if _, err := peer.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Fatalf("%v allocations per exchange, want 0", allocs)
	}
}

// TestBlockingSocketKeepsNetPath: a socket someone put in blocking mode is read and written through
// the *net.TCPConn's methods, never with a raw call that would hold the thread.
func TestBlockingSocketKeepsNetPath(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the raw path is Linux's")
	}
	_, peer := pair(t, false)
	rc, err := peer.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	setBlocking := func(blocking bool) {
		if err := rc.Control(func(fd uintptr) {
			if err := syscall.SetNonblock(int(fd), !blocking); err != nil {
				t.Fatal(err)
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	setBlocking(true)
	defer setBlocking(false)
	if New(peer).rawPath() {
		t.Fatal("New took the raw path on a blocking socket")
	}
}
