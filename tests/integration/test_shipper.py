"""The recording pipeline: batches, group commit, outages, drops, withdrawal, a lossless stop."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from harness import postgres
from harness.faultproxy import fault_proxy
from oriserver.config.database import DatabaseUrl
from oriserver.errors import RecordingUnavailable, StoreUnavailable
from oriserver.eventhost.client import InlineHost
from oriserver.recording.shipper import SYNC_MARGIN_S, CallShipper
from oriserver.service.ports import Appended, CallSink, EventStore
from oriserver.store.factory import open_store
from oriserver.store.memory import InMemoryEventStore
from tests.support.calls import inline_sink, records, summation_record

SinkFactory = Callable[[EventStore], InlineHost]


@pytest.fixture
def sinks() -> Iterator[SinkFactory]:
    """In-process event hosts over a store, stopped before the test's store is closed."""
    made: list[InlineHost] = []

    def make(store: EventStore) -> InlineHost:
        made.append(inline_sink(store))
        return made[-1]

    yield make
    for host in made:
        host.close()


def wait_until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def shipper_for(
    sink: CallSink,
    *,
    sync: bool = False,
    batch: int = 100,
    interval: float = 0.02,
    capacity: int = 1000,
    timeout: float = 1.0,
) -> CallShipper:
    shipper = CallShipper(
        sink,
        batch_events=batch,
        flush_interval_s=interval,
        capacity_events=capacity,
        sync=sync,
        timeout_s=timeout,
    )
    shipper.start()
    return shipper


class StalledSink:
    """A sink whose appends block until released, like a database that stops answering."""

    def __init__(self, inner: CallSink) -> None:
        self._inner = inner
        self.release = threading.Event()
        self.calls = 0

    def append_calls(self, origin, first_seq, records, timeout_s) -> Appended:  # type: ignore[no-untyped-def]
        self.calls += 1
        self.release.wait(30)
        return self._inner.append_calls(origin, first_seq, records, timeout_s)

    def ping(self, timeout_s: float) -> None:
        self._inner.ping(timeout_s)

    def close(self) -> None:
        self._inner.close()


def test_async_records_are_written_within_the_flush_interval(sinks: SinkFactory) -> None:
    store = InMemoryEventStore()
    shipper = shipper_for(sinks(store), interval=0.05)
    shipper.record(summation_record())
    wait_until(lambda: store.head() == 2, timeout=2)
    assert shipper.stop(5) == 0


def test_a_full_batch_is_written_without_waiting_for_the_interval(sinks: SinkFactory) -> None:
    store = InMemoryEventStore()
    shipper = shipper_for(sinks(store), batch=10, interval=30)
    for record in records(5):
        shipper.record(record)
    wait_until(lambda: store.head() == 10, timeout=5)
    assert shipper.stats.last_batch_size == 10
    shipper.stop(5)


def test_sizes_count_events_and_an_odd_batch_size_rounds_down_to_whole_calls(
    sinks: SinkFactory,
) -> None:
    store = InMemoryEventStore()
    shipper = shipper_for(sinks(store), batch=7, interval=60, capacity=9)
    assert shipper.capacity == 8  # four calls of two events
    for record in records(3):
        shipper.record(record)  # three calls: six events, one flush of at most 7 events
    wait_until(lambda: store.head() == 6, timeout=5)
    assert shipper.stats.last_batch_size == 6
    assert shipper.stats.appended == 6
    shipper.stop(5)


@pytest.mark.postgres
def test_async_calls_gather_into_batches_instead_of_one_write_each(
    sinks: SinkFactory,
    clean_postgres: DatabaseUrl,
) -> None:
    # Every database round trip takes a few ms more, so calls keep arriving during each write.
    with fault_proxy(postgres.proxy_target(clean_postgres.url)) as proxy:
        proxy.delay(0.002)
        store = open_store(DatabaseUrl.parse(postgres.proxied(clean_postgres.url, proxy.port)))
        sink = sinks(store)
        shipper = shipper_for(sink, batch=10_000, capacity=10_000, interval=0.25)
        submitted = 0
        started = time.monotonic()
        while time.monotonic() - started < 1.0:  # a steady trickle, far below one batch
            shipper.record(summation_record())
            submitted += 2
            time.sleep(0.002)
        shipper.stop(10)
        assert store.head() == submitted
        sink.close()  # while the proxy still forwards
    # One write per interval (plus the last one at stop), not one per database round trip.
    assert shipper.stats.flushes <= 6, shipper.stats.flushes
    assert submitted > 200


