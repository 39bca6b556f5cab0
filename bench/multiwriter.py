"""The multi-writer ceiling: N writer processes appending to one PostgreSQL at once.

Every append takes one advisory lock (store/postgres.py: it keeps the global order
gap-free), so batches from every writer commit one at a time, whatever the number
of pods. This measures where that puts the ceiling: 1, 2 and 4 processes, each
doing what an event host does per flush (``rows_from_records``, then
``PostgresEventStore.append_rows(rows, project=True)``), flat out, with batches of
the size a busy host writes (ORI_EVENTS_BATCH_SIZE, 1000 events by default).

With ``archive=True`` one more process runs ``oriserver events archive``'s code
(service/retention.py) over and over during the run, so the table shows what an
archive costs the writers and how fast it moves rows.

Self-contained on purpose: it needs only a PostgreSQL server, on which it creates a
database of its own per configuration and drops it afterwards.

    python -m bench.multiwriter postgresql://postgres@127.0.0.1:5432/postgres --seconds 10
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import multiprocessing
import os
import random
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit, urlunsplit

import psycopg

from oriserver.config.database import DatabaseUrl
from oriserver.domain.events import StoredEvent
from oriserver.service.calls import CallRecord
from oriserver.service.retention import archive
from oriserver.store import migrate
from oriserver.store.archive_file import ArchiveWriter
from oriserver.store.factory import open_store
from oriserver.store.postgres import PostgresEventStore
from oriserver.store.rows import rows_from_records

BATCH_EVENTS = 1000  # ORI_EVENTS_BATCH_SIZE's default: a busy host's flush
WARMUP_S = 1.0


@dataclass(frozen=True, slots=True)
class Row:
    """One configuration's result."""

    writers: int
    batch_events: int
    seconds: float
    events: int
    events_per_s: float
    p99_flush_ms: tuple[float, ...]  # one per writer
    median_flush_ms: float
    totals_equal_counts: bool
    waiting_for_lock: float  # writers waiting for the append lock, on average (sampled)
    archived_per_s: float | None = None  # with archive=True: rows archived and removed per s


def _records(count: int) -> list[CallRecord]:
    """Call records as the serving process hands them over: mostly successful summations."""
    now = time.time_ns()
    peer = "ipv4:10.0.0.7:41234"
    return [
        (0, i, i + 100, 0, 5050, peer, now, now + 40_000, None, None)
        if i % 10
        else (1, 21, None, 1, "base too large", peer, now, now + 20_000, None, None)
        for i in range(count)
    ]


def _writer(url: str, batch_events: int, start_at: float, stop_at: float, out: object) -> None:
    store = open_store(DatabaseUrl.parse(url), timeout_s=30.0)
    assert isinstance(store, PostgresEventStore)
    records = _records(batch_events // 2)
    origin = random.getrandbits(128) & ~(0xF << 76) | (0x4 << 76)
    seq, events, flushes = 0, 0, []
    while time.time() < start_at:
        time.sleep(0.001)
    while (now := time.time()) < stop_at:
        rows = rows_from_records(records, origin, seq, f"writer-{os.getpid()}")
        seq += len(records)
        began = time.perf_counter()
        store.append_rows(rows, project=True)
        took = time.perf_counter() - began
        if now >= start_at + WARMUP_S:
            flushes.append(took)
            events += len(rows)
    store.close()
    out.put((events, flushes))  # type: ignore[attr-defined]


class _Counting(ArchiveWriter):
    """The real archive writer, also counting what it wrote per (method, type): with them
    the totals can still be checked against counts after rows left the table."""

    counts: ClassVar[collections.Counter[tuple[str, str]]] = collections.Counter()  # per process

    def write(self, events: Sequence[StoredEvent]) -> None:
        super().write(events)
        self.counts.update((e.event.method.value, e.type_name) for e in events)


def _archiver(url: str, start_at: float, stop_at: float, out: object) -> None:
    """Archive everything the totals have passed, again and again, until the run ends."""
    store = open_store(DatabaseUrl.parse(url), timeout_s=30.0)
    archived, busy = 0, 0.0
    with tempfile.TemporaryDirectory(prefix="ori-archive-") as folder:
        while time.time() < start_at + WARMUP_S:
            time.sleep(0.01)
        while time.time() < stop_at:
            path = Path(folder) / f"{uuid.uuid4().hex}.jsonl.gz"
            began = time.perf_counter()
            done = archive(store, datetime.now(UTC) + timedelta(days=1), _Counting(path))
            busy += time.perf_counter() - began
            archived += done.events
            path.unlink()
            time.sleep(0.2)
    store.close()
    out.put((archived, busy, dict(_Counting.counts)))  # type: ignore[attr-defined]


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


_TYPES = ("CalculationRequested", "CalculationSucceeded", "CalculationFailed")


def _totals_equal_counts(url: str, archived: dict[tuple[str, str], int]) -> bool:
    """Gap safety: the totals folded on write equal a count of the table plus what was
    archived, per method and event type."""
    counts = collections.Counter(archived)
    with psycopg.connect(url) as connection:
        for method, kind, n in connection.execute(
            "SELECT method, event_type, count(*) FROM events GROUP BY 1, 2"
        ):
            counts[(method, kind)] += n
        totals = connection.execute(
            "SELECT method, requested, succeeded, failed FROM running_totals"
        ).fetchall()
    stored = {(m, kind): n for m, *ns in totals for kind, n in zip(_TYPES, ns, strict=True)}
    return {k: v for k, v in stored.items() if v} == {k: v for k, v in counts.items() if v}


_WAITING = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
)


