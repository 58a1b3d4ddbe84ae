package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"fortio.org/fortio/fgrpc"
	"fortio.org/fortio/fhttp"
)

// payloadSize is the size of every upstream response body.
const payloadSize = 1024

// runUpstream is the hidden "_upstream" subcommand: an HTTP server on 127.0.0.1:0 answering every
// request with a 1 KB body, over HTTP/1.1 and h2c, and fortio's gRPC ping (echo) service on another
// port, plain text. It prints "ready <http addr> <grpc addr>" and serves until ctx is done.
func runUpstream(ctx context.Context) error {
	quietFortio.Do(silenceFortio)
	body := make([]byte, payloadSize)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	length := strconv.Itoa(len(body))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd["Content-Type"] = []string{"application/octet-stream"}
		hd["Content-Length"] = []string{length}
		_, _ = w.Write(body)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("upstream: listen: %w", err)
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &protos, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	g := fgrpc.PingServer("127.0.0.1:0", "", 0, &fhttp.TLSOptions{})
	if g == nil {
		return fmt.Errorf("upstream: grpc ping server did not start")
	}
	fmt.Fprintf(os.Stdout, "ready %s %s\n", ln.Addr(), g)
	select {
	case <-ctx.Done():
		_ = srv.Close()
		return nil
	case err := <-errc:
		return fmt.Errorf("upstream: serve: %w", err)
	}
}
