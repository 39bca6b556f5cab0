"""Builds the grpc.aio server: services, health, reflection, interceptors, port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import _async as health_aio  # public as health.aio; the stubs lack that alias
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from oriserver._generated import mathhelper_pb2, mathhelper_pb2_grpc
from oriserver._generated.ori.events.v1 import events_pb2, events_pb2_grpc
from oriserver.config.transport import TlsSettings
from oriserver.rpc.credentials import server_credentials
from oriserver.rpc.mathhelper import MathHelperServicer

MATHHELPER_SERVICE = mathhelper_pb2.DESCRIPTOR.services_by_name["MathHelper"].full_name
EVENTS_SERVICE = events_pb2.DESCRIPTOR.services_by_name["EventsService"].full_name


class BindError(Exception):
    """The server could not listen on the configured address."""


@dataclass
class ServerParts:
    """What the composition root hands the factory."""

    mathhelper: MathHelperServicer
    events: events_pb2_grpc.EventsServiceServicer | None = None
    interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = ()
    reflection: bool = True
    options: Sequence[tuple[str, int | str]] = ()
    # Off unless worker processes share the port on purpose: with it on, a second
    # server started on a busy port would silently take half of its connections.
    reuse_port: bool = False


@dataclass
class BuiltServer:
    server: grpc.aio.Server
    health: health_aio.HealthServicer
    port: int
    services: tuple[str, ...]


def create_server(parts: ServerParts, address: str, tls: TlsSettings | None = None) -> BuiltServer:
    """Create (but do not start) the server; must run inside the event loop."""
    options = [*parts.options, ("grpc.so_reuseport", int(parts.reuse_port))]
    # The parse guard goes last, nearest the handlers, so the other interceptors see
    # an unparseable request as the INTERNAL status it gets.
    interceptors = [*parts.interceptors, RequestParseGuard()]
    server = grpc.aio.server(interceptors=interceptors, options=options)
    mathhelper_pb2_grpc.add_MathHelperServicer_to_server(parts.mathhelper, server)
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    services: tuple[str, ...] = (MATHHELPER_SERVICE,)
    if parts.events is not None:
        events_pb2_grpc.add_EventsServiceServicer_to_server(parts.events, server)
        services = (*services, EVENTS_SERVICE)
    if parts.reflection:
        reflection.enable_server_reflection(
            (*services, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
    try:
        if tls is not None and tls.enabled:
            port = server.add_secure_port(address, server_credentials(tls))
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as error:
        raise BindError(f"cannot listen on {address}: {error}") from None
    if port == 0:
        raise BindError(f"cannot listen on {address}")
    return BuiltServer(server, health_servicer, port, services)


async def set_serving(built: BuiltServer, serving: bool) -> None:
    """Set overall health and every service's health at once."""
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", *built.services):
        await built.health.set(name, status)


async def set_service_serving(built: BuiltServer, service: str, serving: bool) -> None:
    """Report one service's health, e.g. the events API while its database is unreachable."""
    if service in built.services:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await built.health.set(service, status)


# --- Unparseable requests -------------------------------------------------------
# grpc.aio answers a request whose bytes are not a valid message with UNKNOWN, puts
# the Python exception type in the details and logs a traceback at ERROR: any client
# could flood the logs that way. grpc-go (and so the Go server) answers INTERNAL.

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
        result = behavior(request, context)
        if hasattr(result, "__aiter__"):
            async for response in result:
                yield response
        else:
            await result

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