def _sample_lock_waits(url: str, start_at: float, stop_at: float) -> float:
    """How many writers wait for the append lock at a time, sampled every 10 ms."""
    samples: list[int] = []
    with psycopg.connect(url, autocommit=True) as connection:
        while time.time() < start_at + WARMUP_S:
            time.sleep(0.01)
        while time.time() < stop_at:
            row = connection.execute(_WAITING).fetchone()
            samples.append(int(row[0]) if row else 0)
            time.sleep(0.01)
    return sum(samples) / max(len(samples), 1)


@contextlib.contextmanager
def _fresh_database(server_url: str) -> Iterator[str]:
    name = f"ori_bench_multiwriter_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    try:
        migrate.upgrade(DatabaseUrl.parse(url))
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_one(
    server_url: str, writers: int, seconds: float, batch_events: int, *, archive: bool
) -> Row:
    context = multiprocessing.get_context("spawn")
    with _fresh_database(server_url) as url:
        results = context.Queue()
        start_at = time.time() + 3.0  # spawned interpreters need a moment to import
        stop_at = start_at + WARMUP_S + seconds
        processes = [
            context.Process(target=_writer, args=(url, batch_events, start_at, stop_at, results))
            for _ in range(writers)
        ]
        archived = context.Queue()
        if archive:
            processes.append(
                context.Process(target=_archiver, args=(url, start_at, stop_at, archived))
            )
        for process in processes:
            process.start()
        waiting = _sample_lock_waits(url, start_at, stop_at)
        outcomes = [results.get(timeout=seconds + 120) for _ in range(writers)]
        moved = archived.get(timeout=seconds + 120) if archive else None
        for process in processes:
            process.join(60)
        events = sum(n for n, _ in outcomes)
        every = [t for _, flushes in outcomes for t in flushes]
        return Row(
            writers=writers,
            batch_events=batch_events,
            seconds=seconds,
            events=events,
            events_per_s=events / seconds,
            p99_flush_ms=tuple(1000 * _quantile(flushes, 0.99) for _, flushes in outcomes),
            median_flush_ms=1000 * _quantile(every, 0.5),
            totals_equal_counts=_totals_equal_counts(url, moved[2] if moved else {}),
            waiting_for_lock=waiting,
            archived_per_s=None if moved is None else moved[0] / max(moved[1], 1e-9),
        )


def run(
    database_url: str,
    writers: Sequence[int] = (1, 2, 4),
    seconds: float = 10.0,
    *,
    batch_events: int = BATCH_EVENTS,
    archive: bool = False,
) -> list[Row]:
    """One row per writer count. ``database_url`` names a server (and a database to connect
    to for creating the run's own databases); nothing in that database is touched."""
    return [run_one(database_url, n, seconds, batch_events, archive=archive) for n in writers]


def table(rows: Sequence[Row]) -> str:
    lines = [
        "| writers | batch (events) | events/s (all writers) | median flush ms | p99 flush ms per writer | writers waiting for the lock (mean) | totals = counts | archived rows/s |",
        "|---:|---:|---:|---:|---|---:|---|---:|",
    ]
    for row in rows:
        p99 = ", ".join(f"{ms:.1f}" for ms in row.p99_flush_ms)
        moved = "-" if row.archived_per_s is None else f"{row.archived_per_s:,.0f}"
        lines.append(
            f"| {row.writers} | {row.batch_events} | {row.events_per_s:,.0f} | "
            f"{row.median_flush_ms:.1f} | {p99} | {row.waiting_for_lock:.2f} | "
            f"{'yes' if row.totals_equal_counts else 'NO'} | {moved} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.multiwriter", description=__doc__)
    parser.add_argument("database_url", nargs="?", default=os.environ.get("ORI_TEST_DATABASE_URL"))
    parser.add_argument("--writers", default="1,2,4", help="writer counts (default: 1,2,4)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per count")
    parser.add_argument("--batch", type=int, default=BATCH_EVENTS, help="events per append")
    parser.add_argument("--archive", action="store_true", help="archive during the run")
    args = parser.parse_args()
    if not args.database_url:
        parser.error("give a PostgreSQL URL (or set ORI_TEST_DATABASE_URL)")
    counts = tuple(int(n) for n in args.writers.split(","))
    load = os.getloadavg()
    rows = run(
        args.database_url, counts, args.seconds, batch_events=args.batch, archive=args.archive
    )
    print(f"`python -m bench.multiwriter --writers {args.writers} --seconds {args.seconds:g} "
          f"--batch {args.batch}{' --archive' if args.archive else ''}` "
          f"on {os.cpu_count()} CPUs, load average before the run "
          f"{load[0]:.1f}, after {os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print(table(rows))
    return 0 if all(row.totals_equal_counts for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
