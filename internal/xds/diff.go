package xds

import (
	"sort"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Change is one resource that differs between two generations for a proxy.
type Change struct {
	Type   string // short type name: Listener, RouteConfiguration, ...
	Name   string
	Change string // "added", "removed" or "modified"
	Diff   string // for "modified": changed lines of the resource's JSON, "-" old, "+" new, with context
}

// Diff compares what a proxy would receive before and after a change, by
// resource version, and describes each difference. Pure and deterministic.
func Diff(old, new Resources) []Change {
	var out []Change
	for _, typeURL := range Types {
		short := typeURL[strings.LastIndex(typeURL, ".")+1:]
		ov, nv := old.Versions[typeURL], new.Versions[typeURL]
		names := map[string]bool{}
		for n := range ov {
			names[n] = true
		}
		for n := range nv {
			names[n] = true
		}
		sorted := make([]string, 0, len(names))
		for n := range names {
			sorted = append(sorted, n)
		}
		sort.Strings(sorted)
		for _, n := range sorted {
			o, inOld := ov[n]
			v, inNew := nv[n]
			switch {
			case !inOld:
				out = append(out, Change{Type: short, Name: n, Change: "added"})
			case !inNew:
				out = append(out, Change{Type: short, Name: n, Change: "removed"})
			case o != v:
				out = append(out, Change{Type: short, Name: n, Change: "modified",
					Diff: lineDiff(renderLines(old.ByType(typeURL)[n]), renderLines(new.ByType(typeURL)[n]), 2)})
			}
		}
	}
	return out
}

// renderLines is a resource as indented JSON lines (secrets' key material is not
// in Resources the anchor generates; nothing is redacted here).
func renderLines(m proto.Message) []string {
	if m == nil {
		return nil
	}
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return []string{"(unrenderable: " + err.Error() + ")"}
	}
	// protojson may vary whitespace between runs; normalise each line.
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
		lines[i] = strings.Repeat("  ", (len(l)-len(strings.TrimLeft(l, " ")))/2) + lines[i]
	}
	return lines
}

// maxDiffLines bounds the LCS table of a line diff.
const maxDiffLines = 2000

// lineDiff renders the changed lines of a and b (longest common subsequence)
// with ctx lines of context around each change.
func lineDiff(a, b []string, ctx int) string {
	if len(a) > maxDiffLines || len(b) > maxDiffLines {
		return "(resource too large to diff)"
	}
	// lcs[i][j] = length of the LCS of a[i:] and b[j:].
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type line struct {
		op   byte // ' ', '-', '+'
		text string
	}
	var lines []line
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			lines = append(lines, line{' ', a[i]})
			i, j = i+1, j+1
		case i < len(a) && (j == len(b) || lcs[i+1][j] >= lcs[i][j+1]):
			lines = append(lines, line{'-', a[i]})
			i++
		default:
			lines = append(lines, line{'+', b[j]})
			j++
		}
	}
	keep := make([]bool, len(lines))
	for k, l := range lines {
		if l.op == ' ' {
			continue
		}
		for d := max(0, k-ctx); d <= min(len(lines)-1, k+ctx); d++ {
			keep[d] = true
		}
	}
	var sb strings.Builder
	gap := false
	for k, l := range lines {
		if !keep[k] {
			gap = true
			continue
		}
		if gap && sb.Len() > 0 {
			sb.WriteString("  ...\n")
		}
		gap = false
		sb.WriteByte(l.op)
		sb.WriteByte(' ')
		sb.WriteString(l.text)
		sb.WriteByte('\n')
	}
	return sb.String()
}
