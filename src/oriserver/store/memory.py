"""The in-memory backend: the reference implementation of the contract, and a test double.

It is a real store (tests of the writer, projection and reactors use it), not
a mock; it keeps nothing across restarts, so the server never selects it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from oriserver.domain.events import Event, StoredEvent
from oriserver.domain.totals import RunningTotals, fold_counts
from oriserver.errors import StoreError, StoreUnavailable
from oriserver.service.ports import (
    NO_FILTER,
    TOTALS_PROJECTION,
    Appended,
    Progress,
    ReadFilter,
    Row,
    Step,
)
from oriserver.store.rows import count_rows, from_row, to_row


class InMemoryEventStore:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._events: list[StoredEvent] = []  # positions _removed + 1, _removed + 2, ...
        self._removed = 0
        self._ids: set[object] = set()
        self._totals = RunningTotals()
        self._checkpoints: dict[str, int] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self.available = True  # tests flip this to simulate an outage of the backing service

    def _check(self) -> None:
        if not self.available:
            raise StoreUnavailable("in-memory store is marked unavailable")

    def append(self, events: Sequence[Event]) -> Appended:
        return self.append_rows([to_row(event) for event in events])

    def append_rows(self, rows: Sequence[Row], *, project: bool = False) -> Appended:
        with self._lock:
            self._check()
            now = datetime.now(UTC)
            head_before = self._removed + len(self._events)
            stored: list[Row] = []
            for row in rows:
                if row[0] in self._ids:
                    continue
                self._ids.add(row[0])
                position = self._removed + len(self._events) + 1
                self._events.append(from_row((position, now, *row)))
                stored.append(row)
            head = self._removed + len(self._events)
            checkpoint = self._checkpoints.get(TOTALS_PROJECTION, 0)
            projected = project and checkpoint == head_before
            if projected and stored:
                self._totals = fold_counts(self._totals, count_rows(stored))
                self._checkpoints[TOTALS_PROJECTION] = head
            return Appended(len(stored), head, projected)

    def read(
        self, from_position: int, limit: int, where: ReadFilter = NO_FILTER
    ) -> list[StoredEvent]:
        with self._lock:
            self._check()
            found: list[StoredEvent] = []
            for stored in self._events[max(from_position - 1 - self._removed, 0) :]:
                if where.method is not None and stored.event.method is not where.method:
                    continue
                if where.event_type is not None and type(stored.event) is not where.event_type:
                    continue
                found.append(stored)
                if len(found) >= limit:
                    break
            return found

    def head(self) -> int:
        with self._lock:
            self._check()
            return self._removed + len(self._events)

    def first_position(self) -> int:
        with self._lock:
            self._check()
            return self._removed + 1

    def remove_before(self, first: int, before: int, batch: int) -> int:
        with self._lock:
            self._check()
            if first != self._removed + 1:
                raise StoreError(
                    f"the log now begins at {self._removed + 1}, not {first}: another removal ran"
                )
            if before > self._removed + len(self._events) + 1:
                raise StoreError(f"cannot remove up to {before}: the head is {self.head()}")
            count = max(0, before - first)
            del self._events[:count]  # event ids stay known: a retried batch is still skipped
            self._removed += count
            return count

    def advance_totals(self, step: Step, limit: int) -> Progress:
        with self._lock:
            self._check()
            checkpoint = self._checkpoints.get(TOTALS_PROJECTION, 0)
            start = max(checkpoint - self._removed, 0)
            events = self._events[start : start + limit]
            if not events:
                return Progress(0, checkpoint)
            self._totals = step(self._totals, events)
            self._checkpoints[TOTALS_PROJECTION] = events[-1].position
            return Progress(len(events), events[-1].position)

    def load_totals(self) -> tuple[RunningTotals, int]:
        with self._lock:
            self._check()
            return self._totals, self._checkpoints.get(TOTALS_PROJECTION, 0)

    def replace_totals(self, totals: RunningTotals, checkpoint: int) -> None:
        with self._lock:
            self._check()
            self._totals = totals
            self._checkpoints[TOTALS_PROJECTION] = checkpoint

    def load_checkpoint(self, name: str) -> int | None:
        with self._lock:
            self._check()
            return self._checkpoints.get(name)

    def save_checkpoint(self, name: str, position: int) -> None:
        with self._lock:
            self._check()
            self._checkpoints[name] = position

    def all_checkpoints(self) -> dict[str, int]:
        with self._lock:
            self._check()
            return dict(self._checkpoints)

    def try_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        with self._lock:
            self._check()
            now = time.monotonic()
            current = self._leases.get(name)
            if current is not None and current[0] != holder and current[1] >= now:
                return False
            self._leases[name] = (holder, now + ttl_s)
            return True

    def release_lease(self, name: str, holder: str) -> None:
        with self._lock:
            current = self._leases.get(name)
            if current is not None and current[0] == holder:
                del self._leases[name]

    def ping(self) -> None:
        with self._lock:
            self._check()

    def close(self) -> None:
        return None
