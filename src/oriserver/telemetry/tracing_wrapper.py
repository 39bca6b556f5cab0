"""Puts each RPC in an OpenTelemetry span and makes its trace id current.

The outermost handler wrapper, present only when tracing is on, so the logging wrapper and the
events of the call see the trace id through ``current_trace_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc

from oriserver.rpc.wrapping import Behavior, Deserializer, responses
from oriserver.telemetry.trace_context import current_trace_id
from oriserver.telemetry.tracing import RpcTracer


def _code(context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None) -> str:
    if isinstance(error, asyncio.CancelledError):
        return "CANCELLED"
    code: object = context.code()  # None until a handler sets or aborts with a code
    if isinstance(code, grpc.StatusCode):
        return code.name
    return "OK" if error is None else "UNKNOWN"


class TracingWrapper:
    def __init__(self, tracer: RpcTracer) -> None:
        self._tracer = tracer

    def wrap_deserializer(self, deserializer: Deserializer) -> Deserializer:
        return deserializer

    @contextlib.contextmanager
    def _span(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> Iterator[None]:
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
        async def traced(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            with self._span(method, context):
                return await behavior(request, context)

        return traced

    def wrap_streaming(self, behavior: Behavior, method: str) -> Behavior:
        async def traced(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            with self._span(method, context):
                async for response in responses(behavior(request, context)):
                    yield response

        return traced
