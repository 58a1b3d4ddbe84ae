package identity

import (
	"crypto/tls"
	"net"
	"testing"
	"time"
)

func BenchmarkParseID(b *testing.B) {
	for b.Loop() {
		if _, err := ParseID("spiffe://bookinfo.demo.mesh/sa/reviews"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIssue(b *testing.B) {
	ca := newTestRoot(b)
	pub := newTestKey(b).Public()
	id := WorkloadID("bookinfo.demo.mesh", "reviews")
	for b.Loop() {
		if _, err := ca.Issue(id, pub, time.Hour, testNow, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignCSR(b *testing.B) {
	ca := newTestRoot(b)
	id := WorkloadID("bookinfo.demo.mesh", "reviews")
	csr, err := NewCSR(id, newTestKey(b))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := ca.SignCSR(csr, id, time.Hour, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseCredentials(b *testing.B) {
	raw, err := newTestCreds(b, newTestRoot(b), AnchorID(testMesh, "a1")).Marshal()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := ParseCredentials(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMTLSHandshake measures one full mutual TLS 1.3 handshake between
// ServerTLS and ClientTLS over an in-memory pipe (both sides in-process, so
// it is the CPU cost of both ends together).
func BenchmarkMTLSHandshake(b *testing.B) {
	now := time.Now()
	ca, err := NewRootCA(testMesh, now)
	if err != nil {
		b.Fatal(err)
	}
	srvCreds, err := ca.NewCredentials(AnchorID(testMesh, "a1"), time.Hour, now, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	cliCreds, err := ca.NewCredentials(AdminID(testMesh, "admin"), time.Hour, now, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	server, client := ServerTLS(srvCreds), ClientTLS(cliCreds, AcceptAnchors(testMesh))
	for b.Loop() {
		c1, c2 := net.Pipe()
		errc := make(chan error, 1)
		go func() {
			s := tls.Server(c1, server)
			errc <- s.Handshake()
		}()
		c := tls.Client(c2, client)
		if err := c.Handshake(); err != nil {
			b.Fatal(err)
		}
		// The server verifies the client's Finished after the client returns;
		// wait for it so each iteration is one complete handshake.
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		c1.Close()
		c2.Close()
	}
}
