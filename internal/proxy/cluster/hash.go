package cluster

import (
	"math"
	"slices"
	"strconv"
)

// Hash is FNV-1a 64 of s; it does not allocate.
func Hash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix(h)
}

// HashMore folds s into h (for several hash policies).
func HashMore(h uint64, s string) uint64 { return mix(h*31 ^ Hash(s)) }

// mix spreads FNV's low-entropy high bits (splitmix64 finalizer).
func mix(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	return h ^ h>>31
}

type ringEntry struct {
	hash uint64
	idx  int32
}

// buildRing places each endpoint on the ring a number of times proportional to its weight (weights[i],
// or Endpoint.Weight when weights is nil), with at least minSize entries in all.
func buildRing(eps []*Endpoint, weights []float64, minSize int) []ringEntry {
	var total uint64
	var ftotal float64
	for i, e := range eps {
		total += uint64(e.Weight)
		if weights != nil {
			ftotal += weights[i]
		}
	}
	var ring []ringEntry
	for i, e := range eps {
		n := max(1, int((uint64(minSize)*uint64(e.Weight)+total-1)/total))
		if weights != nil {
			n = max(1, int(math.Ceil(float64(minSize)*weights[i]/ftotal)))
		}
		for k := 0; k < n; k++ {
			ring = append(ring, ringEntry{hash: Hash(e.Addr + "_" + strconv.Itoa(k)), idx: int32(i)})
		}
	}
	slices.SortFunc(ring, func(a, b ringEntry) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return 0
	})
	return ring
}

// ringLookup returns the position of the first ring entry at or after h (wrapping).
func ringLookup(ring []ringEntry, h uint64) int {
	i, _ := slices.BinarySearchFunc(ring, h, func(e ringEntry, t uint64) int {
		switch {
		case e.hash < t:
			return -1
		case e.hash > t:
			return 1
		}
		return 0
	})
	if i == len(ring) {
		i = 0
	}
	return i
}

// buildMaglev fills a lookup table of size m (a prime) by Maglev's permutation scheme; an endpoint
// takes a turn in a round in proportion to its weight (weights[i], or Endpoint.Weight when weights is
// nil) relative to the heaviest.
func buildMaglev(eps []*Endpoint, weights []float64, m int) []int32 {
	if len(eps) == 0 {
		return nil
	}
	table := make([]int32, m)
	for i := range table {
		table[i] = -1
	}
	offset := make([]uint64, len(eps))
	skip := make([]uint64, len(eps))
	next := make([]uint64, len(eps))
	var maxW uint64
	var fmaxW float64
	for i, e := range eps {
		offset[i] = Hash(e.Addr) % uint64(m)
		skip[i] = Hash(e.Addr+"#skip")%uint64(m-1) + 1
		maxW = max(maxW, uint64(e.Weight))
		if weights != nil {
			fmaxW = max(fmaxW, weights[i])
		}
	}
	var ratio []float64 // weights relative to the heaviest; floor(round*ratio) counts the turns taken
	if weights != nil {
		ratio = make([]float64, len(eps))
		for i, w := range weights {
			ratio[i] = w / fmaxW
		}
	}
	turn := func(i int, round uint64) bool {
		if ratio != nil {
			return math.Floor(float64(round+1)*ratio[i]) != math.Floor(float64(round)*ratio[i])
		}
		w := uint64(eps[i].Weight)
		return (round+1)*w/maxW != round*w/maxW
	}
	filled := 0
	for round := uint64(0); filled < m; round++ {
		for i := range eps {
			if !turn(i, round) {
				continue // not this endpoint's turn in this round
			}
			for {
				c := (offset[i] + next[i]*skip[i]) % uint64(m)
				next[i]++
				if table[c] < 0 {
					table[c] = int32(i)
					filled++
					break
				}
			}
			if filled == m {
				break
			}
		}
	}
	return table
}
