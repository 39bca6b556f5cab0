"""Builds the grpc.aio server: services, health, reflection, handler wrappers, port."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import _async as health_aio  # public as health.aio; the stubs lack that alias
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import _async as reflection_aio  # public as reflection.aio
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from oriserver._generated import mathhelper_pb2, mathhelper_pb2_grpc
from oriserver._generated.ori.events.v1 import events_pb2, events_pb2_grpc
from oriserver.config.transport import TlsSettings
from oriserver.rpc.credentials import server_credentials
from oriserver.rpc.mathhelper import MathHelperServicer
from oriserver.rpc.parse_guard import ParseGuard
from oriserver.rpc.wrapping import HandlerWrapper, WrappingRegistrar

MATHHELPER_SERVICE = mathhelper_pb2.DESCRIPTOR.services_by_name["MathHelper"].full_name
EVENTS_SERVICE = events_pb2.DESCRIPTOR.services_by_name["EventsService"].full_name


class BindError(Exception):
    """The server could not listen on the configured address."""


@dataclass
class ServerParts:
    """What the composition root hands the factory."""

    mathhelper: MathHelperServicer
    events: events_pb2_grpc.EventsServiceServicer | None = None
    wrappers: Sequence[HandlerWrapper] = ()  # outermost first
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
    server = grpc.aio.server(options=options)
    # The parse guard goes innermost, so the other layers see an unparseable request
    # as the INTERNAL status it gets.
    registrar = WrappingRegistrar(server, [*parts.wrappers, ParseGuard()])
    mathhelper_pb2_grpc.add_MathHelperServicer_to_server(parts.mathhelper, registrar)  # type: ignore[arg-type]
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, registrar)
    services: tuple[str, ...] = (MATHHELPER_SERVICE,)
    if parts.events is not None:
        events_pb2_grpc.add_EventsServiceServicer_to_server(parts.events, registrar)  # type: ignore[arg-type]
        services = (*services, EVENTS_SERVICE)
    if parts.reflection:
        names = (*services, health.SERVICE_NAME, reflection.SERVICE_NAME)
        # Registered directly (enable_server_reflection would want the real aio server).
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            reflection_aio.ReflectionServicer(names), registrar
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
