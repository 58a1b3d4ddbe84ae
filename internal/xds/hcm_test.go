package xds

import (
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// TestPathNormalizationOptions checks the mapping of Istio's options to the HCM fields, on every
// HttpConnectionManager of a sidecar, and the trusted-header settings of each listener.
func TestPathNormalizationOptions(t *testing.T) {
	tests := []struct {
		option         string
		normalize      bool
		merge          bool
		escapedSlashes hcmv3.HttpConnectionManager_PathWithEscapedSlashesAction
	}{
		{"", true, true, hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD},
		{PathNormalizationNone, false, false, hcmv3.HttpConnectionManager_KEEP_UNCHANGED},
		{PathNormalizationBase, true, false, hcmv3.HttpConnectionManager_KEEP_UNCHANGED},
		{PathNormalizationMergeSlashes, true, true, hcmv3.HttpConnectionManager_KEEP_UNCHANGED},
		{PathNormalizationDecodeAndMergeSlashes, true, true, hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD},
	}
	for _, tt := range tests {
		node := Node{ID: "p", Service: "reviews", Namespace: "bookinfo.demo.mesh", OutboundPort: 15001, InboundPort: 15006,
			AppAddress: "127.0.0.1:9080", PathNormalization: tt.option}
		res, err := Generate(Input{Mesh: "demo.mesh", Scope: "demo.mesh"}, node)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{InboundListenerName, OutboundListenerName} {
			l := res.Listeners[name].(*listenerv3.Listener)
			h := &hcmv3.HttpConnectionManager{}
			if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(h); err != nil {
				t.Fatal(err)
			}
			if h.GetNormalizePath().GetValue() != tt.normalize || h.GetMergeSlashes() != tt.merge ||
				h.GetPathWithEscapedSlashesAction() != tt.escapedSlashes || !h.GetStripTrailingHostDot() {
				t.Errorf("%q %s: normalize %v merge %v slashes %v strip dot %v", tt.option, name, h.GetNormalizePath().GetValue(),
					h.GetMergeSlashes(), h.GetPathWithEscapedSlashesAction(), h.GetStripTrailingHostDot())
			}
			wantFCC := hcmv3.HttpConnectionManager_SANITIZE
			if name == InboundListenerName {
				wantFCC = hcmv3.HttpConnectionManager_SANITIZE_SET
				if d := h.GetSetCurrentClientCertDetails(); !d.GetUri() || d.GetCert() || d.GetDns() {
					t.Errorf("%s: set_current_client_cert_details %v, want uri only", name, d)
				}
			}
			if h.GetForwardClientCertDetails() != wantFCC {
				t.Errorf("%s: forward_client_cert_details %v, want %v", name, h.GetForwardClientCertDetails(), wantFCC)
			}
		}
	}
	_, err := Generate(Input{Mesh: "demo.mesh", Scope: "demo.mesh"}, Node{ID: "p", Namespace: "bookinfo.demo.mesh", PathNormalization: "base"})
	if err == nil || !strings.Contains(err.Error(), "must be one of") {
		t.Errorf("lower-case option: %v, want an error", err)
	}
}
