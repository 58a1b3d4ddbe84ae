package filter

import (
	"fmt"
	"net/http"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"golang.org/x/net/http/httpguts"
)

// headerOp is one decoded HeaderValueOption.
type headerOp struct {
	key       string // canonical form
	value     string
	action    corev3.HeaderValueOption_HeaderAppendAction
	keepEmpty bool
}

// parseHeaderOps decodes HeaderValueOptions. Values are literal: Envoy's
// %COMMAND% substitution is not supported, so a value containing '%' is
// rejected rather than sent verbatim.
func parseHeaderOps(opts []*corev3.HeaderValueOption, path string) ([]headerOp, error) {
	ops := make([]headerOp, 0, len(opts))
	for i, o := range opts {
		p := fmt.Sprintf("%s[%d]", path, i)
		if err := onlyFields(o, p, "header", "append", "append_action", "keep_empty_value"); err != nil {
			return nil, err
		}
		h := o.GetHeader()
		if h == nil {
			return nil, fmt.Errorf("%s.header: required", p)
		}
		if err := onlyFields(h, p+".header", "key", "value"); err != nil {
			return nil, err
		}
		if !httpguts.ValidHeaderFieldName(h.GetKey()) {
			return nil, fmt.Errorf("%s.header.key: %q is not a valid header name", p, h.GetKey())
		}
		if strings.HasPrefix(h.GetKey(), ":") || strings.EqualFold(h.GetKey(), "host") {
			return nil, fmt.Errorf("%s.header.key: %q may not be modified", p, h.GetKey())
		}
		if !httpguts.ValidHeaderFieldValue(h.GetValue()) {
			return nil, fmt.Errorf("%s.header.value: invalid header value", p)
		}
		if strings.Contains(h.GetValue(), "%") {
			return nil, fmt.Errorf("%s.header.value: %%COMMAND%% substitution is not supported by canton", p)
		}
		op := headerOp{
			key:       http.CanonicalHeaderKey(h.GetKey()),
			value:     h.GetValue(),
			action:    o.GetAppendAction(),
			keepEmpty: o.GetKeepEmptyValue(),
		}
		if a := o.GetAppend(); a != nil {
			if o.GetAppendAction() != corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
				return nil, fmt.Errorf("%s: append and append_action are mutually exclusive", p)
			}
			if !a.GetValue() {
				op.action = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
			}
		}
		switch op.action {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD, corev3.HeaderValueOption_ADD_IF_ABSENT,
			corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
		default:
			return nil, fmt.Errorf("%s.append_action: unknown value %d", p, op.action)
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// applyHeaderOps applies ops to h in order, with Envoy's append actions.
func applyHeaderOps(h http.Header, ops []headerOp) {
	for _, op := range ops {
		if op.value == "" && !op.keepEmpty {
			continue
		}
		_, exists := h[op.key]
		switch op.action {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			h[op.key] = append(h[op.key], op.value)
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			if !exists {
				h[op.key] = []string{op.value}
			}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			h[op.key] = []string{op.value}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			if exists {
				h[op.key] = []string{op.value}
			}
		}
	}
}
