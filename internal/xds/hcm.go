package xds

import (
	"fmt"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// Path normalization options (Node.PathNormalization), Istio's meshConfig.pathNormalization.
const (
	// PathNormalizationNone forwards and matches paths as received (only validated).
	PathNormalizationNone = "NONE"
	// PathNormalizationBase resolves dot segments, decodes percent-encoded unreserved
	// characters and turns '\' into '/' (RFC 3986, Envoy's normalize_path).
	PathNormalizationBase = "BASE"
	// PathNormalizationMergeSlashes is BASE, then runs of '/' merged into one.
	PathNormalizationMergeSlashes = "MERGE_SLASHES"
	// PathNormalizationDecodeAndMergeSlashes first decodes %2F, %2f, %5C and %5c, then does
	// MERGE_SLASHES. Canton's default.
	PathNormalizationDecodeAndMergeSlashes = "DECODE_AND_MERGE_SLASHES"
)

func checkPathNormalization(v string) error {
	switch v {
	case "", PathNormalizationNone, PathNormalizationBase, PathNormalizationMergeSlashes, PathNormalizationDecodeAndMergeSlashes:
		return nil
	}
	return fmt.Errorf("path normalization %q must be one of %s, %s, %s or %s", v, PathNormalizationNone,
		PathNormalizationBase, PathNormalizationMergeSlashes, PathNormalizationDecodeAndMergeSlashes)
}

// secureHCM sets what every HttpConnectionManager of a Canton proxy gets, whatever the listener:
//   - path normalization: the node's option, mapped to Envoy's fields as Istio maps it (NONE:
//     normalize_path false; BASE: normalize_path; MERGE_SLASHES: and merge_slashes;
//     DECODE_AND_MERGE_SLASHES: and path_with_escaped_slashes_action UNESCAPE_AND_FORWARD);
//   - strip_trailing_host_dot, so "reviews.bookinfo.demo.mesh." is routed and authorized as
//     the name it stands for;
//   - x-forwarded-client-cert: on the inbound listener SANITIZE_SET with By, Hash and URI, so the
//     application gets exactly the verified caller (or no header, from a plaintext peer); on
//     every other listener SANITIZE, so no request from outside the mesh carries one.
func (g *gen) secureHCM(h *hcmv3.HttpConnectionManager, inbound bool) *hcmv3.HttpConnectionManager {
	mode := g.node.PathNormalization
	if mode == "" {
		mode = PathNormalizationDecodeAndMergeSlashes
	}
	h.NormalizePath = wrapBool(mode != PathNormalizationNone)
	h.MergeSlashes = mode == PathNormalizationMergeSlashes || mode == PathNormalizationDecodeAndMergeSlashes
	h.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_KEEP_UNCHANGED
	if mode == PathNormalizationDecodeAndMergeSlashes {
		h.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD
	}
	h.StripTrailingHostDot = true
	h.ForwardClientCertDetails = hcmv3.HttpConnectionManager_SANITIZE
	if inbound {
		h.ForwardClientCertDetails = hcmv3.HttpConnectionManager_SANITIZE_SET
		h.SetCurrentClientCertDetails = &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{Uri: true}
	}
	return h
}
