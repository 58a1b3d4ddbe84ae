package dashboard

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Graph geometry, in SVG user units.
const (
	nodeW     = 184
	nodeH     = 58
	colGap    = 150 // horizontal space between columns (edge labels live here)
	rowGap    = 52
	margin    = 28
	maxLayers = 64 // bounds a degenerate graph's width
)

// graphNode is a node as input to the layout.
type graphNode struct {
	ID string // unique, stable (service FQDN or "unknown")
}

// graphEdge is a directed edge as input to the layout.
type graphEdge struct {
	From, To string
}

// placed is a node with its position (top-left corner) and column.
type placed struct {
	ID     string
	X, Y   float64
	Layer  int
	Orphan bool // no edges at all
}

// route is the drawn path of an edge and where its label goes.
type route struct {
	From, To string
	Path     string  // SVG path data
	LX, LY   float64 // label anchor (middle of the label)
	Back     bool    // drawn against the flow (a cycle or same column)
}

// layout is a deterministic layered (Sugiyama-style, simplified) drawing:
// callers left of callees, longest-path layering after breaking cycles,
// barycentre ordering inside columns, bezier edges between columns. The
// same nodes and edges give the same layout whatever their input order.
type layout struct {
	Width, Height float64
	Nodes         []placed
	Routes        []route
}

