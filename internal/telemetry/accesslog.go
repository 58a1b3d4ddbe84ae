package telemetry

import (
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Entry is what the proxy knows about one finished request (or TCP
// connection) for the access log. Zero or empty fields are written as JSON
// null where Envoy would print "-".
type Entry struct {
	StartTime                      time.Time
	Method                         string
	Path                           string // the original path, with query
	Protocol                       string // "HTTP/1.1", "HTTP/2", or "" for TCP
	ResponseCode                   int
	ResponseFlags                  string // "-" or Envoy's short codes, e.g. "DI,FI"
	BytesReceived                  int64
	BytesSent                      int64
	Duration                       time.Duration
	UpstreamServiceTime            time.Duration // < 0 when there was no upstream response
	XForwardedFor                  string
	UserAgent                      string
	RequestID                      string
	Authority                      string
	UpstreamHost                   string
	UpstreamCluster                string
	UpstreamLocalAddress           string
	DownstreamLocalAddress         string
	DownstreamRemoteAddress        string
	RouteName                      string
	RequestedServerName            string
	UpstreamTransportFailureReason string
	ConnectionTerminationDetails   string
	ResponseCodeDetails            string
}

// fieldWriter appends one field's JSON value to b.
type fieldWriter func(b []byte, e *Entry) []byte

// accessLogFields lists every field an AccessLog can write, by name, in the
// order of DefaultFields.
var accessLogFields = []struct {
	name  string
	write fieldWriter
}{
	{"start_time", func(b []byte, e *Entry) []byte {
		if e.StartTime.IsZero() {
			return append(b, "null"...)
		}
		b = append(b, '"')
		b = e.StartTime.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
		return append(b, '"')
	}},
	{"method", func(b []byte, e *Entry) []byte { return appendJSONOrNull(b, e.Method) }},
	{"path", func(b []byte, e *Entry) []byte { return appendJSONOrNull(b, e.Path) }},
	{"protocol", func(b []byte, e *Entry) []byte { return appendJSONOrNull(b, e.Protocol) }},
	{"response_code", func(b []byte, e *Entry) []byte { return strconv.AppendInt(b, int64(e.ResponseCode), 10) }},
	{"response_flags", func(b []byte, e *Entry) []byte {
		if e.ResponseFlags == "" {
			return append(b, `"-"`...)
		}
		return appendJSONString(b, e.ResponseFlags)
	}},
	{"response_code_details", func(b []byte, e *Entry) []byte { return appendJSONOrNull(b, e.ResponseCodeDetails) }},
	{"connection_termination_details", func(b []byte, e *Entry) []byte { return appendJSONOrNull(b, e.ConnectionTerminationDetails) }},
	{"upstream_transport_failure_reason", func(b []byte, e *Entry) []byte { return appendJSONOrNull(b, e.UpstreamTransportFailureReason) }},
	{"bytes_received", func(b []byte, e *Entry) []byte { return strconv.AppendInt(b, e.BytesReceived, 10) }},
	{"bytes_sent", func(b []byte, e *Entry) []byte { return strconv.AppendInt(b, e.BytesSent, 10) }},
	{"duration", func(b []byte, e *Entry) []byte { return strconv.AppendInt(b, e.Duration.Milliseconds(), 10) }},
	{"upstream_service_time", func(b []byte, e *Entry) []byte {
		if e.UpstreamServiceTime < 0 {
			return append(b, "null"...)
		}
		return strconv.AppendInt(b, e.UpstreamServiceTime.Milliseconds(), 10)
	}},
	{"x_forwarded_for", func(b []byte, e *Entry) []byte { return appendJSONOrNull(b, e.XForwardedFor) }},
	{"user_agent", func(b []byte, e *Entry) []byte { return appendJSONOrNull(b, e.UserAgent) }},
	{"request_id", func(b []byte, e *Entry) []byte { return appendJSONOrNull(b, e.RequestID) }},
	{"authority", func(b []byte, e *Entry) []byte { return appendJSONOrNull(b, e.Authority) }},
	{"upstream_host", func(b []byte, e *Entry) []byte { return appendJSONOrNull(b, e.UpstreamHost) }},
	{"upstream_cluster", func(b []byte, e *Entry) []byte { return appendJSONOrNull(b, e.UpstreamCluster) }},
	{"upstream_local_address", func(b []byte, e *Entry) []byte { return appendJSONOrNull(b, e.UpstreamLocalAddress) }},
	{"downstream_local_address", func(b []byte, e *Entry) []byte { return appendJSONOrNull(b, e.DownstreamLocalAddress) }},
	{"downstream_remote_address", func(b []byte, e *Entry) []byte { return appendJSONOrNull(b, e.DownstreamRemoteAddress) }},
	{"requested_server_name", func(b []byte, e *Entry) []byte { return appendJSONOrNull(b, e.RequestedServerName) }},
	{"route_name", func(b []byte, e *Entry) []byte { return appendJSONOrNull(b, e.RouteName) }},
}

// DefaultFields are the fields an AccessLog writes when given none: all of
// them, like Istio's default JSON access log format.
func DefaultFields() []string {
	names := make([]string, len(accessLogFields))
	for i, f := range accessLogFields {
		names[i] = f.name
	}
	return names
}

// AccessLog writes one JSON object per line per Entry. It is safe for
// concurrent use; each line is written with a single Write call.
type AccessLog struct {
	mu     sync.Mutex // serializes writes to w
	w      io.Writer
	fields []logField
	pool   sync.Pool // *[]byte
}

type logField struct {
	key   []byte // `"name":` with the leading comma where needed
	write fieldWriter
}

// NewAccessLog returns an AccessLog writing the named fields, in the given
// order, to w. A nil or empty fields means DefaultFields. An unknown or
// repeated field name is an error naming it.
func NewAccessLog(w io.Writer, fields []string) (*AccessLog, error) {
	if w == nil {
		return nil, fmt.Errorf("access log: nil writer")
	}
	if len(fields) == 0 {
		fields = DefaultFields()
	}
	a := &AccessLog{w: w}
	seen := make(map[string]bool, len(fields))
	for i, name := range fields {
		if seen[name] {
			return nil, fmt.Errorf("access log: fields[%d]: %q repeated", i, name)
		}
		seen[name] = true
		var wr fieldWriter
		for _, f := range accessLogFields {
			if f.name == name {
				wr = f.write
				break
			}
		}
		if wr == nil {
			return nil, fmt.Errorf("access log: fields[%d]: unknown field %q (known: %v)", i, name, DefaultFields())
		}
		key := []byte{','}
		if i == 0 {
			key = key[:0]
		}
		key = appendJSONString(key, name)
		key = append(key, ':')
		a.fields = append(a.fields, logField{key: key, write: wr})
	}
	a.pool.New = func() any { b := make([]byte, 0, 1024); return &b }
	return a, nil
}

// Log writes e as one line. The error is the writer's.
func (a *AccessLog) Log(e *Entry) error {
	bp := a.pool.Get().(*[]byte)
	b := append((*bp)[:0], '{')
	for _, f := range a.fields {
		b = append(b, f.key...)
		b = f.write(b, e)
	}
	b = append(b, '}', '\n')
	a.mu.Lock()
	_, err := a.w.Write(b)
	a.mu.Unlock()
	if cap(b) <= 64<<10 { // do not keep huge buffers alive
		*bp = b
		a.pool.Put(bp)
	}
	return err
}

func appendJSONOrNull(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return appendJSONString(b, s)
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD; control characters, quotes and backslashes are escaped, and so are
// '<', '>', '&', U+2028 and U+2029 so a log line is safe to embed anywhere.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' && c != 0x7f {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
