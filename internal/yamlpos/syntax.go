package yamlpos

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
)

var lineErr = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parserProblems are the messages of yaml.v3's parser (as opposed to its
// scanner): it reports them at the 0-based line of the collection being
// parsed (or of the problem, when that collection starts on line 1);
// scanner errors it reports 1-based.
var parserProblems = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"found undefined tag handle":             true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
}

// Syntax returns the 1-based line of a syntax error in data (0 when the
// error names none) and "YAML syntax error: ...", with a hint when that
// line is indented with tabs.
func Syntax(err error, data []byte) (line int, msg string) {
	m := lineErr.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, "YAML syntax error: " + strings.TrimPrefix(err.Error(), "yaml: ")
	}
	line, _ = strconv.Atoi(m[1])
	msg = "YAML syntax error: " + m[2]
	if parserProblems[m[2]] {
		line++
	}
	lines := bytes.Split(data, []byte("\n"))
	if line >= 1 && line <= len(lines) && bytes.ContainsRune(lines[line-1], '\t') {
		msg += " (tabs are not allowed for indentation)"
	}
	return line, msg
}
