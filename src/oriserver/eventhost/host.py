"""The event host's work: call records in, two events each into the store, the totals
folded on write, the reactor woken; plus the projection runner and the reactor threads.

The same object serves in-process (``InlineHost``, for SQLite by default and in
tests) and in a child process (``ProcessHost``, which runs eventhost/main.py):
the composition root builds it in both cases (bootstrap.build_event_host), so
whichever side of the boundary it is on, it is the same code.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from oriserver.errors import SchemaNotReady, StoreError, StoreUnavailable
from oriserver.eventhost.messages import (
    AppendCalls,
    Done,
    HostStats,
    Ping,
    Refusal,
    Refused,
    Reply,
    Request,
    Stop,
)
from oriserver.reactors.watchlist import WatchListReactor
from oriserver.service.background import LeasedWorker
from oriserver.service.ports import EventStore
from oriserver.service.projection import ProjectionRunner
from oriserver.store.rows import rows_from_records

log = logging.getLogger("oriserver.events.host")


def refusal_of(error: StoreError) -> Refusal:
    if isinstance(error, SchemaNotReady):
        return Refusal.SCHEMA
    if isinstance(error, StoreUnavailable):
        return Refusal.UNAVAILABLE
    return Refusal.ERROR


class EventHost:
    def __init__(
        self,
        store: EventStore,
        instance_id: str,
        projection: ProjectionRunner,
        reactor: WatchListReactor | None = None,
    ) -> None:
        self._store = store
        self._instance_id = instance_id
        self._projection = projection
        self._reactor = reactor
        self._workers: Sequence[LeasedWorker] = [w for w in (projection, reactor) if w is not None]
        self._projected_on_write = 0

    def start(self) -> None:
        for worker in self._workers:
            worker.start()

    def stop(self) -> None:
        for worker in self._workers:
            worker.stop()
        self._store.close()

    def stats(self) -> HostStats:
        reactor = self._reactor.stats if self._reactor is not None else None
        return HostStats(self._projection.stats, reactor, self._projected_on_write)

    def handle(self, request: Request) -> Reply:
        """Answer one request; store errors become a Refused reply, never an exception."""
        try:
            if isinstance(request, AppendCalls):
                return self._append(request)
            if isinstance(request, Ping):
                self._store.ping()
                return Done(self.stats())
            assert isinstance(request, Stop)
            return Done(self.stats())
        except StoreError as error:
            return Refused(refusal_of(error), str(error), self.stats())

    def _append(self, request: AppendCalls) -> Done:
        rows = rows_from_records(
            request.records, request.origin, request.first_seq, self._instance_id
        )
        appended = self._store.append_rows(rows, project=True)
        if appended.projected:
            self._projected_on_write += 1
            self._projection.written(appended.head, appended.stored)
        elif appended.stored:
            self._projection.wake()  # behind (or a retried batch): catch up by reading
        if self._reactor is not None and appended.stored:
            self._reactor.wake()
        return Done(self.stats(), appended.stored, appended.head)
