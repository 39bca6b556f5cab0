"""The serving process's recording pipeline: a bounded buffer of call records, and one
thread that ships them to the event host in batches.

The serving path only appends a record (service/calls.py) to the buffer: ids,
events and rows are built by the event host. Durability is the setting's choice:

- async: ``record`` returns at once. A crash can lose what is still buffered
  (normally one flush interval's worth); ``stop`` ships everything first. While
  the store is unavailable the batch in hand is retried with backoff (the same
  batch, so the same derived ids: a retry never duplicates), the buffer fills up
  to its capacity, and newer calls are served but not recorded (counted, logged).
- sync: ``record`` returns once the record's batch is committed (group commit:
  whatever arrived while the previous batch was written goes in the next), and
  raises RecordingUnavailable when it cannot be, within the store's timeout and
  the caller's deadline. A record given up on before it was shipped is withdrawn,
  so a refused call is not recorded later; one already shipped may still commit
  (its outcome is unknown), which is what idempotency keys are for.

Sizes count events, as the settings do: each record is exactly two events.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from collections.abc import Callable

from oriserver.errors import RecordingUnavailable, StoreError
from oriserver.recording.backoff import Backoff, RateLimit
from oriserver.recording.waiting import EVENTS_PER_CALL, Entry, ShipperStats, Waiter
from oriserver.service.calls import CallRecord
from oriserver.service.ports import CallSink

log = logging.getLogger("oriserver.events.writer")

SYNC_MARGIN_S = 0.5  # a sync call waits the store's timeout plus this, at most
_PATIENCE_RESERVE_S = 0.05  # answer this long before the caller's own deadline


class CallShipper:
    records = True

    def __init__(
        self,
        sink: CallSink,
        *,
        batch_events: int,
        flush_interval_s: float,
        capacity_events: int,
        sync: bool,
        timeout_s: float,
        on_availability: Callable[[bool], None] | None = None,
        on_written: Callable[[int], None] | None = None,
    ) -> None:
        self._sink = sink
        self._per_batch = max(1, batch_events // EVENTS_PER_CALL)
        self._capacity = max(1, capacity_events // EVENTS_PER_CALL)
        self._flush_interval_s = flush_interval_s
        self._sync = sync
        self._timeout_s = timeout_s
        self._on_availability = on_availability
        self._on_written = on_written
        self._buffer: collections.deque[Entry] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._deadline = float("inf")
        self._backoff = Backoff(base=0.05, cap=2.0)  # short: notice a returning store soon
        self._drop_warnings = RateLimit(10.0)
        self._thread = threading.Thread(target=self._run, name="event-shipper", daemon=True)
        self._flushes: collections.deque[tuple[float, int]] = collections.deque(maxlen=10_000)
        # Names this process's records: the event host derives their ids from it.
        self._origin = random.getrandbits(128) & ~(0xF << 76) | (0x4 << 76)  # version 4
        self._origin = self._origin & ~(0x3 << 62) | (0x2 << 62)  # RFC 4122 variant
        self._next_seq = 0
        self.stats = ShipperStats()

    @property
    def buffered(self) -> int:
        """Events waiting in memory."""
        return EVENTS_PER_CALL * len(self._buffer)

    @property
    def capacity(self) -> int:
        return EVENTS_PER_CALL * self._capacity

    def start(self) -> None:
        self._thread.start()

    def drain_flushes(self) -> list[tuple[float, int]]:
        """(seconds, events) of every batch written since the last call, for metrics."""
        drained: list[tuple[float, int]] = []
        while self._flushes:
            drained.append(self._flushes.popleft())
        return drained

    # -- the serving path ------------------------------------------------------------
    def record(self, call: CallRecord, patience_s: float | None = None) -> None:
        if not self._sync:
            with self._lock:
                if self._stopping or len(self._buffer) >= self._capacity:
                    self._drop()
                    return
                self._buffer.append((call, None))
                if len(self._buffer) >= self._per_batch:
                    self._wake.set()
            return
        self._record_and_wait(call, patience_s)

    def _record_and_wait(self, call: CallRecord, patience_s: float | None) -> None:
        waiter = Waiter()
        with self._lock:
            refusal = self._refusal()
            if refusal is None:
                self._buffer.append((call, waiter))
            else:
                self.stats.rejected += EVENTS_PER_CALL
        if refusal is not None:
            raise RecordingUnavailable(refusal)
        self._wake.set()
        wait_s = self._timeout_s + SYNC_MARGIN_S
        if patience_s is not None:
            wait_s = max(0.0, min(wait_s, patience_s - _PATIENCE_RESERVE_S))
        if waiter.lock.acquire(timeout=wait_s):
            if waiter.error is not None:
                raise waiter.error
            return
        with self._lock:
            shipped = waiter.shipped
            waiter.withdrawn = not shipped
            self.stats.rejected += EVENTS_PER_CALL
        state = "its batch's outcome is unknown" if shipped else "it was not recorded"
        raise RecordingUnavailable(
            f"the event store did not commit the calculation within {wait_s:g}s; {state}"
        )

    def _refusal(self) -> str | None:
        """Why a sync call cannot be taken now (called under the lock), or None."""
        if self._stopping:
            return "the server is shutting down; the calculation was not recorded"
        if self.stats.available is False:
            return "event store unavailable; the calculation was not recorded"
        if len(self._buffer) >= self._capacity:
            return "event buffer full; the calculation was not recorded"
        return None

    def _drop(self) -> None:
        self.stats.dropped += EVENTS_PER_CALL
        if self._drop_warnings.allow():
            log.warning(
                "event buffer full: calculations are served but not recorded",
                extra={
                    "buffered_events": self.buffered,
                    "dropped_events_total": self.stats.dropped,
                    "also_dropped_since_last_warning": EVENTS_PER_CALL
                    * self._drop_warnings.take_suppressed(),
                },
            )

    # -- stopping -------------------------------------------------------------------
    def stop(self, timeout_s: float) -> int:
        """Ship everything buffered (retrying for up to timeout_s), stop; returns events lost."""
        with self._lock:
            self._deadline = time.monotonic() + timeout_s
            self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s + self._timeout_s + 10)
        with self._lock:
            lost = [self._buffer.popleft() for _ in range(len(self._buffer))]
        waiters = [w for _, w in lost if w is not None and not w.withdrawn]
        for waiter in waiters:
            waiter.settle(RecordingUnavailable("the server stopped before the events were written"))
        self.stats.lost_at_shutdown += EVENTS_PER_CALL * len(lost)
        return EVENTS_PER_CALL * len(lost)

    # -- the shipper thread ---------------------------------------------------------
    def _run(self) -> None:
        self._probe()  # start the host and learn whether the store answers, off the serving path
        next_flush = time.monotonic() + self._flush_interval_s
        batch: tuple[int, list[Entry]] | None = None  # in hand; async retries it as it is
        while True:
            if batch is None:
                if self._stopping and not self._buffer:
                    return
                if not self._stopping and not self._due(next_flush):
                    if self.stats.available is False and not self._buffer:
                        self._probe()  # nothing to ship: find out when the store is back
                        continue
                    now = time.monotonic()
                    if now >= next_flush:  # an interval passed with nothing to ship
                        next_flush = now + self._flush_interval_s
                    self._wake.wait(next_flush - now)
                    self._wake.clear()
                    continue
                next_flush = time.monotonic() + self._flush_interval_s
                batch = self._take()
                if batch is None:
                    if self.stats.available is False:
                        self._probe()
                    continue
            if self._ship(*batch) or self._sync:
                batch = None  # written, or its sync callers were told it failed
            else:
                self._sleep(self._backoff.next_delay())
            if self._stopping and time.monotonic() > self._deadline:
                if batch is not None:
                    with self._lock:
                        self._buffer.extendleft(reversed(batch[1]))  # stop() counts them lost
                return

    def _due(self, next_flush: float) -> bool:
        """Async: a full batch, or the flush interval is over (so calls gather into batches
        instead of going one round trip at a time). Sync: anything waiting (group commit)."""
        if not self._buffer:
            return False
        if self._sync:
            return True
        return len(self._buffer) >= self._per_batch or time.monotonic() >= next_flush

    def _take(self) -> tuple[int, list[Entry]] | None:
        """Up to one batch from the buffer, without the sync calls that gave up waiting."""
        entries: list[Entry] = []
        with self._lock:
            buffer = self._buffer
            if not self._sync:  # no waiters: nothing to skip or mark
                entries = [buffer.popleft() for _ in range(min(len(buffer), self._per_batch))]
            else:
                while buffer and len(entries) < self._per_batch:
                    entry = buffer.popleft()
                    waiter = entry[1]
                    if waiter is not None:
                        if waiter.withdrawn:
                            continue
                        waiter.shipped = True
                    entries.append(entry)
        if not entries:
            return None
        first_seq = self._next_seq
        self._next_seq += len(entries)
        return first_seq, entries

    def _ship(self, first_seq: int, entries: list[Entry]) -> bool:
        records = [record for record, _ in entries]
        started = time.monotonic()
        try:
            appended = self._sink.append_calls(self._origin, first_seq, records, self._timeout_s)
        except StoreError as error:
            self._failed(error, entries)
            return False
        except Exception as error:  # a bug must not kill the shipper silently
            log.exception("unexpected error writing events")
            self._failed(StoreError(str(error)), entries)
            return False
        seconds = time.monotonic() - started
        stats = self.stats
        confirmed = EVENTS_PER_CALL * len(entries)
        stats.appended += confirmed
        stats.already_stored += confirmed - appended.stored
        stats.flushes += 1
        stats.last_batch_size = EVENTS_PER_CALL * len(entries)
        stats.flush_seconds_total += seconds
        stats.last_success_wall = time.time()
        self._flushes.append((seconds, EVENTS_PER_CALL * len(entries)))
        self._set_available(True, "")
        if self._sync:
            for _, waiter in entries:
                if waiter is not None:
                    waiter.settle(None)
        if self._on_written is not None:
            self._on_written(appended.head)
        return True

    def _failed(self, error: StoreError, entries: list[Entry]) -> None:
        self._set_available(False, str(error))
        if not self._sync:
            return
        # Nobody was told these calculations succeeded: their callers get UNAVAILABLE, and
        # so does every sync call still waiting (the store is down: fail fast, not late).
        with self._lock:
            waiting = [self._buffer.popleft() for _ in range(len(self._buffer))]
        failed = [w for _, w in (*entries, *waiting) if w is not None and not w.withdrawn]
        reason = RecordingUnavailable(f"event store unavailable: {error}")
        self.stats.rejected += EVENTS_PER_CALL * len(failed)
        for waiter in failed:
            waiter.settle(reason)
        self._sleep(self._backoff.next_delay())

    def _probe(self) -> None:
        try:
            self._sink.ping(self._timeout_s)
        except StoreError as error:
            self._set_available(False, str(error))
            self._sleep(self._backoff.next_delay())
            return
        self._set_available(True, "")

    def _set_available(self, available: bool, reason: str) -> None:
        """Logged once when an outage begins and once when it ends; health follows."""
        stats = self.stats
        if stats.available is available:
            return
        was = stats.available
        stats.available = available
        if available:
            self._backoff.reset()
            if was is False:
                since = stats.unavailable_since
                log.info(
                    "event store available again",
                    extra={"outage_seconds": round(time.monotonic() - since, 3) if since else None},
                )
            stats.unavailable_since = None
        else:
            stats.unavailable_since = time.monotonic()
            log.warning(
                "event store unavailable; retrying with backoff",
                extra={"error": reason, "buffered_events": self.buffered, "sync": self._sync},
            )
        if self._on_availability is not None:
            self._on_availability(available)

    def _sleep(self, seconds: float) -> None:
        if self._stopping:
            seconds = min(seconds, max(0.0, self._deadline - time.monotonic()))
        time.sleep(seconds)
