// Package bookinfo is Canton's sample application: the bookinfo shape users
// know from Istio, with its Istio YAML beside it.
package bookinfo

import "embed"

// Manifests holds the sample's YAML, applied in file-name order.
//
//go:embed *.yaml
var Manifests embed.FS
