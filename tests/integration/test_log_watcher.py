"""The log watcher: local appends move its head without a query; polls find the rest."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from oriserver.config.database import DatabaseUrl
from oriserver.recording.shipper import CallShipper
from oriserver.service.log_watcher import LogWatcher
from oriserver.service.ports import EventStore
from oriserver.store.factory import open_store
from tests.support.calls import inline_sink, records

LONG_POLL_S = 60.0  # so that only the first poll runs during a test


class CountingLog:
    """A real store whose ``head`` queries are counted, and can be held until released."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.queries = 0
        self.hold: threading.Event | None = None
        self.asked = threading.Event()

    def head(self) -> int:
        self.queries += 1
        head = self.store.head()
        self.asked.set()
        if self.hold is not None:
            self.hold.wait(10)
        return head

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


@pytest.fixture
def store(sqlite_database: DatabaseUrl) -> Iterator[EventStore]:
    opened = open_store(sqlite_database)
    yield opened
    opened.close()


def started_watcher(log: CountingLog) -> LogWatcher:
    watcher = LogWatcher(log, LONG_POLL_S)  # type: ignore[arg-type]  # an EventLog by delegation
    watcher.start()
    assert log.asked.wait(5), "the watcher never polled"
    return watcher


def test_a_local_append_wakes_subscribers_without_a_query(store: EventStore) -> None:
    log = CountingLog(store)
    watcher = started_watcher(log)
    shipper = CallShipper(
        inline_sink(store),
        batch_events=2,
        flush_interval_s=0.01,
        capacity_events=1000,
        sync=True,
        timeout_s=5,
        on_written=watcher.advanced,
    )
    shipper.start()
    try:
        queries = log.queries
        woken: list[bool] = []
        waiter = threading.Thread(target=lambda: woken.append(watcher.wait_beyond(0, 5)))
        waiter.start()
        for record in records(3):
            shipper.record(record)  # sync: returns once committed
        waiter.join(5)
        assert woken == [True]
        assert watcher.head == store.head() == 6
        assert log.queries == queries, "the watcher queried the head after a local append"
    finally:
        shipper.stop(5)
        watcher.close()


def test_a_poll_that_answers_after_a_local_append_does_not_move_the_head_back(
    store: EventStore,
) -> None:
    log = CountingLog(store)
    watcher = started_watcher(log)
    try:
        log.hold, log.asked = threading.Event(), threading.Event()
        watcher.poke()  # poll now: the query reads head 0 and is held
        assert log.asked.wait(5)
        watcher.advanced(8)  # a local append committed meanwhile
        log.hold.set()  # the late answer (0) arrives
        deadline = time.monotonic() + 2
        while log.queries < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        assert watcher.head == 8
    finally:
        log.hold = None
        watcher.close()


def test_a_poll_follows_the_store_when_no_local_append_ran(store: EventStore) -> None:
    """A database restored to an earlier point is behind what the watcher saw: follow it."""
    log = CountingLog(store)
    watcher = started_watcher(log)
    try:
        watcher.head = 40  # seen before the restore
        log.asked.clear()
        watcher.poke()
        assert log.asked.wait(5)
        deadline = time.monotonic() + 2
        while watcher.head != 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert watcher.head == 0
    finally:
        watcher.close()
