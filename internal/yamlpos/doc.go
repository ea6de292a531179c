// Package yamlpos reads YAML with positions: every value it hands back
// comes with the node it was written at, and every problem it reports
// names the file, line and column, the key, what was expected and what was
// found. The name says that position is what it adds to go.yaml.in/yaml/v3;
// what is read (a configuration, a residency policy, a topology) is its
// callers' business.
//
// A Reader reads one document. Guarantees:
//
//   - Parse accepts exactly one YAML document. A syntax error carries the
//     line yaml.v3 gives, which for an unclosed or misindented collection
//     is where that collection starts (Syntax, TestSyntax); a second
//     document is reported where it starts.
//   - Problems are collected, not returned at the first; the same problem
//     is reported once, and reading stops with a last problem after
//     Options.MaxProblems.
//   - Mapping keys are checked wherever a Reader reads a mapping: a key
//     that is not a scalar, empty or holds a NUL, a duplicate (ignoring
//     case with Options.FoldCase, naming the line of the first), and an
//     unknown key, with a "did you mean" for a close known name or else the
//     known names when there are at most eight. Options.Subset skips
//     unknown keys instead, to read part of a larger document.
//   - Value checks a node tree against a Go type (structs by their
//     mapstructure tags, maps, lists, scalars, durations,
//     encoding.TextUnmarshaler types): a mismatch says what the type
//     expects and what the node is; a null leaves the value as it was.
//     Mapping, Text, List, Texts and TextMap read a tree by hand, for
//     documents whose checks go beyond types; Missing reports a required
//     key.
//   - No input makes a Reader panic or do unbounded work: aliases are
//     refused, or with Options.Aliases resolved together with merge keys,
//     every node an alias expands to counted against Options.MaxNodes; a
//     document above Options.MaxBytes is not parsed (FuzzReader).
//
// Problem renders as "file:line:column: key: message", the key labelled
// "key listen.admin" for configuration (whose keys environment variables
// and flags set too) or bare "spec.classes[0]" for a document path; Error
// holds them all (TestProblemRendering).
package yamlpos
