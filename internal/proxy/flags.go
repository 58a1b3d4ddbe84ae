package proxy

import "strings"

// flags are Envoy response flags set by the proxy itself (the filters report theirs through
// filter.Flags).
type flags uint32

const (
	flagNoRoute           flags = 1 << iota // NR
	flagNoCluster                           // NC
	flagNoHealthyUpstream                   // UH
	flagUpstreamOverflow                    // UO
	flagUpstreamConnFail                    // UF
	flagUpstreamTimeout                     // UT
	flagUpstreamReset                       // UR
	flagRetryLimit                          // URX
	flagDownstreamConn                      // DC
	flagInvalidHeaders                      // DPE: downstream protocol error
	flagStreamIdle                          // SI: stream idle timeout
)

var flagNames = [...]string{"NR", "NC", "UH", "UO", "UF", "UT", "UR", "URX", "DC", "DPE", "SI"}

// join returns the Envoy short codes of f and of the filters' codes, comma separated, or "-".
func (f flags) join(filterFlags string) string {
	if f == 0 {
		if filterFlags == "" {
			return "-"
		}
		return filterFlags
	}
	var b strings.Builder
	for i, n := range flagNames {
		if f&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(n)
		}
	}
	if filterFlags != "" && filterFlags != "-" {
		b.WriteByte(',')
		b.WriteString(filterFlags)
	}
	return b.String()
}
