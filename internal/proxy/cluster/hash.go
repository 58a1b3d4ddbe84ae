package cluster

import (
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

// buildRing places each endpoint on the ring a number of times proportional to its weight, with at
// least minSize entries in all.
func buildRing(eps []*Endpoint, minSize int) []ringEntry {
	var total uint64
	for _, e := range eps {
		total += uint64(e.Weight)
	}
	var ring []ringEntry
	for i, e := range eps {
		n := max(1, int((uint64(minSize)*uint64(e.Weight)+total-1)/total))
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
// takes a turn in a round in proportion to its weight relative to the heaviest.
func buildMaglev(eps []*Endpoint, m int) []int32 {
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
	for i, e := range eps {
		offset[i] = Hash(e.Addr) % uint64(m)
		skip[i] = Hash(e.Addr+"#skip")%uint64(m-1) + 1
		maxW = max(maxW, uint64(e.Weight))
	}
	filled := 0
	for round := uint64(0); filled < m; round++ {
		for i, e := range eps {
			w := uint64(e.Weight)
			if (round+1)*w/maxW == round*w/maxW {
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
