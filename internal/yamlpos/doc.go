// Package yamlpos reads YAML with positions: whatever it reports about a
// document names the line where it was written. Syntax turns a
// go.yaml.in/yaml/v3 syntax error into a 1-based line and a message for
// people, the same way for every file Strait reads (TestSyntax).
package yamlpos
