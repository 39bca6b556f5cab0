"""Wires the event store, the batching writer, the event host process and the watcher.

Part of the composition root (see app.py): it turns EventSettings into running
components and owns their start and stop order. The writer's batches, the
projection and the reactor run in the event host process (store/host_process.py
says why); this process keeps the buffer, the recorders, and a store of its own
for the read API and the log watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from oriserver.config.settings import Settings
from oriserver.errors import StoreError
from oriserver.recording.recorders import BufferedRecorder, CommittedRecorder, loop_notifier
from oriserver.recording.writer import BatchingWriter
from oriserver.service.background import holder_id
from oriserver.service.log_watcher import LogWatcher
from oriserver.service.recording import Recorder
from oriserver.store import migrate
from oriserver.store.base import EventStore
from oriserver.store.factory import open_store
from oriserver.store.host_process import HostOptions, HostStats
from oriserver.store.hosted import HostedStore

log = logging.getLogger("oriserver.events")


@dataclass
class EventSystem:
    store: EventStore  # this process's own store: the read API and the watcher
    host: HostedStore
    writer: BatchingWriter
    recorder: Recorder
    watcher: LogWatcher
    host_stats: HostStats = field(default_factory=HostStats)
    _refresher: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.host.start()
        self.writer.start()
        self.watcher.start()
        self._refresher = asyncio.get_running_loop().create_task(
            self._refresh_stats(), name="host-stats"
        )

    async def _refresh_stats(self, interval_s: float = 1.0) -> None:
        """Mirror the host's projection and reactor progress here, for metrics."""
        while True:
            with contextlib.suppress(StoreError):
                self.host_stats = await asyncio.to_thread(self.host.stats)
            await asyncio.sleep(interval_s)

    async def stop(self, flush_timeout_s: float) -> int:
        """Write every buffered event, stop the host; returns the events that were lost."""
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
        lost = await asyncio.to_thread(self.writer.stop, flush_timeout_s)
        await asyncio.to_thread(self.host.close)
        await self.watcher.stop()
        await asyncio.to_thread(self.store.close)
        return lost


def host_options(settings: Settings) -> HostOptions:
    events = settings.events
    return HostOptions(
        database=events.database,
        holder=holder_id(settings.instance_id),
        schema_revision=migrate.head_revision(),
        synchronous_full=events.sync,
        db_timeout_s=events.db_timeout_s,
        projection_interval_s=events.projection_interval_s,
        notify=settings.notify,
        log_format=settings.log_format,
        log_level=settings.log_level,
    )


def build_event_system(
    settings: Settings, on_availability: Callable[[bool], Awaitable[None]]
) -> EventSystem:
    """Open the store (migrating first when configured) and wire everything to it."""
    events = settings.events
    if events.auto_migrate:
        migrate.upgrade(events.database)
        log.info("schema migrated", extra={"revision": migrate.head_revision()})
    store = open_store(events.database, timeout_s=events.db_timeout_s)
    # A host call may wait for the database's own timeouts (connect, pool, TCP) first.
    host = HostedStore(host_options(settings), call_timeout_s=6 * events.db_timeout_s + 10)
    watcher = LogWatcher(store, settings.api.poll_interval_s, on_availability)
    writer = BatchingWriter(
        host,
        batch_size=events.batch_size,
        flush_interval_s=events.flush_interval_s,
        capacity=events.buffer_size,
        sync=events.sync,
        notify=loop_notifier(asyncio.get_running_loop()),
        on_written=watcher.poke_threadsafe,
    )
    recorder: Recorder = CommittedRecorder(writer) if events.sync else BufferedRecorder(writer)
    log.info(
        "event store ready",
        extra={
            "database": events.database.redacted(),
            "durability": events.durability,
            "batch_size": events.batch_size,
            "flush_interval_ms": round(events.flush_interval_s * 1000),
            "buffer_size": events.buffer_size,
            "watched_networks": [str(n) for n in settings.notify.watch_list.networks],
        },
    )
    return EventSystem(store, host, writer, recorder, watcher)
