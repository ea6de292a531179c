package yamlpos

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// server is a Go type Value checks documents against.
type server struct {
	Name    string            `mapstructure:"name"`
	Port    uint16            `mapstructure:"port"`
	Timeout time.Duration     `mapstructure:"timeout"`
	Tags    []string          `mapstructure:"tags"`
	Env     map[string]string `mapstructure:"env"`
	TLS     *struct {
		Cert string `mapstructure:"cert"`
	} `mapstructure:"tls"`
}

// docOpts reads like a policy file; cfgOpts like a config file.
var (
	docOpts = Options{File: "p.yaml", Style: DocumentPaths}
	cfgOpts = Options{File: "c.yaml", Aliases: true, FoldCase: true}
)

// readDoc parses doc with opts, hands the top node to read and returns
// the problems rendered.
func readDoc(t *testing.T, opts Options, doc string, read func(*Reader, *yaml.Node)) []string {
	t.Helper()
	r := NewReader(opts)
	if root, _ := r.Parse([]byte(doc)); root != nil && read != nil {
		read(r, root)
	}
	var out []string
	for _, p := range r.Problems() {
		out = append(out, p.String())
	}
	return out
}

// byHand reads a document the way sovereignty does: a mapping with name,
// regions and labels, name required.
func byHand(r *Reader, root *yaml.Node) {
	m := r.Mapping(root, "", "name", "regions", "labels")
	if _, ok := m["name"]; !ok {
		r.Missing(root, "name", "the server's name")
	} else {
		r.Text(m["name"].Value, "name")
	}
	r.Texts(m["regions"].Value, "regions")
	r.TextMap(m["labels"].Value, "labels")
}

func asServer(r *Reader, root *yaml.Node) { r.Value(root, reflect.TypeFor[server](), "") }