def test_both_events_of_a_call_are_always_in_the_same_batch(sinks: SinkFactory) -> None:
    store = InMemoryEventStore()
    shipper = shipper_for(sinks(store), batch=3, interval=0.01)
    for record in records(20):
        shipper.record(record)
    shipper.stop(5)
    stored = store.read(1, 100)
    assert len(stored) == 40
    for first, second in zip(stored[::2], stored[1::2], strict=True):
        assert first.event.calculation_id == second.event.calculation_id


def test_sync_records_complete_only_after_commit_and_share_transactions(
    sqlite_database, sinks: SinkFactory
) -> None:  # type: ignore[no-untyped-def]
    store = open_store(sqlite_database)
    shipper = shipper_for(sinks(store), sync=True, batch=1000, interval=1)
    heads: list[int] = []

    def caller() -> None:
        for record in records(50):
            shipper.record(record)
            heads.append(store.head())  # by the time record() returns, the events are readable

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(heads) == 200
    assert all(head >= 2 for head in heads)
    assert store.head() == 400
    assert shipper.stats.flushes < 200  # group commit: concurrent calls shared transactions
    shipper.stop(5)


def test_async_mode_buffers_through_an_outage_and_writes_everything_once(
    sinks: SinkFactory,
) -> None:
    store = InMemoryEventStore()
    shipper = shipper_for(sinks(store), interval=0.01, capacity=1000)
    store.available = False
    batch = records(100)
    for record in batch:
        shipper.record(record)
    wait_until(lambda: shipper.stats.available is False)
    store.available = True
    wait_until(lambda: shipper.stats.appended == 200)
    assert shipper.stats.available
    stored = store.read(1, 1000)
    assert len({s.event.event_id for s in stored}) == 200
    assert [s.event.inputs.first for s in stored[::2]] == [r[1] for r in batch]
    shipper.stop(5)


