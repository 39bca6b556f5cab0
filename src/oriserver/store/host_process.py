"""The event host: the process that owns database writes, the projection and the reactor.

Started by store/hosted.py as ``python -m oriserver.store.host_entry FD``.

Why a process and not threads: every server process runs its gRPC work on one
event loop, and Python runs one thread at a time (the GIL). Measured here, a
writer thread doing its database round trips in the server process took 30-40 %
of the RPC throughput, whatever the batch size or flush interval; the same
writes done by a child process cost under 10 %. So the server process keeps the
batching writer (its buffer and durability rules are unchanged) but hands each
batch to this process, which appends it, runs the running-totals projection and
the watch-list reactor, and answers a few small requests. It stops when told to,
or when its parent disappears (the pipe closes).
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from oriserver.config.database import DatabaseUrl
from oriserver.config.settings import NotifySettings
from oriserver.errors import SchemaNotReady, StoreError, StoreUnavailable
from oriserver.reactors.watchlist import ReactorStats, WatchListReactor
from oriserver.reactors.webhook import WebhookClient
from oriserver.service.background import LeasedWorker
from oriserver.service.projection import ProjectionRunner, ProjectionStats
from oriserver.store.rows import row_from_wire

log = logging.getLogger("oriserver.events.host")


@dataclass(frozen=True)
class HostOptions:
    """What the host needs to know; picklable, sent first over the socket."""

    database: DatabaseUrl
    holder: str
    schema_revision: str
    synchronous_full: bool = False
    db_timeout_s: float = 5.0
    projection_interval_s: float = 0.2
    notify: NotifySettings = field(default_factory=NotifySettings)
    log_format: str = "json"
    log_level: str = "INFO"


@dataclass(frozen=True)
class HostStats:
    projection: ProjectionStats = field(default_factory=ProjectionStats)
    reactor: ReactorStats | None = None


def error_reply(error: StoreError) -> tuple[str, str, str]:
    kind = (
        "schema"
        if isinstance(error, SchemaNotReady)
        else "unavailable"
        if isinstance(error, StoreUnavailable)
        else "store"
    )
    return ("error", kind, str(error))


def _workers(store: Any, options: HostOptions) -> tuple[ProjectionRunner, WatchListReactor | None]:
    projection = ProjectionRunner(store, options.holder, options.projection_interval_s)
    notify = options.notify
    if not notify.watch_list:
        return projection, None
    webhook = None
    if notify.webhook_url:
        webhook = WebhookClient(
            notify.webhook_url,
            timeout_s=notify.webhook_timeout_s,
            max_attempts=notify.webhook_max_attempts,
        )
    reactor = WatchListReactor(
        store, options.holder, options.projection_interval_s, notify.watch_list, webhook
    )
    return projection, reactor


def _handle(store: Any, request: tuple[str, Any], stats: HostStats) -> tuple[Any, ...]:
    operation, payload = request
    try:
        if operation == "append":
            store.append_rows([row_from_wire(wire) for wire in payload])
            return ("ok", None)
        if operation == "ping":
            store.ping()
            return ("ok", None)
        if operation == "head":
            return ("ok", store.head())
        if operation == "stats":
            return ("ok", stats)
    except StoreError as error:
        return error_reply(error)
    return ("error", "store", f"unknown request {operation!r}")


def host_main(connection: Connection) -> None:
    """The body of the event host process."""
    # A terminal's Ctrl-C reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from oriserver.logs import configure_logging
    from oriserver.store.factory import open_store

    options: HostOptions = connection.recv()
    configure_logging(options.log_format, options.log_level)
    store = open_store(
        options.database,
        synchronous_full=options.synchronous_full,
        timeout_s=options.db_timeout_s,
        schema_revision=options.schema_revision,
    )
    projection, reactor = _workers(store, options)
    workers: list[LeasedWorker] = [w for w in (projection, reactor) if w is not None]
    for worker in workers:
        worker.start()
    connection.send(("ready", None))  # the server waits for this before it serves
    try:
        while True:
            try:
                request = connection.recv()
            except (EOFError, OSError):
                break  # the server process is gone
            if request[0] == "stop":
                break
            stats = HostStats(projection.stats, reactor.stats if reactor else None)
            reply = _handle(store, request, stats)
            try:
                connection.send(reply)
            except OSError:
                break  # the server process died while we worked; nobody is waiting
    finally:
        for worker in workers:
            worker.stop()
        store.close()
        connection.close()
