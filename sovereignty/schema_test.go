package sovereignty_test

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/straitmesh/strait/sovereignty"
)

// validate checks doc against the subset of JSON Schema that
// docs/residency.schema.json uses. It returns the first problem.
func validate(root, s map[string]any, doc any, path string) error {
	if ref, ok := s["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/$defs/")
		return validate(root, root["$defs"].(map[string]any)[name].(map[string]any), doc, path)
	}
	if c, ok := s["const"]; ok && doc != c {
		return fmt.Errorf("%s: want %v, found %v", path, c, doc)
	}
	if e, ok := s["enum"].([]any); ok {
		found := false
		for _, v := range e {
			found = found || v == doc
		}
		if !found {
			return fmt.Errorf("%s: %v not in %v", path, doc, e)
		}
	}
	switch s["type"] {
	case "string":
		str, ok := doc.(string)
		if !ok {
			return fmt.Errorf("%s: want a string, found %T", path, doc)
		}
		if p, ok := s["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(str) {
			return fmt.Errorf("%s: %q does not match %s", path, str, p)
		}
	case "array":
		items, ok := doc.([]any)
		if !ok {
			return fmt.Errorf("%s: want an array, found %T", path, doc)
		}
		if m, ok := s["minItems"].(float64); ok && len(items) < int(m) {
			return fmt.Errorf("%s: fewer than %v items", path, m)
		}
		for i, it := range items {
			if err := validate(root, s["items"].(map[string]any), it, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case "object":
		obj, ok := doc.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want an object, found %T", path, doc)
		}
		if m, ok := s["minProperties"].(float64); ok && len(obj) < int(m) {
			return fmt.Errorf("%s: fewer than %v properties", path, m)
		}
		for _, r := range asList(s["required"]) {
			if _, ok := obj[r.(string)]; !ok {
				return fmt.Errorf("%s: %s required", path, r)
			}
		}
		if ds, ok := s["dependentSchemas"].(map[string]any); ok {
			for k, sub := range ds {
				if _, present := obj[k]; !present {
					continue
				}
				if err := validate(root, sub.(map[string]any), doc, path); err != nil {
					return fmt.Errorf("%s given: %w", path+"."+k, err)
				}
			}
		}
		props, _ := s["properties"].(map[string]any)
		for k, v := range obj {
			if pn, ok := s["propertyNames"].(map[string]any); ok {
				if err := validate(root, pn, k, path+"."+k); err != nil {
					return err
				}
			}
			if ps, ok := props[k]; ok {
				if err := validate(root, ps.(map[string]any), v, path+"."+k); err != nil {
					return err
				}
				continue
			}
			switch ap := s["additionalProperties"].(type) {
			case bool:
				if !ap {
					return fmt.Errorf("%s: unknown key %s", path, k)
				}
			case map[string]any:
				if err := validate(root, ap, v, path+"."+k); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func asList(v any) []any { l, _ := v.([]any); return l }

// TestSchemaAgreesWithTheParser: documents the parser accepts satisfy the
// schema, and an unknown key at any level fails both.
func TestSchemaAgreesWithTheParser(t *testing.T) {
	raw, err := os.ReadFile("../docs/residency.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	full := decisionPolicy // every matcher kind, a presence-only header, spec.regions, catalog
	docs := map[string]string{"example": readFile(t, examplePath), "two-classes": readFile(t, "testdata/seed/two-classes.yaml"),
		"unreadable": readFile(t, "testdata/seed/unreadable.yaml"), "decisions": full}
	for name, doc := range docs {
		if _, err := sovereignty.Compile(name, []byte(doc)); err != nil {
			t.Fatalf("%s does not compile: %v", name, err)
		}
		if err := validate(schema, schema, yamlToJSON(t, doc), "$"); err != nil {
			t.Errorf("%s: schema refuses a valid policy: %v", name, err)
		}
	}
	for _, tc := range []struct{ name, at, insert string }{
		{"top level", "spec:\n", "bogus: 1\nspec:\n"},
		{"metadata", "metadata: {name: decisions}", "metadata: {name: decisions, bogus: 1}"},
		{"spec", "  default: allow", "  default: allow\n  bogus: 1"},
		{"class", "      catalog: region-only", "      catalog: region-only\n      bogus: 1"},
		{"match", "        sources:\n          - namespace: eu-customers", "        bogus: []\n        sources:\n          - namespace: eu-customers"},
		{"service matcher", "{namespace: secrets, name: vault, labels: {tier: gold}}", "{namespace: secrets, name: vault, labels: {tier: gold}, bogus: 1}"},
		{"source matcher", "{cluster: eu-west-9}", "{cluster: eu-west-9, bogus: 1}"},
		{"header matcher", "{name: x-trace-residency}", "{name: x-trace-residency, bogus: 1}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(full, tc.at) {
				t.Fatalf("fixture lacks %q", tc.at)
			}
			doc := strings.Replace(full, tc.at, tc.insert, 1)
			if _, err := sovereignty.Compile("p.yaml", []byte(doc)); err == nil || !strings.Contains(err.Error(), "bogus: unknown key") {
				t.Errorf("parser: %v", err)
			}
			if err := validate(schema, schema, yamlToJSON(t, doc), "$"); err == nil || !strings.Contains(err.Error(), "unknown key bogus") {
				t.Errorf("schema: %v", err)
			}
		})
	}
}

// TestSchemaRefusesWhatTheParserRefuses: an unreadable value the parser
// refuses, and unreadable on a class without header matchers, fail both.
func TestSchemaRefusesWhatTheParserRefuses(t *testing.T) {
	raw, err := os.ReadFile("../docs/residency.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	for _, tc := range []struct{ name, at, insert, parser, schema string }{
		{"unreadable value", "          - {name: x-trace-residency}\n", "          - {name: x-trace-residency}\n      unreadable: deny\n",
			`unreadable: expected restrict or allow, found "deny"`, "deny not in [restrict allow]"},
		{"unreadable without header matchers", "          - {region: eu-central, namespace: keys}\n", "          - {region: eu-central, namespace: keys}\n      unreadable: allow\n",
			"spec.classes[1].unreadable: unreadable says what flows the gateway cannot read get", "$.spec.classes[1].unreadable given: $.spec.classes[1].match: headers required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(decisionPolicy, tc.at) {
				t.Fatalf("fixture lacks %q", tc.at)
			}
			doc := strings.Replace(decisionPolicy, tc.at, tc.insert, 1)
			if _, err := sovereignty.Compile("p.yaml", []byte(doc)); err == nil || !strings.Contains(err.Error(), tc.parser) {
				t.Errorf("parser: %v", err)
			}
			if err := validate(schema, schema, yamlToJSON(t, doc), "$"); err == nil || !strings.Contains(err.Error(), tc.schema) {
				t.Errorf("schema: %v", err)
			}
		})
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// yamlToJSON decodes YAML into the values encoding/json would produce.
func yamlToJSON(t *testing.T, doc string) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