def test_async_mode_drops_and_counts_when_the_buffer_is_full(
    sinks: SinkFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = InMemoryEventStore()
    store.available = False
    stalled = StalledSink(sinks(store))  # holds the first batch, so the buffer fills
    shipper = shipper_for(stalled, capacity=10, interval=0.01, batch=2)
    shipper.record(summation_record())
    wait_until(lambda: stalled.calls == 1)
    for record in records(8):
        shipper.record(record)
    assert shipper.stats.dropped == 6  # five calls fit (ten events), three did not
    assert shipper.buffered == 10
    assert any("event buffer full" in r.getMessage() for r in caplog.records)
    store.available = True
    stalled.release.set()
    wait_until(lambda: shipper.stats.appended == 12)
    shipper.stop(5)


def test_drop_warnings_are_rate_limited(
    sinks: SinkFactory, caplog: pytest.LogCaptureFixture
) -> None:
    store = InMemoryEventStore()
    stalled = StalledSink(sinks(store))
    shipper = shipper_for(stalled, capacity=2, interval=0.01, batch=2)
    shipper.record(summation_record())
    wait_until(lambda: stalled.calls == 1)
    for record in records(50):
        shipper.record(record)
    warnings = [r for r in caplog.records if "event buffer full" in r.getMessage()]
    assert len(warnings) == 1
    assert shipper.stats.dropped == 98
    stalled.release.set()
    shipper.stop(5)


def test_sync_mode_fails_fast_while_the_store_is_down_and_recovers(sinks: SinkFactory) -> None:
    store = InMemoryEventStore()
    shipper = shipper_for(sinks(store), sync=True, interval=0.01)
    wait_until(lambda: shipper.stats.available is True)
    store.available = False
    with pytest.raises(RecordingUnavailable):
        shipper.record(summation_record())
    started = time.monotonic()
    with pytest.raises(RecordingUnavailable, match="unavailable"):
        shipper.record(summation_record())  # refused at once, nothing buffered
    assert time.monotonic() - started < 0.1
    assert shipper.buffered == 0
    store.available = True
    wait_until(lambda: shipper.stats.available is True)
    shipper.record(summation_record())
    assert store.head() == 2  # only the acknowledged call was stored
    shipper.stop(5)


def test_a_sync_call_gives_up_within_the_timeout_and_its_record_is_withdrawn(
    sinks: SinkFactory,
) -> None:
    store = InMemoryEventStore()
    stalled = StalledSink(sinks(store))
    shipper = shipper_for(stalled, sync=True, interval=0.01, timeout=0.3)
    outcomes: list[str] = []

    def stuck_call() -> None:
        try:
            shipper.record(summation_record())
            outcomes.append("ok")
        except RecordingUnavailable:
            outcomes.append("refused")

    first = threading.Thread(target=stuck_call)
    first.start()
    wait_until(lambda: stalled.calls == 1)  # the first call's batch is stuck in the store
    started = time.monotonic()
    with pytest.raises(RecordingUnavailable, match="not recorded"):
        shipper.record(summation_record(7, 7))  # waits behind it, then gives up
    assert time.monotonic() - started < 0.3 + SYNC_MARGIN_S + 0.2
    stalled.release.set()
    first.join(10)
    assert outcomes == ["refused"]  # shipped, then the wait ran out: refused, outcome unknown
    shipper.stop(5)
    firsts = [s.event.inputs.first for s in store.read(1, 100)]
    assert 7 not in firsts  # the refused call was not recorded later


def test_a_sync_call_answers_before_its_own_deadline(sinks: SinkFactory) -> None:
    store = InMemoryEventStore()
    stalled = StalledSink(sinks(store))
    shipper = shipper_for(stalled, sync=True, interval=0.01, timeout=5)
    started = time.monotonic()
    with pytest.raises(RecordingUnavailable):
        shipper.record(summation_record(), patience_s=0.4)
    assert time.monotonic() - started < 0.4
    stalled.release.set()
    shipper.stop(5)


def test_outages_are_logged_once_when_they_begin_and_once_when_they_end(
    sinks: SinkFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="oriserver.events.writer")
    store = InMemoryEventStore()
    shipper = shipper_for(sinks(store), interval=0.01)
    wait_until(lambda: shipper.stats.available is True)
    store.available = False
    for record in records(20):
        shipper.record(record)
        time.sleep(0.01)
    store.available = True
    wait_until(lambda: shipper.stats.appended == 40)
    shipper.stop(5)
    messages = [r.getMessage() for r in caplog.records if r.name == "oriserver.events.writer"]
    assert messages.count("event store unavailable; retrying with backoff") == 1
    assert messages.count("event store available again") == 1


def test_stop_writes_everything_still_buffered(sinks: SinkFactory) -> None:
    store = InMemoryEventStore()
    shipper = shipper_for(sinks(store), batch=1000, interval=60)  # nothing flushes alone
    for record in records(300):
        shipper.record(record)
    assert shipper.stop(5) == 0
    assert store.head() == 600


def test_stop_reports_what_it_could_not_write(sinks: SinkFactory) -> None:
    store = InMemoryEventStore()
    store.available = False
    shipper = shipper_for(sinks(store), interval=0.01)
    for record in records(4):
        shipper.record(record)
    assert shipper.stop(0.3) == 8
    assert shipper.stats.lost_at_shutdown == 8


def test_nothing_is_accepted_after_stop(sinks: SinkFactory) -> None:
    store = InMemoryEventStore()
    shipper = shipper_for(sinks(store), sync=True)
    shipper.stop(1)
    with pytest.raises(RecordingUnavailable, match="shutting down"):
        shipper.record(summation_record())


@pytest.mark.postgres
def test_a_postgres_store_gives_up_on_a_database_that_stops_answering(
    clean_postgres: DatabaseUrl,
) -> None:
    with fault_proxy(postgres.proxy_target(clean_postgres.url)) as proxy:
        url = DatabaseUrl.parse(postgres.proxied(clean_postgres.url, proxy.port))
        store = open_store(url, timeout_s=1.0)
        assert store.head() == 0  # a pooled connection, open and working
        proxy.blackhole()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="did not answer within 1s"):
            store.head()
        assert time.monotonic() - started < 1.6
        proxy.heal()
        deadline = time.monotonic() + 10
        while True:  # the dropped connection is replaced by a fresh one
            try:
                assert store.head() == 0
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        store.close()


class LostAckSink:
    """Commits the first batch, then fails as if the event host died before it could answer."""

    def __init__(self, inner: CallSink) -> None:
        self._inner = inner
        self.calls = 0

    def append_calls(self, origin, first_seq, records, timeout_s) -> Appended:  # type: ignore[no-untyped-def]
        self.calls += 1
        stored = self._inner.append_calls(origin, first_seq, records, timeout_s)
        if self.calls == 1:
            raise StoreUnavailable("the event host process stopped (end of file)")
        return stored

    def ping(self, timeout_s: float) -> None:
        self._inner.ping(timeout_s)

    def close(self) -> None:
        self._inner.close()


def test_a_batch_sent_again_after_a_lost_answer_is_stored_once(sinks: SinkFactory) -> None:
    store = InMemoryEventStore()
    sink = LostAckSink(sinks(store))
    shipper = shipper_for(sink, interval=0.01)
    batch = records(10)
    for record in batch:
        shipper.record(record)
    wait_until(lambda: sink.calls >= 2)
    shipper.stop(5)
    assert store.head() == 20  # committed once, though sent twice
    assert shipper.stats.appended == 20
    assert shipper.stats.already_stored == 20  # the second attempt found them all there
