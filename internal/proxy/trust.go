package proxy

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"strings"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// Trusted headers. A request is trusted when it arrived over mTLS from a verified mesh peer (another
// proxy of the mesh, which sanitized it at its own boundary). Every other request, from the local
// application on the outbound listener, a plaintext peer or a gateway's client, is from the outside:
// the proxy removes the headers that only the mesh may set before any filter runs.

const xfccHeader = "X-Forwarded-Client-Cert"

// clientCertDetails is HttpConnectionManager.set_current_client_cert_details: what the proxy adds to
// x-forwarded-client-cert besides By and Hash.
type clientCertDetails struct {
	subject, cert, chain, dns, uri bool
}

// sanitizeHeaders enforces the trust boundary on a request before any filter sees it: only a
// verified mesh peer may send the mesh's own headers, and x-forwarded-client-cert is what
// forward_client_cert_details makes of it.
func (h *hcmHandler) sanitizeHeaders(r *http.Request, st *reqState) {
	if !st.hasPeer {
		stripInternalHeaders(r.Header)
	}
	var local *x509.Certificate
	if m := h.hcm.fcc; (m == hcmv3.HttpConnectionManager_APPEND_FORWARD || m == hcmv3.HttpConnectionManager_SANITIZE_SET) &&
		r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && st.ci != nil {
		local = h.p.localCertificate(st.ci.chain)
	}
	forwardClientCert(r.Header, h.hcm.fcc, h.hcm.fccSet, r.TLS, local)
}

// stripInternalHeaders removes the x-envoy-* request headers, which only proxies of the mesh set.
// Envoy removes its internal headers from edge requests; Canton treats every request that did not come
// from a verified mesh peer as an edge request, and removes the whole x-envoy- family.
func stripInternalHeaders(h http.Header) {
	for k := range h {
		if len(k) > 8 && strings.EqualFold(k[:8], "x-envoy-") {
			delete(h, k)
		}
	}
}

// forwardClientCert applies forward_client_cert_details to the request's x-forwarded-client-cert
// header as Envoy does: SANITIZE (the default) removes it; FORWARD_ONLY keeps it on TLS connections;
// APPEND_FORWARD and SANITIZE_SET append or set this hop's element when the peer presented a
// certificate; ALWAYS_FORWARD_ONLY keeps it. In every other case it is removed. cs is the downstream
// TLS state (nil: plaintext); local is this proxy's certificate on the connection (for By).
func forwardClientCert(h http.Header, mode hcmv3.HttpConnectionManager_ForwardClientCertDetails, d clientCertDetails,
	cs *tls.ConnectionState, local *x509.Certificate) {
	switch {
	case mode == hcmv3.HttpConnectionManager_ALWAYS_FORWARD_ONLY:
		return
	case mode == hcmv3.HttpConnectionManager_FORWARD_ONLY && cs != nil:
		return
	case mode == hcmv3.HttpConnectionManager_SANITIZE || cs == nil || len(cs.PeerCertificates) == 0:
		delete(h, xfccHeader)
		return
	}
	elem := xfccElement(d, cs.PeerCertificates, local)
	if mode == hcmv3.HttpConnectionManager_APPEND_FORWARD {
		if prev := h.Values(xfccHeader); len(prev) > 0 {
			elem = strings.Join(prev, ",") + "," + elem
		}
	}
	h[xfccHeader] = []string{elem}
}

// xfccElement is one element of x-forwarded-client-cert for a peer's chain: By (this proxy's URI SANs),
// Hash (SHA-256 of the peer's leaf, hex), then Cert, Chain, Subject, URI and DNS as d asks.
func xfccElement(d clientCertDetails, peer []*x509.Certificate, local *x509.Certificate) string {
	leaf := peer[0]
	var parts []string
	if local != nil {
		for _, u := range local.URIs {
			parts = append(parts, "By="+u.String())
		}
	}
	sum := sha256.Sum256(leaf.Raw)
	parts = append(parts, "Hash="+hex.EncodeToString(sum[:]))
	if d.cert {
		parts = append(parts, `Cert="`+urlEncodePEM(leaf)+`"`)
	}
	if d.chain {
		var b strings.Builder
		for _, c := range peer {
			b.WriteString(urlEncodePEM(c))
		}
		parts = append(parts, `Chain="`+b.String()+`"`)
	}
	if d.subject {
		parts = append(parts, `Subject="`+strings.ReplaceAll(leaf.Subject.String(), `"`, `\"`)+`"`)
	}
	if d.uri {
		for _, u := range leaf.URIs {
			parts = append(parts, "URI="+u.String())
		}
	}
	if d.dns {
		for _, n := range leaf.DNSNames {
			parts = append(parts, "DNS="+n)
		}
	}
	return strings.Join(parts, ";")
}

// urlEncodePEM is the PEM form of c with every byte but the unreserved characters percent-encoded.
func urlEncodePEM(c *x509.Certificate) string {
	p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for _, ch := range p {
		if 'a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' || ch == '-' || ch == '.' || ch == '_' || ch == '~' {
			b.WriteByte(ch)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[ch>>4])
		b.WriteByte(hexDigits[ch&15])
	}
	return b.String()
}

// stripTrailingHostDot removes the dot that ends a fully qualified host name, before a port if
// there is one ("a.example.:80" is "a.example:80"), as strip_trailing_host_dot does.
func stripTrailingHostDot(host string) string {
	name, port := host, ""
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		name, port = host[:i], host[i:]
	}
	if strings.HasSuffix(name, ".") {
		return name[:len(name)-1] + port
	}
	return host
}

// localCertificate returns the proxy's own certificate on a downstream TLS connection of chain.
func (p *Proxy) localCertificate(chain *chainSpec) *x509.Certificate {
	if chain == nil || chain.tls == nil {
		return nil
	}
	cert, _, _, err := p.secrets(chain.tls)
	if err != nil || cert == nil {
		return nil
	}
	if cert.Leaf != nil {
		return cert.Leaf
	}
	if len(cert.Certificate) == 0 {
		return nil
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil
	}
	return leaf
}
