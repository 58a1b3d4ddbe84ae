// Package httpsafe holds the proxy's defences against hostile HTTP input that net/http does not
// already provide: the one canonical request-path normalization used both to match routes and to
// forward, header-field validation, and a connection guard that rejects HTTP/1.1 request heads
// net/http would accept (Content-Length with Transfer-Encoding, bare LF line endings, too many header
// fields, ...).
//
// Only internal/proxy and its subpackages import this package.
package httpsafe
