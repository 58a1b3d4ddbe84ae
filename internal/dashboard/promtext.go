package dashboard

import (
	"fmt"
	"strconv"
	"strings"
)

// promSample is one sample of the Prometheus text exposition format.
type promSample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Limits of parsePromText.
const (
	maxPromSamples  = 200000
	maxPromLabels   = 64
	maxPromLineSize = 64 << 10
)

// parsePromText parses the Prometheus text exposition format (version
// 0.0.4): comment lines (# HELP, # TYPE, others) and blank lines are
// skipped; every other line is a sample
//
//	name[{label="value",...}] value [timestamp]
//
// Label values may use the escapes \\, \" and \n. Metric names may also be
// quoted inside the braces ({"name",label="v"}), as in newer exposition.
// Only samples whose name is in keep are returned (keep nil: all); the
// others are checked only up to their name, without allocating. The
// timestamp is ignored. Any malformed line fails the whole parse with an
// error naming the line, as Prometheus fails a scrape.
func parsePromText(data []byte, keep map[string]bool) ([]promSample, error) {
	var out []promSample
	lineNo := 0
	for len(data) > 0 {
		lineNo++
		var line []byte
		if i := indexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		if len(line) > maxPromLineSize {
			return nil, fmt.Errorf("line %d: longer than %d bytes", lineNo, maxPromLineSize)
		}
		line = trimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		if keep != nil {
			n := 0
			for n < len(line) && isNameChar(line[n], n == 0) {
				n++
			}
			if n > 0 && n < len(line) && (line[n] == '{' || line[n] == ' ' || line[n] == '\t') && !keep[string(line[:n])] {
				continue // a well-formed start of a sample we do not need
			}
		}
		smp, err := parsePromLine(string(line), keep)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", lineNo, err)
		}
		if smp.Name == "" { // filtered out
			continue
		}
		if len(out) >= maxPromSamples {
			return nil, fmt.Errorf("line %d: more than %d samples", lineNo, maxPromSamples)
		}
		out = append(out, smp)
	}
	return out, nil
}

// trimSpace trims spaces, tabs and carriage returns.
func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// parsePromLine parses one sample line (trimmed, not a comment). A sample
// that keep rejects comes back with an empty Name once its syntax is known
// to be valid up to the labels (its value is not parsed).
func parsePromLine(s string, keep map[string]bool) (promSample, error) {
	var smp promSample
	i := 0
	for i < len(s) && isNameChar(s[i], i == 0) {
		i++
	}
	name := s[:i]
	rest := s[i:]
	if name == "" && !strings.HasPrefix(rest, "{") {
		return smp, fmt.Errorf("expected a metric name at %q", clip(s))
	}
	var labels map[string]string
	if strings.HasPrefix(rest, "{") {
		var err error
		var quotedName string
		labels, quotedName, rest, err = parsePromLabels(rest[1:])
		if err != nil {
			return smp, err
		}
		if quotedName != "" {
			if name != "" {
				return smp, fmt.Errorf("metric %s: a second, quoted metric name", name)
			}
			name = quotedName
		}
		if name == "" {
			return smp, fmt.Errorf("a sample without a metric name")
		}
	}
	if keep != nil && !keep[name] {
		return smp, nil
	}
	if rest == "" || (rest[0] != ' ' && rest[0] != '\t') {
		return smp, fmt.Errorf("metric %s: expected a space before the value", name)
	}
	fields := strings.Fields(rest)
	if len(fields) < 1 || len(fields) > 2 {
		return smp, fmt.Errorf("metric %s: expected a value and an optional timestamp, got %q", name, clip(rest))
	}
	v, err := parsePromFloat(fields[0])
	if err != nil {
		return smp, fmt.Errorf("metric %s: value %q: %w", name, clip(fields[0]), err)
	}
	if len(fields) == 2 {
		if _, err := strconv.ParseInt(fields[1], 10, 64); err != nil {
			return smp, fmt.Errorf("metric %s: timestamp %q is not an integer", name, clip(fields[1]))
		}
	}
	smp.Name, smp.Labels, smp.Value = name, labels, v
	return smp, nil
}

