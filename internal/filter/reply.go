package filter

import (
	"net/http"
	"strconv"
	"strings"
)

// isGRPC reports whether r is a gRPC request (content-type application/grpc
// or application/grpc+proto, ...).
func isGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return strings.HasPrefix(ct, "application/grpc") &&
		(len(ct) == len("application/grpc") || ct[len("application/grpc")] == '+' || ct[len("application/grpc")] == ';')
}

// grpcStatusFor maps an HTTP status to a gRPC status code the way Envoy
// does for local replies to gRPC requests.
func grpcStatusFor(code int) int {
	switch code {
	case http.StatusBadRequest:
		return 13 // INTERNAL
	case http.StatusUnauthorized:
		return 16 // UNAUTHENTICATED
	case http.StatusForbidden:
		return 7 // PERMISSION_DENIED
	case http.StatusNotFound:
		return 12 // UNIMPLEMENTED
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}

// localReply answers the request from the proxy itself. For gRPC requests
// it sends a trailers-only response (HTTP 200, grpc-status and grpc-message
// in the headers); grpcStatus < 0 means "derive it from code".
func localReply(w http.ResponseWriter, r *http.Request, code int, grpcStatus int, body string) {
	h := w.Header()
	if isGRPC(r) {
		if grpcStatus < 0 {
			grpcStatus = grpcStatusFor(code)
		}
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", strconv.Itoa(grpcStatus))
		h.Set("Grpc-Message", grpcMessageEncode(body))
		h.Del("Content-Length")
		w.WriteHeader(http.StatusOK)
		return
	}
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(body)) // the downstream may be gone; nothing to do about it
	}
}

// grpcMessageEncode percent-encodes a grpc-message value as the gRPC HTTP/2
// protocol requires (bytes outside 0x20..0x7e, and '%').
func grpcMessageEncode(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
