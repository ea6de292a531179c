package drill

import _ "embed"

// Schema is the JSON Schema (draft 2020-12) of drill files.
//
//go:embed drill.schema.json
var Schema []byte
