"""The batching writer: events wait in a bounded buffer; one thread writes them in batches.

Durability is the caller's choice, per writer:
- async: ``submit`` returns at once. A crash can lose what is still buffered
  (at most ORI_EVENTS_BUFFER_SIZE events, normally one flush interval's worth);
  ``stop`` writes everything that is buffered before returning.
- sync: each submission carries a waiter, completed once its batch commits
  (group commit: whatever arrived while the previous batch was being written
  goes into the next transaction together), or failed with RecordingUnavailable.

While the database is unreachable the writer retries with backoff. In async
mode the buffer keeps filling up to its capacity and newer calculations are
dropped (counted and logged); in sync mode submissions fail at once.
Retries are safe because appends are idempotent on event_id.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice

from oriserver.domain.events import CalculationRequested, Event
from oriserver.errors import RecordingUnavailable, StoreError
from oriserver.recording.backoff import Backoff, RateLimit
from oriserver.store.base import Appender

log = logging.getLogger("oriserver.events.writer")

Waiter = Callable[[BaseException | None], None]
Notifier = Callable[[list[Waiter], BaseException | None], None]
Entry = tuple[CalculationRequested, Event, Waiter | None]


def call_each(waiters: list[Waiter], error: BaseException | None) -> None:
    for waiter in waiters:
        waiter(error)


@dataclass
class WriterStats:
    """Plain counters, read by the metrics collector at scrape time."""

    appended: int = 0
    dropped: int = 0
    failed_sync: int = 0
    lost_at_shutdown: int = 0
    flushes: int = 0
    last_batch_size: int = 0
    last_flush_seconds: float = 0.0
    flush_seconds_total: float = 0.0
    last_success: float | None = None  # time.monotonic() of the last committed batch
    last_success_wall: float | None = None  # the same moment as Unix time, for metrics
    available: bool = True
    unavailable_since: float | None = None


class BatchingWriter:
    def __init__(
        self,
        store: Appender,
        *,
        batch_size: int,
        flush_interval_s: float,
        capacity: int,
        sync: bool,
        notify: Notifier = call_each,
        on_written: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._pairs_per_batch = max(1, batch_size // 2)
        self._flush_interval_s = flush_interval_s
        self._capacity_pairs = max(1, capacity // 2)
        self._sync = sync
        self._notify = notify
        self._on_written = on_written
        self._buffer: collections.deque[Entry] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._deadline = float("inf")
        self._backoff = Backoff(base=0.05, cap=2.0)  # a short cap: notice a returning database soon
        self._drop_warnings = RateLimit(10.0)
        self._outage_warnings = RateLimit(30.0)
        self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
        self._flushes: collections.deque[tuple[float, int]] = collections.deque(maxlen=10_000)
        self.stats = WriterStats()

    @property
    def buffered(self) -> int:
        """Events waiting in memory."""
        return 2 * len(self._buffer)

    @property
    def capacity(self) -> int:
        return 2 * self._capacity_pairs

    def start(self) -> None:
        self._thread.start()

    def drain_flushes(self) -> list[tuple[float, int]]:
        """(seconds, events) of every batch written since the last call, for metrics."""
        drained: list[tuple[float, int]] = []
        while self._flushes:
            drained.append(self._flushes.popleft())
        return drained

    def submit(
        self, requested: CalculationRequested, outcome: Event, waiter: Waiter | None = None
    ) -> bool:
        """Queue a calculation's two events together; False if they were not accepted."""
        if self._stopping:
            self._reject(waiter, RecordingUnavailable("the server is shutting down"))
            return False
        if self._sync and not self.stats.available:
            self.stats.failed_sync += 1
            self._reject(
                waiter,
                RecordingUnavailable("event store unavailable; the calculation was not recorded"),
            )
            return False
        if len(self._buffer) >= self._capacity_pairs:
            self._drop()
            self._reject(
                waiter, RecordingUnavailable("event buffer full; the calculation was not recorded")
            )
            return False
        self._buffer.append((requested, outcome, waiter))
        if self._sync or len(self._buffer) >= self._pairs_per_batch:
            self._wake.set()
        return True

    def _reject(self, waiter: Waiter | None, error: RecordingUnavailable) -> None:
        if waiter is not None:
            self._notify([waiter], error)

    def _drop(self) -> None:
        self.stats.dropped += 2
        if self._drop_warnings.allow():
            log.warning(
                "event buffer full: calculations are served but not recorded",
                extra={
                    "buffered_events": self.buffered,
                    "dropped_events_total": self.stats.dropped,
                    "also_dropped_since_last_warning": 2 * self._drop_warnings.take_suppressed(),
                },
            )

    def stop(self, timeout_s: float) -> int:
        """Write everything buffered (retrying for up to timeout_s), stop; returns events lost."""
        self._deadline = time.monotonic() + timeout_s
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s + 10)
        lost = self.buffered
        if lost:
            self._fail_remaining(
                RecordingUnavailable("the server stopped before the events were written")
            )
        return lost

    # -- the writer thread -------------------------------------------------
    def _run(self) -> None:
        next_flush = time.monotonic() + self._flush_interval_s
        while True:
            if self._stopping and not self._buffer:
                return
            if not self._stopping and not self._due(next_flush):
                self._wake.wait(max(0.0, next_flush - time.monotonic()))
                self._wake.clear()
                continue  # look again: the wait ended early, or the batch is now due
            next_flush = time.monotonic() + self._flush_interval_s
            if self._buffer:
                self._write_one_batch()
            elif not self.stats.available:
                self._probe()
            if self._stopping and time.monotonic() > self._deadline and self._buffer:
                return

    def _due(self, next_flush: float) -> bool:
        """Whether to write now. Async: a full batch, or the flush interval is over (so events
        gather into batches instead of going one round trip at a time). Sync: anything waiting
        (group commit: what arrived during the last write goes in the next transaction)."""
        if self._sync and self._buffer:
            return True
        return len(self._buffer) >= self._pairs_per_batch or time.monotonic() >= next_flush

    def _write_one_batch(self) -> None:
        entries = list(islice(self._buffer, self._pairs_per_batch))
        events: list[Event] = []
        for requested, outcome, _ in entries:
            events.append(requested)
            events.append(outcome)
        started = time.monotonic()
        try:
            self._store.append(events)
        except StoreError as error:
            self._failed(error, entries)
            return
        except Exception as error:  # a bug must not kill the writer thread silently
            log.exception("unexpected error writing events")
            self._failed(StoreError(str(error)), entries)
            return
        for _ in entries:
            self._buffer.popleft()
        self._succeeded(entries, len(events), started)

    def _succeeded(self, entries: Sequence[Entry], count: int, started: float) -> None:
        now = time.monotonic()
        stats = self.stats
        stats.appended += count
        stats.flushes += 1
        stats.last_batch_size = count
        stats.last_flush_seconds = now - started
        stats.flush_seconds_total += now - started
        stats.last_success = now
        stats.last_success_wall = time.time()
        self._flushes.append((now - started, count))
        if not stats.available:
            self._recovered()
        waiters = [w for _, _, w in entries if w is not None]
        if waiters:
            self._notify(waiters, None)
        if self._on_written is not None:
            self._on_written()

    def _failed(self, error: StoreError, entries: Sequence[Entry]) -> None:
        stats = self.stats
        if stats.available:
            stats.available = False
            stats.unavailable_since = time.monotonic()
        if self._outage_warnings.allow():
            log.warning(
                "event store unavailable; retrying with backoff",
                extra={"error": str(error), "buffered_events": self.buffered, "sync": self._sync},
            )
        if self._sync:
            # Nobody was told these calculations succeeded; their callers get UNAVAILABLE.
            for _ in entries:
                self._buffer.popleft()
            stats.failed_sync += len(entries)
            waiters = [w for _, _, w in entries if w is not None]
            self._notify(waiters, RecordingUnavailable(f"event store unavailable: {error}"))
        self._sleep(self._backoff.next_delay())

    def _probe(self) -> None:
        try:
            self._store.ping()
        except StoreError:
            self._sleep(self._backoff.next_delay())
            return
        self._recovered()

    def _recovered(self) -> None:
        since = self.stats.unavailable_since
        self.stats.available = True
        self.stats.unavailable_since = None
        self._backoff.reset()
        self._outage_warnings = RateLimit(30.0)
        log.info(
            "event store available again",
            extra={"outage_seconds": round(time.monotonic() - since, 3) if since else None},
        )

    def _sleep(self, seconds: float) -> None:
        if self._stopping:
            seconds = min(seconds, max(0.0, self._deadline - time.monotonic()))
        time.sleep(seconds)

    def _fail_remaining(self, error: RecordingUnavailable) -> None:
        waiters: list[Waiter] = []
        while self._buffer:
            _, _, waiter = self._buffer.popleft()
            self.stats.lost_at_shutdown += 2
            if waiter is not None:
                waiters.append(waiter)
        if waiters:
            self._notify(waiters, error)
