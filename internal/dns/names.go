package dns

import (
	"errors"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// domainLabels parses a configured domain name (trailing dot optional) into
// lower-case labels.
func domainLabels(d string) ([]string, error) {
	d = strings.TrimSuffix(strings.TrimSpace(d), ".")
	if d == "" {
		return nil, nil
	}
	if _, ok := mdns.IsDomainName(d + "."); !ok {
		return nil, errors.New("not a domain name")
	}
	labels := mdns.SplitDomainName(strings.ToLower(d))
	for _, l := range labels {
		if !hostLabel(l) {
			return nil, errors.New("labels must be letters, digits, '-' or '_'")
		}
	}
	return labels, nil
}

// queryLabels splits a query name in presentation form into its labels as
// asked and in lower case. Names unpacked from the wire escape every byte that
// is not a printable, non-special ASCII character, so comparing lower-case
// labels is comparing the wire labels case-insensitively.
func queryLabels(name string) (orig, lower []string) {
	orig = mdns.SplitDomainName(name)
	lower = make([]string, len(orig))
	for i, l := range orig {
		lower[i] = strings.ToLower(l) // no copy when already lower case
	}
	return orig, lower
}

// isUnder reports whether labels are the domain or a name under it.
func isUnder(labels, domain []string) bool {
	if len(labels) < len(domain) {
		return false
	}
	off := len(labels) - len(domain)
	for i, l := range domain {
		if labels[off+i] != l {
			return false
		}
	}
	return true
}

// hostLabel reports whether a lower-case label is a valid mesh label:
// letters, digits, '-' and '_' (SRV prefixes), at most 63 bytes.
func hostLabel(l string) bool {
	if l == "" || len(l) > 63 {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// splitSRV splits _<port>._<proto>.<base> into its parts; ok is false when
// the name has no such prefix.
func splitSRV(labels []string) (port, proto string, base []string, ok bool) {
	if len(labels) < 3 || !isUnderscored(labels[0]) || !isUnderscored(labels[1]) {
		return "", "", labels, false
	}
	return labels[0][1:], labels[1][1:], labels[2:], true
}

func isUnderscored(l string) bool { return len(l) > 1 && l[0] == '_' }

func fqdn(labels []string) string {
	return strings.Join(labels, ".") + "."
}

// ttlSeconds converts a TTL to whole seconds: at least 1, at most a week.
func ttlSeconds(d time.Duration) uint32 {
	const week = 7 * 24 * time.Hour
	switch {
	case d < time.Second:
		return 1
	case d > week:
		return uint32(week / time.Second)
	}
	return uint32(d / time.Second)
}