func TestReader(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		doc  string
		read func(*Reader, *yaml.Node)
		want []string
	}{
		{"unknown key, close to a known one", docOpts, "name: a\nregoins: [x]\n", byHand,
			[]string{`p.yaml:2:1: regoins: unknown key (did you mean "regions"?)`}},
		{"unknown key, far from all", docOpts, "name: a\nzzz: 1\n", byHand,
			[]string{`p.yaml:2:1: zzz: unknown key (known keys: name, regions, labels)`}},
		{"keys are case-sensitive without FoldCase", docOpts, "Name: a\n", byHand,
			[]string{`p.yaml:1:1: Name: unknown key (did you mean "name"?)`, `p.yaml:1:1: name: required: the server's name`}},
		{"duplicate key", docOpts, "name: a\nname: b\n", byHand,
			[]string{`p.yaml:2:1: name: duplicate key (already set at line 1)`}},
		{"wrong types", docOpts, "name: [a]\nregions: {a: 1}\nlabels: [x]\n", byHand,
			[]string{`p.yaml:1:7: name: expected a string, found a list`, `p.yaml:2:10: regions: expected a list, found a mapping`,
				`p.yaml:3:9: labels: expected a mapping, found a list`}},
		{"list items and map entries", docOpts, "name: a\nregions: [x, {y: 1}, ~]\nlabels: {k: v, j: [1]}\n", byHand,
			[]string{`p.yaml:2:14: regions[1]: expected a string, found a mapping`, `p.yaml:2:22: regions[2]: expected a string, found null`,
				`p.yaml:3:19: labels.j: expected a string, found a list`}},
		{"bad keys", docOpts, "name: a\n? [k]\n: 1\n\"\": 2\n", byHand,
			[]string{`p.yaml:2:3: expected a key, found a list`, `p.yaml:4:1: empty key`}},
		{"aliases refused", docOpts, "name: &n a\nregions: [*n]\n", byHand,
			[]string{`p.yaml:2:11: regions[0]: YAML aliases (*name) are not supported; write the value out`}},
		{"merge key is a plain key without Aliases", docOpts, "name: a\n<<: {x: 1}\n", byHand,
			[]string{`p.yaml:2:1: <<: unknown key (known keys: name, regions, labels)`}},
		{"a Go type", cfgOpts, "name: a\nport: 70000\ntimeout: soon\ntags: x\nenv: {A: ~}\ntls: {cret: c}\n", asServer,
			[]string{`c.yaml:2:7: key port: expected an integer from 0 to 65535, found "70000"`,
				`c.yaml:3:10: key timeout: expected a duration like "2s", found "soon"`,
				`c.yaml:4:7: key tags: expected a list of strings, found "x"`,
				`c.yaml:5:10: key env.A: expected a string, found null`,
				`c.yaml:6:7: key tls.cret: unknown key (did you mean "cert"?)`}},
		{"keys fold case, and so do duplicates", cfgOpts, "NAME: a\nname: b\ntags: [x, [y]]\n", asServer,
			[]string{`c.yaml:2:1: key name: duplicate key (already set at line 1 as "NAME"; keys are not case-sensitive)`,
				`c.yaml:3:11: key tags.1: expected a string, found a list`}},
		{"aliases and merge keys resolved", cfgOpts, "env: &e {A: a}\ntls: {<<: *e, cert: c}\nname: *e\n", asServer,
			[]string{`c.yaml:1:10: key tls.A: unknown key (known keys: cert)`, `c.yaml:3:7: key name: expected a string, found a mapping`}},
		{"a subset skips unknown keys but checks known ones", Options{File: "c.yaml", Subset: true}, "other: {x: [1]}\nname: a\nport: p\n? [z]\n: 1\n", asServer,
			[]string{`c.yaml:3:7: key port: expected a non-negative integer, found "p"`}},
		{"empty document", docOpts, "# nothing\n", byHand, nil},
		{"second document", docOpts, "name: a\n---\nname: b\n", nil,
			[]string{`p.yaml:2:1: a second YAML document starts here; the file must hold exactly one`}},
		{"syntax error", docOpts, "name: [a\n", nil,
			[]string{`p.yaml:2: YAML syntax error: did not find expected ',' or ']'`}},
		{"too many bytes", Options{File: "p.yaml", MaxBytes: 4}, "name: a\n", nil,
			[]string{`p.yaml: file is 8 bytes; the limit is 4`}},
		{"too many nodes", Options{File: "c.yaml", Aliases: true, MaxNodes: 3}, "tags: [a, b, c]\n", asServer,
			[]string{`c.yaml: document too large: more than 3 nodes with aliases expanded`}},
		{"too many problems", Options{File: "p.yaml", Style: DocumentPaths, MaxProblems: 2}, "a: 1\nb: 2\nc: 3\n", byHand,
			[]string{`p.yaml:1:1: a: unknown key (known keys: name, regions, labels)`, `p.yaml:2:1: b: unknown key (known keys: name, regions, labels)`,
				`p.yaml: stopped after 2 problems`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := readDoc(t, tc.opts, tc.doc, tc.read); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestValue(t *testing.T) {
	r := NewReader(cfgOpts)
	root, ok := r.Parse([]byte("name: a\nport: 0x10\ntimeout: 2s\ntags: [x, 1]\nEnv: {Key: v}\ntls: {cert: c}\n"))
	if !ok {
		t.Fatal(r.Problems())
	}
	got, ok := r.Value(root, reflect.TypeFor[server](), "")
	want := map[string]any{"name": "a", "port": uint64(16), "timeout": "2s", "tags": []any{"x", "1"},
		"env": map[string]any{"Key": "v"}, "tls": map[string]any{"cert": "c"}}
	if !ok || !reflect.DeepEqual(got, want) || len(r.Problems()) > 0 {
		t.Errorf("Value = %#v, %v; problems %v", got, ok, r.Problems())
	}
	if n, ok := r.At("ENV.key"); !ok || n.Line != 5 || n.Column != 7 {
		t.Errorf("At(ENV.key) = %v, %v", n, ok)
	}
	if n, ok := r.At("tags.1"); !ok || n.Line != 4 || n.Column != 11 {
		t.Errorf("At(tags.1) = %v, %v", n, ok)
	}
}

func TestProblemRendering(t *testing.T) {
	for _, tc := range []struct {
		p    Problem
		want string
	}{
		{Problem{File: "c.yaml", Line: 3, Column: 5, Key: "listen.admin", Msg: "bad"}, "c.yaml:3:5: key listen.admin: bad"},
		{Problem{File: "c.yaml", Line: 3, Key: "a", Msg: "bad", Source: "env X_A"}, "env X_A: key a: bad"},
		{Problem{File: "p.yaml", Line: 3, Key: "spec[0]", Msg: "bad", Style: DocumentPaths}, "p.yaml:3: spec[0]: bad"},
		{Problem{Msg: "bad"}, "bad"},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
	ps := []Problem{{File: "p.yaml", Line: 9, Msg: "z"}, {File: "p.yaml", Line: 2, Column: 4, Msg: "y"}, {File: "p.yaml", Msg: "x"}}
	Sort(ps)
	e := &Error{What: "policy", Problems: ps}
	if got, want := e.Error(), "invalid policy p.yaml (3 problems):\n  p.yaml: x\n  p.yaml:2:4: y\n  p.yaml:9: z"; got != want {
		t.Errorf("Error() =\n%s\nwant\n%s", got, want)
	}
	if got := (&Error{Problems: ps[:1]}).Error(); got != "invalid config p.yaml (1 problem):\n  p.yaml: x" {
		t.Errorf("Error() without What = %q", got)
	}
}

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
