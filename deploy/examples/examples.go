// Package examples embeds the example configurations shipped in this
// directory, so that `strait dev` runs exactly the policy users read here.
package examples

import _ "embed"

// Residency is residency.yaml: the sample residency policy `strait dev`
// enforces.
//
//go:embed residency.yaml
var Residency []byte
