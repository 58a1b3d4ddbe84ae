package xds

import (
	"math"
	"sort"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	networking "istio.io/api/networking/v1alpha3"
)

// Locality labels (Istio's): a Canton Workload's locality is read from its labels, a proxy's from
// its node's labels (canton proxy --labels), a WorkloadEntry's from its locality field or, without
// one, from its labels.
const (
	LabelRegion  = "topology.kubernetes.io/region"
	LabelZone    = "topology.kubernetes.io/zone"
	LabelSubzone = "topology.istio.io/subzone"
)

// locality is Istio's region/zone/subzone.
type locality struct{ region, zone, subzone string }

// parseLocalityName splits Istio's "region/zone/subzone" (later parts may be left out).
func parseLocalityName(s string) locality {
	parts := [3]string{}
	for i, p := range strings.SplitN(s, "/", 3) {
		parts[i] = p
	}
	return locality{parts[0], parts[1], parts[2]}
}

// localityFromLabels reads the locality labels.
func localityFromLabels(labels map[string]string) locality {
	if len(labels) == 0 {
		return locality{}
	}
	return locality{labels[LabelRegion], labels[LabelZone], labels[LabelSubzone]}
}

// String is "region/zone/subzone" without trailing empty parts ("" for no locality).
func (l locality) String() string {
	switch {
	case l.subzone != "":
		return l.region + "/" + l.zone + "/" + l.subzone
	case l.zone != "":
		return l.region + "/" + l.zone
	}
	return l.region
}

func (l locality) proto() *corev3.Locality {
	return &corev3.Locality{Region: l.region, Zone: l.zone, SubZone: l.subzone}
}

// endpointLocality is the locality of e: a WorkloadEntry's (or ServiceEntry endpoint's) locality
// field, else its locality labels.
func endpointLocality(e endpoint) locality {
	if e.locality != "" {
		return parseLocalityName(e.locality)
	}
	return localityFromLabels(e.labels)
}

// endpointLabel is the value of label key of e for failoverPriority: its labels, with the locality
// labels taken from its locality field when it has one (Istio adds them to an endpoint's labels).
func endpointLabel(e endpoint, key string) string {
	if e.locality != "" {
		l := parseLocalityName(e.locality)
		switch key {
		case LabelRegion:
			return l.region
		case LabelZone:
			return l.zone
		case LabelSubzone:
			return l.subzone
		}
	}
	return e.labels[key]
}

// localityMatches is Istio's match of a locality against a rule locality of a distribute entry:
// "region", "region/zone" or "region/zone/subzone", where "*" (and a left-out zone or subzone)
// matches anything.
func localityMatches(l locality, rule string) bool {
	r := parseLocalityName(rule)
	return (r.region == "*" || r.region == l.region) &&
		(r.zone == "*" || r.zone == "" || r.zone == l.zone) &&
		(r.subzone == "*" || r.subzone == "" || r.subzone == l.subzone)
}

// localityLabelKeys lists the node labels locality load balancing reads (for the outbound part's
// key, generate.go): none when no DestinationRule has a localityLbSetting that is not disabled, so
// that proxies in different localities keep sharing one outbound part; otherwise the locality
// labels and the labels failoverPriority entries compare with the caller's.
func localityLabelKeys(drs []*destinationRule) []string {
	set := map[string]bool{}
	for _, dr := range drs {
		for _, lb := range loadBalancerSettings(dr.spec) {
			ls := lb.GetLocalityLbSetting()
			if ls == nil || (ls.GetEnabled() != nil && !ls.GetEnabled().GetValue()) {
				continue
			}
			set[LabelRegion], set[LabelZone], set[LabelSubzone] = true, true, true
			for _, entry := range ls.GetFailoverPriority() {
				if key, _, override := strings.Cut(entry, "="); !override {
					set[key] = true
				}
			}
		}
	}
	return sortedKeys(set)
}

// localityLB is what locality load balancing does to the endpoints of one EDS cluster for the
// calling proxy. The zero value does nothing: the endpoints are the same for every caller.
type localityLB struct {
	// prioritize: endpoints get priorities by locality (failover) or by labels (failoverPriority).
	prioritize       bool
	failover         []*networking.LocalityLoadBalancerSetting_Failover
	failoverPriority []string
	// distribute is the entry whose from matches the caller: locality weights replace priorities.
	distribute *networking.LocalityLoadBalancerSetting_Distribute
}