func computeLayout(nodes []graphNode, edges []graphEdge) layout {
	ids := make([]string, 0, len(nodes))
	seen := map[string]bool{}
	for _, n := range nodes {
		if !seen[n.ID] {
			seen[n.ID] = true
			ids = append(ids, n.ID)
		}
	}
	for _, e := range edges { // an edge may name a node not listed
		for _, id := range []string{e.From, e.To} {
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	sort.Strings(ids)
	es := append([]graphEdge(nil), edges...)
	sort.Slice(es, func(i, j int) bool {
		if es[i].From != es[j].From {
			return es[i].From < es[j].From
		}
		return es[i].To < es[j].To
	})
	es = dedupEdges(es)

	out := map[string][]string{}
	in := map[string][]string{}
	degree := map[string]int{}
	for _, e := range es {
		if e.From == e.To {
			degree[e.From]++
			continue
		}
		out[e.From] = append(out[e.From], e.To)
		in[e.To] = append(in[e.To], e.From)
		degree[e.From]++
		degree[e.To]++
	}

	// Break cycles: DFS from roots (no incoming edge) first, then anything
	// left, in name order; an edge to a node on the stack is a back edge.
	back := map[graphEdge]bool{}
	state := map[string]int{} // 0 new, 1 on stack, 2 done
	var dfs func(string)
	dfs = func(v string) {
		state[v] = 1
		for _, w := range out[v] {
			switch state[w] {
			case 0:
				dfs(w)
			case 1:
				back[graphEdge{v, w}] = true
			}
		}
		state[v] = 2
	}
	for _, id := range ids {
		if len(in[id]) == 0 && state[id] == 0 {
			dfs(id)
		}
	}
	for _, id := range ids {
		if state[id] == 0 {
			dfs(id)
		}
	}

	// Longest-path layering over the forward edges, in topological order.
	layer := map[string]int{}
	indeg := map[string]int{}
	for _, e := range es {
		if e.From != e.To && !back[e] {
			indeg[e.To]++
		}
	}
	queue := []string{}
	for _, id := range ids {
		if indeg[id] == 0 {
			queue = append(queue, id)
		}
	}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		for _, w := range out[v] {
			if back[graphEdge{v, w}] {
				continue
			}
			if l := min(layer[v]+1, maxLayers-1); l > layer[w] {
				layer[w] = l
			}
			if indeg[w]--; indeg[w] == 0 {
				queue = append(queue, w)
			}
		}
	}

	// Columns by layer; nodes without any edge go to extra columns on the
	// right (at most max(4, tallest column) per column), so that the flow
	// stays readable; a mesh without traffic is a square-ish grid.
	nLayers := 0
	var orphans []string
	for _, id := range ids {
		if degree[id] > 0 {
			nLayers = max(nLayers, layer[id]+1)
		} else {
			orphans = append(orphans, id)
		}
	}
	cols := make([][]string, nLayers)
	for _, id := range ids {
		if degree[id] > 0 {
			cols[layer[id]] = append(cols[layer[id]], id)
		}
	}
	perCol := 4
	if nLayers == 0 { // no traffic at all: a square-ish grid
		perCol = max(1, int(math.Ceil(math.Sqrt(float64(len(orphans))))))
	}
	for _, col := range cols {
		perCol = max(perCol, len(col))
	}
	for len(orphans) > 0 {
		n := min(perCol, len(orphans))
		cols = append(cols, orphans[:n])
		orphans = orphans[n:]
	}

	// Barycentre ordering, a few sweeps down the columns, ties by name.
	pos := map[string]float64{}
	for _, col := range cols {
		for i, id := range col {
			pos[id] = float64(i)
		}
	}
	for sweep := 0; sweep < 4; sweep++ {
		for c := 1; c < len(cols); c++ {
			bary := map[string]float64{}
			for _, id := range cols[c] {
				var sum float64
				var n int
				for _, u := range in[id] {
					if !back[graphEdge{u, id}] {
						sum += pos[u]
						n++
					}
				}
				if n > 0 {
					bary[id] = sum / float64(n)
				} else {
					bary[id] = pos[id]
				}
			}
			col := cols[c]
			sort.SliceStable(col, func(i, j int) bool {
				if bary[col[i]] != bary[col[j]] {
					return bary[col[i]] < bary[col[j]]
				}
				return col[i] < col[j]
			})
			for i, id := range col {
				pos[id] = float64(i)
			}
		}
	}

	// Coordinates: columns left to right, each column centred vertically.
	tallest := 0
	for _, col := range cols {
		tallest = max(tallest, len(col))
	}
	height := float64(2*margin) + float64(tallest)*nodeH + float64(max(tallest-1, 0))*rowGap
	width := float64(2*margin) + float64(len(cols))*nodeW + float64(max(len(cols)-1, 0))*colGap
	if len(cols) == 0 {
		width, height = 2*margin+nodeW, 2*margin+nodeH
	}
	lay := layout{Width: width, Height: height}
	at := map[string]placed{}
	for c, col := range cols {
		colH := float64(len(col))*nodeH + float64(max(len(col)-1, 0))*rowGap
		top := (height - colH) / 2
		for i, id := range col {
			p := placed{
				ID: id, Layer: c, Orphan: degree[id] == 0,
				X: float64(margin) + float64(c)*(nodeW+colGap),
				Y: top + float64(i)*(nodeH+rowGap),
			}
			at[id] = p
			lay.Nodes = append(lay.Nodes, p)
		}
	}

	for _, e := range es {
		a, b := at[e.From], at[e.To]
		lay.Routes = append(lay.Routes, edgeRoute(e, a, b))
	}
	return lay
}

func dedupEdges(es []graphEdge) []graphEdge {
	out := es[:0]
	for i, e := range es {
		if i > 0 && e == es[i-1] {
			continue
		}
		out = append(out, e)
	}
	return out
}

// edgeRoute draws one edge: a bezier from the right side of a to the left
// side of b when b is further right; otherwise a loop over the top of both.
func edgeRoute(e graphEdge, a, b placed) route {
	r := route{From: e.From, To: e.To}
	if e.From == e.To {
		x, y := a.X+nodeW*0.7, a.Y
		r.Path = fmt.Sprintf("M %s %s C %s %s, %s %s, %s %s", f(x), f(y), f(x), f(y-34), f(x+44), f(y-34), f(x+44), f(y+10))
		r.LX, r.LY, r.Back = x+22, y-30, true
		return r
	}
	if b.X > a.X {
		x1, y1 := a.X+nodeW, a.Y+nodeH/2
		x2, y2 := b.X, b.Y+nodeH/2
		dx := (x2 - x1) / 2
		r.Path = fmt.Sprintf("M %s %s C %s %s, %s %s, %s %s", f(x1), f(y1), f(x1+dx), f(y1), f(x2-dx), f(y2), f(x2), f(y2))
		r.LX, r.LY = bezierMid(x1, y1, x1+dx, y1, x2-dx, y2, x2, y2)
		return r
	}
	// Against the flow or within a column: leave from the top, arc over, enter from the top.
	x1, y1 := a.X+nodeW/2, a.Y
	x2, y2 := b.X+nodeW/2+10, b.Y
	lift := 46 + math.Abs(x1-x2)*0.15
	top := math.Min(y1, y2) - lift
	r.Path = fmt.Sprintf("M %s %s C %s %s, %s %s, %s %s", f(x1), f(y1), f(x1), f(top), f(x2), f(top), f(x2), f(y2))
	r.LX, r.LY = bezierMid(x1, y1, x1, top, x2, top, x2, y2)
	r.Back = true
	return r
}

// bezierMid is the point at t=0.5 of a cubic bezier.
func bezierMid(x0, y0, x1, y1, x2, y2, x3, y3 float64) (float64, float64) {
	return (x0 + 3*x1 + 3*x2 + x3) / 8, (y0 + 3*y1 + 3*y2 + y3) / 8
}

// f formats a coordinate compactly and deterministically.
func f(v float64) string {
	s := fmt.Sprintf("%.1f", v)
	return strings.TrimSuffix(s, ".0")
}
