"""The store interface every backend implements and the contract tests exercise.

Four small roles, one object per backend:
- the log: ``append`` a batch atomically and idempotently, ``read`` in position order, ``head``;
- the running-totals projection: state and checkpoint advanced in one transaction;
- named checkpoints for reactors;
- leases, so that one replica at a time runs each projection or reactor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from oriserver.domain.events import Event, Method, StoredEvent
from oriserver.domain.totals import RunningTotals

TOTALS_PROJECTION = "running_totals"

Step = Callable[[RunningTotals, Sequence[StoredEvent]], RunningTotals]


@dataclass(frozen=True, slots=True)
class ReadFilter:
    """Optional filters for reading the log."""

    method: Method | None = None
    event_type: type[Event] | None = None


NO_FILTER = ReadFilter()


@dataclass(frozen=True, slots=True)
class Progress:
    """What one projection step did: how many events it applied and where it now stands."""

    applied: int
    checkpoint: int


class Appender(Protocol):
    """What the batching writer needs: a local store, or the event host in front of one."""

    def append(self, events: Sequence[Event]) -> None:
        """Store the batch in one transaction, in order; event_ids already stored are skipped."""

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers and its schema is current."""


class EventLog(Appender, Protocol):
    def read(
        self, from_position: int, limit: int, where: ReadFilter = NO_FILTER
    ) -> list[StoredEvent]:
        """Events with position >= from_position, in position order, at most ``limit``."""

    def head(self) -> int:
        """The highest stored position, 0 for an empty log."""


class TotalsStore(Protocol):
    def advance_totals(self, step: Step, limit: int) -> Progress:
        """In one transaction: read totals and checkpoint, read up to ``limit`` events after it,
        store ``step(totals, events)`` and the new checkpoint. Concurrent callers serialise."""

    def load_totals(self) -> tuple[RunningTotals, int]:
        """The stored totals and the last position they include."""

    def replace_totals(self, totals: RunningTotals, checkpoint: int) -> None:
        """Overwrite totals and checkpoint together (used by replay)."""


class CheckpointStore(Protocol):
    def load_checkpoint(self, name: str) -> int | None:
        """The last position ``name`` has processed, or None if it never ran."""

    def save_checkpoint(self, name: str, position: int) -> None: ...


class Leases(Protocol):
    def try_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take or renew the lease; False while another holder's lease is unexpired."""

    def release_lease(self, name: str, holder: str) -> None: ...


class EventStore(EventLog, TotalsStore, CheckpointStore, Leases, Protocol):
    """Everything a backend provides."""

    def close(self) -> None: ...


class RowStore(EventStore, Protocol):
    """The SQL backends: they also take rows already in COLUMNS order (the event host's path)."""

    def append_rows(self, rows: list[tuple[Any, ...]]) -> None: ...
