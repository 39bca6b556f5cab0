"""The running-totals projection runner, and replay from the start of the log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from oriserver.domain.events import StoredEvent
from oriserver.domain.totals import RunningTotals, fold
from oriserver.service.background import LeasedWorker
from oriserver.service.ports import TOTALS_PROJECTION, EventStore

PAGE = 1000


def fold_stored(totals: RunningTotals, events: Sequence[StoredEvent]) -> RunningTotals:
    """The projection step: the pure calculators over the events' payloads."""
    return fold(totals, (stored.event for stored in events))


@dataclass(frozen=True, slots=True)
class ProjectionStats:
    """A snapshot, replaced (never changed) as the runner progresses: safe to read anywhere."""

    checkpoint: int = 0
    head: int = 0
    applied: int = 0

    @property
    def lag(self) -> int:
        return max(0, self.head - self.checkpoint)


class ProjectionRunner(LeasedWorker):
    """Applies new events to the stored totals; exactly once, because the store advances
    the totals and the checkpoint in the same transaction."""

    name = f"projection:{TOTALS_PROJECTION}"

    def __init__(self, store: EventStore, holder: str, interval_s: float) -> None:
        super().__init__(store, holder, interval_s)
        self._store = store
        self.stats = ProjectionStats()

    def step(self) -> bool:
        progress = self._store.advance_totals(fold_stored, PAGE)
        self.stats = ProjectionStats(
            progress.checkpoint, self._store.head(), self.stats.applied + progress.applied
        )
        return progress.applied == PAGE

    def observe(self) -> None:
        _, checkpoint = self._store.load_totals()
        self.stats = ProjectionStats(checkpoint, self._store.head(), self.stats.applied)

    def written(self, checkpoint: int, applied: int) -> None:
        """The writer folded a batch on write (in its own transaction): note where that left us."""
        stats = self.stats
        self.stats = ProjectionStats(
            checkpoint, max(stats.head, checkpoint), stats.applied + applied
        )


def rebuild(store: EventStore, page: int = 5000) -> tuple[RunningTotals, int]:
    """Fold the whole log from empty and swap the result in atomically.

    Running servers keep projecting meanwhile: they continue from the replaced
    checkpoint, so events that arrive during the replay are counted once.
    """
    totals = RunningTotals()
    position = 0
    while batch := store.read(position + 1, page):
        totals = fold_stored(totals, batch)
        position = batch[-1].position
    store.replace_totals(totals, position)
    return totals, position
