package identity

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"
)

// tlsWorld is a mesh whose certificates are valid at the real clock, which
// crypto/tls verification uses.
type tlsWorld struct {
	root, scope, foreign *CA
	anchor, admin        *Credentials // issued by root
	workload             *Credentials // issued by the bookinfo scope CA
	foreignAnchor        *Credentials // same mesh name, another root CA
}

func newTLSWorld(t *testing.T) *tlsWorld {
	t.Helper()
	now := time.Now()
	w := &tlsWorld{}
	var err error
	if w.root, err = NewRootCA(testMesh, now); err != nil {
		t.Fatal(err)
	}
	if w.foreign, err = NewRootCA(testMesh, now); err != nil {
		t.Fatal(err)
	}
	if w.scope, err = w.root.NewIntermediate("bookinfo.demo.mesh", time.Hour, now); err != nil {
		t.Fatal(err)
	}
	issue := func(ca *CA, id ID) *Credentials {
		c, err := ca.NewCredentials(id, time.Hour, now, nil, []net.IP{net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	w.anchor = issue(w.root, AnchorID(testMesh, "a1"))
	w.admin = issue(w.root, AdminID(testMesh, "admin"))
	w.workload = issue(w.scope, WorkloadID("bookinfo.demo.mesh", "reviews"))
	w.foreignAnchor = issue(w.foreign, AnchorID(testMesh, "a1"))
	return w
}

// rawServer is a server config presenting exactly certs, bypassing every
// check of this package, to play a misbehaving peer.
func rawServer(key crypto.Signer, certs ...*x509.Certificate) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{rawCert(key, certs...)}}
}

// rawClient presents exactly certs and verifies nothing.
func rawClient(key crypto.Signer, certs ...*x509.Certificate) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, Certificates: []tls.Certificate{rawCert(key, certs...)}}
}

func rawCert(key crypto.Signer, certs ...*x509.Certificate) tls.Certificate {
	var c tls.Certificate
	for _, x := range certs {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	c.PrivateKey = key
	return c
}

type handshakeResult struct {
	server    tls.ConnectionState
	client    tls.ConnectionState
	serverErr error
	clientErr error
}

// handshake runs a TLS handshake over loopback and exchanges one byte each
// way, so that a rejection by either side shows up as that side's error.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) handshakeResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	deadline := time.Now().Add(5 * time.Second)
	type result struct {
		cs  tls.ConnectionState
		err error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer conn.Close()
		conn.SetDeadline(deadline)
		s := tls.Server(conn, serverCfg)
		err = s.Handshake()
		if err == nil {
			buf := make([]byte, 1)
			if _, err = io.ReadFull(s, buf); err == nil {
				_, err = s.Write(buf)
			}
		}
		done <- result{s.ConnectionState(), err}
	}()
	conn, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(deadline)
	c := tls.Client(conn, clientCfg)
	clientErr := c.Handshake()
	if clientErr == nil {
		if _, clientErr = c.Write([]byte{7}); clientErr == nil {
			_, clientErr = io.ReadFull(c, make([]byte, 1))
		}
	}
	cs := c.ConnectionState()
	conn.Close()
	srv := <-done
	return handshakeResult{server: srv.cs, client: cs, serverErr: srv.err, clientErr: clientErr}
}

