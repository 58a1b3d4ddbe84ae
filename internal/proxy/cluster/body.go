package cluster

// ReadReadier is implemented by a body whose next Read returns without waiting (bytes, io.EOF or an
// error are already there). The HTTP/2 pool writes a request body that is ready in the same write as
// the request's HEADERS (a unary gRPC call, a small POST: one write system call) and copies a body
// that is not ready on a goroutine of its own, full duplex with the response. The pool's response
// bodies implement it too, so that a proxy can pass one's readiness on to the next hop.
//
// A body without the method is never ready, unless it is in memory (the request has GetBody, the
// body is http.NoBody or ContentLength is 0).
type ReadReadier interface {
	ReadReady() bool
}
