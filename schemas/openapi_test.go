package schemas

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The OpenAPI document holds a copy of the webhook config schema (a served
// document cannot $ref a file next to it): the copy must be the schema,
// with $defs moved to components.
func TestOpenAPIConfigSchemaIsTheSchema(t *testing.T) {
	var doc struct {
		OpenAPI    string `json:"openapi"`
		Components struct {
			Schemas map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatalf("%s: %v", OpenAPIFile, err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("%s: openapi %q, want 3.1.0", OpenAPIFile, doc.OpenAPI)
	}
	raw, err := files.ReadFile(WebhookConfig)
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	// Where the copy keeps what the schema has in $defs.
	moved := map[string]string{"tenantId": "TenantId"}
	defs, _ := schema["$defs"].(map[string]any)
	for def, name := range moved {
		if !reflect.DeepEqual(doc.Components.Schemas[name], defs[def]) {
			t.Errorf("components.schemas.%s differs from $defs.%s of %s", name, def, WebhookConfig)
		}
	}
	if len(defs) != len(moved) {
		t.Errorf("%s has $defs %v: move each into components.schemas of %s and name it here", WebhookConfig, slices.Sorted(maps.Keys(defs)), OpenAPIFile)
	}
	want := rewriteRefs(schema, moved).(map[string]any)
	delete(want, "$schema")
	delete(want, "$id")
	delete(want, "$defs")
	if got := doc.Components.Schemas["WebhookConfigWrite"]; !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", "  ")
		w, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("components.schemas.WebhookConfigWrite of %s is not %s: copy it again\n--- copy:\n%s\n--- schema:\n%s", OpenAPIFile, WebhookConfig, g, w)
	}
}

func rewriteRefs(v any, moved map[string]string) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			if s, ok := e.(string); ok && k == "$ref" {
				if def, ok := strings.CutPrefix(s, "#/$defs/"); ok {
					e = "#/components/schemas/" + moved[def]
				}
			}
			out[k] = rewriteRefs(e, moved)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = rewriteRefs(e, moved)
		}
		return out
	}
	return v
}
