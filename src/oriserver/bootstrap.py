"""The composition root: settings in, a server (or an event host) and its collaborators out.

Every process that runs our code is built here: ``build_server`` for each server
process (``oriserver serve``, each worker, the tests), ``build_event_host`` for the
event host, whether it runs in-process or as a child (eventhost/main.py). Nothing
happens at import time; tests pass their own settings (port 0) through the same door.

Start and stop go through one lifecycle: every component is registered with
``_Lifecycle.add(start, stop)`` in the order it must start, and stops in reverse.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from oriserver.config.serving import HostPlacement
from oriserver.config.settings import Settings
from oriserver.eventhost.client import InlineHost, ProcessHost
from oriserver.eventhost.host import EventHost
from oriserver.reactors.watchlist import WatchListReactor
from oriserver.reactors.webhook import WebhookClient
from oriserver.recording.shipper import CallShipper
from oriserver.rpc.access_guard import AccessGuard
from oriserver.rpc.access_log import AccessLog
from oriserver.rpc.engines import end_call
from oriserver.rpc.events_api import EventsServicer
from oriserver.rpc.mathhelper import MathHelperServicer
from oriserver.rpc.observe import ObservingWrapper, RpcObserver
from oriserver.rpc.server import (
    EVENTS_SERVICE,
    MATHHELPER_SERVICE,
    BuiltServer,
    ServerParts,
    create_server,
)
from oriserver.rpc.tokens import TokenFile
from oriserver.service.access import AccessPolicy
from oriserver.service.background import holder_id
from oriserver.service.calculations import CalculationService
from oriserver.service.log_watcher import LogWatcher
from oriserver.service.projection import ProjectionRunner
from oriserver.service.recording import NullRecorder, Recorder
from oriserver.store import migrate
from oriserver.store.factory import open_store
from oriserver.telemetry.exposition import process_registry, serve_metrics
from oriserver.telemetry.metrics import Metrics
from oriserver.telemetry.sampler import Sampler, Sources

if TYPE_CHECKING:
    from oriserver.rpc.wrapping import HandlerWrapper
    from oriserver.telemetry.tracing import RpcTracer

log = logging.getLogger("oriserver")

WATCH_STREAMS = 16  # health Watch streams (each holds a thread), beyond the subscriptions


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


class _Lifecycle:
    """Components in start order; ``close`` stops the started ones in reverse."""

    def __init__(self) -> None:
        self._steps: list[tuple[Callable[[], object], Callable[[], object]]] = []
        self._stack = ExitStack()

    def add(self, start: Callable[[], object], stop: Callable[[], object]) -> None:
        self._steps.append((start, stop))

    def start(self) -> None:
        for start, stop in self._steps:
            start()
            self._stack.callback(stop)

    def close(self) -> None:
        self._stack.close()


@dataclass
class Events:
    """The recording pipeline and the read side of the event store, as wired."""

    shipper: CallShipper
    host: InlineHost | ProcessHost
    watcher: LogWatcher
    api: EventsServicer


@dataclass
class ServerApp:
    """A built server with the lifecycle the entrypoint drives."""

    settings: Settings
    built: BuiltServer
    observing: ObservingWrapper
    lifecycle: _Lifecycle
    events: Events | None = None
    metrics_port: int | None = None  # where this process serves /metrics, if it does
    lost_events: int = 0
    _stopping: bool = field(default=False)

    @property
    def port(self) -> int:
        return self.built.port

    def start(self) -> None:
        self.lifecycle.start()
        self.built.server.start()
        self.built.health.set_all(serving=True)
        if self.events is not None:
            self._availability(None)

    def _availability(self, _: bool | None) -> None:
        """EventsService serves while the store can be read and written; in sync mode,
        MathHelper serves only while calls can be committed (else it can only refuse)."""
        events = self.events
        if events is None or self._stopping:
            return
        writable = events.shipper.stats.available is not False
        readable = events.watcher.available is not False
        self.built.health.set(EVENTS_SERVICE, writable and readable)
        if self.settings.events.sync:
            self.built.health.set(MATHHELPER_SERVICE, writable)

    def stop(self, grace: float | None = None) -> int:
        """NOT_SERVING, refuse new calls, let in-flight ones finish, then flush the events.

        Returns how many events could not be written (0 unless the database stayed
        unreachable for the whole flush timeout)."""
        if self._stopping:
            return self.lost_events
        self._stopping = True
        grace = self.settings.shutdown_grace_s if grace is None else grace
        self.built.health.set_all(serving=False)
        time.sleep(0.1)  # let Watch streams deliver NOT_SERVING before they are ended
        self.observing.close_streams()
        if self.events is not None:
            self.events.watcher.close()
        self.built.server.stop(grace).wait(grace + 5)
        self.built.engine.shutdown_pools()
        self.lifecycle.close()  # flushes the buffered events, then stops the event host
        if self.events is not None:
            self.lost_events = self.events.shipper.stats.lost_at_shutdown
        if self.lost_events:
            log.error(
                "events lost at shutdown: the database stayed unreachable",
                extra={"lost_events": self.lost_events},
            )
        return self.lost_events


def build_event_host(settings: Settings) -> EventHost:
    """The event host for these settings: its own store, the projection, the reactor."""
    events, notify = settings.events, settings.notify
    store = open_store(
        events.database,
        synchronous_full=events.sync,
        timeout_s=events.db_timeout_s,
        schema_revision=migrate.head_revision(),
    )
    holder = holder_id(settings.instance_id)
    projection = ProjectionRunner(store, holder, events.projection_interval_s)
    reactor = None
    if notify.watch_list:
        webhook = None
        if notify.webhook_url:
            webhook = WebhookClient(
                notify.webhook_url,
                timeout_s=notify.webhook_timeout_s,
                max_attempts=notify.webhook_max_attempts,
            )
        reactor = WatchListReactor(
            store, holder, events.projection_interval_s, notify.watch_list, webhook
        )
    return EventHost(store, settings.instance_id, projection, reactor)


def build_host_client(settings: Settings) -> InlineHost | ProcessHost:
    """The door to the event host: a child process, or the host in this process."""
    if settings.serving.event_host is HostPlacement.PROCESS:
        return ProcessHost(settings)
    return InlineHost(build_event_host(settings))


def build_server(settings: Settings, runtime: Runtime | None = None) -> ServerApp:
    """Wire the real adapters for these settings (nothing starts until ``start``)."""
    runtime = runtime or Runtime(metrics="local" if settings.metrics_port else "off")
    lifecycle = _Lifecycle()
    registry = process_registry() if runtime.metrics == "local" else None
    metrics = Metrics(registry) if runtime.metrics != "off" else None
    access_log = _access_log(settings)
    if access_log is not None:
        lifecycle.add(access_log.start, access_log.stop)
    observer = RpcObserver(access_log, metrics)
    observing = ObservingWrapper(observer, end_call)
    # Inside the observer, so the per-RPC line and metrics see a refusal's status.
    wrappers: list[HandlerWrapper] = [observing, _access_guard(settings, metrics)]
    tracer = _tracer(settings)
    if tracer is not None:
        from oriserver.telemetry.tracing_wrapper import TracingWrapper

        wrappers.insert(0, TracingWrapper(tracer))  # outermost: logs see the trace id
        lifecycle.add(lambda: None, tracer.shutdown)
    holder: list[ServerApp] = []
    # The app does not exist yet: the lambda looks it up when the store first reports.
    events = _build_events(settings, lifecycle, lambda ok: holder[0]._availability(ok))  # noqa: PLW0108
    recorder: Recorder = events.shipper if events is not None else NullRecorder()
    parts = ServerParts(
        mathhelper=MathHelperServicer(CalculationService(recorder)),
        events=events.api if events is not None else None,
        wrappers=wrappers,
        reflection=settings.reflection,
        options=settings.transport.limits.grpc_options(native=settings.serving.native),
        engine=settings.serving.engine.value,
        threads=settings.serving.threads,
        stream_threads=settings.api.max_subscriptions + WATCH_STREAMS,
        reuse_port=runtime.reuse_port,
    )
    built = create_server(parts, settings.bind_address, settings.transport.tls)
    built.health.set_all(serving=False)
    if metrics is not None:
        sampler = Sampler(metrics, _sources(observer, events))
        lifecycle.add(sampler.start, sampler.stop)
    if registry is not None:
        metrics_server = serve_metrics(
            settings.metrics_listen_host, settings.metrics_port, registry
        )
        lifecycle.add(lambda: None, metrics_server.stop)
    app = ServerApp(settings, built, observing, lifecycle, events)
    if registry is not None:
        app.metrics_port = metrics_server.port
    holder.append(app)
    if events is not None:
        _log_ready(settings)
    return app


def _build_events(
    settings: Settings, lifecycle: _Lifecycle, on_availability: Callable[[bool], None]
) -> Events | None:
    events = settings.events
    if not events.enabled:
        return None
    if events.auto_migrate:
        migrate.upgrade(events.database)
        log.info("schema migrated", extra={"revision": migrate.head_revision()})
    reads = open_store(events.database, timeout_s=events.db_timeout_s)
    lifecycle.add(lambda: None, reads.close)
    host = build_host_client(settings)
    lifecycle.add(lambda: None, host.close)
    watcher = LogWatcher(reads, settings.api.poll_interval_s, on_availability)
    shipper = CallShipper(
        host,
        batch_events=events.batch_size,
        flush_interval_s=events.flush_interval_s,
        capacity_events=events.buffer_size,
        sync=events.sync,
        timeout_s=events.db_timeout_s,
        on_availability=on_availability,
        on_written=watcher.advanced,
    )
    wired = Events(shipper, host, watcher, EventsServicer(reads, watcher, settings.api, end_call))
    lifecycle.add(shipper.start, lambda: shipper.stop(events.shutdown_flush_s))
    lifecycle.add(watcher.start, watcher.close)
    lifecycle.add(lambda: None, wired.api.close)
    return wired


def _log_ready(settings: Settings) -> None:
    events = settings.events
    log.info(
        "event store ready",
        extra={
            "database": events.database.redacted(),
            "durability": events.durability,
            "batch_size": events.batch_size,
            "flush_interval_ms": round(events.flush_interval_s * 1000),
            "buffer_size": events.buffer_size,
            "event_host": settings.serving.event_host.value,
            "watched_networks": [str(n) for n in settings.notify.watch_list.networks],
        },
    )


def _access_guard(settings: Settings, metrics: Metrics | None) -> AccessGuard:
    """The events API's rules; the tokens file is watched for changes (rpc/tokens.py)."""
    access = settings.access
    tokens = TokenFile(access.tokens_file).current if access.tokens_file is not None else None
    policy = AccessPolicy(access.networks, tokens, access.client_names)
    return AccessGuard(EVENTS_SERVICE, policy, metrics)


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


def _sources(observer: RpcObserver, events: Events | None) -> Sources:
    sources = Sources(in_flight=lambda: observer.in_flight)
    if events is not None:
        sources.writer = events.shipper
        sources.host = lambda: events.host.stats
        sources.subscriptions = lambda: events.api.active_subscriptions
    return sources
