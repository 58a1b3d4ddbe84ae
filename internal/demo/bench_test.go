package demo

import (
	"context"
	"testing"
	"time"
)

// BenchmarkProductPage measures whole product pages through the mesh: the
// generator's sidecar → productpage's sidecar (mTLS) → productpage, which
// calls details and reviews v1 through its sidecar (mTLS to theirs). Every
// page crosses six proxies.
func BenchmarkProductPage(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan *Mesh, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Data: b.TempDir(), NoTraffic: true, Ready: func(m *Mesh) { ready <- m }})
	}()
	var m *Mesh
	select {
	case m = <-ready:
	case err := <-done:
		b.Fatal(err)
	case <-time.After(60 * time.Second):
		b.Fatal("demo not ready")
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r := m.load.fetch(ctx, ""); !r.OK() {
				b.Errorf("page: %+v", r)
			}
		}
	})
	b.StopTimer()
	cancel()
	<-done
}