func TestTLSHandshake(t *testing.T) {
	w := newTLSWorld(t)
	anchors := AcceptAnchors(testMesh)
	twoURIKey := newTestKey(t)
	twoURIs := craftLeafKey(t, w.root, twoURIKey, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
		c.URIs = append(c.URIs, mustURL("spiffe://demo.mesh/anchor/a2"))
	})
	outsideKey := newTestKey(t)
	outside := craftLeafKey(t, w.root, outsideKey, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
		c.URIs = []*url.URL{mustURL("spiffe://other.mesh/anchor/a1")}
	})
	caLeafKey := newTestKey(t)
	caLeaf := craftLeafKey(t, w.root, caLeafKey, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
		c.IsCA = true
	})
	expiredKey := newTestKey(t)
	expired := craftLeafKey(t, w.root, expiredKey, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
	})
	scopeMintsAnchorKey := newTestKey(t)
	scopeMintsAnchor := craftLeafKey(t, w.scope, scopeMintsAnchorKey, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
	}) // spiffe://demo.mesh/anchor/a1 signed by the bookinfo scope CA

	tests := []struct {
		name          string
		server        *tls.Config
		client        *tls.Config
		wantPeer      ID     // server's PeerID of the client; zero: PeerID must fail
		wantServerErr string // the server refuses, with an error containing this
		wantClientErr string // the client refuses, with an error containing this
	}{
		{name: "admin to anchor", server: ServerTLS(w.anchor), client: ClientTLS(w.admin, anchors), wantPeer: AdminID(testMesh, "admin")},
		{name: "anchor to anchor", server: ServerTLS(w.anchor), client: ClientTLS(w.anchor, anchors), wantPeer: AnchorID(testMesh, "a1")},
		{name: "workload via scope CA to anchor", server: ServerTLS(w.anchor), client: ClientTLS(w.workload, anchors), wantPeer: WorkloadID("bookinfo.demo.mesh", "reviews")},
		{name: "anchor to workload server via scope CA", server: ServerTLS(w.workload), client: ClientTLS(w.anchor, func(id ID) error { return nil }), wantPeer: AnchorID(testMesh, "a1")},
		{name: "pinned client, no certificate", server: ServerTLS(w.anchor), client: PinnedClientTLS(SPKIPin(w.root.Cert))},
		{name: "pinned client to scope-CA server", server: ServerTLS(w.workload), client: PinnedClientTLS(SPKIPin(w.root.Cert))},

		{name: "server from another CA", server: ServerTLS(w.foreignAnchor), client: ClientTLS(w.admin, anchors), wantClientErr: "unknown authority"},
		{name: "client from another CA", server: ServerTLS(w.anchor), client: rawClient(w.foreignAnchor.Key, w.foreignAnchor.Chain...), wantServerErr: "unknown authority"},
		{name: "server not accepted", server: ServerTLS(w.admin), client: ClientTLS(w.anchor, anchors), wantClientErr: "is not an anchor"},
		{name: "nil accept", server: ServerTLS(w.anchor), client: ClientTLS(w.admin, nil), wantClientErr: "no accept policy"},
		{name: "pinned client, wrong pin", server: ServerTLS(w.anchor), client: PinnedClientTLS(SPKIPin(w.foreign.Cert)), wantClientErr: "no CA with the pinned key"},
		{name: "pinned client, foreign server", server: ServerTLS(w.foreignAnchor), client: PinnedClientTLS(SPKIPin(w.root.Cert)), wantClientErr: "no CA with the pinned key"},
		{name: "server leaf outside name constraints", server: rawServer(outsideKey, outside, w.root.Cert), client: ClientTLS(w.admin, func(ID) error { return nil }), wantClientErr: "not permitted"},
		{name: "pinned client, leaf outside name constraints", server: rawServer(outsideKey, outside, w.root.Cert), client: PinnedClientTLS(SPKIPin(w.root.Cert)), wantClientErr: "not permitted"},
		{name: "server leaf minted by scope CA outside its scope", server: rawServer(scopeMintsAnchorKey, scopeMintsAnchor, w.scope.Cert, w.root.Cert), client: ClientTLS(w.admin, anchors), wantClientErr: "not permitted"},
		{name: "server leaf with two URI SANs", server: rawServer(twoURIKey, twoURIs, w.root.Cert), client: ClientTLS(w.admin, func(ID) error { return nil }), wantClientErr: "2 URI SANs"},
		{name: "server leaf is a CA", server: rawServer(caLeafKey, caLeaf, w.root.Cert), client: ClientTLS(w.admin, func(ID) error { return nil }), wantClientErr: "is a CA"},
		{name: "expired server leaf", server: rawServer(expiredKey, expired, w.root.Cert), client: ClientTLS(w.admin, anchors), wantClientErr: "expired"},
		{name: "client leaf outside name constraints", server: ServerTLS(w.anchor), client: rawClient(outsideKey, outside), wantServerErr: "not permitted"},
		{name: "client leaf minted by scope CA outside its scope", server: ServerTLS(w.anchor), client: rawClient(scopeMintsAnchorKey, scopeMintsAnchor, w.scope.Cert), wantServerErr: "not permitted"},
		{name: "client leaf with two URI SANs", server: ServerTLS(w.anchor), client: rawClient(twoURIKey, twoURIs), wantServerErr: "2 URI SANs"},
		{name: "client leaf is a CA", server: ServerTLS(w.anchor), client: rawClient(caLeafKey, caLeaf), wantServerErr: "is a CA"},
		{name: "expired client leaf", server: ServerTLS(w.anchor), client: rawClient(expiredKey, expired), wantServerErr: "expired"},
		{name: "server without usable credentials", server: ServerTLS(&Credentials{Chain: w.anchor.Chain, Bundle: w.anchor.Bundle}), client: ClientTLS(w.admin, anchors), wantServerErr: "no private key"},
		{name: "client without usable credentials", server: ServerTLS(w.anchor), client: ClientTLS(&Credentials{Chain: w.admin.Chain, Bundle: w.admin.Bundle}, anchors), wantClientErr: "no private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := handshake(t, tt.server, tt.client)
			switch {
			case tt.wantServerErr != "":
				if r.serverErr == nil || !strings.Contains(r.serverErr.Error(), tt.wantServerErr) {
					t.Fatalf("server error = %v, want containing %q", r.serverErr, tt.wantServerErr)
				}
				if r.clientErr == nil {
					t.Fatal("client completed an exchange the server refused")
				}
				return
			case tt.wantClientErr != "":
				if r.clientErr == nil || !strings.Contains(r.clientErr.Error(), tt.wantClientErr) {
					t.Fatalf("client error = %v, want containing %q", r.clientErr, tt.wantClientErr)
				}
				if r.serverErr == nil {
					t.Fatal("server completed an exchange the client refused")
				}
				return
			}
			if r.serverErr != nil || r.clientErr != nil {
				t.Fatalf("handshake failed: server %v, client %v", r.serverErr, r.clientErr)
			}
			if r.client.NegotiatedProtocol != "h2" || r.client.Version != tls.VersionTLS13 {
				t.Errorf("negotiated %q, version %x; want h2, TLS 1.3", r.client.NegotiatedProtocol, r.client.Version)
			}
			got, err := PeerID(r.server)
			if tt.wantPeer == (ID{}) {
				if err == nil {
					t.Fatalf("PeerID = %v for a client without certificate, want error", got)
				}
				return
			}
			if err != nil || got != tt.wantPeer {
				t.Fatalf("PeerID = %v, %v; want %v", got, err, tt.wantPeer)
			}
		})
	}
}

func TestServerPresentsRoot(t *testing.T) {
	w := newTLSWorld(t)
	for name, c := range map[string]*Credentials{"root-issued": w.anchor, "scope-issued": w.workload} {
		cert, err := ServerTLS(c).GetCertificate(nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := len(c.Chain) + 1
		if len(cert.Certificate) != want || string(cert.Certificate[want-1]) != string(w.root.Cert.Raw) {
			t.Errorf("%s: presents %d certificates, want chain + root (%d)", name, len(cert.Certificate), want)
		}
	}
}

func TestPeerIDWithoutVerifiedChains(t *testing.T) {
	w := newTLSWorld(t)
	// Peer certificates that were not verified do not count.
	if _, err := PeerID(tls.ConnectionState{PeerCertificates: w.anchor.Chain}); err == nil {
		t.Fatal("PeerID accepted unverified peer certificates")
	}
}
