package cluster

import (
	"sync"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
)

// A cluster makes its http.Transport on first use, once however many requests race for it, and
// closing a cluster that never made one does not make it.
func TestTransportMadeOnFirstUse(t *testing.T) {
	cl := newCluster(t, &clusterv3.Cluster{}, ep(1001, 0))
	if cl.transport.Load() != nil {
		t.Fatal("transport made before any request")
	}
	idle := newCluster(t, &clusterv3.Cluster{}, ep(1002, 0))
	idle.Close(0)
	if idle.transport.Load() != nil {
		t.Error("Close made the transport")
	}
	got := make(chan any, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got <- cl.Transport()
		}()
	}
	wg.Wait()
	close(got)
	first := <-got
	for tr := range got {
		if tr != first {
			t.Fatal("two transports made for one cluster")
		}
	}
	if cl.transport.Load() != first || cl.Transport().IdleConnTimeout != cl.IdleTimeout {
		t.Errorf("transport %v not kept or not configured (idle timeout %v)", first, cl.Transport().IdleConnTimeout)
	}
}
