"""The composition root: settings in, a running server and its collaborators out.

Nothing here runs at import time; ``build_application`` is called from inside
the event loop by ``oriserver serve`` (once per worker process) and by the
tests, which pass their own settings (port 0) through the same door.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from oriserver.config.settings import Settings
from oriserver.event_system import EventSystem, build_event_system
from oriserver.rpc.access_log import AccessLog
from oriserver.rpc.events_api import EventsServicer
from oriserver.rpc.mathhelper import MathHelperServicer
from oriserver.rpc.observe import ObservingWrapper, RpcObserver
from oriserver.rpc.server import (
    EVENTS_SERVICE,
    BuiltServer,
    ServerParts,
    create_server,
    set_service_serving,
    set_serving,
)
from oriserver.service.calculations import CalculationService
from oriserver.service.recording import NullRecorder, Recorder
from oriserver.telemetry.exposition import MetricsServer, process_registry, serve_metrics
from oriserver.telemetry.metrics import Metrics
from oriserver.telemetry.sampler import Sampler, Sources

if TYPE_CHECKING:
    from oriserver.rpc.wrapping import HandlerWrapper
    from oriserver.telemetry.tracing import RpcTracer

log = logging.getLogger("oriserver")


@dataclass(frozen=True)
class Runtime:
    """How this process runs: alone, or as one of several workers sharing the port."""

    worker: int | None = None
    # "local": this process serves /metrics; "shared": a supervisor serves the sum of
    # all workers' values; "off": ORI_METRICS_PORT=0.
    metrics: str = "local"

    @property
    def reuse_port(self) -> bool:
        return self.worker is not None


@dataclass
class Application:
    """A built server with the lifecycle the entrypoint drives."""

    settings: Settings
    built: BuiltServer
    recorder: Recorder
    observing: ObservingWrapper
    events: EventSystem | None = None
    sampler: Sampler | None = None
    metrics_server: MetricsServer | None = None
    tracer: RpcTracer | None = None
    access_log: AccessLog | None = None
    stopping: bool = field(default=False)
    lost_events: int = 0

    @property
    def port(self) -> int:
        return self.built.port

    async def start(self) -> None:
        if self.access_log is not None:
            self.access_log.start()
        if self.events is not None:
            self.events.start()
        if self.sampler is not None:
            self.sampler.start()
        await self.built.server.start()
        await set_serving(self.built, serving=True)

    async def stop(self, grace: float | None = None) -> int:
        """NOT_SERVING, refuse new calls, let in-flight ones finish, then flush the events.

        Returns how many events could not be written (0 unless the database stayed
        unreachable for the whole flush timeout)."""
        if self.stopping:
            return self.lost_events
        self.stopping = True
        grace = self.settings.shutdown_grace_s if grace is None else grace
        await set_serving(self.built, serving=False)
        # Give Watch streams a moment to deliver NOT_SERVING before they are ended.
        await asyncio.sleep(0.1)
        self.observing.close_streams()
        await self.built.server.stop(grace)
        if self.events is not None:
            self.lost_events = await self.events.stop(self.settings.events.shutdown_flush_s)
            if self.lost_events:
                log.error(
                    "events lost at shutdown: the database stayed unreachable",
                    extra={"lost_events": self.lost_events},
                )
        if self.sampler is not None:
            await self.sampler.stop()
        if self.metrics_server is not None:
            await asyncio.to_thread(self.metrics_server.stop)
        if self.tracer is not None:
            await asyncio.to_thread(self.tracer.shutdown)
        if self.access_log is not None:
            await self.access_log.stop()
        return self.lost_events


def build_application(settings: Settings, runtime: Runtime | None = None) -> Application:
    """Wire the real adapters for these settings; call inside the running event loop."""
    runtime = runtime or Runtime(metrics="local" if settings.metrics_port else "off")
    registry = process_registry() if runtime.metrics == "local" else None
    metrics = Metrics(registry) if runtime.metrics != "off" else None
    access_log = _access_log(settings)
    observer = RpcObserver(access_log, metrics)
    observing = ObservingWrapper(observer)
    tracer = _tracer(settings)
    wrappers: list[HandlerWrapper] = [observing]
    if tracer is not None:
        from oriserver.telemetry.tracing_wrapper import TracingWrapper

        wrappers.insert(0, TracingWrapper(tracer))  # outermost: logs see the trace id
    holder: list[BuiltServer] = []

    async def events_available(available: bool) -> None:
        if holder:
            await set_service_serving(holder[0], EVENTS_SERVICE, available)

    events = build_event_system(settings, events_available) if settings.events.enabled else None
    recorder: Recorder = events.recorder if events is not None else NullRecorder()
    events_api = (
        EventsServicer(events.store, events.watcher, settings.api) if events is not None else None
    )
    parts = ServerParts(
        mathhelper=MathHelperServicer(CalculationService(recorder, settings.instance_id)),
        events=events_api,
        wrappers=wrappers,
        reflection=settings.reflection,
        options=settings.transport.limits.grpc_options(),
        reuse_port=runtime.reuse_port,
    )
    built = create_server(parts, settings.bind_address, settings.transport.tls)
    holder.append(built)
    app = Application(settings, built, recorder, observing, events, tracer=tracer)
    app.access_log = access_log
    if metrics is not None:
        app.sampler = Sampler(metrics, _sources(observer, events, events_api))
    if registry is not None:
        app.metrics_server = serve_metrics(
            settings.metrics_listen_host, settings.metrics_port, registry
        )
    return app


def _access_log(settings: Settings) -> AccessLog | None:
    """The per-RPC lines go to stdout like every log, unless switched off or below the level."""
    if not settings.log_rpcs or not logging.getLogger("oriserver.rpc").isEnabledFor(logging.INFO):
        return None
    return AccessLog(sys.stdout, settings.log_format)


def _tracer(settings: Settings) -> RpcTracer | None:
    """OpenTelemetry is imported only here, and only when OTEL_* variables ask for it."""
    if not settings.tracing_exporter:
        return None
    from oriserver.telemetry.tracing import create_tracer

    return create_tracer(settings.tracing_exporter)


def _sources(
    observer: RpcObserver, events: EventSystem | None, api: EventsServicer | None
) -> Sources:
    sources = Sources(in_flight=lambda: observer.in_flight)
    if events is not None and api is not None:
        sources.writer = events.writer
        sources.host = lambda: events.host_stats
        sources.subscriptions = lambda: api.active_subscriptions
    return sources
