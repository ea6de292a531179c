// Package configfile loads one typed configuration struct from a YAML file,
// STRAIT_* environment variables and command-line flags, and reports every
// problem as a message naming the file, line, column, key and what is wrong.
//
// Guarantees, in the order Load applies them:
//
//   - Precedence is defaults < file < environment < flags. Defaults are
//     whatever the struct holds when Load is called; a key absent from every
//     layer keeps its default. A YAML null ("key:" with no value) also keeps
//     the default.
//   - Nested structs merge field by field; a list or a map that a layer sets
//     replaces the default wholesale (no element-wise merging with defaults).
//   - The file is checked against the struct type before viper sees it,
//     by a yamlpos.Reader: YAML syntax errors, unknown keys at any depth
//     (with a "did you mean" suggestion), values of the wrong type,
//     duplicate keys, and more than one YAML document are all reported
//     with file:line:column and the dotted key (list items as
//     "services.2.name"). Keys match their mapstructure tags
//     case-insensitively, as viper does, so "Data" and "data" in one
//     mapping are duplicates; map keys keep the case they were written
//     with even though viper lower-cases them internally. With
//     Options.Subset the struct names only some of the file's keys (a
//     client reading a gateway's control address from its config): the
//     others are skipped, not reported (TestSubset).
//   - Only leaf keys reachable through structs (strings, numbers, bools,
//     durations, encoding.TextUnmarshaler types, []string) can be set from
//     the environment, as PREFIX_PATH_TO_KEY upper-cased with dots and dashes
//     turned into underscores; []string takes a comma-separated list; an
//     empty variable counts as unset. A malformed value is a problem naming
//     the variable. Only flags that were set on the command line and listed
//     in Options.FlagKeys override.
//   - Problems are collected, not returned at the first: one *Error holds
//     them all. Validate's *FieldErrors become problems positioned at their
//     key in the file, or attributed to the variable or flag that set it.
//     A FieldError for a key that already has a type problem is dropped, as
//     it only restates it. When the file does not parse, Validate is not run.
//   - Load never panics on any file content (FuzzLoad), and bounds the work
//     an aliased ("billion laughs") document can cause.
//
// TestLoad, TestEnvAndFlags and TestValidateProblems prove the above row by
// row.
package configfile