// parsePromFloat parses a sample value: a decimal float, NaN, +Inf or -Inf.
func parsePromFloat(s string) (float64, error) {
	// strconv accepts hex floats and underscores, the format does not.
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c == 'x' || c == 'X' || c == 'p' || c == 'P' {
			return 0, fmt.Errorf("not a number")
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("not a number")
	}
	return v, nil
}

// parsePromLabels parses the inside of {...} (after the brace) and returns
// the labels, a quoted metric name if one stands alone, and what follows
// the closing brace.
func parsePromLabels(s string) (map[string]string, string, string, error) {
	labels := map[string]string{}
	quotedName := ""
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return nil, "", "", fmt.Errorf("unterminated label set")
		}
		if s[0] == '}' {
			return labels, quotedName, s[1:], nil
		}
		var lname string
		if s[0] == '"' {
			q, rest, err := parsePromQuoted(s[1:])
			if err != nil {
				return nil, "", "", err
			}
			rest = strings.TrimLeft(rest, " \t")
			if rest == "" || rest[0] != '=' { // a quoted metric name
				if quotedName != "" || len(labels) > 0 || q == "" {
					return nil, "", "", fmt.Errorf("misplaced quoted name %q", clip(q))
				}
				quotedName = q
				s = rest
				goto next
			}
			lname, s = q, rest
		} else {
			i := 0
			for i < len(s) && isLabelChar(s[i], i == 0) {
				i++
			}
			if i == 0 {
				return nil, "", "", fmt.Errorf("expected a label name at %q", clip(s))
			}
			lname, s = s[:i], strings.TrimLeft(s[i:], " \t")
		}
		if s == "" || s[0] != '=' {
			return nil, "", "", fmt.Errorf("label %s: expected '='", clip(lname))
		}
		s = strings.TrimLeft(s[1:], " \t")
		if s == "" || s[0] != '"' {
			return nil, "", "", fmt.Errorf("label %s: expected a quoted value", clip(lname))
		}
		{
			v, rest, err := parsePromQuoted(s[1:])
			if err != nil {
				return nil, "", "", fmt.Errorf("label %s: %w", clip(lname), err)
			}
			if _, dup := labels[lname]; dup {
				return nil, "", "", fmt.Errorf("label %s: repeated", clip(lname))
			}
			if len(labels) >= maxPromLabels {
				return nil, "", "", fmt.Errorf("more than %d labels", maxPromLabels)
			}
			labels[lname] = v
			s = rest
		}
	next:
		s = strings.TrimLeft(s, " \t")
		switch {
		case strings.HasPrefix(s, ","):
			s = s[1:]
		case strings.HasPrefix(s, "}"):
		default:
			return nil, "", "", fmt.Errorf("expected ',' or '}' at %q", clip(s))
		}
	}
}

// parsePromQuoted reads a quoted string after its opening quote and returns
// its unescaped value and what follows the closing quote.
func parsePromQuoted(s string) (string, string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), s[i+1:], nil
		case '\\':
			if i+1 >= len(s) {
				return "", "", fmt.Errorf("unterminated escape")
			}
			i++
			switch s[i] {
			case '\\':
				b.WriteByte('\\')
			case '"':
				b.WriteByte('"')
			case 'n':
				b.WriteByte('\n')
			default:
				return "", "", fmt.Errorf("invalid escape \\%c", s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", "", fmt.Errorf("unterminated quoted string")
}

func isNameChar(c byte, first bool) bool {
	return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || !first && '0' <= c && c <= '9'
}

func isLabelChar(c byte, first bool) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || !first && '0' <= c && c <= '9'
}

// clip shortens s for error messages.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
