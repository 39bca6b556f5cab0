"""Builds the gRPC server: services, health, reflection, handler wrappers, port, engine."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from oriserver._generated import mathhelper_pb2, mathhelper_pb2_grpc
from oriserver._generated.ori.events.v1 import events_pb2, events_pb2_grpc
from oriserver.config.transport import TlsSettings
from oriserver.rpc.credentials import server_credentials
from oriserver.rpc.engines import EngineServer, create_engine_server
from oriserver.rpc.mathhelper import MathHelperServicer
from oriserver.rpc.parse_guard import ParseGuard
from oriserver.rpc.wrapping import HandlerWrapper, WrappingRegistrar

MATHHELPER_SERVICE = mathhelper_pb2.DESCRIPTOR.services_by_name["MathHelper"].full_name
EVENTS_SERVICE = events_pb2.DESCRIPTOR.services_by_name["EventsService"].full_name

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class BindError(Exception):
    """The server could not listen on the configured address."""


@dataclass
class ServerParts:
    """What the composition root hands the factory."""

    mathhelper: MathHelperServicer
    events: events_pb2_grpc.EventsServiceServicer | None = None
    wrappers: Sequence[HandlerWrapper] = ()  # outermost first
    reflection: bool = True
    options: Sequence[tuple[str, Any]] = ()
    engine: str = "grpcio"
    threads: int = 8
    stream_threads: int = 100
    # Off unless worker processes share the port on purpose: with it on, a second
    # server started on a busy port would silently take half of its connections.
    reuse_port: bool = False


@dataclass
class Health:
    """Each service's status, as the health service reports it (see docs/operating.md)."""

    servicer: health.HealthServicer
    services: tuple[str, ...]
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def set_all(self, serving: bool) -> None:
        """Overall health and every service's at once."""
        with self._lock:
            for name in ("", *self.services):
                self.servicer.set(name, SERVING if serving else NOT_SERVING)

    def set(self, service: str, serving: bool) -> None:
        """One service's health, e.g. the events API while its database is unreachable."""
        if service in self.services:
            with self._lock:
                self.servicer.set(service, SERVING if serving else NOT_SERVING)


@dataclass
class BuiltServer:
    server: grpc.Server
    engine: EngineServer
    health: Health
    port: int


def create_server(parts: ServerParts, address: str, tls: TlsSettings | None = None) -> BuiltServer:
    """Create (but do not start) the server."""
    options = [*parts.options, ("grpc.so_reuseport", int(parts.reuse_port))]
    engine = create_engine_server(
        parts.engine, threads=parts.threads, stream_threads=parts.stream_threads, options=options
    )
    server = engine.server
    # The parse guard goes innermost, so the other layers see an unparseable request
    # as the INVALID_ARGUMENT status it gets.
    wrappers = [*parts.wrappers, ParseGuard()]
    calculations = WrappingRegistrar(server, wrappers, engine.stream_pool)
    mathhelper_pb2_grpc.add_MathHelperServicer_to_server(parts.mathhelper, calculations)  # type: ignore[arg-type]
    # Everything else runs off the calculation threads: a health probe must be answered
    # while sync calls wait for a stalled database, and event-API reads must not hold up
    # calculations (where the engine honours per-handler pools: grpcio does).
    registrar = WrappingRegistrar(server, wrappers, engine.stream_pool, engine.side_pool)
    # Blocking Watch: each watcher holds a stream thread. grpc_health's non-blocking Watch
    # sends its first status while holding the servicer's lock, and grpcio's send waits for
    # the serving thread, which may itself be waiting for that lock to close another Watch:
    # a deadlock seen in the test suite (set_all then hangs a shutdown for good), and
    # upstream as grpc/grpc#43403. The servicer is non-blocking unless told otherwise.
    health_servicer = health.HealthServicer(experimental_non_blocking=False)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, registrar)
    services: tuple[str, ...] = (MATHHELPER_SERVICE,)
    if parts.events is not None:
        events_pb2_grpc.add_EventsServiceServicer_to_server(parts.events, registrar)  # type: ignore[arg-type]
        services = (*services, EVENTS_SERVICE)
    if parts.reflection:
        names = (*services, health.SERVICE_NAME, reflection.SERVICE_NAME)
        # Registered directly (enable_server_reflection would want the real server).
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            reflection.ReflectionServicer(names),
            registrar,
        )
    try:
        if tls is not None and tls.enabled:
            port = server.add_secure_port(address, server_credentials(tls))
        else:
            port = server.add_insecure_port(address)
    except (RuntimeError, OSError, ValueError) as error:
        engine.shutdown_pools()
        raise BindError(f"cannot listen on {address}: {error}") from None
    if port == 0:
        engine.shutdown_pools()
        raise BindError(f"cannot listen on {address}")
    built_health = Health(health_servicer, services)
    return BuiltServer(server, engine, built_health, port)
