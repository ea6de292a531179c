package drill_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/yaml"

	"github.com/straitmesh/strait/drill"
)

const schemaURL = "https://strait.io/schemas/drill.schema.json"

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(drill.Schema))
	if err != nil {
		t.Fatalf("drill.schema.json is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(schemaURL, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(schemaURL)
	if err != nil {
		t.Fatalf("compile drill.schema.json: %v", err)
	}
	return s
}

// instance reads a YAML drill file as the JSON a schema validator sees.
func instance(t *testing.T, path string) any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// TestSchemaAgreesWithParse: the schema accepts every drill that Parse
// accepts (the library and testdata/valid) and rejects every invalid
// fixture, each of which Parse rejects too (TestInvalidFixtures).
func TestSchemaAgreesWithParse(t *testing.T) {
	s := compileSchema(t)
	examples, _ := filepath.Glob(filepath.Join(examplesDir, "*.yaml"))
	valid, _ := filepath.Glob("testdata/valid/*.yaml")
	if len(examples) == 0 || len(valid) == 0 {
		t.Fatal("no valid drills to check the schema against")
	}
	for _, f := range append(examples, valid...) {
		t.Run("accepts "+filepath.Base(f), func(t *testing.T) {
			if _, err := drill.LoadFile(f); err != nil {
				t.Fatalf("Parse refuses it: %v", err)
			}
			if err := s.Validate(instance(t, f)); err != nil {
				t.Errorf("schema refuses a valid drill: %v", err)
			}
		})
	}
	for f := range invalidFixtures(t) {
		t.Run("rejects "+filepath.Base(f), func(t *testing.T) {
			if err := s.Validate(instance(t, f)); err == nil {
				t.Errorf("schema accepts %s", f)
			}
		})
	}
}

// The schema names the same fault kinds as the package.
func TestSchemaFaultKinds(t *testing.T) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(drill.Schema))
	if err != nil {
		t.Fatal(err)
	}
	defs := doc.(map[string]any)["$defs"].(map[string]any)
	enum := defs["step"].(map[string]any)["properties"].(map[string]any)["kind"].(map[string]any)["enum"].([]any)
	var got []drill.FaultKind
	for _, k := range enum {
		got = append(got, drill.FaultKind(k.(string)))
	}
	if !slices.Equal(got, drill.FaultKinds) {
		t.Errorf("schema kinds %v, package kinds %v", got, drill.FaultKinds)
	}
}
