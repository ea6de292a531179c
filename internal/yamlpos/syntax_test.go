package yamlpos

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestSyntax(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		line      int
		msg       string
	}{
		{"unclosed flow sequence", "a: 1\nb: [1, 2\n", 2, "YAML syntax error: did not find expected ',' or ']'"},
		{"tab indentation", "a:\n\tb: 1\n", 2, "(tabs are not allowed for indentation)"},
		{"bad mapping on a later line", "x: 1\na: b: c\n", 2, "YAML syntax error: mapping values are not allowed in this context"},
		{"error without a line", "a: b: c\n", 0, "YAML syntax error: mapping values are not allowed in this context"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n yaml.Node
			err := yaml.Unmarshal([]byte(tc.doc), &n)
			if err == nil {
				t.Fatal("no error")
			}
			line, msg := Syntax(err, []byte(tc.doc))
			if line != tc.line || !strings.Contains(msg, tc.msg) {
				t.Fatalf("Syntax = %d %q; want %d ...%s...", line, msg, tc.line, tc.msg)
			}
		})
	}
}
