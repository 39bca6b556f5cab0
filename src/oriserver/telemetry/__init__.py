"""Telemetry: Prometheus metrics and optional OpenTelemetry tracing."""
