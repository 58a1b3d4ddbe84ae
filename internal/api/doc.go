// Package api is the anchor API: its protocol (apipb, generated from
// apipb/anchor.proto) and a typed client over it.
//
// The CLI, proxies and tests talk to anchors only through this package.
// Resources cross the wire as the JSON of resource.Object; the client decodes
// them strictly.
//
// Regenerate apipb after editing the proto with `go generate ./internal/api`
// (needs protoc, protoc-gen-go and protoc-gen-go-grpc on PATH).
package api

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative apipb/anchor.proto
