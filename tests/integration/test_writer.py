"""The batching writer: batches, group commit, outages, drops, and a lossless stop."""

from __future__ import annotations

import threading
import time

import pytest

from oriserver.config.database import DatabaseUrl
from oriserver.errors import RecordingUnavailable
from oriserver.recording.writer import BatchingWriter
from oriserver.store.factory import open_store
from oriserver.store.memory import InMemoryEventStore
from tests.support import postgres
from tests.support.events import calculation
from tests.support.faultproxy import fault_proxy


def wait_until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def writer_for(
    store, *, sync: bool = False, batch: int = 100, interval: float = 0.02, capacity: int = 1000
) -> BatchingWriter:  # type: ignore[no-untyped-def]
    writer = BatchingWriter(
        store, batch_size=batch, flush_interval_s=interval, capacity=capacity, sync=sync
    )
    writer.start()
    return writer


def test_async_submissions_are_written_within_the_flush_interval() -> None:
    store = InMemoryEventStore()
    writer = writer_for(store, interval=0.05)
    writer.submit(*calculation())
    wait_until(lambda: store.head() == 2, timeout=2)
    assert writer.stop(5) == 0


def test_a_full_batch_is_written_without_waiting_for_the_interval() -> None:
    store = InMemoryEventStore()
    writer = writer_for(store, batch=10, interval=30)
    for _ in range(5):
        writer.submit(*calculation())
    wait_until(lambda: store.head() == 10, timeout=5)
    assert writer.stats.last_batch_size == 10
    writer.stop(5)


@pytest.mark.postgres
def test_async_calls_gather_into_batches_instead_of_one_write_each(
    clean_postgres: DatabaseUrl,
) -> None:
    # Every database round trip takes a few ms more, so calls keep arriving during each write.
    with fault_proxy(postgres.proxy_target(clean_postgres.url)) as proxy:
        proxy.delay(0.002)
        store = open_store(DatabaseUrl.parse(postgres.proxied(clean_postgres.url, proxy.port)))
        writer = writer_for(store, batch=10_000, capacity=10_000, interval=0.25)
        started = time.monotonic()
        while time.monotonic() - started < 1.0:  # a steady trickle, far below one batch
            writer.submit(*calculation())
            time.sleep(0.002)
        submitted = writer.stats.appended + writer.buffered
        writer.stop(10)
        assert store.head() == submitted
        store.close()
    # One write per interval (plus the last one at stop), not one per database round trip.
    assert writer.stats.flushes <= 6, writer.stats.flushes
    assert submitted > 100


def test_both_events_of_a_calculation_are_always_in_the_same_batch() -> None:
    store = InMemoryEventStore()
    writer = writer_for(store, batch=3, interval=0.01)  # an odd batch size still keeps pairs whole
    for _ in range(20):
        writer.submit(*calculation())
    writer.stop(5)
    stored = store.read(1, 100)
    assert len(stored) == 40
    for first, second in zip(stored[::2], stored[1::2], strict=True):
        assert first.event.calculation_id == second.event.calculation_id


def test_sync_submissions_complete_only_after_commit_and_share_transactions(
    sqlite_database,
) -> None:  # type: ignore[no-untyped-def]
    store = open_store(sqlite_database)
    writer = writer_for(store, sync=True, batch=1000, interval=1)
    completed: list[BaseException | None] = []
    lock = threading.Lock()

    def waiter(error: BaseException | None) -> None:
        with lock:
            completed.append(error)
        # By the time the waiter runs, the events must be readable.
        assert store.head() >= 2

    threads = [
        threading.Thread(
            target=lambda: [writer.submit(*calculation(), waiter=waiter) for _ in range(50)]
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_until(lambda: len(completed) == 200)
    assert completed == [None] * 200
    assert store.head() == 400
    assert writer.stats.flushes < 200  # group commit: concurrent submissions shared transactions
    writer.stop(5)
    store.close()


def test_async_mode_buffers_through_an_outage_and_writes_everything_once() -> None:
    store = InMemoryEventStore()
    writer = writer_for(store, interval=0.01, capacity=1000)
    store.available = False
    pairs = [calculation() for _ in range(100)]
    for pair in pairs:
        assert writer.submit(*pair)
    wait_until(lambda: not writer.stats.available)
    store.available = True
    wait_until(lambda: writer.stats.appended == 200)
    assert writer.stats.available
    ids = [s.event.event_id for s in store.read(1, 1000)]
    assert ids == [e.event_id for pair in pairs for e in pair]
    writer.stop(5)


def test_async_mode_drops_and_counts_when_the_buffer_is_full(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = InMemoryEventStore()
    store.available = False
    writer = writer_for(store, capacity=10, interval=0.01)
    accepted = [writer.submit(*calculation()) for _ in range(8)]
    assert accepted == [True] * 5 + [False] * 3
    assert writer.stats.dropped == 6
    assert writer.buffered == 10
    assert any("event buffer full" in r.getMessage() for r in caplog.records)
    store.available = True
    wait_until(lambda: writer.stats.appended == 10)
    writer.stop(5)


def test_drop_warnings_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    store = InMemoryEventStore()
    store.available = False
    writer = writer_for(store, capacity=2, interval=0.01)
    for _ in range(50):
        writer.submit(*calculation())
    warnings = [r for r in caplog.records if "event buffer full" in r.getMessage()]
    assert len(warnings) == 1
    assert writer.stats.dropped == 98
    store.available = True
    writer.stop(5)


def test_sync_mode_fails_fast_while_the_store_is_down_and_recovers() -> None:
    store = InMemoryEventStore()
    writer = writer_for(store, sync=True, interval=0.01)
    store.available = False
    results: list[BaseException | None] = []
    writer.submit(*calculation(), waiter=results.append)
    wait_until(lambda: len(results) == 1)
    assert isinstance(results[0], RecordingUnavailable)
    writer.submit(*calculation(), waiter=results.append)  # rejected at once, nothing buffered
    assert isinstance(results[1], RecordingUnavailable)
    assert writer.buffered == 0
    store.available = True
    wait_until(lambda: writer.stats.available)
    writer.submit(*calculation(), waiter=results.append)
    wait_until(lambda: len(results) == 3)
    assert results[2] is None
    assert store.head() == 2  # only the acknowledged calculation was stored
    writer.stop(5)


def test_stop_writes_everything_still_buffered() -> None:
    store = InMemoryEventStore()
    writer = writer_for(store, batch=1000, interval=60)  # nothing would flush on its own
    for _ in range(300):
        writer.submit(*calculation())
    assert writer.stop(5) == 0
    assert store.head() == 600


def test_stop_reports_what_it_could_not_write() -> None:
    store = InMemoryEventStore()
    store.available = False
    writer = writer_for(store, interval=0.01)
    for _ in range(4):
        writer.submit(*calculation())
    assert writer.stop(0.3) == 8
    assert writer.stats.lost_at_shutdown == 8


def test_nothing_is_accepted_after_stop() -> None:
    store = InMemoryEventStore()
    writer = writer_for(store)
    writer.stop(1)
    errors: list[BaseException | None] = []
    assert not writer.submit(*calculation(), waiter=errors.append)
    assert isinstance(errors[0], RecordingUnavailable)
