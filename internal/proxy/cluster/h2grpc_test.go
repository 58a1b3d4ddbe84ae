package cluster

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
)

// startGRPC serves the gRPC health and reflection services (h2c) on 127.0.0.1.
func startGRPC(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	reflection.Register(s)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String()
}

// grpcFrame is m as a gRPC length-prefixed message.
func grpcFrame(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 5, 5+len(b))
	binary.BigEndian.PutUint32(out[1:], uint32(len(b)))
	return append(out, b...)
}

// readGRPC reads one length-prefixed message from r into m.
func readGRPC(t *testing.T, r io.Reader, m proto.Message) {
	t.Helper()
	var head [5]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		t.Fatalf("gRPC message head: %v", err)
	}
	b := make([]byte, binary.BigEndian.Uint32(head[1:]))
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatalf("gRPC message: %v", err)
	}
	if err := proto.Unmarshal(b, m); err != nil {
		t.Fatal(err)
	}
}

func grpcRequest(ctx context.Context, addr, method string, body []byte) *http.Request {
	r := h2Request(ctx, "POST", "http", addr, body)
	r.URL.Path, r.URL.RawQuery = method, ""
	r.Header = http.Header{"Content-Type": {"application/grpc"}, "Te": {"trailers"}}
	return r
}

// A unary gRPC call (grpc-go server) with its message in memory leaves in one write on a warm
// connection, and its status arrives in the trailers.
func TestH2GRPCUnaryOneWrite(t *testing.T) {
	addr := startGRPC(t)
	var mu sync.Mutex
	var kinds [][]http2.FrameType
	d := &countingDial{onWrite: func(b []byte) {
		mu.Lock()
		defer mu.Unlock()
		kinds = append(kinds, frameTypes(b))
	}}
	p := newH2Pool(d.dial, nil, time.Second, 0)
	defer p.closeIdle(true)
	req := grpcFrame(t, &healthpb.HealthCheckRequest{})
	for i := range 3 {
		before := d.writes.Load()
		resp, err := p.roundTrip(grpcRequest(context.Background(), addr, "/grpc.health.v1.Health/Check", req))
		if err != nil {
			t.Fatal(err)
		}
		var hr healthpb.HealthCheckResponse
		readGRPC(t, resp.Body, &hr)
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if hr.GetStatus() != healthpb.HealthCheckResponse_SERVING || resp.Trailer.Get("Grpc-Status") != "0" {
			t.Fatalf("call %d: %v, trailers %v", i, hr.GetStatus(), resp.Trailer)
		}
		if i == 0 {
			continue
		}
		// grpc-go's server measures the bandwidth-delay product with a PING on every DATA it
		// receives: the acknowledgement is a write of its own, the call itself must be one.
		n := d.writes.Load() - before
		mu.Lock()
		var calls int
		for _, k := range kinds[len(kinds)-int(n):] {
			switch fmt.Sprint(k) {
			case "[HEADERS DATA]":
				calls++
			case "[PING]":
			default:
				calls = -100
			}
		}
		if calls != 1 {
			t.Errorf("call %d on a warm connection: writes %v, want one with HEADERS and DATA (and PING acknowledgements)", i, kinds[len(kinds)-int(n):])
		}
		mu.Unlock()
	}
}

// A bidirectional gRPC stream (reflection) through a streamed body: send, read the reply, send again.
func TestH2GRPCBidiStream(t *testing.T) {
	addr := startGRPC(t)
	cl := newH2Cluster(t, nil, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	r := grpcRequest(ctx, addr, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", nil)
	r.Body, r.ContentLength = pr, -1
	list := grpcFrame(t, &reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
	// grpc-go sends the response HEADERS with the first reply: the first message goes while
	// RoundTrip waits for them.
	go pw.Write(list)
	resp, err := cl.RoundTrip(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for i := range 3 {
		if i > 0 {
			if _, err := pw.Write(list); err != nil {
				t.Fatal(err)
			}
		}
		var out reflectionpb.ServerReflectionResponse
		readGRPC(t, resp.Body, &out)
		if n := len(out.GetListServicesResponse().GetService()); n < 2 {
			t.Fatalf("reply %d: %d services, want health and reflection", i, n)
		}
	}
	pw.Close()
	if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 || resp.Trailer.Get("Grpc-Status") != "0" {
		t.Errorf("end of stream: %q %v, trailers %v", rest, err, resp.Trailer)
	}
}
