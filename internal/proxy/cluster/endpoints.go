package cluster

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
)

// Host is one upstream endpoint; its counters survive endpoint updates that keep its address.
type Host struct {
	Addr string // host:port

	active        atomic.Int64 // requests in flight
	consecutive5x atomic.Uint32
	consecutiveGw atomic.Uint32
	ejected       atomic.Bool
	ejections     atomic.Uint32 // Envoy's num_ejections: grows per ejection, decays while healthy
	ejectedUntil  atomic.Int64  // unix nanoseconds
	// Requests and Failures count responses seen (for /clusters).
	Requests, Failures atomic.Uint64
}

// Active returns the number of requests in flight to h.
func (h *Host) Active() int64 { return h.active.Load() }

// Ejected reports whether outlier detection has ejected h.
func (h *Host) Ejected() bool { return h.ejected.Load() }

// Ejections returns Envoy's ejection multiplier for h.
func (h *Host) Ejections() uint32 { return h.ejections.Load() }

// Endpoint is a host as configured in one endpoint set.
type Endpoint struct {
	*Host
	Weight   uint32
	Priority uint32
	Locality string
	Healthy  bool // health_status from EDS: UNKNOWN, HEALTHY and DEGRADED count as healthy
	match    int  // its transport: 0 the cluster's own, i its transport socket match i-1
}

func (e *Endpoint) available() bool { return e.Healthy && !e.ejected.Load() }

// level is the endpoints of one priority with their load-balancing structures. The hash structures
// are built on the first hashed pick: most clusters of a large configuration never need them, and a
// maglev table is 256 KiB.
type level struct {
	eps      []*Endpoint
	schedule []int32 // weighted round-robin order of indexes into eps
	kind     LBKind
	ringMin  int
	mgSize   int
	once     sync.Once
	ring     []ringEntry
	maglev   []int32
}

// hashTables returns the ring or maglev table, building it once.
func (l *level) hashTables() ([]ringEntry, []int32) {
	l.once.Do(func() {
		switch l.kind {
		case RingHash:
			l.ring = buildRing(l.eps, l.ringMin)
		case Maglev:
			l.maglev = buildMaglev(l.eps, l.mgSize)
		}
	})
	return l.ring, l.maglev
}

// endpointSet is an immutable set of endpoints.
type endpointSet struct {
	all    []*Endpoint
	levels []*level // by priority, 0 first; empty levels removed
	// matchOf is Endpoint.match by address, for clusters with transport socket matches.
	matchOf map[string]int
}

// parseEndpoints converts a ClusterLoadAssignment into endpoints, reusing hosts from known by address;
// match, when not nil, chooses each endpoint's transport from its metadata.
func parseEndpoints(cla *endpointv3.ClusterLoadAssignment, known map[string]*Host, match func(*corev3.Metadata) int) ([]*Endpoint, error) {
	var out []*Endpoint
	seen := map[string]bool{}
	for i, le := range cla.GetEndpoints() {
		loc := le.GetLocality()
		locality := loc.GetRegion() + "/" + loc.GetZone() + "/" + loc.GetSubZone()
		for j, lb := range le.GetLbEndpoints() {
			field := fmt.Sprintf("endpoints[%d].lb_endpoints[%d]", i, j)
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil {
				return nil, fmt.Errorf("%s.endpoint.address: only socket_address is supported", field)
			}
			if sa.GetProtocol() != corev3.SocketAddress_TCP {
				return nil, fmt.Errorf("%s.endpoint.address.socket_address.protocol: only TCP is supported", field)
			}
			if net.ParseIP(sa.GetAddress()) == nil {
				return nil, fmt.Errorf("%s.endpoint.address.socket_address.address: %q is not an IP address", field, sa.GetAddress())
			}
			port := sa.GetPortValue()
			if port == 0 || port > 65535 {
				return nil, fmt.Errorf("%s.endpoint.address.socket_address.port_value: %d out of range", field, port)
			}
			addr := net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(port)))
			if seen[addr] {
				return nil, fmt.Errorf("%s: address %s listed twice", field, addr)
			}
			seen[addr] = true
			w := uint32(1)
			if lb.GetLoadBalancingWeight() != nil {
				w = lb.GetLoadBalancingWeight().GetValue()
				if w == 0 {
					return nil, fmt.Errorf("%s.load_balancing_weight: must be at least 1", field)
				}
			}
			h := known[addr]
			if h == nil {
				h = &Host{Addr: addr}
			}
			hs := lb.GetHealthStatus()
			e := &Endpoint{Host: h, Weight: w, Priority: le.GetPriority(), Locality: locality,
				Healthy: hs == corev3.HealthStatus_UNKNOWN || hs == corev3.HealthStatus_HEALTHY || hs == corev3.HealthStatus_DEGRADED}
			if match != nil {
				e.match = match(lb.GetMetadata())
			}
			out = append(out, e)
		}
	}
	return out, nil
}

func buildSet(eps []*Endpoint, kind LBKind, ringMin, maglevSize int) *endpointSet {
	s := &endpointSet{all: eps}
	byPrio := map[uint32][]*Endpoint{}
	var prios []uint32
	for _, e := range eps {
		if _, ok := byPrio[e.Priority]; !ok {
			prios = append(prios, e.Priority)
		}
		byPrio[e.Priority] = append(byPrio[e.Priority], e)
	}
	slices.Sort(prios)
	for _, p := range prios {
		l := &level{eps: byPrio[p], kind: kind, ringMin: ringMin, mgSize: maglevSize}
		l.schedule = weightedSchedule(l.eps)
		s.levels = append(s.levels, l)
	}
	return s
}

// weightedSchedule spreads endpoint indexes so each appears in proportion to its weight (weights are
// scaled so the schedule stays at most 4096 entries long), interleaved smoothly.
func weightedSchedule(eps []*Endpoint) []int32 {
	var total uint64
	for _, e := range eps {
		total += uint64(e.Weight)
	}
	scale := 1.0
	if total > 4096 {
		scale = 4096 / float64(total)
	}
	weights := make([]int64, len(eps))
	var sum int64
	for i, e := range eps {
		weights[i] = max(1, int64(float64(e.Weight)*scale))
		sum += weights[i]
	}
	// Smooth weighted round robin (as nginx does) to produce the order.
	cur := make([]int64, len(eps))
	out := make([]int32, 0, sum)
	for range sum {
		best := 0
		for i := range eps {
			cur[i] += weights[i]
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= sum
		out = append(out, int32(best))
	}
	return out
}

// CheckEndpoints reports what is wrong with cla, naming the field, or nil.
func CheckEndpoints(cla *endpointv3.ClusterLoadAssignment) error {
	_, err := parseEndpoints(cla, nil, nil)
	return err
}
