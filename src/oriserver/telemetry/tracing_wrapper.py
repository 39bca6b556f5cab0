"""Puts each RPC in an OpenTelemetry span and makes its trace id current.

The outermost handler wrapper, present only when tracing is on, so the logging wrapper and the
events of the call see the trace id through ``current_trace_id``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from oriserver.rpc.wrapping import Behavior, Deserializer, is_non_blocking
from oriserver.telemetry.trace_context import current_trace_id
from oriserver.telemetry.tracing import RpcTracer


def _code(context: grpc.ServicerContext, error: BaseException | None) -> str:
    if isinstance(error, GeneratorExit):
        return "CANCELLED"
    code: object = context.code()  # type: ignore[attr-defined]  # None until set or aborted
    if isinstance(code, grpc.StatusCode):
        return code.name
    return "OK" if error is None else "UNKNOWN"


class TracingWrapper:
    def __init__(self, tracer: RpcTracer) -> None:
        self._tracer = tracer

    def wrap_deserializer(self, deserializer: Deserializer) -> Deserializer:
        return deserializer

    @contextlib.contextmanager
    def _span(self, method: str, context: grpc.ServicerContext) -> Iterator[None]:
        """The call's span, current (with its trace id) while the handler runs."""
        span = self._tracer.begin(method, context.invocation_metadata(), context.peer())
        token = current_trace_id.set(span.trace_id)
        error: BaseException | None = None
        try:
            yield
        except BaseException as raised:
            error = raised
            raise
        finally:
            span.end(_code(context, error))
            current_trace_id.reset(token)

    def wrap_unary(self, behavior: Behavior, method: str) -> Behavior:
        def traced(request: Any, context: grpc.ServicerContext) -> Any:
            with self._span(method, context):
                return behavior(request, context)

        return traced

    def wrap_streaming(self, behavior: Behavior, method: str) -> Behavior:
        if is_non_blocking(behavior):
            # The span covers the handler's set-up; the stream goes on through its callback.
            def traced_non_blocking(
                request: Any,
                context: grpc.ServicerContext,
                send_response_callback: Callable[[Any], None] | None = None,
            ) -> Any:
                with self._span(method, context):
                    if send_response_callback is None:
                        return behavior(request, context)
                    return behavior(request, context, send_response_callback=send_response_callback)

            return traced_non_blocking

        def traced(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            with self._span(method, context):
                yield from behavior(request, context)

        return traced
