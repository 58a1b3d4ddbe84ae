package proxy

import (
	"net/http"
	"sync"
	"sync/atomic"

	"canton.dev/canton/internal/telemetry"
)

// Workload is what the proxy says about its own workload in metrics (the local side's source_* or
// destination_* labels) and in the peer metadata it exchanges with the other proxies of the mesh.
type Workload = telemetry.Workload

// Peer metadata exchange (telemetry.PeerMetadataHeader): over mesh clusters (see cluster.Options.Mesh)
// the outbound proxy sends its workload in the request and reads the callee's from the response;
// the inbound proxy reads the caller's from a request of a verified mTLS peer and answers with its
// own. The headers never reach an application: the proxy removes them on both sides.

// maxPeers bounds the distinct peer metadata values a proxy remembers (and so the label sets they
// add); a peer beyond it is reported as unknown.
const maxPeers = 1024

type peerCache struct {
	m sync.Map // encoded value -> *telemetry.Workload
	n atomic.Int32
}

// get returns the interned workload of an encoded value, nil when it does not decode or the cache
// is full.
func (c *peerCache) get(v string) *telemetry.Workload {
	if w, ok := c.m.Load(v); ok {
		return w.(*telemetry.Workload)
	}
	if c.n.Load() >= maxPeers {
		return nil
	}
	w, err := telemetry.DecodePeerMetadata(v)
	if err != nil {
		return nil
	}
	actual, loaded := c.m.LoadOrStore(v, &w)
	if !loaded {
		c.n.Add(1)
	}
	return actual.(*telemetry.Workload)
}

// takePeerMetadata removes the exchange headers from h and returns the workload they name when
// trusted (nil otherwise).
func (p *Proxy) takePeerMetadata(h http.Header, trusted bool) *telemetry.Workload {
	v, ok := h[telemetry.PeerMetadataHeader]
	if !ok {
		return nil
	}
	delete(h, telemetry.PeerMetadataHeader)
	delete(h, telemetry.PeerMetadataIDHeader)
	if !trusted || len(v) != 1 {
		return nil
	}
	return p.peers.get(v[0])
}

// putPeerMetadata adds this proxy's metadata to h, when it has a workload to tell.
func (p *Proxy) putPeerMetadata(h http.Header) {
	if p.peerMeta != nil {
		h[telemetry.PeerMetadataHeader] = p.peerMeta
		h[telemetry.PeerMetadataIDHeader] = p.peerMetaID
	}
}
