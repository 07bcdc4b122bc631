"""OpenTelemetry in: OTLP traces (and metrics and logs) to calls. See docs/otel.md."""
