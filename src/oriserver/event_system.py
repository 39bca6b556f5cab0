"""Wires the event store, the batching writer, the projection, the reactor and the watcher.

Part of the composition root (see app.py): it turns EventSettings into running
components and owns their start and stop order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from oriserver.config.settings import Settings
from oriserver.reactors.watchlist import WatchListReactor
from oriserver.reactors.webhook import WebhookClient
from oriserver.recording.recorders import BufferedRecorder, CommittedRecorder, loop_notifier
from oriserver.recording.writer import BatchingWriter
from oriserver.service.background import LeasedWorker, holder_id
from oriserver.service.log_watcher import LogWatcher
from oriserver.service.projection import ProjectionRunner
from oriserver.service.recording import Recorder
from oriserver.store import migrate
from oriserver.store.base import EventStore
from oriserver.store.factory import open_store

log = logging.getLogger("oriserver.events")


@dataclass
class EventSystem:
    store: EventStore
    writer: BatchingWriter
    recorder: Recorder
    projection: ProjectionRunner
    reactor: WatchListReactor | None
    watcher: LogWatcher

    @property
    def workers(self) -> list[LeasedWorker]:
        return [w for w in (self.projection, self.reactor) if w is not None]

    def start(self) -> None:
        self.writer.start()
        for worker in self.workers:
            worker.start()
        self.watcher.start()

    async def stop(self, flush_timeout_s: float) -> int:
        """Write every buffered event, stop the workers; returns the events that were lost."""
        lost = await asyncio.to_thread(self.writer.stop, flush_timeout_s)
        for worker in self.workers:
            await asyncio.to_thread(worker.stop)
        await self.watcher.stop()
        await asyncio.to_thread(self.store.close)
        return lost


def build_event_system(
    settings: Settings, on_availability: Callable[[bool], Awaitable[None]]
) -> EventSystem:
    """Open the store (migrating first when configured) and wire everything to it."""
    events = settings.events
    if events.auto_migrate:
        migrate.upgrade(events.database)
        log.info("schema migrated", extra={"revision": migrate.head_revision()})
    store = open_store(events.database, synchronous_full=events.sync, timeout_s=events.db_timeout_s)
    loop = asyncio.get_running_loop()
    holder = holder_id(settings.instance_id)
    projection = ProjectionRunner(store, holder, events.projection_interval_s)
    watcher = LogWatcher(store, settings.api.poll_interval_s, on_availability)

    writer = BatchingWriter(
        store,
        batch_size=events.batch_size,
        flush_interval_s=events.flush_interval_s,
        capacity=events.buffer_size,
        sync=events.sync,
        notify=loop_notifier(loop),
        # The projection runs on its own interval; waking it on every flush made it
        # re-read the log in many small steps, which cost more than it saved.
        on_written=watcher.poke_threadsafe,
    )
    recorder: Recorder = CommittedRecorder(writer) if events.sync else BufferedRecorder(writer)
    reactor = None
    notify = settings.notify
    if notify.watch_list:
        webhook = (
            WebhookClient(
                notify.webhook_url,
                timeout_s=notify.webhook_timeout_s,
                max_attempts=notify.webhook_max_attempts,
            )
            if notify.webhook_url
            else None
        )
        reactor = WatchListReactor(
            store, holder, events.projection_interval_s, notify.watch_list, webhook
        )
    log.info(
        "event store ready",
        extra={
            "database": events.database.redacted(),
            "durability": events.durability,
            "batch_size": events.batch_size,
            "flush_interval_ms": round(events.flush_interval_s * 1000),
            "buffer_size": events.buffer_size,
            "watched_networks": [str(n) for n in notify.watch_list.networks],
        },
    )
    return EventSystem(store, writer, recorder, projection, reactor, watcher)
