package route

import (
	"fmt"
	"net/http"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"golang.org/x/net/http/httpguts"
)

// HeaderOp is one header addition.
type HeaderOp struct {
	Key, Value string // canonical key
	Action     corev3.HeaderValueOption_HeaderAppendAction
	KeepEmpty  bool
}

// Headers is a compiled list of headers to add and remove; the zero value changes nothing.
type Headers struct {
	Add    []HeaderOp
	Remove []string // canonical keys
}

// Empty reports whether h changes nothing.
func (h *Headers) Empty() bool { return len(h.Add) == 0 && len(h.Remove) == 0 }

// Apply removes, then adds, as Envoy does.
func (h *Headers) Apply(dst http.Header) {
	for _, k := range h.Remove {
		delete(dst, k)
	}
	for i := range h.Add {
		op := &h.Add[i]
		if op.Value == "" && !op.KeepEmpty {
			continue
		}
		_, exists := dst[op.Key]
		switch op.Action {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			dst[op.Key] = append(dst[op.Key], op.Value)
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			if !exists {
				dst[op.Key] = []string{op.Value}
			}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			dst[op.Key] = []string{op.Value}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			if exists {
				dst[op.Key] = []string{op.Value}
			}
		}
	}
}

func compileHeaders(add []*corev3.HeaderValueOption, remove []string, field string) (Headers, error) {
	var h Headers
	for i, o := range add {
		f := fmt.Sprintf("%s_to_add[%d]", field, i)
		k, v := o.GetHeader().GetKey(), o.GetHeader().GetValue()
		if len(o.GetHeader().GetRawValue()) > 0 {
			if v != "" {
				return h, fmt.Errorf("%s.header: value and raw_value are exclusive", f)
			}
			v = string(o.GetHeader().GetRawValue())
		}
		if err := checkMutableHeader(k, v); err != nil {
			return h, fmt.Errorf("%s.header: %w", f, err)
		}
		action := o.GetAppendAction()
		if o.GetAppend() != nil { // deprecated bool: true appends, false overwrites
			if o.GetAppend().GetValue() {
				action = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
			} else {
				action = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
			}
		}
		h.Add = append(h.Add, HeaderOp{Key: http.CanonicalHeaderKey(k), Value: v, Action: action, KeepEmpty: o.GetKeepEmptyValue()})
	}
	for i, k := range remove {
		if !httpguts.ValidHeaderFieldName(k) || isProtectedHeader(k) {
			return h, fmt.Errorf("%s_to_remove[%d]: %q is not a removable header", field, i, k)
		}
		h.Remove = append(h.Remove, http.CanonicalHeaderKey(k))
	}
	return h, nil
}

// checkMutableHeader rejects keys that are not tokens or must not be set by configuration, and values
// with substitution formatters (not supported) or forbidden bytes.
func checkMutableHeader(k, v string) error {
	if !httpguts.ValidHeaderFieldName(k) {
		return fmt.Errorf("key %q is not a valid header name (pseudo-headers cannot be set)", k)
	}
	if isProtectedHeader(k) {
		return fmt.Errorf("key %q cannot be modified", k)
	}
	if !httpguts.ValidHeaderFieldValue(v) {
		return fmt.Errorf("value of %q has forbidden bytes", k)
	}
	if strings.Contains(v, "%") {
		return fmt.Errorf("value of %q: %%-formatters are not supported", k)
	}
	return nil
}

func isProtectedHeader(k string) bool {
	switch strings.ToLower(k) {
	case "host", "connection", "transfer-encoding", "content-length", "upgrade", "keep-alive", "te", "trailer", "proxy-connection":
		return true
	}
	return false
}
