"""Logic the two SQL backends share: totals rows and the projection fold."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from oriserver.domain.events import Method, StoredEvent
from oriserver.domain.totals import MethodTotals, RunningTotals
from oriserver.errors import SchemaNotReady
from oriserver.service.ports import Progress, ReadFilter, Step
from oriserver.store.rows import COLUMNS

SELECT_EVENTS = f"SELECT position, created_at, {', '.join(COLUMNS)} FROM events"  # noqa: S608 - constant column list
# On PostgreSQL, read client_ip as text: decoding inet into ipaddress objects only to
# turn them back into strings cost more than the rest of the row.
PG_SELECT_EVENTS = SELECT_EVENTS.replace("client_ip,", "host(client_ip),")


# The head survives removal: with every event removed, it is the position before the start.
HEAD = (
    "SELECT coalesce((SELECT max(position) FROM events), "
    "(SELECT first_position - 1 FROM log_start), 0)"
)
FIRST_POSITION = "SELECT coalesce((SELECT first_position FROM log_start), 1)"
ALL_CHECKPOINTS = "SELECT name, position FROM checkpoints"


def removal_batches(first: int, before: int, batch: int) -> list[tuple[int, int]]:
    """[low, high) position ranges of at most ``batch`` that cover [first, before)."""
    return [(low, min(low + batch, before)) for low in range(first, before, max(batch, 1))]


def stale_start(found: int, first: int) -> str:
    return f"the log now begins at {found}, not {first}: another removal ran meanwhile"


def filter_sql(where: ReadFilter, placeholder: str) -> tuple[str, list[Any]]:
    """Extra WHERE clauses and their parameters for a ReadFilter."""
    clauses: list[str] = []
    params: list[Any] = []
    if where.method is not None:
        clauses.append(f"method = {placeholder}")
        params.append(where.method.value)
    if where.event_type is not None:
        clauses.append(f"event_type = {placeholder}")
        params.append(where.event_type.__name__)
    return "".join(f" AND {c}" for c in clauses), params


def totals_from_rows(rows: Iterable[Sequence[Any]]) -> RunningTotals:
    totals = RunningTotals()
    for method, requested, succeeded, failed in rows:
        totals = totals.with_method(
            Method(method), MethodTotals(int(requested), int(succeeded), int(failed))
        )
    return totals


def totals_to_rows(totals: RunningTotals) -> list[tuple[str, int, int, int]]:
    return [
        (method.value, counts.requested, counts.succeeded, counts.failed)
        for method, counts in totals.by_method.items()
    ]


def apply_step(
    step: Step, totals: RunningTotals, checkpoint: int, events: Sequence[StoredEvent]
) -> tuple[RunningTotals, Progress]:
    if not events:
        return totals, Progress(0, checkpoint)
    return step(totals, events), Progress(len(events), events[-1].position)


def check_revision(found: str | None, expected: str, where: str) -> None:
    """Raise SchemaNotReady unless the database's Alembic revision is the expected one."""
    if found != expected:
        raise SchemaNotReady(
            f"the schema in {where} is at revision {found or 'none'}, this server needs "
            f"{expected}; run `oriserver db upgrade`"
        )
