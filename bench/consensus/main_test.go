package main

import "testing"

// TestThroughputWritesAreRealChanges: over many times the number of names,
// every throughput write changes its alias (a put of an unchanged object
// would measure a cheaper path), while the set of aliases stays bounded.
func TestThroughputWritesAreRealChanges(t *testing.T) {
	current := map[string]int{} // alias -> its target after the writes so far
	for i := 1; i <= 4*thrNames+7; i++ {
		name, target := throughputWrite(i)
		if prev, ok := current[name]; ok && prev == target {
			t.Fatalf("write %d puts alias %s unchanged (target t%d)", i, name, target)
		}
		current[name] = target
	}
	if len(current) > thrNames {
		t.Fatalf("the writes use %d aliases, more than %d", len(current), thrNames)
	}
}
