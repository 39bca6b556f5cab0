"""The store interface every backend implements and the contract tests exercise.

Defined here, beside the use cases that need it, so that the service layer
depends on this interface and the adapters (store/) depend on the service
layer, never the other way round. Five small roles, one object per backend:

- the log: ``append_rows`` a batch atomically and idempotently (optionally
  folding it into the running totals in the same transaction), ``read`` in
  position order, ``head``, and ``first_position``, where the retained log begins;
- retention: ``remove_before`` drops the oldest events once they are archived;
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
from oriserver.service.calls import CallRecord

TOTALS_PROJECTION = "running_totals"

Step = Callable[[RunningTotals, Sequence[StoredEvent]], RunningTotals]
Row = tuple[Any, ...]  # the events table's columns in store/rows.py COLUMNS order


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


@dataclass(frozen=True, slots=True)
class Appended:
    """What one append did: rows stored (duplicates skipped), the head after it, and
    whether the running totals were advanced over the batch in the same transaction."""

    stored: int
    head: int
    projected: bool = False


class EventLog(Protocol):
    def append(self, events: Sequence[Event]) -> Appended:
        """Store the batch in one transaction, in order; event_ids already stored are skipped."""

    def append_rows(self, rows: Sequence[Row], *, project: bool = False) -> Appended:
        """append() for rows already in COLUMNS order. With ``project``, when the totals'
        checkpoint is the head before this batch, the batch is folded into the totals and
        the checkpoint moved past it in the same transaction (projection on write)."""

    def read(
        self, from_position: int, limit: int, where: ReadFilter = NO_FILTER
    ) -> list[StoredEvent]:
        """Events with position >= from_position, in position order, at most ``limit``."""

    def head(self) -> int:
        """The highest position ever stored (it stays put when old events are removed);
        0 for a log that never held an event."""

    def first_position(self) -> int:
        """The lowest position the log may still hold: 1, until ``remove_before`` removed
        older events. Reading from below it would silently skip the removed ones."""

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers and its schema is current."""


class Retention(Protocol):
    """The one write besides appending: dropping the oldest events, after they are archived.

    A role of its own, with one method, so that readers and writers never see it; the
    archive file is the service layer's (service/retention.py), not the store's."""

    def remove_before(self, first: int, before: int, batch: int) -> int:
        """Remove the events at positions below ``before`` and move the log's start to it,
        in transactions of at most ``batch`` positions, each moving the start along with
        the rows it removes. ``first`` is the start the caller read its archive from; if
        another removal moved it meanwhile, nothing is removed and StoreError is raised.
        ``before`` must not exceed head() + 1. Returns the number of events removed."""


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

    def all_checkpoints(self) -> dict[str, int]:
        """Every saved checkpoint by name (retention never removes what one has not read)."""


class Leases(Protocol):
    def try_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take or renew the lease; False while another holder's lease is unexpired."""

    def release_lease(self, name: str, holder: str) -> None: ...


class EventStore(EventLog, Retention, TotalsStore, CheckpointStore, Leases, Protocol):
    """Everything a backend provides."""

    def close(self) -> None: ...


class CallSink(Protocol):
    """Where the serving process ships its call records: the event host (eventhost/)."""

    def append_calls(
        self, origin: int, first_seq: int, records: list[CallRecord], timeout_s: float
    ) -> Appended:
        """Commit the records' events (two each) in one transaction; returns the events stored
        (duplicates of an earlier attempt are skipped) and the committed head after them.
        Raises StoreUnavailable when the store cannot be reached within ``timeout_s``,
        SchemaNotReady, or StoreError."""

    def ping(self, timeout_s: float) -> None:
        """Raise StoreUnavailable (or SchemaNotReady) unless the store can take writes."""

    def close(self) -> None: ...
