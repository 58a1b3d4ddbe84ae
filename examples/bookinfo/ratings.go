package bookinfo

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"canton.dev/canton/examples/bookinfo/ratingspb"
)

// ratingsOf is the ratings service's data: every product has the same two
// reviewers, as in Istio's sample.
func ratingsOf(int32) map[string]int32 {
	return map[string]int32{"Reviewer1": 5, "Reviewer2": 4}
}

type ratingsServer struct {
	ratingspb.UnimplementedRatingsServer
}

func (ratingsServer) GetRatings(_ context.Context, req *ratingspb.GetRatingsRequest) (*ratingspb.GetRatingsResponse, error) {
	if req.GetProductId() < 0 {
		return nil, status.Error(codes.InvalidArgument, "ratings: product_id must be non-negative")
	}
	return &ratingspb.GetRatingsResponse{ProductId: req.GetProductId(), Ratings: ratingsOf(req.GetProductId())}, nil
}

// ratingsHandler serves gRPC (HTTP/2, content-type application/grpc) and
// GET /ratings/<id> as JSON on one port.
func (a *App) ratingsHandler() http.Handler {
	a.grpcSrv = grpc.NewServer()
	ratingspb.RegisterRatingsServer(a.grpcSrv, ratingsServer{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", health)
	mux.HandleFunc("GET /ratings/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 32)
		if err != nil || id < 0 {
			http.Error(w, "ratings: product id must be a non-negative integer", http.StatusBadRequest)
			return
		}
		writeJSON(w, struct {
			ID      int32            `json:"id"`
			Ratings map[string]int32 `json:"ratings"`
		}{int32(id), ratingsOf(int32(id))})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			if r.ProtoMajor != 2 {
				// Say so plainly: a proxy in front downgraded the call.
				a.log.Warn("grpc request over http/1.1 refused", "proto", r.Proto)
				http.Error(w, "ratings: gRPC needs HTTP/2; this call arrived as "+r.Proto, http.StatusHTTPVersionNotSupported)
				return
			}
			a.grpcSrv.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// DialRatings returns a gRPC client connection to ratings through a
// sidecar's outbound listener, which routes by :authority (ratings:9080).
func DialRatings(outbound string) (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///"+outbound,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithAuthority("ratings:"+strconv.Itoa(Port)))
}
