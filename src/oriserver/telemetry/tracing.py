"""Optional OpenTelemetry tracing: a SERVER span per RPC, exported as OTEL_* variables say.

Imported only when tracing is switched on (an OTLP endpoint or a traces exporter is
configured) and the ``otel`` extra is installed; otherwise nothing here is loaded.
The SDK reads the standard variables itself (OTEL_SERVICE_NAME,
OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_*, OTEL_BSP_*).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

log = logging.getLogger("oriserver.tracing")

# gRPC status names that mean the server, not the caller, failed (OpenTelemetry's rule).
SERVER_ERRORS = frozenset(
    {"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}
)


class SpanHandle:
    def __init__(self, span: Any, trace_id: str) -> None:
        self._span = span
        self.trace_id = trace_id

    def end(self, code: str) -> None:
        from opentelemetry.trace import Status, StatusCode

        self._span.set_attribute("rpc.grpc.status_code_name", code)
        if code in SERVER_ERRORS:
            self._span.set_status(Status(StatusCode.ERROR, code))
        self._span.end()


class RpcTracer:
    """Starts and ends one span per RPC, continuing the caller's trace if it sent one."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry import propagate, trace

        self._provider = provider
        self._tracer = provider.get_tracer("oriserver")
        self._extract = propagate.extract
        self._server_kind = trace.SpanKind.SERVER

    def begin(self, method: str, metadata: Iterable[Any] | None, peer: str) -> SpanHandle:
        carrier: Mapping[str, str] = {
            k: v for k, v in (metadata or ()) if isinstance(v, str)
        }  # W3C traceparent
        service, _, name = method.strip("/").partition("/")
        span = self._tracer.start_span(
            method.strip("/"),
            context=self._extract(carrier),
            kind=self._server_kind,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": service,
                "rpc.method": name,
                "net.peer.name": peer,
            },
        )
        return SpanHandle(span, format(span.get_span_context().trace_id, "032x"))

    def shutdown(self) -> None:
        """Export what is still batched; called once at shutdown."""
        self._provider.shutdown()


def create_tracer(exporter_name: str) -> RpcTracer | None:
    """Set up the SDK, or return None (with a warning) when the otel extra is missing."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning("OTEL_* tracing variables are set but the otel extra is not installed "
                    "(pip install 'oriserver[otel]'); tracing is off")  # fmt: skip
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": "oriserver"}))
    if exporter_name == "console":
        exporter: Any = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    log.info("tracing on", extra={"exporter": exporter_name})
    return RpcTracer(provider)
