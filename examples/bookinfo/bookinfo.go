package bookinfo

import "embed"

// Manifests holds the sample's base YAML, applied in file-name order.
//
//go:embed *.yaml
var Manifests embed.FS

// Scenarios holds the YAML of the Istio task flows under scenarios/, one
// file per step, applied on demand on top of Manifests.
//
//go:embed scenarios/*.yaml
var Scenarios embed.FS
