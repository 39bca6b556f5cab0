"""Retention: archive the oldest events to a file, then remove them from the log.

The running totals are a projection folded on write, so removing events leaves
them as they are; the archive keeps the facts, and ``rebuild`` can fold archives
and then the live log into the same totals.

Why nothing is lost or doubled while servers keep appending: appends only add
positions above the head, every position up to a head that was read is already
committed (the stores are gap-safe), and stored rows never change. So the events
up to a position read in pages, written out, then removed below it, are exactly
the ones the archive holds, whatever was appended meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from oriserver.domain.events import StoredEvent
from oriserver.domain.totals import RunningTotals
from oriserver.service.ports import TOTALS_PROJECTION, EventStore
from oriserver.service.projection import fold_stored

PAGE = 5000
REMOVE_BATCH = 10_000  # positions per DELETE transaction (see docs/event-store.md)


class RetentionError(Exception):
    """An archive or a rebuild cannot go ahead as asked; the message says why."""


class ArchiveSink(Protocol):
    """Where archived events go: started, written in order, then committed (durable)."""

    def start(self, from_position: int) -> None: ...

    def write(self, events: Sequence[StoredEvent]) -> None: ...

    def commit(self, from_position: int, before_position: int, count: int) -> None:
        """Make the archive durable under its final name; only then are events removed."""


@dataclass(frozen=True, slots=True)
class Archived:
    """What an archive did: the positions [from_position, before_position) it covers."""

    from_position: int
    before_position: int
    events: int
    removed: int
    held_by: str | None  # the checkpoint that kept newer events from being archived


def _limit(store: EventStore) -> tuple[int, str | None]:
    """The last position that may be archived: nothing a checkpoint has not passed."""
    checkpoints = {TOTALS_PROJECTION: 0, **store.all_checkpoints()}
    name = min(checkpoints, key=lambda n: checkpoints[n])
    head = store.head()
    return (head, None) if head <= checkpoints[name] else (checkpoints[name], name)


def archive(
    store: EventStore, before: datetime, sink: ArchiveSink, *, remove_batch: int = REMOVE_BATCH
) -> Archived:
    """Archive the events stored before ``before`` (up to the first one stored at or after
    it, and none that a checkpoint has not passed), commit the archive, then remove them."""
    first = store.first_position()
    limit, held_by = _limit(store)
    end, count = first, 0  # the archive covers [first, end)
    sink.start(first)
    while end <= limit:
        want = min(PAGE, limit - end + 1)
        page = store.read(end, want)
        keep = [e for e in page if e.position <= limit]
        newer = next((i for i, e in enumerate(keep) if e.created_at >= before), None)
        if newer is not None:
            sink.write(keep[:newer])
            count += newer
            end, held_by = keep[newer].position, None
            break
        sink.write(keep)
        count += len(keep)
        if len(page) < want or len(keep) < len(page):
            end = limit + 1  # nothing else at or below the limit: it is all committed
            break
        end = page[-1].position + 1
    sink.commit(first, end, count)
    removed = store.remove_before(first, end, remove_batch) if end > first else 0
    if removed != count:
        raise RetentionError(
            f"archived {count} events but removed {removed} from the log; the archive is kept"
        )
    return Archived(first, end, count, removed, held_by)


class Chain:
    """Checks, as archives are read in order of their first position, that together they
    cover every position from 1 to the live log's start without a gap, and says from
    which position each one is needed. Overlaps are allowed (an archive whose removal
    was cut short is followed by one that starts inside it): each position is taken
    from the first archive that holds it."""

    def __init__(self, live_first: int) -> None:
        self.live_first = live_first
        self.covered = 1  # every position below this is covered

    def begin(self, name: str, from_position: int) -> int:
        """The first position of this archive still needed; RetentionError on a gap."""
        if from_position > self.covered:
            raise RetentionError(
                f"no archive given covers positions {self.covered} to {from_position - 1} "
                f"({name} starts at {from_position})"
            )
        return self.covered

    def end(self, before_position: int) -> None:
        self.covered = max(self.covered, before_position)

    def finish(self) -> None:
        if self.covered < self.live_first:
            raise RetentionError(
                f"the live log begins at position {self.live_first}, but the archives given "
                f"cover only positions below {self.covered}; pass every archive file "
                "(--archive FILE, repeatable)"
            )


Archives = Callable[[int], Iterable[Sequence[StoredEvent]]]  # live start -> archived batches


def rebuild(
    store: EventStore, archived: Archives | None = None, page: int = PAGE
) -> tuple[RunningTotals, int]:
    """Fold the archived events (in order, each position below the live log's start once:
    see Chain), then the live log, and swap the result in atomically.

    Running servers keep projecting meanwhile: they continue from the replaced
    checkpoint, so events that arrive during the replay are counted once."""
    totals = RunningTotals()
    first = store.first_position()
    if first > 1 and archived is None:
        raise RetentionError(
            f"the log begins at position {first}: events below it were archived; pass the "
            "archive files (--archive FILE, repeatable) to rebuild from them"
        )
    for batch in archived(first) if archived is not None else ():
        totals = fold_stored(totals, batch)
    position = first - 1
    while batch := store.read(position + 1, page):
        totals = fold_stored(totals, batch)
        position = batch[-1].position
    if store.first_position() != first:
        raise RetentionError("an archive removed events during the rebuild; run it again")
    store.replace_totals(totals, position)
    return totals, position
