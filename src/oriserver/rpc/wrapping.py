"""Wraps every method handler once, when services are registered, instead of on every call.

grpc's server interceptors run their machinery (a handler lookup and a
continuation per interceptor) on every call. The logging, metrics, tracing and
parse-guard layers therefore wrap each method handler once, at registration,
through ``WrappingRegistrar``, which stands in for the server when the
generated ``add_*_to_server`` functions register a service. Each layer then
costs one Python frame per call, on either engine.

Handlers are synchronous (both engines run them on a thread pool). A streaming
handler may be *non-blocking* (grpc's ``experimental_non_blocking``, as the
health servicer's Watch is): it then returns at once and sends its responses
through a callback, holding no thread while it waits. The attributes grpc reads
for that, and for a handler's own thread pool, are carried over to the wrapper.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeAlias

import grpc

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Behavior = Callable[..., Any]
Deserializer = Callable[[bytes], Any]

# Attributes grpcio reads from a behaviour (see grpc/_server.py).
_CARRIED = ("experimental_non_blocking", "experimental_thread_pool")


class HandlerWrapper(Protocol):
    def wrap_unary(self, behavior: Behavior, method: str) -> Behavior:
        """Wrap a behaviour that returns one response (unary or client-streaming)."""

    def wrap_streaming(self, behavior: Behavior, method: str) -> Behavior:
        """Wrap a behaviour that returns an iterator of responses, or (non-blocking)
        sends them through ``send_response_callback``."""

    def wrap_deserializer(self, deserializer: Deserializer) -> Deserializer:
        """Wrap the request parser (return it unchanged to leave parsing alone)."""


def is_non_blocking(behavior: Behavior) -> bool:
    return bool(getattr(behavior, "experimental_non_blocking", False))


def carry_attributes(original: Behavior, wrapped: Behavior) -> Behavior:
    for name in _CARRIED:
        value = getattr(original, name, None)
        if value is not None:
            setattr(wrapped, name, value)
    return wrapped


def wrap_handler(
    handler: Handler,
    method: str,
    wrappers: Sequence[HandlerWrapper],
    stream_pool: ThreadPoolExecutor | None = None,
    unary_pool: ThreadPoolExecutor | None = None,
) -> Handler:
    """The handler inside every wrapper; the first wrapper is the outermost. Streaming
    behaviours that block a thread run on ``stream_pool`` when one is given, unary ones on
    ``unary_pool`` when one is given (else on the server's own pool)."""
    kinds = (
        (handler.unary_unary, grpc.unary_unary_rpc_method_handler, "wrap_unary"),
        (handler.unary_stream, grpc.unary_stream_rpc_method_handler, "wrap_streaming"),
        (handler.stream_unary, grpc.stream_unary_rpc_method_handler, "wrap_unary"),
        (handler.stream_stream, grpc.stream_stream_rpc_method_handler, "wrap_streaming"),
    )
    for original, build, wrap in kinds:
        if original is None:
            continue
        behavior, parse = original, handler.request_deserializer
        for wrapper in reversed(wrappers):
            behavior = carry_attributes(behavior, getattr(wrapper, wrap)(behavior, method))
            if parse is not None:
                parse = wrapper.wrap_deserializer(parse)
        pool = stream_pool if wrap == "wrap_streaming" else unary_pool
        if pool is not None and not is_non_blocking(behavior):
            setattr(behavior, "experimental_thread_pool", pool)  # noqa: B010 - grpc reads it
        return build(
            behavior, request_deserializer=parse, response_serializer=handler.response_serializer
        )
    return handler


class WrappingRegistrar:
    """Passed to ``add_*_to_server`` in place of the server: registers wrapped handlers."""

    def __init__(
        self,
        server: grpc.Server,
        wrappers: Sequence[HandlerWrapper],
        stream_pool: ThreadPoolExecutor | None = None,
        unary_pool: ThreadPoolExecutor | None = None,
    ) -> None:
        self._server = server
        self._wrappers = wrappers
        self._stream_pool = stream_pool
        self._unary_pool = unary_pool

    def add_generic_rpc_handlers(self, handlers: Sequence[Any]) -> None:
        """Ignored: every service registered here also calls add_registered_method_handlers,
        whose wrapped handlers are registered both ways below."""

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Handler]) -> None:
        wrapped = {
            name: wrap_handler(
                handler, f"/{service}/{name}", self._wrappers, self._stream_pool, self._unary_pool
            )
            for name, handler in handlers.items()
        }
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, wrapped),)
        )
        # Missing from grpc-stubs; registered methods skip grpc's generic handler lookup.
        self._server.add_registered_method_handlers(service, wrapped)  # type: ignore[attr-defined]
