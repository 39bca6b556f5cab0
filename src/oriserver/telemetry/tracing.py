"""Optional OpenTelemetry tracing: a SERVER span per RPC, exported as OTEL_* variables say.

Imported only when tracing is switched on (an OTLP endpoint or a traces exporter is
configured) and the ``otel`` extra is installed; otherwise nothing here is loaded.
The SDK reads the standard variables itself (OTEL_SERVICE_NAME,
OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_*, OTEL_BSP_*); the service is called
``oriserver`` only when neither variable names it.

Spans follow the OpenTelemetry semantic conventions for gRPC server spans, v1.44
(the version the tracer's schema URL names): span name and ``rpc.method`` are the
fully-qualified ``Service/Method``, ``rpc.response.status_code`` is the status name,
``error.type`` is set on the statuses that mean the server failed, and the caller's
address is ``network.peer.address`` and ``network.peer.port``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

from oriserver import __version__

log = logging.getLogger("oriserver.tracing")

SCHEMA_URL = "https://opentelemetry.io/schemas/1.44.0"
DEFAULT_SERVICE_NAME = "oriserver"

# gRPC status names that mean the server, not the caller, failed (OpenTelemetry's rule).
SERVER_ERRORS = frozenset(
    {"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}
)


def peer_attributes(peer: str) -> dict[str, str | int]:
    """network.peer.* from a gRPC peer string: 'ipv4:10.0.0.7:5123', 'ipv6:[::1]:5123',
    'unix:/run/ori.sock'. Anything else (an empty or unknown transport) gives no attributes."""
    transport, _, address = unquote(peer).partition(":")
    if transport == "unix":
        return {"network.peer.address": address} if address else {}
    if transport not in ("ipv4", "ipv6"):
        return {}
    host, _, port = address.rpartition(":")
    attributes: dict[str, str | int] = {"network.peer.address": host.strip("[]")}
    if port.isdigit():
        attributes["network.peer.port"] = int(port)
    return attributes


class SpanHandle:
    def __init__(self, span: Any, trace_id: str) -> None:
        self._span = span
        self.trace_id = trace_id

    def end(self, code: str) -> None:
        from opentelemetry.trace import Status, StatusCode

        self._span.set_attribute("rpc.response.status_code", code)
        if code in SERVER_ERRORS:
            self._span.set_attribute("error.type", code)
            self._span.set_status(Status(StatusCode.ERROR, code))
        self._span.end()


class RpcTracer:
    """Starts and ends one span per RPC, continuing the caller's trace if it sent one."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry import propagate, trace

        self._provider = provider
        self._tracer = provider.get_tracer("oriserver", __version__, schema_url=SCHEMA_URL)
        self._extract = propagate.extract
        self._server_kind = trace.SpanKind.SERVER

    def begin(self, method: str, metadata: Iterable[Any] | None, peer: str) -> SpanHandle:
        carrier: Mapping[str, str] = {
            k: v for k, v in (metadata or ()) if isinstance(v, str)
        }  # W3C traceparent
        qualified = method.strip("/")  # only registered methods are wrapped, so never _OTHER
        span = self._tracer.start_span(
            qualified,
            context=self._extract(carrier),
            kind=self._server_kind,
            attributes={
                "rpc.system.name": "grpc",
                "rpc.method": qualified,
                **peer_attributes(peer),
            },
        )
        return SpanHandle(span, format(span.get_span_context().trace_id, "032x"))

    def shutdown(self) -> None:
        """Export what is still batched; called once at shutdown."""
        self._provider.shutdown()


def create_tracer(exporter_name: str) -> RpcTracer | None:
    """Set up the SDK, or return None (with a warning) when the otel extra is missing."""
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning("OTEL_* tracing variables are set but the otel extra is not installed "
                    "(pip install 'oriserver[otel]'); tracing is off")  # fmt: skip
        return None
    # Attributes given to create() override the environment's, so the default is passed
    # only when OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES both leave the name out.
    named = SERVICE_NAME in OTELResourceDetector().detect().attributes
    resource = Resource.create({} if named else {SERVICE_NAME: DEFAULT_SERVICE_NAME})
    provider = TracerProvider(resource=resource)
    if exporter_name == "console":
        exporter: Any = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    log.info("tracing on", extra={"exporter": exporter_name})
    return RpcTracer(provider)