func (l localityLB) active() bool { return l.prioritize || l.distribute != nil }

// localityLBFor decides, Istio's way, what the localityLbSetting of policy pol (of the
// DestinationRule ref) does to a cluster of s of discovery type kind for the node, and reports what
// it cannot do. Without a localityLbSetting, or with enabled: false, it does nothing (Canton has no
// MeshConfig whose default would turn it on). distribute sets locality weights for a caller its
// from matches; otherwise, with outlierDetection (without it nothing is ever ejected, so Istio
// applies no failover), failover and failoverPriority set priorities.
func (g *gen) localityLBFor(s *service, pol policy, ref string, kind clusterv3.Cluster_DiscoveryType) localityLB {
	ls := pol.lb.GetLocalityLbSetting()
	if ls == nil || (ls.GetEnabled() != nil && !ls.GetEnabled().GetValue()) {
		return localityLB{}
	}
	path := pol.lbPath + ".localityLbSetting"
	if kind != clusterv3.Cluster_EDS {
		g.skip(ref, path, "locality load balancing applies to clusters with endpoints; the DNS cluster of "+s.host+" spreads requests over all its addresses")
		return localityLB{}
	}
	if d := ls.GetDistribute(); len(d) > 0 {
		if !g.node.supports(FeatureLocalityWeightedLB) {
			g.skip(ref, path+".distribute", "this proxy cannot balance by locality weight ("+FeatureLocalityWeightedLB+"); requests are spread over all endpoints as without it")
			return localityLB{}
		}
		caller := localityFromLabels(g.node.Labels)
		for _, rule := range d {
			if localityMatches(caller, rule.GetFrom()) {
				return localityLB{distribute: rule}
			}
		}
		return localityLB{}
	}
	if pol.outlier == nil {
		g.skip(ref, path, "locality failover needs outlierDetection (without it no endpoint is ever ejected, so traffic would never fail over); not applied")
		return localityLB{}
	}
	return localityLB{prioritize: true, failover: ls.GetFailover(), failoverPriority: ls.GetFailoverPriority()}
}

// applyLocalityWeightedLB turns on locality-weighted balancing (the weights of distribute) on c.
func applyLocalityWeightedLB(c *clusterv3.Cluster) {
	c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{LocalityConfigSpecifier: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig_{
		LocalityWeightedLbConfig: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig{}}}
}

// lbGroup is the endpoints of one locality and priority of a ClusterLoadAssignment.
type lbGroup struct {
	loc      locality
	priority uint32
	weight   uint32 // locality weight
	lbs      []*endpointv3.LbEndpoint
	eps      []endpoint // the model endpoints of lbs, in the same order
}

// shape applies l to groups (one per locality, priority 0, weight 1) for a caller with the given
// locality and labels, and returns the groups in (priority, locality) order. Groups left without
// endpoints get no traffic (distribute).
func (l localityLB) shape(groups []*lbGroup, caller locality, callerLabels map[string]string) []*lbGroup {
	switch {
	case l.distribute != nil:
		distributeWeights(groups, l.distribute.GetTo())
		return groups
	case !l.prioritize:
		return groups
	}
	// Istio skips failoverPriority for a proxy without any label; Canton reads only the listed
	// labels (localityLabelKeys), so a caller without them is compared as having empty values.
	byLabels := len(l.failoverPriority) > 0
	if byLabels {
		groups = splitByLabels(groups, callerLabels, l.failoverPriority)
	}
	if !byLabels || len(l.failover) > 0 {
		// As Istio: failoverPriority alone ranks by its labels; with failover too, the locality
		// priority ranks within each of its levels.
		for _, grp := range groups {
			grp.priority = grp.priority*5 + localityPriority(caller, grp.loc, l.failover)
		}
	}
	compactPriorities(groups)
	sort.SliceStable(groups, func(i, j int) bool { return groups[i].priority < groups[j].priority })
	return groups
}

