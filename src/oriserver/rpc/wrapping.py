"""A base for interceptors that wrap every method handler, whatever its streaming kind.

grpc's interceptor API hands over a method handler with one of four behaviours
set; rebuilding it around a wrapper is the same for every interceptor here, so
it lives once. Wrapped handlers are cached per method.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Behavior = Callable[..., Any]

if TYPE_CHECKING:
    # grpc-stubs makes the interceptor generic; at run time the class is not subscriptable.
    _InterceptorBase = grpc.aio.ServerInterceptor[Any, Any]
else:
    _InterceptorBase = grpc.aio.ServerInterceptor


async def responses(result: Any) -> AsyncIterator[Any]:
    """What a streaming behaviour produces, whether it yields or writes with context.write()."""
    if hasattr(result, "__aiter__"):
        async for response in result:
            yield response
    else:
        await result


class WrappingInterceptor(_InterceptorBase):
    def __init__(self) -> None:
        self._cache: dict[tuple[str, int], Handler] = {}

    @abstractmethod
    def wrap_unary(self, behavior: Behavior, method: str) -> Behavior:
        """Wrap a behaviour that returns one response (unary or client-streaming)."""

    @abstractmethod
    def wrap_streaming(self, behavior: Behavior, method: str) -> Behavior:
        """Wrap a behaviour that streams responses (an async generator wrapper)."""

    # The stubs say continuation never returns None; grpc does, for unknown methods.
    async def intercept_service(  # type: ignore[override]
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        key = (handler_call_details.method, id(handler))
        wrapped = self._cache.get(key)
        if wrapped is None:
            wrapped = self._rewrap(handler, handler_call_details.method)
            self._cache[key] = wrapped
        return wrapped

    def _rewrap(self, handler: Handler, method: str) -> Handler:
        kinds = (
            (handler.unary_unary, grpc.unary_unary_rpc_method_handler, self.wrap_unary),
            (handler.unary_stream, grpc.unary_stream_rpc_method_handler, self.wrap_streaming),
            (handler.stream_unary, grpc.stream_unary_rpc_method_handler, self.wrap_unary),
            (handler.stream_stream, grpc.stream_stream_rpc_method_handler, self.wrap_streaming),
        )
        for behavior, build, wrap in kinds:
            if behavior is not None:
                return build(
                    wrap(behavior, method),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return handler
