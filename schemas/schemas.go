// Package schemas holds the JSON Schemas that define feedbackd's public data:
// the feedback event senders produce, the webhook body receivers get and the
// webhook config the admin API takes. The files are the contract; the Go code
// compiles them at start-up rather than restating them.
package schemas

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// File names of the embedded schemas.
const (
	Event            = "feedback-event.schema.json"
	DeliveredPayload = "delivered-payload.schema.json"
	WebhookConfig    = "webhook-config.schema.json"
	Outcome          = "outcome.schema.json"
)

//go:embed *.schema.json
var files embed.FS

// Compile compiles one of the embedded schemas. It fails only if the embedded
// file is broken, which a test rules out.
func Compile(name string) (*jsonschema.Schema, error) {
	raw, err := files.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("schema %s: %w", name, err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("schema %s: %w", name, err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(name, doc); err != nil {
		return nil, fmt.Errorf("schema %s: %w", name, err)
	}
	return c.Compile(name)
}

// MustCompile is Compile for package-level variables.
func MustCompile(name string) *jsonschema.Schema {
	s, err := Compile(name)
	if err != nil {
		panic(err)
	}
	return s
}

var printer = message.NewPrinter(language.English)

// Explain reduces a validation error to the dotted path of the first field
// at fault, the schema keyword that failed ("required", "pattern", ...) and
// a short message for people. A missing required field and an unknown field
// are named themselves.
func Explain(err error) (field, keyword, msg string) {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return "", "", err.Error()
	}
	// Descend along first causes; a propertyNames failure validates the
	// name on its own, so its leaf has no location: keep the parent's.
	path := ve.InstanceLocation
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
		if len(ve.InstanceLocation) > 0 {
			path = ve.InstanceLocation
		}
	}
	path = slices.Clone(path)
	msg = ve.ErrorKind.LocalizedString(printer)
	if kw := ve.ErrorKind.KeywordPath(); len(kw) > 0 {
		keyword = kw[len(kw)-1]
	}
	switch k := ve.ErrorKind.(type) {
	case *kind.Required:
		path, msg = append(path, k.Missing[0]), "required field is missing"
	case *kind.AdditionalProperties:
		path, msg = append(path, k.Properties[0]), "unknown field"
	}
	return strings.Join(path, "."), keyword, msg
}
