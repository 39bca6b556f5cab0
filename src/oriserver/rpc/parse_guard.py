"""Answers requests whose bytes do not parse with INTERNAL, without a traceback.

grpc.aio answers a request whose bytes are not a valid message with UNKNOWN, puts
the Python exception type in the details and logs a traceback at ERROR: any client
could flood the logs that way. grpc-go (and so the Go server) answers INTERNAL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from oriserver.rpc.wrapping import responses

UNPARSEABLE_DETAILS = "grpc: error unmarshalling request"

if TYPE_CHECKING:
    _InterceptorBase = grpc.aio.ServerInterceptor[Any, Any]
else:
    _InterceptorBase = grpc.aio.ServerInterceptor


class _Unparseable:
    """Stands in for a request whose bytes did not parse."""


_UNPARSEABLE = _Unparseable()


def _tolerant(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:  # noqa: BLE001 - every parse failure gets the one status below
            return _UNPARSEABLE

    return parse


async def _refuse(context: grpc.aio.ServicerContext[Any, Any]) -> None:
    await context.abort(grpc.StatusCode.INTERNAL, UNPARSEABLE_DETAILS)


def _guard_unary(behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if request is _UNPARSEABLE:
            await _refuse(context)
        return await behavior(request, context)

    return guarded


def _guard_streaming(behavior: Callable[..., Any], streamed_requests: bool) -> Callable[..., Any]:
    async def checked(
        requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        async for request in requests:
            if request is _UNPARSEABLE:
                await _refuse(context)
            yield request

    async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if streamed_requests:
            request = checked(request, context)
        elif request is _UNPARSEABLE:
            await _refuse(context)
        async for response in responses(behavior(request, context)):
            yield response

    return guarded


def _guard(handler: Any) -> Any:
    parse = _tolerant(handler.request_deserializer)
    serialize = handler.response_serializer
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _guard_unary(handler.unary_unary), parse, serialize
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _guard_streaming(handler.unary_stream, streamed_requests=False), parse, serialize
        )
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            _guard_streaming(handler.stream_stream, streamed_requests=True), parse, serialize
        )
    return handler  # client streaming: no such method here


class RequestParseGuard(_InterceptorBase):
    """Answers requests that do not parse with INTERNAL, without a traceback."""

    def __init__(self) -> None:
        # One wrapped handler per method, so interceptors that cache by handler see a stable one.
        self._cache: dict[str, tuple[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        cached = self._cache.get(handler_call_details.method)
        if cached is None or cached[0] is not handler:
            cached = (handler, _guard(handler))
            self._cache[handler_call_details.method] = cached
        return cached[1]
