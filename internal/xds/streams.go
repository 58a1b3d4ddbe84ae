package xds

import (
	"sort"
	"sync"
	"time"
)

// StreamStatus describes one connected proxy, for `canton get proxies` and
// `canton status`.
type StreamStatus struct {
	Node      Node
	Delta     bool
	Connected time.Time
	// Acked is the last version each type was acknowledged at (type URL -> version).
	Acked map[string]string
	// Nack is the last rejection, if the proxy's latest answer was one.
	Nack *Nack
	// Skipped is the configuration left out for this proxy, with reasons.
	Skipped []Skip
}

// Nack is a rejected response.
type Nack struct {
	TypeURL string
	Version string
	Message string
	At      time.Time
}

// liveStream is the server's live record of one stream.
type liveStream struct {
	mu sync.Mutex
	st StreamStatus
}

func (s *liveStream) ack(typeURL, version string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Acked[typeURL] = version
	if s.st.Nack != nil && s.st.Nack.TypeURL == typeURL {
		s.st.Nack = nil
	}
}

func (s *liveStream) nack(typeURL, version, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Nack = &Nack{TypeURL: typeURL, Version: version, Message: msg, At: time.Now()}
}

func (s *liveStream) skipped(sk []Skip) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Skipped = sk
}

// streams is the set of live streams.
type streams struct {
	mu  sync.Mutex
	all map[*liveStream]struct{}
}

func (ss *streams) add(n Node, delta bool) *liveStream {
	s := &liveStream{st: StreamStatus{Node: n, Delta: delta, Connected: time.Now(), Acked: map[string]string{}}}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.all == nil {
		ss.all = map[*liveStream]struct{}{}
	}
	ss.all[s] = struct{}{}
	return s
}

func (ss *streams) remove(s *liveStream) {
	if s == nil {
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.all, s)
}

// Streams lists the connected proxies, sorted by node ID.
func (s *Server) Streams() []StreamStatus {
	s.streams.mu.Lock()
	list := make([]*liveStream, 0, len(s.streams.all))
	for st := range s.streams.all {
		list = append(list, st)
	}
	s.streams.mu.Unlock()
	out := make([]StreamStatus, 0, len(list))
	for _, st := range list {
		st.mu.Lock()
		c := st.st
		c.Acked = make(map[string]string, len(st.st.Acked))
		for k, v := range st.st.Acked {
			c.Acked[k] = v
		}
		st.mu.Unlock()
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node.ID < out[j].Node.ID })
	return out
}