// localityPriority is Istio's failover priority of endpoints in locality ep for a caller in
// caller: 0 for the same region, zone and subzone, 1 for the same region and zone, 2 for the same
// region, 3 for another region, and, when a failover entry's from is the caller's region, 3 only
// for its to region and 4 for every other one.
func localityPriority(caller, ep locality, failover []*networking.LocalityLoadBalancerSetting_Failover) uint32 {
	switch {
	case caller.region == ep.region && caller.zone == ep.zone && caller.subzone == ep.subzone:
		return 0
	case caller.region == ep.region && caller.zone == ep.zone:
		return 1
	case caller.region == ep.region:
		return 2
	}
	for _, f := range failover {
		if f.GetFrom() == caller.region {
			if ep.region != f.GetTo() {
				return 4
			}
			break
		}
	}
	return 3
}

// labelPriority is Istio's failoverPriority rank of an endpoint (label reads its labels) for a
// caller with callerLabels: 0 when every listed label has the caller's value, else n-j for the
// first label j that differs (n labels), so a difference in an earlier label ranks lower. An entry
// "label=value" compares with value instead of the caller's.
func labelPriority(callerLabels map[string]string, label func(string) string, prios []string) uint32 {
	for j, entry := range prios {
		key, want, override := strings.Cut(entry, "=")
		if !override {
			want = callerLabels[key]
		}
		if label(key) != want {
			return uint32(len(prios) - j)
		}
	}
	return 0
}

// splitByLabels splits each group by the labelPriority of its endpoints, Istio's way; a part's
// weight is 1, as every locality's.
func splitByLabels(groups []*lbGroup, callerLabels map[string]string, prios []string) []*lbGroup {
	var out []*lbGroup
	for _, grp := range groups {
		parts := map[uint32]*lbGroup{}
		for i, e := range grp.eps {
			p := labelPriority(callerLabels, func(k string) string { return endpointLabel(e, k) }, prios)
			part := parts[p]
			if part == nil {
				part = &lbGroup{loc: grp.loc, priority: p, weight: grp.weight}
				parts[p] = part
			}
			part.lbs = append(part.lbs, grp.lbs[i])
			part.eps = append(part.eps, e)
		}
		keys := make([]uint32, 0, len(parts))
		for p := range parts {
			keys = append(keys, p)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
		for _, p := range keys {
			out = append(out, parts[p])
		}
	}
	return out
}

// compactPriorities renumbers the groups' priorities 0..n-1 in order, without gaps (Envoy
// requires them contiguous).
func compactPriorities(groups []*lbGroup) {
	seen := map[uint32]bool{}
	var ps []uint32
	for _, grp := range groups {
		if !seen[grp.priority] {
			seen[grp.priority] = true
			ps = append(ps, grp.priority)
		}
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	rank := make(map[uint32]uint32, len(ps))
	for i, p := range ps {
		rank[p] = uint32(i)
	}
	for _, grp := range groups {
		grp.priority = rank[grp.priority]
	}
}

// distributeWeights gives each group the weight the distribute entry's to map assigns its
// locality, Istio's way: a to locality's weight is shared by the localities it matches (each gets
// weight/n, rounded up); a locality no to entry matches, or whose entry has weight 0, gets no
// traffic (its endpoints are removed). A locality matched by several entries takes the most
// specific one (Istio leaves that to map order).
func distributeWeights(groups []*lbGroup, to map[string]uint32) {
	claimed := make([]bool, len(groups))
	for _, rule := range byLocalitySpecificity(to) {
		var matched []int
		for i, grp := range groups {
			if !claimed[i] && localityMatches(grp.loc, rule) {
				claimed[i] = true
				matched = append(matched, i)
			}
		}
		w := to[rule]
		for _, i := range matched {
			if w == 0 {
				groups[i].lbs = nil
				continue
			}
			groups[i].weight = uint32(math.Ceil(float64(w) / float64(len(matched))))
		}
	}
	for i, c := range claimed {
		if !c {
			groups[i].lbs = nil
		}
	}
}

// byLocalitySpecificity orders the rule localities of a to map: more named (not wildcard, not
// left out) parts first, then by name.
func byLocalitySpecificity(to map[string]uint32) []string {
	named := func(rule string) int {
		r, n := parseLocalityName(rule), 0
		for _, p := range []string{r.region, r.zone, r.subzone} {
			if p != "" && p != "*" {
				n++
			}
		}
		return n
	}
	rules := sortedKeys(to)
	sort.SliceStable(rules, func(i, j int) bool { return named(rules[i]) > named(rules[j]) })
	return rules
}
