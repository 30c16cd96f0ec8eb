// Package tracing builds feedbackd's OpenTelemetry tracer from the standard
// OTEL_* environment variables and carries W3C trace context (traceparent,
// tracestate) in Kafka record headers.
//
// Tracing is off unless the environment turns it on (Enabled says how);
// off, New returns a nil *Provider and the pipeline makes no spans at all.
// On, spans are batched and exported with OTLP over HTTP (protobuf); the
// exporter and the SDK read the rest of the standard variables themselves:
// OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _HEADERS, _TIMEOUT, _COMPRESSION,
// _CERTIFICATE, _INSECURE, OTEL_TRACES_SAMPLER and _ARG, OTEL_BSP_*,
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Scope is the instrumentation scope of feedbackd's spans.
const Scope = "github.com/feedbackd/feedbackd"

// ServiceName is service.name unless OTEL_SERVICE_NAME (or service.name in
// OTEL_RESOURCE_ATTRIBUTES) says otherwise.
const ServiceName = "feedbackd"

// Enabled reports whether the environment read through getenv turns
// tracing on. The rule, in order:
//
//   - OTEL_SDK_DISABLED=true: off, whatever else is set;
//   - OTEL_TRACES_EXPORTER=none: off; =otlp: on; any other value is an
//     error (only OTLP is built in);
//   - OTEL_TRACES_EXPORTER unset: on if OTEL_EXPORTER_OTLP_ENDPOINT or
//     OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, else off. (The
//     specification's default exporter is otlp; feedbackd's is none, so
//     that nothing is sent to localhost:4318 unasked.)
//
// On, OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL must be http/protobuf or unset:
// grpc is refused with an error rather than sent to the wrong port.
func Enabled(getenv func(string) string) (bool, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false, nil
	}
	on := getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	switch exp := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))); exp {
	case "":
	case "none":
		return false, nil
	case "otlp":
		on = true
	default:
		return false, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: feedbackd exports traces with otlp only (or none)", exp)
	}
	if !on {
		return false, nil
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		switch p := strings.TrimSpace(getenv(name)); p {
		case "", "http/protobuf":
		default:
			return false, fmt.Errorf("%s=%q: feedbackd exports OTLP over HTTP only: use http/protobuf (the collector's port 4318)", name, p)
		}
	}
	return true, nil
}

// Provider is the tracer provider tracing built. It is safe for concurrent
// use.
type Provider struct {
	tp       *sdktrace.TracerProvider
	endpoint string
}

// Options configure New.
type Options struct {
	// Getenv reads the on/off rule's variables (Enabled); nil: os.Getenv.
	// The SDK and the exporter read the others from the process's
	// environment themselves.
	Getenv  func(string) string
	Version string // service.version
}

// New builds the provider the environment asks for: nil (and no error)
// when tracing is off. The exporter connects lazily: a collector that is
// down costs dropped spans (reported through otel's error handler), never
// a delivery.
func New(ctx context.Context, opts Options) (*Provider, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	on, err := Enabled(getenv)
	if err != nil || !on {
		return nil, err
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	// Later options win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
	// override the defaults.
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(semconv.ServiceName(ServiceName), semconv.ServiceVersion(opts.Version)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	// The sampler comes from OTEL_TRACES_SAMPLER and _ARG (default
	// parentbased_always_on): the SDK reads them when none is given.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Provider{tp: tp, endpoint: endpoint(getenv)}, nil
}

// Tracer is feedbackd's tracer.
func (p *Provider) Tracer() trace.Tracer { return p.tp.Tracer(Scope) }

// Endpoint is where spans go, scheme and host only (never a path, query or
// credentials), for the start-up log line.
func (p *Provider) Endpoint() string { return p.endpoint }

// Shutdown exports the spans still buffered and stops the exporter; ctx
// bounds how long that may take. Spans ended after it are dropped.
func (p *Provider) Shutdown(ctx context.Context) error {
	if err := p.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: flushing spans: %w", err)
	}
	return nil
}

// endpoint is the OTLP endpoint's scheme and host, or the exporter's
// default when none is set.
func endpoint(getenv func(string) string) string {
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		if v := getenv(name); v != "" {
			u, err := url.Parse(v)
			if err != nil || u.Host == "" {
				return "(unparsable " + name + ")"
			}
			return u.Scheme + "://" + u.Host
		}
	}
	return "localhost:4318"
}
