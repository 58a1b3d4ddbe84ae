// Package cli is the canton command line: the cobra command tree, flag
// parsing and the client verbs (apply, get, delete, lineage, status, scope).
// Each role's work lives in its own package (anchor, demo); client verbs talk
// to anchors only through internal/api.
//
// Only cmd/canton imports this package.
package cli
