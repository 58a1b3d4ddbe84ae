// Package ratingspb is the generated gRPC API of the bookinfo ratings
// service (ratings.proto). Only examples/bookinfo, internal/demo and tests
// import it.
package ratingspb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative ratings.proto
