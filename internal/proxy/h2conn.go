package proxy

import "bytes"

// h2Preface is the HTTP/2 client connection preface (RFC 9113 section 3.4).
var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// isH2Preface reports whether b starts with the first line of the HTTP/2 client preface.
func isH2Preface(b []byte) bool { return bytes.HasPrefix(b, h2Preface[:16]) }
