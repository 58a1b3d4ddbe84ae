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
	// localityWeight is its locality's load_balancing_weight (0 when unset), used when the cluster
	// balances by locality weight.
	localityWeight uint32
}

func (e *Endpoint) available() bool { return e.Healthy && !e.ejected.Load() }

// level is the endpoints of one priority with their load-balancing structures. What only some
// clusters use hangs off pointers (a configuration has a level per cluster at least, and most are
// round robin without localities).
type level struct {
	eps      []*Endpoint
	schedule []int32 // weighted round-robin order of indexes into eps
	// own is set on the levels of one locality: they keep their own round-robin position rr (a
	// position shared with the locality choice would lock each locality onto a few endpoints).
	own bool
	rr  atomic.Uint64
	// hash is the ring or maglev table of a RingHash or Maglev cluster's level, nil otherwise.
	hash *hashTable
	// loc is set when the cluster balances by locality weight (locality_weighted_lb_config).
	loc *localityLevel
}

// hashTable is a level's ring or maglev table, built on the first hashed pick: most clusters of a
// large configuration never need it, and a maglev table is 256 KiB.
type hashTable struct {
	kind    LBKind
	ringMin int
	mgSize  int
	// weights are the endpoints' weights when the level balances by locality (nil otherwise): as
	// Envoy's, an endpoint's share of its locality times the locality's share of the level.
	weights []float64
	once    sync.Once
	ring    []ringEntry
	maglev  []int32
}

// localityLevel is the locality structure of a level: the level's endpoints by locality (localities
// of weight 0 left out of the level), chosen in the weighted round-robin order schedule (indexes
// into levels) before an endpoint in them.
type localityLevel struct {
	levels   []*level
	schedule []int32
	next     atomic.Uint64
}

// newLevel returns a level of eps for a cluster of policy kind.
func newLevel(eps []*Endpoint, kind LBKind, ringMin, mgSize int) *level {
	l := &level{eps: eps}
	if kind == RingHash || kind == Maglev {
		l.hash = &hashTable{kind: kind, ringMin: ringMin, mgSize: mgSize}
	}
	return l
}

// hashTables returns the ring or maglev table, building it once (nil without one).
func (l *level) hashTables() ([]ringEntry, []int32) {
	h := l.hash
	if h == nil {
		return nil, nil
	}
	h.once.Do(func() {
		switch h.kind {
		case RingHash:
			h.ring = buildRing(l.eps, h.weights, h.ringMin)
		case Maglev:
			h.maglev = buildMaglev(l.eps, h.weights, h.mgSize)
		}
	})
	return h.ring, h.maglev
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
			e := &Endpoint{Host: h, Weight: w, Priority: le.GetPriority(), Locality: locality, localityWeight: le.GetLoadBalancingWeight().GetValue(),
				Healthy: hs == corev3.HealthStatus_UNKNOWN || hs == corev3.HealthStatus_HEALTHY || hs == corev3.HealthStatus_DEGRADED}
			if match != nil {
				e.match = match(lb.GetMetadata())
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// buildSet groups eps by priority; byLocality makes each level choose a locality by weight first.
func buildSet(eps []*Endpoint, kind LBKind, ringMin, maglevSize int, byLocality bool) *endpointSet {
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
		l := newLevel(byPrio[p], kind, ringMin, maglevSize)
		if byLocality {
			l.splitByLocality(kind, ringMin, maglevSize)
			if len(l.eps) == 0 {
				continue // every locality of this priority has weight 0: no traffic
			}
		}
		l.schedule = weightedSchedule(l.eps)
		s.levels = append(s.levels, l)
	}
	return s
}

// splitByLocality fills the locality structures of l (see level) and leaves out of l.eps the
// endpoints of localities of weight 0, which get no traffic (as in Envoy).
func (l *level) splitByLocality(kind LBKind, ringMin, mgSize int) {
	var order []string
	byLoc := map[string][]*Endpoint{}
	for _, e := range l.eps {
		if e.localityWeight == 0 {
			continue
		}
		if _, ok := byLoc[e.Locality]; !ok {
			order = append(order, e.Locality)
		}
		byLoc[e.Locality] = append(byLoc[e.Locality], e)
	}
	l.eps = nil
	l.loc = &localityLevel{}
	var locWeights []uint32
	var locTotal float64
	for _, loc := range order {
		eps := byLoc[loc]
		// The first endpoint's locality weight stands for the locality (one locality listed twice in
		// a priority is merged).
		w := eps[0].localityWeight
		sub := newLevel(eps, kind, ringMin, mgSize)
		sub.own = true
		sub.schedule = weightedSchedule(eps)
		l.loc.levels = append(l.loc.levels, sub)
		l.eps = append(l.eps, eps...)
		locWeights = append(locWeights, w)
		locTotal += float64(w)
	}
	l.loc.schedule = smoothSchedule(locWeights)
	if l.hash != nil {
		for i, sub := range l.loc.levels {
			var hostTotal float64
			for _, e := range sub.eps {
				hostTotal += float64(e.Weight)
			}
			for _, e := range sub.eps {
				l.hash.weights = append(l.hash.weights, float64(e.Weight)/hostTotal*float64(locWeights[i])/locTotal)
			}
		}
	}
}

// weightedSchedule spreads endpoint indexes so each appears in proportion to its weight.
func weightedSchedule(eps []*Endpoint) []int32 {
	weights := make([]uint32, len(eps))
	for i, e := range eps {
		weights[i] = e.Weight
	}
	return smoothSchedule(weights)
}

// smoothSchedule spreads indexes into weights so each appears in proportion to its weight (weights
// are scaled so the schedule stays at most 4096 entries long), interleaved smoothly.
func smoothSchedule(w []uint32) []int32 {
	var total uint64
	for _, x := range w {
		total += uint64(x)
	}
	scale := 1.0
	if total > 4096 {
		scale = 4096 / float64(total)
	}
	weights := make([]int64, len(w))
	var sum int64
	for i, x := range w {
		weights[i] = max(1, int64(float64(x)*scale))
		sum += weights[i]
	}
	// Smooth weighted round robin (as nginx does) to produce the order.
	cur := make([]int64, len(w))
	out := make([]int32, 0, sum)
	for range sum {
		best := 0
		for i := range w {
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
